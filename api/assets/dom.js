// Small DOM and formatting helpers. Text from the API only ever goes into
// `textContent`: nothing here parses HTML.

/** Creates an element with properties (`className`, `textContent`, …) and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === 'dataset') Object.assign(node.dataset, value);
    else node[name] = value;
  }
  node.append(...children.filter(c => c !== null && c !== undefined));
  return node;
}

const STATUSES = ['queued', 'waiting_for_build', 'running', 'succeeded', 'failed', 'cancelled'];
const TERMINAL = ['succeeded', 'failed', 'cancelled'];

/** True for `succeeded`, `failed` and `cancelled`. */
export function isTerminal(status) {
  return TERMINAL.includes(status);
}

/** A status badge; its class comes from a fixed list, never from the text. */
export function statusBadge(status) {
  const badge = el('span');
  setStatus(badge, status);
  return badge;
}

/** Sets a badge made by `statusBadge` to another status. */
export function setStatus(badge, status) {
  const known = STATUSES.includes(status) ? status : 'unknown';
  badge.className = `status status-${known}`;
  badge.textContent = status || 'unknown';
}

/** A timestamp in the reader's locale, or an em dash. */
export function when(timestamp) {
  if (!timestamp) return '—';
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? String(timestamp) : date.toLocaleString();
}

/** A duration in milliseconds as `850 ms`, `12.3 s` or `4 min 05 s`. */
export function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.floor((ms % 60_000) / 1000);
  return `${minutes} min ${String(seconds).padStart(2, '0')} s`;
}

/** A byte count as `512 B`, `1.5 KiB`, `3.2 MiB`. */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** Shows `text` in the page's message bar (empty text hides it). */
export function showMessage(text, kind = 'error') {
  const bar = document.getElementById('message');
  bar.textContent = text;
  bar.className = `message message-${kind === 'error' ? 'error' : 'info'}`;
  bar.hidden = !text;
}

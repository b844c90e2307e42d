// The run page: the run's status and facts, its console lines as they arrive
// (build lines marked), its progress, validation results and outputs.

import { apiJson, ApiError, download, withRetries } from './api.js';
import { bytes, duration, el, isTerminal, setStatus, showMessage, when } from './dom.js';
import { forgetKey, takeKeyFromFragment, wireForgetButton, withKey } from './key.js';
import { RunFollower } from './stream.js';

/** Console rows kept on the page; the event log download has them all. */
const MAX_ROWS = 50_000;
/** Validation issues listed; the summary counts them all. */
const MAX_ISSUES = 1000;

const PHASES = {
  load_config: 'Loading the configuration',
  read_input: 'Reading',
  detect_header: 'Detecting the header',
  map_columns: 'Mapping columns',
  write_output: 'Writing the output',
  create_venv: 'Building the environment: creating the venv',
  install_engine: 'Building the environment: installing the engine',
  install_config: 'Building the environment: installing the configuration',
  verify_imports: 'Building the environment: checking imports',
  collect_metadata: 'Building the environment: recording packages',
};

const $ = id => document.getElementById(id);
const runId = location.pathname.split('/')[2] || '';

let follower = null;
let view = null;

function start() {
  showMessage('');
  follower?.stop();
  resetView();
  refreshRun();
  follower = new RunFollower(runId, { onEvents: showEvents, onState: showConnection });
  follower.run();
}

function stop() {
  follower?.stop();
}

function resetView() {
  view = { inputs: 0, rows: 0, tables: 0, errors: 0, warnings: 0, issues: 0, trimmed: 0, final: null };
  for (const id of ['console', 'tables', 'issues', 'outputs']) $(id).replaceChildren();
  $('console-note').hidden = true;
}

// ---- the run resource -------------------------------------------------------

let refreshing = false;
let refreshAgain = false;

/** Reads the run again; calls made meanwhile coalesce into one more read. */
async function refreshRun() {
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  try {
    do {
      refreshAgain = false;
      showRun(await withRetries(() => apiJson(`/api/v1/runs/${runId}`)));
    } while (refreshAgain);
  } catch (error) {
    showError(error);
  } finally {
    refreshing = false;
  }
}

function showRun(run) {
  // A read that started before `run.completed` arrived must not undo it.
  const status = view.final && !isTerminal(run.status) ? view.final : run.status;
  setStatus($('status'), status);
  view.inputs = run.options?.document_ids?.length || 0;
  showFacts(run);
  const failure = run.failure;
  $('failure').hidden = !failure;
  $('failure').textContent = failure ? `${failure.stage} failed (${failure.code}): ${failure.message}` : '';
  showProgress();
}

function showFacts(run) {
  const mode = run.options?.dry_run ? 'dry run' : run.options?.validate_only ? 'validate only' : 'normal';
  const facts = [
    ['Created', when(run.created_at)],
    ['Started', when(run.started_at)],
    ['Completed', when(run.completed_at)],
    ['Duration', duration(run.duration_ms)],
    ['Attempt', String(run.attempt)],
    ['Worker', run.worker_id || '—'],
    ['Exit code', run.exit_code ?? '—'],
    ['Mode', mode],
    ['Configuration', run.configuration_id],
    ['Build', run.build_id || '—'],
  ];
  $('facts').replaceChildren(...facts.flatMap(([name, value]) => [
    el('dt', { textContent: name }),
    el('dd', { textContent: String(value) }),
  ]));
}

// ---- the event stream -------------------------------------------------------

const CONNECTION = {
  connecting: () => 'connecting…',
  live: () => 'live',
  reconnecting: seconds => `connection lost; reconnecting in ${seconds} s`,
  ended: () => 'complete',
};

function showConnection(state, detail) {
  const badge = $('connection');
  badge.dataset.state = state;
  if (state === 'stopped') {
    badge.textContent = 'stopped';
    showError(detail);
    return;
  }
  badge.textContent = CONNECTION[state](detail);
  if (state === 'live') showMessage('');
}

/** What each event type does to the page; a returned node goes to the console. */
const ON_EVENT = {
  'console.line': consoleLine,
  'run.queued': e => note(e, 'run queued'),
  'build.created': e => note(e, `build created (${e.payload.reason})`, true),
  'build.started': e => note(e, `build started on ${e.payload.host}`, true),
  'build.phase.started': e => showPhase(e.payload.phase),
  'build.completed': e => note(e, buildCompleted(e.payload), true),
  'run.started': e => note(e, runStarted(e.payload), true),
  'run.phase.started': e => showPhase(e.payload.phase, e.payload.input),
  'run.progress': e => addRows(e.payload),
  'run.table.summary': e => addTable(e.payload),
  'run.validation.issue': e => addIssue(e.payload),
  'run.validation.summary': e => showValidation(e.payload),
  'run.error': e => note(e, `error: ${e.payload.message}`),
  'run.retry': e => note(e, `retrying (${e.payload.reason}) as attempt ${e.payload.next_attempt}`, true),
  'run.completed': completed,
};

function showEvents(events) {
  const rows = document.createDocumentFragment();
  for (const event of events) {
    const row = ON_EVENT[event.type]?.(event);
    if (row) rows.append(row);
  }
  appendRows(rows);
}

function consoleLine(event) {
  const p = event.payload;
  const scope = p.scope === 'build' ? 'build' : 'run';
  const stream = p.stream === 'stderr' ? 'stderr' : 'stdout';
  const level = ['warning', 'error'].includes(p.level) ? p.level : 'info';
  return el('div', { className: `line scope-${scope} stream-${stream} level-${level}`, dataset: { seq: event.sequence } },
    el('span', { className: 'tag', textContent: scope === 'build' ? 'build' : '' }),
    el('span', { className: 'msg', textContent: p.message }));
}

/** A status note in the console; with `refresh`, the run resource is read again. */
function note(event, text, refresh = false) {
  if (refresh) refreshRun();
  return el('div', { className: 'note', dataset: { seq: event.sequence } }, el('span', { className: 'msg', textContent: `— ${text}` }));
}

function buildCompleted(p) {
  return `build ${p.status} in ${duration(p.duration_ms)}${p.error ? `: ${p.error}` : ''}`;
}

function runStarted(p) {
  return `run started on ${p.worker_id} (attempt ${p.attempt}${p.env_reused ? ', environment reused' : ''})`;
}

function appendRows(rows) {
  const box = $('console');
  box.append(rows);
  let trimmed = 0;
  while (box.childElementCount > MAX_ROWS) {
    box.firstElementChild.remove();
    trimmed += 1;
  }
  if (trimmed) {
    view.trimmed += trimmed;
    $('console-note').hidden = false;
    $('console-note').textContent = `${view.trimmed} older lines are not shown; the event log has every line.`;
  }
  scrollToEnd();
}

let scrollPending = false;

/** Scrolls the console to its end once per frame: layout of a long console is the costly part. */
function scrollToEnd() {
  if (scrollPending || !$('autoscroll').checked) return;
  scrollPending = true;
  requestAnimationFrame(() => {
    scrollPending = false;
    const box = $('console');
    box.scrollTop = box.scrollHeight;
  });
}

// ---- progress and validation ------------------------------------------------

function showPhase(phase, input) {
  const label = PHASES[phase] || phase;
  $('phase').textContent = input ? `${label} · ${input}` : label;
}

function addRows(p) {
  view.rows += Number(p.rows) || 0;
  showProgress();
}

function showProgress() {
  const bar = $('progress');
  const total = view.inputs;
  const done = view.final ? total : Math.min(view.tables, total);
  if (total) {
    bar.max = total;
    bar.value = done;
  } else {
    bar.removeAttribute('value');
  }
  const inputs = total ? `${done} of ${total} input${total === 1 ? '' : 's'} done` : '';
  $('progress-text').textContent = [`${view.rows} rows read`, inputs].filter(Boolean).join(' · ');
}

function addTable(p) {
  view.tables += 1;
  const parts = [`header on row ${p.header_row}`, `${p.rows} rows`, `${(p.columns || []).length} columns mapped`];
  if (p.missing_fields?.length) parts.push(`missing ${p.missing_fields.join(', ')}`);
  if (p.unmapped_headers?.length) parts.push(`unmapped ${p.unmapped_headers.join(', ')}`);
  parts.push(p.output ? `output ${p.output}` : 'no output written');
  $('tables').append(el('li', {}, el('strong', { textContent: p.input }), ` — ${parts.join(', ')}`));
  showProgress();
}

function addIssue(p) {
  const severity = p.severity === 'error' ? 'error' : 'warning';
  view[severity === 'error' ? 'errors' : 'warnings'] += 1;
  view.issues += 1;
  if (view.issues <= MAX_ISSUES) {
    const text = [p.code, p.field && `field ${p.field}`, p.input].filter(Boolean).join(' · ');
    $('issues').append(el('li', { className: `issue issue-${severity}` },
      el('span', { className: 'severity', textContent: severity }), ` ${text}`));
  }
  $('validation-summary').textContent = `${view.errors} errors, ${view.warnings} warnings so far`;
}

function showValidation(p) {
  const hidden = view.issues > MAX_ISSUES ? ` (the first ${MAX_ISSUES} are listed)` : '';
  $('validation-summary').textContent = `${p.errors} errors, ${p.warnings} warnings${hidden}`;
  $('validation-summary').className = p.errors ? 'validation-errors' : 'validation-ok';
}

// ---- completion and outputs -------------------------------------------------

function completed(event) {
  const p = event.payload;
  view.final = p.status;
  setStatus($('status'), p.status);
  $('phase').textContent = `Finished: ${p.status}`;
  showProgress();
  refreshRun();
  loadOutputs();
  const code = p.exit_code === null || p.exit_code === undefined ? '' : ` (exit code ${p.exit_code})`;
  return note(event, `run ${p.status}${code}`);
}

async function loadOutputs() {
  try {
    const { files } = await withRetries(() => apiJson(`/api/v1/runs/${runId}/outputs`));
    $('outputs-note').textContent = files.length ? '' : 'This run wrote no output files.';
    $('outputs-note').hidden = files.length > 0;
    $('outputs').replaceChildren(...files.map(outputRow));
  } catch (error) {
    showError(error);
  }
}

function outputRow(file) {
  const button = el('button', { type: 'button', textContent: 'Download' });
  button.addEventListener('click', () => download(file.download_url, file.name).catch(showError));
  return el('li', { className: 'output' },
    el('code', { textContent: file.name }), ` ${bytes(file.byte_size)} `, button);
}

// ---- errors and start-up ----------------------------------------------------

function showError(error) {
  if (error instanceof ApiError && error.status === 401) {
    stop();
    forgetKey();
    withKey(start, 'The API refused this key. Paste another one.');
    return;
  }
  if (error instanceof ApiError && error.status === 404) {
    stop();
    setStatus($('status'), 'unknown');
    showMessage('No such run, or it is not visible with this key.');
    return;
  }
  showMessage(error instanceof Error ? error.message : String(error));
}

function main() {
  takeKeyFromFragment();
  $('run-id').textContent = runId;
  document.title = `Run ${runId} · ADE Runs`;
  $('logfile').addEventListener('click', () =>
    download(`/api/v1/runs/${runId}/logfile`, `run-${runId}-events.ndjson`).catch(showError));
  wireForgetButton(stop, start);
  withKey(start);
}

main();

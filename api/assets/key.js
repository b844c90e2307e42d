// The API key of this tab: taken once from the URL fragment (`#key=…`, which
// browsers never send to the server) or typed into the key form, and kept in
// sessionStorage, so it lives as long as the tab and never lands in history.

const STORAGE = 'ade.key';

/** Moves `#key=…` from the address bar into sessionStorage. */
export function takeKeyFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.has('key')) return;
  const key = fragment.get('key').trim();
  if (key) sessionStorage.setItem(STORAGE, key);
  fragment.delete('key');
  const rest = fragment.toString();
  history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
}

/** The key of this tab, or null. */
export function currentKey() {
  return sessionStorage.getItem(STORAGE);
}

/** Forgets the key of this tab. */
export function forgetKey() {
  sessionStorage.removeItem(STORAGE);
}

/**
 * Calls `start` once a key is known: at once if this tab has one, otherwise
 * after the key form is submitted. `message` explains why the form is shown.
 */
export function withKey(start, message = '') {
  if (currentKey()) {
    start();
    return;
  }
  const form = document.getElementById('key-form');
  const input = form.querySelector('input');
  document.getElementById('key-message').textContent =
    message || 'Paste an API key to see runs. It stays in this tab only.';
  form.hidden = false;
  input.value = '';
  input.focus();
  form.onsubmit = event => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    sessionStorage.setItem(STORAGE, key);
    form.hidden = true;
    form.onsubmit = null;
    start();
  };
}

/** Wires the "forget key" button: `stop` what uses the key, then ask for another and `restart`. */
export function wireForgetButton(stop, restart) {
  document.getElementById('forget-key').addEventListener('click', () => {
    stop();
    forgetKey();
    withKey(restart, 'Key forgotten. Paste a key to continue.');
  });
}

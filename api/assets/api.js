// Calls to /api/v1 with the tab's key as a Bearer token, problem+json errors
// as exceptions, and downloads that carry the key too (a plain link cannot).

import { currentKey } from './key.js';

/** A failed API call: the HTTP status and the problem's stable `code`. */
export class ApiError extends Error {
  constructor(status, code, detail, retryAfter) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** True for outcomes worth retrying: the API or a proxy is briefly unavailable. */
  get transient() {
    return this.status === 429 || this.status >= 500;
  }
}

/** `fetch` of an API path with the key; throws `ApiError` unless 2xx. */
export async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  const key = currentKey();
  if (key) headers.set('Authorization', `Bearer ${key}`);
  const res = await fetch(path, { ...init, headers, cache: 'no-store', credentials: 'omit' });
  if (!res.ok) throw await problem(res);
  return res;
}

/** GET an API path and parse its JSON. */
export async function apiJson(path) {
  return (await api(path)).json();
}

async function problem(res) {
  let code = '';
  let detail = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    code = typeof body.code === 'string' ? body.code : '';
    detail = body.detail || body.title || detail;
  } catch {
    // Not problem+json (a proxy's error page): the status says enough.
  }
  const retryAfter = Number(res.headers.get('retry-after')) || 0;
  return new ApiError(res.status, code, detail, retryAfter);
}

/** Downloads an API path as a file named `name`, sending the key. */
export async function download(path, name) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  // The browser reads the blob when the download starts; free it a little later.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * Calls `call` again after a dropped connection or a transient API error
 * (429, 5xx), backing off, up to `attempts` times; other errors throw at once.
 */
export async function withRetries(call, attempts = 6) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await call();
    } catch (error) {
      const transient = !(error instanceof ApiError) || error.transient;
      if (!transient || attempt >= attempts) throw error;
      const retryAfter = error instanceof ApiError ? error.retryAfter * 1000 : 0;
      await sleep(Math.max(retryAfter, Math.min(500 * 2 ** attempt, 15_000)));
    }
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms));
}

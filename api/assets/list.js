// The list page: the latest runs of the key's workspace, read again every few
// seconds while the tab is visible.
//
// It polls rather than following the stream of each active run: a browser
// keeps at most six HTTP/1.1 connections per host, so one open stream per
// active run would starve this page (and run pages in other tabs) as soon as
// a few runs are active, while a list read every few seconds is one indexed
// query. A run's own page follows its stream.

import { apiJson, ApiError } from './api.js';
import { duration, el, isTerminal, showMessage, statusBadge, when } from './dom.js';
import { forgetKey, takeKeyFromFragment, wireForgetButton, withKey } from './key.js';

const POLL_MS = 3000;
const LIMIT = 50;
const $ = id => document.getElementById(id);

/** Bumped on every (re)start, so a superseded poll loop stops by itself. */
let generation = 0;
let timer = null;
let workspaces = [];

async function start() {
  stop();
  const mine = generation;
  showMessage('');
  try {
    // A workspace key lists only its own workspace; an admin key lists them all.
    workspaces = (await apiJson('/api/v1/workspaces?limit=200')).items;
  } catch (error) {
    if (mine === generation) retryOrGiveUp(error, () => start());
    return;
  }
  if (mine !== generation) return;
  showWorkspaces();
  poll(mine);
}

function stop() {
  generation += 1;
  clearTimeout(timer);
}

function retryOrGiveUp(error, again) {
  showError(error);
  const transient = !(error instanceof ApiError) || error.transient;
  if (transient) timer = setTimeout(again, POLL_MS);
}

async function poll(mine) {
  if (mine !== generation) return;
  if (!document.hidden) {
    try {
      await refresh(mine);
    } catch (error) {
      if (mine === generation) retryOrGiveUp(error, () => poll(mine));
      return;
    }
  }
  if (mine === generation) timer = setTimeout(() => poll(mine), POLL_MS);
}

function showWorkspaces() {
  const picker = $('workspace');
  const wanted = new URLSearchParams(location.search).get('workspace');
  picker.replaceChildren(...workspaces.map(ws => el('option', { value: ws.id, textContent: `${ws.name} (${ws.id})` })));
  if (workspaces.some(ws => ws.id === wanted)) picker.value = wanted;
  $('workspace-picker').hidden = workspaces.length < 2;
  if (!workspaces.length) {
    $('workspace-name').textContent = 'This key sees no workspace yet.';
    $('runs').replaceChildren();
  }
}

function selectedWorkspace() {
  return workspaces.find(ws => ws.id === $('workspace').value);
}

async function refresh(mine) {
  const ws = selectedWorkspace();
  if (!ws) return;
  const status = $('status-filter').value;
  const query = new URLSearchParams({ limit: String(LIMIT) });
  if (status) query.set('status', status);
  const page = await apiJson(`/api/v1/workspaces/${ws.id}/runs?${query}`);
  if (mine !== generation) return;
  showMessage('');
  $('workspace-name').textContent = `Workspace ${ws.name}`;
  $('runs').replaceChildren(...page.items.map(runRow));
  const more = page.next_cursor ? `the latest ${LIMIT} are shown; ` : '';
  const none = page.items.length ? '' : 'No runs yet. ';
  $('runs-note').textContent = `${none}${more}updated ${new Date().toLocaleTimeString()}`;
}

function runRow(run) {
  const link = el('a', { href: `/runs/${encodeURIComponent(run.id)}`, textContent: run.id, className: 'run-id' });
  return el('tr', { dataset: { runId: run.id } },
    el('td', { dataset: { label: 'Status' } }, statusBadge(run.status)),
    el('td', { dataset: { label: 'Run' } }, link),
    el('td', { dataset: { label: 'Created' }, textContent: when(run.created_at) }),
    el('td', { dataset: { label: 'Duration' }, textContent: runDuration(run) }),
    el('td', { dataset: { label: 'Result' }, textContent: result(run) }));
}

function runDuration(run) {
  if (run.duration_ms !== null && run.duration_ms !== undefined) return duration(run.duration_ms);
  if (run.started_at && !isTerminal(run.status)) return `${duration(Date.now() - Date.parse(run.started_at))} so far`;
  return '—';
}

function result(run) {
  const mode = run.options?.dry_run ? ' (dry run)' : run.options?.validate_only ? ' (validate only)' : '';
  if (run.failure) return `${run.failure.code}${mode}`;
  if (run.exit_code !== null && run.exit_code !== undefined) return `exit ${run.exit_code}${mode}`;
  return mode.trim() || '—';
}

function showError(error) {
  if (error instanceof ApiError && error.status === 401) {
    stop();
    forgetKey();
    withKey(start, 'The API refused this key. Paste another one.');
    return;
  }
  showMessage(error instanceof Error ? error.message : String(error));
}

function refreshNow() {
  stop();
  poll(generation);
}

function main() {
  takeKeyFromFragment();
  $('workspace').addEventListener('change', () => {
    const query = new URLSearchParams(location.search);
    query.set('workspace', $('workspace').value);
    history.replaceState(null, '', `${location.pathname}?${query}`);
    refreshNow();
  });
  $('status-filter').addEventListener('change', refreshNow);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && workspaces.length) refreshNow();
  });
  wireForgetButton(stop, start);
  withKey(start);
}

main();

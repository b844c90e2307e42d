// Following a run's events live. EventSource cannot send an Authorization
// header, so the stream is read with fetch and a stream reader, and its SSE
// frames are parsed here.
//
// The follower remembers the last sequence it handed on. A reconnect sends it
// as `Last-Event-ID`, so the server resumes right after it; anything at or
// below it is a duplicate and dropped; a jump past the next sequence is
// filled from the paged events endpoint first. So every event is handed on
// exactly once, in order, however often the connection drops.

import { api, ApiError, sleep } from './api.js';

/** Parses `text/event-stream` text, fed in arbitrary pieces, into frames. */
export class SseParser {
  constructor() {
    this.buffer = '';
    this.reset();
  }

  reset() {
    this.data = [];
    this.event = '';
  }

  /** Feeds decoded text; returns the frames it completed: `{id, event, data}`. */
  push(text) {
    this.buffer += text;
    const frames = [];
    // A lone CR at the very end may be the first half of a CRLF: wait for more.
    const eol = /\r\n|\r(?!$)|\n/g;
    let start = 0;
    for (let m = eol.exec(this.buffer); m !== null; m = eol.exec(this.buffer)) {
      this.line(this.buffer.slice(start, m.index), frames);
      start = eol.lastIndex;
    }
    this.buffer = this.buffer.slice(start);
    return frames;
  }

  line(line, frames) {
    if (line === '') {
      if (this.data.length) {
        frames.push({ id: this.id, event: this.event || 'message', data: this.data.join('\n') });
      }
      this.reset();
      return;
    }
    if (line.startsWith(':')) return; // a keep-alive comment
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id') this.id = value;
  }
}

/** First reconnect delay; it doubles up to MAX_DELAY_MS while nothing arrives. */
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
/** The server sends a keep-alive every 15 s; silence this long means a dead connection. */
const IDLE_MS = 45_000;
/** Page size of the gap-filling reads. */
const PAGE = 1000;

/**
 * Follows `GET /api/v1/runs/{id}/events?stream=true` until `run.completed`.
 *
 * `onEvents(events)` gets each new batch in sequence order; `onState(state, detail)`
 * gets `connecting`, `live`, `reconnecting` (detail: seconds to wait),
 * `ended`, or `stopped` (detail: the ApiError that ended it, e.g. 401 or 404).
 */
export class RunFollower {
  constructor(runId, { onEvents, onState }) {
    this.runId = runId;
    this.onEvents = onEvents;
    this.onState = onState;
    this.last = 0;
    this.ended = false;
    this.stopped = false;
    this.connections = 0;
  }

  /** Follows until the run's end, a fatal error, or `stop()`. */
  async run() {
    let delay = 0;
    while (!this.ended && !this.stopped) {
      const before = this.last;
      let retryAfterMs = 0;
      try {
        await this.connect();
      } catch (error) {
        if (error instanceof ApiError && !error.transient) {
          this.stopped = true;
          this.onState('stopped', error);
          return;
        }
        // Anything else (a dropped connection, a 503) is worth another try.
        if (error instanceof ApiError) retryAfterMs = error.retryAfter * 1000;
      }
      if (this.ended || this.stopped) break;
      delay = this.last > before ? FIRST_DELAY_MS : Math.min(Math.max(delay * 2, FIRST_DELAY_MS), MAX_DELAY_MS);
      const wait = Math.max(retryAfterMs, delay / 2 + Math.random() * (delay / 2));
      this.onState('reconnecting', Math.ceil(wait / 1000));
      await sleep(wait);
    }
    if (this.ended) this.onState('ended');
  }

  /** Stops following (e.g. the key changed). */
  stop() {
    this.stopped = true;
    this.abort?.abort();
  }

  /** One connection: reads frames until the stream closes, fails or goes silent. */
  async connect() {
    this.onState('connecting');
    const headers = { Accept: 'text/event-stream' };
    if (this.last > 0) headers['Last-Event-ID'] = String(this.last);
    const abort = new AbortController();
    this.abort = abort;
    let idle = setTimeout(() => abort.abort(), IDLE_MS);
    try {
      const res = await api(`/api/v1/runs/${this.runId}/events?stream=true`, { headers, signal: abort.signal });
      this.connections += 1;
      this.onState('live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser();
      while (!this.ended && !this.stopped) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(idle);
        idle = setTimeout(() => abort.abort(), IDLE_MS);
        const events = parser.push(value).map(frame => JSON.parse(frame.data));
        if (events.length) await this.accept(events);
      }
      abort.abort(); // the end arrived: release the connection
    } finally {
      clearTimeout(idle);
    }
  }

  /** Hands on the events that are new, in order, filling any gap first. */
  async accept(events) {
    const fresh = [];
    try {
      for (const event of events) {
        if (event.sequence > this.last + 1) await this.fillGap(event.sequence, fresh);
        if (event.sequence <= this.last) continue;
        this.take(event, fresh);
        if (this.ended) break;
      }
    } finally {
      // Whatever was taken is handed on even if filling a gap failed half-way.
      if (fresh.length) this.onEvents(fresh);
    }
  }

  take(event, fresh) {
    fresh.push(event);
    this.last = event.sequence;
    if (event.type === 'run.completed') this.ended = true;
  }

  /** Reads the events between `last` and `upTo` from the paged endpoint. */
  async fillGap(upTo, fresh) {
    while (this.last < upTo - 1) {
      const page = await (await api(`/api/v1/runs/${this.runId}/events?after_sequence=${this.last}&limit=${PAGE}`)).json();
      const items = page.items.filter(e => e.sequence > this.last && e.sequence < upTo);
      if (!items.length) return; // nothing stored in between: accept the jump
      for (const event of items) this.take(event, fresh);
    }
  }
}

//! Following a run's or build's events: replay from PostgreSQL, then tail live.
//!
//! A follower subscribes to the hub *before* it replays, so no event can fall
//! between the replay and the live tail. It tracks the last sequence it sent:
//! live events at or below it are duplicates and skipped; one above the next
//! expected means a gap, and the follower reads the missing ones from the
//! database. It also catches up when it lags behind the hub's bounded
//! buffer, when the hub reconnects to the broker, and after a quiet period
//! (in case a message was lost), so every stream is gapless and ends with its
//! terminal event. Each follower is a task writing into a small bounded
//! channel, so a slow client holds back only itself.

use crate::error::ApiError;
use crate::state::AppState;
use ade_common::events::{self, Envelope, EventKind, MAX_PAGE, StreamRef};
use bytes::Bytes;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use warp::http::HeaderMap;
use warp::reply::Response;

/// SSE keep-alive comment interval.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most live events written to a client at once.
const MAX_COALESCED: usize = 512;
/// Reconnect delay suggested to SSE clients.
const RETRY: Duration = Duration::from_secs(2);

/// Reads a page of a stream's events.
pub(crate) async fn page(
    state: &AppState,
    stream: StreamRef,
    after: i64,
    limit: i64,
) -> Result<Vec<Envelope>, ApiError> {
    let db = state.db().await?;
    Ok(events::page(&db, stream, after, limit).await?)
}

/// True when the stream's ending event exists at or before `last`.
async fn ended_by(state: &AppState, stream: StreamRef, last: i64) -> bool {
    let Ok(db) = state.db().await else {
        return false;
    };
    let end = events::end_sequence(&db, stream).await.ok().flatten();
    end.is_some_and(|end| end <= last)
}

/// The wire format, from the `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/event-stream`.
    Sse,
    /// `application/x-ndjson`.
    Ndjson,
}

impl Format {
    /// SSE when the client accepts `text/event-stream`, NDJSON otherwise.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let accept = headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("text/event-stream") {
            Self::Sse
        } else {
            Self::Ndjson
        }
    }
}

/// Where to resume: `after_sequence`, else `Last-Event-ID`, else the start.
pub fn resume_point(after_sequence: Option<i64>, headers: &HeaderMap) -> Result<i64, ApiError> {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match (after_sequence, last_event_id) {
        (Some(after), _) => after,
        (None, Some(id)) => id.trim().parse().map_err(|_| {
            ApiError::field(
                "invalid_request",
                "Last-Event-ID",
                "must be a sequence number",
            )
        })?,
        (None, None) => 0,
    };
    if after < 0 {
        return Err(ApiError::field(
            "invalid_query",
            "after_sequence",
            "must be 0 or more",
        ));
    }
    Ok(after)
}

/// A streaming response following `followed` after sequence `after`.
pub fn follow(state: AppState, followed: StreamRef, after: i64, format: Format) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let live = state.hub.subscribe(followed.id());
    tokio::spawn(
        Follower {
            _counted: Counted::new(&state.metrics.followers),
            state,
            followed,
            last: after,
            tx,
            format,
        }
        .run(live),
    );
    let body = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Ok::<_, Infallible>,
    );
    let mut res = warp::Reply::into_response(warp::reply::stream(body));
    let headers = res.headers_mut();
    let content_type = match format {
        Format::Sse => "text/event-stream",
        Format::Ndjson => "application/x-ndjson",
    };
    headers.insert("content-type", content_type.parse().expect("valid header"));
    headers.insert("cache-control", "no-cache".parse().expect("valid header"));
    headers.insert("x-accel-buffering", "no".parse().expect("valid header"));
    res
}

/// What ended a catch-up or a send.
enum Flow {
    Continue,
    Done,
}

/// One follower in the followers gauge, for as long as it lives.
struct Counted(prometheus_client::metrics::gauge::Gauge);

impl Counted {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Follower {
    _counted: Counted,
    state: AppState,
    followed: StreamRef,
    last: i64,
    tx: mpsc::Sender<Bytes>,
    format: Format,
}

impl Follower {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<Frame>>) {
        let mut resyncs = self.state.hub.resyncs();
        if self.format == Format::Sse {
            let retry = Bytes::from(format!("retry: {}\n\n", RETRY.as_millis()));
            if self.tx.send(retry).await.is_err() {
                return;
            }
        }
        if let Flow::Done = self.catch_up().await {
            return;
        }
        // Resumed at or past the end (a client reconnecting after the last event).
        if ended_by(&self.state, self.followed, self.last).await {
            return;
        }
        let shutdown = self.state.shutdown.clone();
        let quiet_check = Duration::from_secs(self.state.settings.stream_quiet_check_seconds);
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.reset();
        loop {
            let flow = tokio::select! {
                _ = shutdown.cancelled() => Flow::Done,
                _ = self.tx.closed() => Flow::Done,
                received = live.recv() => match received {
                    Ok(frame) => {
                        // Whatever else is already buffered goes out in the same write.
                        let mut batch = vec![frame];
                        while batch.len() < MAX_COALESCED {
                            match live.try_recv() {
                                Ok(frame) => batch.push(frame),
                                Err(_) => break,
                            }
                        }
                        self.deliver(&batch).await
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await,
                    Err(broadcast::error::RecvError::Closed) => Flow::Done,
                },
                _ = resyncs.changed() => self.catch_up().await,
                _ = tokio::time::sleep(quiet_check) => self.catch_up().await,
                _ = keep_alive.tick(), if self.format == Format::Sse => self.write(Bytes::from_static(b": keep-alive\n\n")).await,
            };
            if let Flow::Done = flow {
                return;
            }
        }
    }

    /// Sends live frames in order: duplicates are skipped, a gap is filled
    /// from the database.
    async fn deliver(&mut self, batch: &[Arc<Frame>]) -> Flow {
        let before = self.last;
        let mut out = Vec::new();
        let mut gap = false;
        let mut end = false;
        for frame in batch {
            if frame.sequence <= self.last {
                continue;
            }
            if frame.sequence != self.last + 1 {
                gap = true;
                break;
            }
            end = self.append(&mut out, frame);
            if end {
                break;
            }
        }
        if !out.is_empty()
            && let Flow::Done = self.write(out.into()).await
        {
            return Flow::Done;
        }
        self.observe_lag(batch, before);
        match (end, gap) {
            (true, _) => Flow::Done,
            (false, true) => self.catch_up().await,
            (false, false) => Flow::Continue,
        }
    }

    /// Observes the lag of the live frames just sent (after `before`); a
    /// replay from the database is not a delivery delay.
    fn observe_lag(&self, batch: &[Arc<Frame>], before: i64) {
        let sent = batch
            .iter()
            .filter(|f| f.sequence > before && f.sequence <= self.last);
        for at in sent.filter_map(|f| f.persisted_at) {
            self.state.metrics.observe_delivery(at);
        }
    }

    /// Sends everything after `last` from the database, a page per write.
    async fn catch_up(&mut self) -> Flow {
        loop {
            let page = match page(&self.state, self.followed, self.last, MAX_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, stream = ?self.followed, "catching up failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let full = page.len() as i64 == MAX_PAGE;
            let mut out = Vec::new();
            let mut end = false;
            for event in &page {
                end = self.append(&mut out, &Frame::from(event));
                if end {
                    break;
                }
            }
            if !out.is_empty()
                && let Flow::Done = self.write(out.into()).await
            {
                return Flow::Done;
            }
            if end {
                return Flow::Done;
            }
            if !full {
                return Flow::Continue;
            }
        }
    }

    /// Formats one frame into `out` and advances `last`; true at the stream's end.
    fn append(&mut self, out: &mut Vec<u8>, frame: &Frame) -> bool {
        use std::io::Write as _;
        let written = match self.format {
            Format::Sse => write!(
                out,
                "id: {}\nevent: {}\ndata: {}\n\n",
                frame.sequence,
                frame.kind.as_str(),
                frame.json
            ),
            Format::Ndjson => writeln!(out, "{}", frame.json),
        };
        written.expect("writing to a Vec cannot fail");
        self.last = frame.sequence;
        frame.kind == self.followed.end_kind()
    }

    async fn write(&mut self, bytes: Bytes) -> Flow {
        match self.tx.send(bytes).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Done,
        }
    }
}

/// An event ready to send: serialized once, however many follow it.
#[derive(Debug)]
pub struct Frame {
    /// Its sequence in its stream.
    pub sequence: i64,
    /// Its type.
    pub kind: EventKind,
    /// The envelope as JSON.
    pub json: String,
    /// When it was persisted (for the delivery lag).
    pub persisted_at: Option<time::OffsetDateTime>,
}

impl From<&Envelope> for Frame {
    fn from(event: &Envelope) -> Self {
        Self {
            sequence: event.sequence,
            kind: event.kind,
            json: serde_json::to_string(event).expect("an envelope serializes"),
            persisted_at: ade_common::metrics::persisted_at(event),
        }
    }
}

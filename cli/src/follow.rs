//! Following a run's (or a build's) live event stream to its terminal event.
//!
//! The follower reads the SSE stream and hands out events in sequence order,
//! each exactly once. When the connection drops (or goes silent past the
//! read timeout, which the server's 15 s keep-alives never reach), it
//! reconnects with `Last-Event-ID` set to the last sequence it handed out,
//! so the server replays from there. Duplicates are dropped and a gap is
//! filled from the paged `/events` endpoint; both are counted, because the
//! API promises neither happens and `ade smoke` checks that promise.

use crate::client::Client;
use crate::problem::ApiError;
use crate::sse;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use reqwest::Method;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the follower keeps trying to reach the API before it gives up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// The first pause before a reconnect; it doubles up to the server's `retry`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The pause limit when the server named none.
const DEFAULT_RETRY: Duration = Duration::from_secs(2);

/// One event of the stream: its envelope parsed, and as the API sent it.
#[derive(Debug, Clone)]
pub struct Event {
    /// `sequence`.
    pub sequence: i64,
    /// `type`.
    pub kind: String,
    /// The whole envelope.
    pub json: Value,
    /// The envelope's JSON text as received.
    pub raw: String,
}

impl Event {
    /// Parses an envelope; `None` when it has no sequence or type.
    pub fn parse(raw: String) -> Option<Self> {
        let json: Value = serde_json::from_str(&raw).ok()?;
        Some(Self {
            sequence: json["sequence"].as_i64()?,
            kind: json["type"].as_str()?.to_owned(),
            raw,
            json,
        })
    }

    /// `payload`.
    pub fn payload(&self) -> &Value {
        &self.json["payload"]
    }
}

/// What the follower hands out.
#[derive(Debug)]
pub enum Step {
    /// The next event, in sequence order.
    Event(Box<Event>),
    /// The connection was lost; the follower reconnects after `after`.
    Reconnecting {
        /// The last sequence handed out.
        after: i64,
        /// Why the connection ended.
        reason: String,
    },
}

/// Why following stopped before the terminal event.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The API refused the stream (unknown run, no key, …).
    #[error(transparent)]
    Refused(ApiError),
    /// The API stayed out of reach for [`GIVE_UP_AFTER`].
    #[error("lost the event stream after sequence {after} and could not get it back: {error}")]
    Lost {
        /// The last sequence handed out.
        after: i64,
        /// The last error.
        error: ApiError,
    },
    /// An event did not parse.
    #[error("the stream sent something that is not an event: {0}")]
    Garbled(String),
}

/// Counts of what the follower had to repair (each should stay 0).
#[derive(Debug, Default, Clone, Copy)]
pub struct Repairs {
    /// Connections lost and resumed.
    pub reconnects: u32,
    /// Events received twice and dropped.
    pub duplicates: u32,
    /// Events missing from the stream and read from `/events` instead.
    pub filled: u32,
}

/// A live follower of one event stream.
pub struct Follower {
    client: Client,
    events_path: String,
    terminal: &'static str,
    last: i64,
    done: bool,
    queue: VecDeque<Event>,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    parser: sse::Parser,
    /// Pause before the next connection; grows while connections bring nothing.
    pause: Duration,
    /// Since when connections have ended without bringing a byte.
    fruitless_since: Option<Instant>,
    /// What had to be repaired so far.
    pub repairs: Repairs,
}

impl Follower {
    /// Follows run `id` from its first event until `run.completed`.
    pub fn run(client: &Client, id: &str) -> Self {
        Self::new(client, format!("/api/v1/runs/{id}/events"), "run.completed")
    }

    /// Follows build `id`'s own stream until `build.completed`.
    pub fn build(client: &Client, id: &str) -> Self {
        Self::new(
            client,
            format!("/api/v1/builds/{id}/events"),
            "build.completed",
        )
    }

    fn new(client: &Client, events_path: String, terminal: &'static str) -> Self {
        Self {
            client: client.clone(),
            events_path,
            terminal,
            last: 0,
            done: false,
            queue: VecDeque::new(),
            body: None,
            parser: sse::Parser::default(),
            pause: Duration::ZERO,
            fruitless_since: None,
            repairs: Repairs::default(),
        }
    }

    /// The last sequence handed out.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// The next step, or `None` once the terminal event was handed out.
    pub async fn next(&mut self) -> Result<Option<Step>, FollowError> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                self.last = event.sequence;
                self.done = event.kind == self.terminal;
                return Ok(Some(Step::Event(Box::new(event))));
            }
            if self.done {
                self.body = None;
                return Ok(None);
            }
            if self.body.is_none() {
                self.connect().await?;
            }
            if let Some(reason) = self.read().await? {
                self.body = None;
                self.repairs.reconnects += 1;
                return Ok(Some(Step::Reconnecting {
                    after: self.last,
                    reason,
                }));
            }
        }
    }

    /// Opens the stream after `last`, retrying outages with backoff.
    async fn connect(&mut self) -> Result<(), FollowError> {
        let started = self.fruitless_since.unwrap_or_else(Instant::now);
        loop {
            tokio::time::sleep(self.pause).await;
            self.pause = (self.pause * 2).clamp(FIRST_BACKOFF, self.retry_limit());
            match self.open().await {
                Ok(body) => {
                    self.body = Some(body);
                    self.parser.reset();
                    return Ok(());
                }
                Err(error) if !error.is_transient() => return Err(FollowError::Refused(error)),
                Err(error) if started.elapsed() >= GIVE_UP_AFTER => {
                    return Err(FollowError::Lost {
                        after: self.last,
                        error,
                    });
                }
                Err(_) => {}
            }
        }
    }

    async fn open(&self) -> Result<BoxStream<'static, reqwest::Result<Bytes>>, ApiError> {
        let mut request = self
            .client
            .request(Method::GET, &self.events_path)
            .query(&[("stream", "true")])
            .header("accept", "text/event-stream");
        if self.last > 0 {
            request = request.header("last-event-id", self.last.to_string());
        }
        let response = self.client.send(request).await?;
        Ok(response.bytes_stream().boxed())
    }

    fn retry_limit(&self) -> Duration {
        self.parser
            .retry_ms
            .map_or(DEFAULT_RETRY, Duration::from_millis)
    }

    /// Reads one chunk into the queue; `Some(reason)` when the connection ended.
    async fn read(&mut self) -> Result<Option<String>, FollowError> {
        let body = self.body.as_mut().expect("connected");
        let chunk = match body.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) if e.is_timeout() => return self.ended("the stream went silent".into()),
            Some(Err(e)) => return self.ended(crate::problem::root_cause(&e)),
            None => return self.ended("the API closed the stream".into()),
        };
        self.pause = Duration::ZERO;
        self.fruitless_since = None;
        for frame in self.parser.push(&chunk) {
            let event = Event::parse(frame.data.clone()).ok_or(FollowError::Garbled(frame.data))?;
            self.admit(event).await?;
        }
        Ok(None)
    }

    /// Notes a lost connection; fails once connections have brought nothing for too long.
    fn ended(&mut self, reason: String) -> Result<Option<String>, FollowError> {
        let since = *self.fruitless_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= GIVE_UP_AFTER {
            return Err(FollowError::Lost {
                after: self.last,
                error: ApiError::Unreachable {
                    base: self.client.base().to_owned(),
                    cause: reason,
                },
            });
        }
        Ok(Some(reason))
    }

    /// Queues an event after what is queued, dropping a repeat, filling a gap.
    async fn admit(&mut self, event: Event) -> Result<(), FollowError> {
        let newest = self.queue.back().map_or(self.last, |e| e.sequence);
        if event.sequence <= newest {
            self.repairs.duplicates += 1;
            return Ok(());
        }
        if event.sequence > newest + 1 {
            self.fill(newest, event.sequence).await?;
        }
        self.queue.push_back(event);
        Ok(())
    }

    /// Reads the events strictly between `after` and `before` from `/events`.
    async fn fill(&mut self, mut after: i64, before: i64) -> Result<(), FollowError> {
        while after + 1 < before {
            let limit = (before - after - 1).min(1000).to_string();
            let request = self
                .client
                .request(Method::GET, &self.events_path)
                .query(&[("after_sequence", after.to_string()), ("limit", limit)]);
            let page = self
                .client
                .json(request)
                .await
                .map_err(FollowError::Refused)?;
            let items = page.value["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                break;
            }
            for item in items {
                let event = Event::parse(item.to_string())
                    .ok_or_else(|| FollowError::Garbled(item.to_string()))?;
                after = event.sequence;
                self.repairs.filled += 1;
                self.queue.push_back(event);
            }
        }
        Ok(())
    }
}

//! Event sinks: a run's (or a build's) events, batched and fenced.
//!
//! Producers (the engine's output readers, the venv builder, the run itself)
//! send into a bounded channel, so a slow database slows the engine down
//! instead of growing memory. One writer task per stream drains the channel
//! in batches and appends each batch in one statement guarded by the
//! writer's fence. Each event has its id from the moment it is made, so a
//! batch retried after an ambiguous commit is recognized and skipped.
//! Transient database errors are retried; a permanent one replaces the batch
//! with a notice (never retried forever); a broken fence means the claim is
//! gone: the sink stops writing and tells its owner.
//!
//! Console lines and engine events have per-stream budgets (count and
//! bytes); past a budget, one notice is written and the rest are counted.

use ade_common::amqp::EventPublisher;
use ade_common::events::{Appended, EventKind, NewEvent, Origin, Source, append};
use ade_common::lifecycle::Fence;
use deadpool_postgres::Pool;
use serde_json::json;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Most events written in one statement.
const MAX_BATCH: usize = 500;
/// How long the writer waits for more events after the first of a batch.
const LINGER: Duration = Duration::from_millis(5);
/// Longest `finish` waits for the writer before giving up on the rest.
const FINISH_PATIENCE: Duration = Duration::from_secs(60);

/// A count and byte budget.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Most items kept.
    pub count: u64,
    /// Most bytes of text kept.
    pub bytes: u64,
}

/// Console lines kept per run.
pub const CONSOLE_BUDGET: Budget = Budget {
    count: 100_000,
    bytes: 64 * 1024 * 1024,
};
/// Engine events kept per run.
pub const ENGINE_BUDGET: Budget = Budget {
    count: 50_000,
    bytes: 64 * 1024 * 1024,
};

#[derive(Debug, Default)]
struct Spent {
    count: u64,
    bytes: u64,
    dropped: u64,
}

/// Sends a stream's events to its writer task.
pub struct EventSink {
    tx: mpsc::Sender<NewEvent>,
    writer: JoinHandle<()>,
    console: Mutex<Spent>,
    engine: Mutex<Spent>,
    fenced: CancellationToken,
}

impl EventSink {
    /// Starts the writer for `origin` under `fence`; committed batches go to `publisher`.
    pub fn start(pool: Pool, publisher: EventPublisher, origin: Origin, fence: Fence) -> Self {
        let (tx, rx) = mpsc::channel(2 * MAX_BATCH);
        let fenced = CancellationToken::new();
        let writer = Writer {
            pool,
            publisher,
            origin,
            fence,
            fenced: fenced.clone(),
        };
        Self {
            tx,
            writer: tokio::spawn(writer.run(rx)),
            console: Mutex::default(),
            engine: Mutex::default(),
            fenced,
        }
    }

    /// Fires when a write was refused because the fence no longer holds.
    pub fn fenced(&self) -> CancellationToken {
        self.fenced.clone()
    }

    /// Queues one event (waits while the writer is behind).
    pub async fn emit(&self, event: NewEvent) {
        // Once fenced the writer discards; the channel stays open until `finish`.
        let _ = self.tx.send(event).await;
    }

    /// Queues a `console.line`, within the stream's console budget.
    pub async fn console(
        &self,
        scope: &str,
        stream: &str,
        message: String,
        build_id: Option<Uuid>,
    ) {
        let Some(message) = admit(&self.console, CONSOLE_BUDGET, message, "console output") else {
            return;
        };
        let level = match (stream, message.starts_with("console output limit")) {
            (_, true) | ("stderr", _) => "warning",
            _ => "info",
        };
        let payload = json!({"scope": scope, "stream": stream, "level": level, "message": message});
        let mut event = NewEvent::new(EventKind::ConsoleLine, Source::Worker, payload);
        event.build_id = build_id;
        self.emit(event).await;
    }

    /// Queues an engine event, within the stream's engine-event budget.
    pub async fn engine(&self, kind: EventKind, payload: serde_json::Value, size: usize) {
        let admitted = {
            let mut spent = self.engine.lock().expect("budget lock");
            let over = spent.count >= ENGINE_BUDGET.count
                || spent.bytes + size as u64 > ENGINE_BUDGET.bytes;
            if over {
                spent.dropped += 1;
                Err(spent.dropped == 1)
            } else {
                spent.count += 1;
                spent.bytes += size as u64;
                Ok(())
            }
        };
        match admitted {
            Ok(()) => {
                self.emit(NewEvent::new(kind, Source::Engine, payload))
                    .await
            }
            Err(true) => {
                let notice = format!(
                    "engine event limit reached ({} events or {} bytes per run); further engine events are dropped",
                    ENGINE_BUDGET.count, ENGINE_BUDGET.bytes
                );
                self.console("run", "stderr", notice, None).await;
            }
            Err(false) => {}
        }
    }

    /// Console lines and engine events seen, and how many were dropped.
    pub fn totals(&self) -> serde_json::Value {
        let console = self.console.lock().expect("budget lock");
        let engine = self.engine.lock().expect("budget lock");
        json!({
            "console_lines": console.count + console.dropped,
            "console_lines_dropped": console.dropped,
            "engine_events_dropped": engine.dropped,
        })
    }

    /// Writes everything queued so far (waiting out a database outage for a
    /// bounded time) and stops the writer.
    pub async fn finish(self) {
        drop(self.tx);
        let mut writer = self.writer;
        if tokio::time::timeout(FINISH_PATIENCE, &mut writer)
            .await
            .is_err()
        {
            tracing::warn!("events could not be written in time; giving up on the rest");
            writer.abort();
        }
    }
}

/// Counts a console line against `budget`: the line itself, one notice when
/// the budget runs out, or nothing after that.
fn admit(spent: &Mutex<Spent>, budget: Budget, message: String, what: &str) -> Option<String> {
    let mut spent = spent.lock().expect("budget lock");
    let size = message.len() as u64;
    if spent.dropped == 0 && spent.count < budget.count && spent.bytes + size <= budget.bytes {
        spent.count += 1;
        spent.bytes += size;
        return Some(message);
    }
    spent.dropped += 1;
    (spent.dropped == 1).then(|| {
        format!(
            "{what} limit reached ({} lines or {} bytes per run); further lines are dropped",
            budget.count, budget.bytes
        )
    })
}

struct Writer {
    pool: Pool,
    publisher: EventPublisher,
    origin: Origin,
    fence: Fence,
    fenced: CancellationToken,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<NewEvent>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            // Let a burst gather: an engine writes its events a few at a
            // time, and one statement (and one publish) per burst costs far
            // less than one per few events. A closed channel (the run ended)
            // ends the wait at once, so the last events are never delayed.
            let _ = tokio::time::timeout(LINGER, async {
                loop {
                    let room = MAX_BATCH - batch.len();
                    if room == 0 || rx.recv_many(&mut batch, room).await == 0 {
                        break;
                    }
                }
            })
            .await;
            if !self.fenced.is_cancelled() {
                self.write(&batch).await;
            }
            batch.clear();
        }
    }

    /// Writes one batch: retries transient errors, never permanent ones.
    async fn write(&self, batch: &[NewEvent]) {
        let mut delay = Duration::from_millis(100);
        let mut batch = batch.to_vec();
        loop {
            match self.append(&batch).await {
                Ok(Appended::Written(written)) => return self.publisher.publish(written),
                Ok(Appended::AlreadyStored) => return,
                Ok(Appended::Fenced) => {
                    tracing::warn!(stream = ?self.origin.stream, "events refused: the claim no longer holds");
                    return self.fenced.cancel();
                }
                Err(e) if ade_common::db::is_transient(&e) => {
                    tracing::warn!(stream = ?self.origin.stream, error = %e, "writing events failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) if batch.len() == 1 && batch[0].kind == EventKind::ConsoleLine => {
                    tracing::error!(stream = ?self.origin.stream, error = %e, "an event notice could not be stored; dropping it");
                    return;
                }
                Err(e) => {
                    tracing::error!(stream = ?self.origin.stream, error = %e, events = batch.len(), "events could not be stored; replacing them with a notice");
                    batch = vec![notice(&e, batch.len())];
                }
            }
        }
    }

    async fn append(&self, batch: &[NewEvent]) -> anyhow::Result<Appended> {
        let db = self.pool.get().await?;
        Ok(append(&db, &self.origin, &self.fence, batch).await?)
    }
}

/// A console line that says a batch was lost, and why.
fn notice(e: &anyhow::Error, events: usize) -> NewEvent {
    let message = format!("{events} events could not be stored and were dropped: {e:#}");
    let payload = json!({"scope": "run", "stream": "stderr", "level": "error", "message": message});
    NewEvent::new(EventKind::ConsoleLine, Source::Worker, payload)
}

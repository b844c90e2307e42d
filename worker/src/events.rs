//! Event sinks: a run's (or a build's) events, batched into one transaction
//! per batch.
//!
//! Producers (the engine's output readers, the venv builder, the run itself)
//! send into a bounded channel, so a slow database slows the engine down
//! instead of growing memory. One writer task per run drains the channel in
//! batches and appends each batch with [`append_run_events`]; a failed write
//! is retried, never dropped.

use ade_common::amqp::EventPublisher;
use ade_common::events::{NewEvent, Source, append_build_events, append_run_events};
use deadpool_postgres::Pool;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Most events written in one transaction.
const MAX_BATCH: usize = 500;
/// Console lines kept per run; beyond it lines are counted, not stored.
pub const MAX_CONSOLE_LINES: u64 = 100_000;

/// Which stream a sink writes.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// A run's stream.
    Run(Uuid),
    /// A build's own stream.
    Build(Uuid),
}

/// Sends a stream's events to its writer task.
pub struct EventSink {
    tx: mpsc::Sender<NewEvent>,
    writer: JoinHandle<()>,
    console_lines: AtomicU64,
}

impl EventSink {
    /// Starts the writer task for `stream`; committed batches go to `publisher`.
    pub fn start(pool: Pool, publisher: EventPublisher, stream: Stream) -> Self {
        let (tx, rx) = mpsc::channel(2 * MAX_BATCH);
        let writer = tokio::spawn(write_loop(pool, publisher, stream, rx));
        Self {
            tx,
            writer,
            console_lines: AtomicU64::new(0),
        }
    }

    /// Queues one event (waits while the writer is behind).
    pub async fn emit(&self, event: NewEvent) {
        // The writer only stops after `finish`, so the channel is open here.
        let _ = self.tx.send(event).await;
    }

    /// Queues a `console.line`, honouring the per-run line budget.
    pub async fn console(
        &self,
        scope: &str,
        stream: &str,
        message: String,
        build_id: Option<Uuid>,
    ) {
        let n = self.console_lines.fetch_add(1, Ordering::Relaxed) + 1;
        if n > MAX_CONSOLE_LINES {
            return;
        }
        let level = if stream == "stderr" {
            "warning"
        } else {
            "info"
        };
        let mut payload =
            json!({"scope": scope, "stream": stream, "level": level, "message": message});
        if n == MAX_CONSOLE_LINES {
            payload["message"] = json!(format!(
                "console output limit of {MAX_CONSOLE_LINES} lines reached; further lines are dropped"
            ));
            payload["level"] = json!("warning");
        }
        let mut event = NewEvent::new("console.line", Source::Worker, payload);
        event.build_id = build_id;
        self.emit(event).await;
    }

    /// Console lines seen so far (including dropped ones).
    pub fn console_lines(&self) -> u64 {
        self.console_lines.load(Ordering::Relaxed)
    }

    /// Writes everything queued so far and stops the writer.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.writer.await;
    }
}

async fn write_loop(
    pool: Pool,
    publisher: EventPublisher,
    stream: Stream,
    mut rx: mpsc::Receiver<NewEvent>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut delay = Duration::from_millis(100);
        loop {
            match write_batch(&pool, stream, &batch).await {
                Ok(written) => {
                    publisher.publish(written);
                    break;
                }
                Err(e) => {
                    tracing::warn!(?stream, error = %e, "writing events failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
    }
}

async fn write_batch(
    pool: &Pool,
    stream: Stream,
    batch: &[NewEvent],
) -> anyhow::Result<Vec<ade_common::events::Envelope>> {
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    let written = match stream {
        Stream::Run(id) => append_run_events(&tx, id, batch).await?,
        Stream::Build(id) => append_build_events(&tx, id, batch).await?,
    };
    tx.commit().await?;
    Ok(written)
}

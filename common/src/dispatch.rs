//! Offering queued jobs to RabbitMQ without making anyone wait.
//!
//! A run (or build) is committed before it is offered. [`Dispatcher::offer`]
//! only queues the job in memory; one task publishes whatever has gathered
//! in one pipelined batch (publish all, then wait for all confirms) and
//! marks the confirmed jobs `dispatched_at` with one statement. Anything not
//! confirmed — broker down, a full in-memory queue, a crash — keeps an empty
//! `dispatched_at` and is offered again by [`redispatch`] after a grace
//! period. A duplicate message is harmless: workers claim with a
//! compare-and-set in PostgreSQL.

use crate::amqp::{Publisher, job_key};
use crate::lifecycle::queue::{self, Job};
use deadpool_postgres::Pool;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a job may stay unconfirmed before the redispatcher offers it again.
pub const GRACE: Duration = Duration::from_secs(5);
/// How long a batch waits for a broker connection before it is left to the redispatcher.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
/// Jobs published in one pipelined batch at most.
const MAX_BATCH: usize = 256;

/// Queues jobs for publishing; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Job>,
}

impl Dispatcher {
    /// Starts the publishing task.
    pub fn spawn(publisher: Publisher, pool: Pool) -> Self {
        let (tx, rx) = mpsc::channel(16 * MAX_BATCH);
        tokio::spawn(publish_loop(publisher, pool, rx));
        Self { tx }
    }

    /// Offers a committed job; never waits (a full queue leaves it to the redispatcher).
    pub fn offer(&self, job: Job) {
        if self.tx.try_send(job).is_err() {
            tracing::debug!(?job, "dispatch queue full; the redispatcher will offer it");
        }
    }
}

async fn publish_loop(publisher: Publisher, pool: Pool, mut rx: mpsc::Receiver<Job>) {
    let exchange = publisher.topology().jobs_exchange();
    // Connect before the first job arrives, not when it does.
    publisher.check(CONNECT_PATIENCE).await;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Waiting here holds up no request: jobs gather in the queue meanwhile.
        publisher.check(CONNECT_PATIENCE).await;
        let messages: Vec<(&str, Vec<u8>)> = batch
            .iter()
            .map(|job| {
                let body = serde_json::to_vec(&job.stream).expect("a job always serializes");
                (job_key(job.stream), body)
            })
            .collect();
        let confirmed = publisher.publish_all(&exchange, &messages).await;
        let done: Vec<Job> = batch
            .iter()
            .zip(&confirmed)
            .filter_map(|(job, ok)| ok.then_some(*job))
            .collect();
        if done.len() < batch.len() {
            tracing::warn!(
                unconfirmed = batch.len() - done.len(),
                "jobs not confirmed by the broker; they will be redispatched"
            );
        }
        if !done.is_empty()
            && let Err(e) = mark(&pool, &done).await
        {
            // Published but not marked: offered twice later, which is harmless.
            tracing::warn!(error = %e, "could not record dispatches");
        }
        batch.clear();
    }
}

async fn mark(pool: &Pool, jobs: &[Job]) -> anyhow::Result<()> {
    let db = pool.get().await?;
    queue::mark_dispatched(&db, jobs).await?;
    Ok(())
}

/// Offers again the queued jobs that no broker confirmed within [`GRACE`].
pub async fn redispatch(pool: &Pool, dispatcher: &Dispatcher) -> anyhow::Result<usize> {
    let db = pool.get().await?;
    let jobs = queue::undispatched(&db, GRACE).await?;
    for job in &jobs {
        dispatcher.offer(*job);
    }
    Ok(jobs.len())
}

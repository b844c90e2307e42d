//! The reaper: runs whose lease expired lost their worker.
//!
//! Such a run is requeued as a new attempt (with a `run.retry` event), or,
//! once `ADE_MAX_ATTEMPTS` attempts are used up, failed with code
//! `worker_lost`; a run whose cancel was pending ends `cancelled`. Rows are
//! taken with `FOR UPDATE SKIP LOCKED`, so any number of API and worker
//! processes can reap at once without treating a run twice; the worker that
//! lost the run finds its fence broken (its claim's attempt and incarnation
//! no longer match) and writes nothing more. Builds go back to `queued`
//! when their builder incarnation lost a run's lease or stopped heartbeating.

use super::fence::Fence;
use super::queue::Job;
use super::runs::{Completion, end_unclaimed};
use crate::db::Cached as _;
use crate::events::{Envelope, EventKind, NewEvent, Origin, Source, StreamRef, append};
use crate::runs::Failure;
use deadpool_postgres::{Pool, Transaction};
use serde_json::json;
use uuid::Uuid;

/// How long a builder may go without a heartbeat before its build is requeued.
const BUILDER_SILENCE_SECONDS: f64 = 30.0;

/// What one pass did.
#[derive(Debug, Default)]
pub struct Reaped {
    /// Runs whose expired lease this pass took (requeued, failed or cancelled).
    pub leases: usize,
    /// Runs put back in the queue; offer them to the broker.
    pub requeued: Vec<Job>,
    /// Runs failed with `worker_lost`.
    pub failed: usize,
    /// Builds put back in the queue.
    pub builds_requeued: u64,
    /// Events written, for publishing.
    pub events: Vec<Envelope>,
}

/// Reaps up to 100 runs with expired leases, and requeues builds whose builder is gone.
pub async fn reap(pool: &Pool, max_attempts: u32) -> anyhow::Result<Reaped> {
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    let rows = tx
        .cached_query(
            "SELECT id, attempt, coalesce(worker_id, ''), cancel_requested_at IS NOT NULL,
                    workspace_id, configuration_id, build_id, worker_incarnation FROM runs
             WHERE status IN ('running', 'waiting_for_build') AND lease_expires_at < now()
             ORDER BY lease_expires_at LIMIT 100
             FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?;
    let mut reaped = Reaped {
        leases: rows.len(),
        ..Reaped::default()
    };
    let lost: Vec<Uuid> = rows.iter().filter_map(|r| r.get(7)).collect();
    for row in rows {
        let (id, attempt, worker, cancel): (Uuid, i32, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let expired = "status IN ('running', 'waiting_for_build')";
        let events = if cancel {
            // Cancelled while its worker was lost: it ends here, not in the queue.
            end_unclaimed(&tx, id, expired, &Completion::cancelled(), Source::Worker).await?
        } else if attempt < max_attempts as i32 {
            let origin = Origin {
                stream: StreamRef::Run(id),
                workspace_id: row.get(4),
                configuration_id: row.get(5),
                build_id: row.get(6),
                attempt: Some(attempt),
            };
            let (events, job) = requeue(&tx, &origin, &worker).await?;
            reaped.requeued.push(job);
            Some(events)
        } else {
            reaped.failed += 1;
            let message =
                format!("the run's worker was lost on attempt {attempt} of {max_attempts}");
            let lost = Completion::failed(None, Failure::new("worker", "worker_lost", message));
            end_unclaimed(&tx, id, expired, &lost, Source::Worker).await?
        };
        reaped.events.extend(events.unwrap_or_default());
    }
    reaped.builds_requeued = requeue_builds_of(&tx, &lost).await?;
    reaped.builds_requeued += requeue_orphaned_builds(&tx).await?;
    tx.commit().await?;
    Ok(reaped)
}

/// `running | waiting_for_build → queued` as a new attempt, with `run.retry`.
async fn requeue(
    tx: &Transaction<'_>,
    origin: &Origin,
    worker: &str,
) -> Result<(Vec<Envelope>, Job), tokio_postgres::Error> {
    let id = origin.stream.id();
    let epoch: i32 = tx
        .cached_query_one(
            "UPDATE runs SET status = 'queued', attempt = attempt + 1, worker_id = NULL,
                             worker_incarnation = NULL, lease_expires_at = NULL, started_at = NULL,
                             dispatched_at = NULL, dispatch_epoch = dispatch_epoch + 1
             WHERE id = $1 RETURNING dispatch_epoch",
            &[&id],
        )
        .await?
        .get(0);
    let attempt = origin.attempt.unwrap_or(1);
    let payload = json!({
        "reason": format!("worker {worker} stopped renewing its lease"),
        "next_attempt": attempt + 1,
    });
    let retry = NewEvent::new(EventKind::RunRetry, Source::Worker, payload);
    let events = append(tx, origin, &Fence::Unfenced, &[retry])
        .await?
        .written();
    Ok((
        events,
        Job {
            stream: origin.stream,
            epoch,
        },
    ))
}

/// Builds whose builder is an incarnation that just lost a run's lease (it
/// stopped renewing for a whole lease, so it is dead or fenced) go back to
/// `queued` at once.
async fn requeue_builds_of(
    tx: &Transaction<'_>,
    incarnations: &[Uuid],
) -> Result<u64, tokio_postgres::Error> {
    if incarnations.is_empty() {
        return Ok(0);
    }
    tx.cached_execute(
        "UPDATE builds SET status = 'queued', builder_id = NULL, builder_incarnation = NULL,
                           started_at = NULL, dispatched_at = NULL, dispatch_epoch = dispatch_epoch + 1
         WHERE status = 'building' AND builder_incarnation = ANY($1)",
        &[&incarnations],
    )
    .await
}

/// Builds whose builder incarnation stopped heartbeating go back to
/// `queued` (and are offered again by the redispatcher).
async fn requeue_orphaned_builds(tx: &Transaction<'_>) -> Result<u64, tokio_postgres::Error> {
    tx.cached_execute(
        "UPDATE builds b SET status = 'queued', builder_id = NULL, builder_incarnation = NULL,
                             started_at = NULL, dispatched_at = NULL, dispatch_epoch = dispatch_epoch + 1
         WHERE b.status = 'building' AND b.started_at < now() - make_interval(secs => $1)
           AND NOT EXISTS (SELECT 1 FROM workers w
                           WHERE w.incarnation = b.builder_incarnation
                             AND w.heartbeat_at > now() - make_interval(secs => $1))",
        &[&BUILDER_SILENCE_SECONDS],
    )
    .await
}

//! The reaper: runs whose lease expired lost their worker.
//!
//! Such a run is requeued as a new attempt (with a `run.retry` event), or,
//! once `ADE_MAX_ATTEMPTS` attempts are used up, failed with code
//! `worker_lost`. Rows are taken with `FOR UPDATE SKIP LOCKED`, so any number
//! of API and worker processes can reap at once without treating a run twice;
//! the worker that lost the run finds it no longer its own (its lease renewal
//! and its terminal compare-and-set both check owner and attempt).

use crate::events::{Envelope, NewEvent, Source, append_run_events};
use deadpool_postgres::Pool;
use serde_json::json;
use uuid::Uuid;

/// What one pass did.
#[derive(Debug, Default)]
pub struct Reaped {
    /// Runs put back in the queue; offer them to the broker.
    pub requeued: Vec<Uuid>,
    /// Runs failed with `worker_lost`.
    pub failed: usize,
    /// Events written, for publishing.
    pub events: Vec<Envelope>,
}

/// Reaps up to 100 runs with expired leases, and requeues builds whose builder is gone.
pub async fn reap(pool: &Pool, max_attempts: u32) -> anyhow::Result<Reaped> {
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    let rows = tx
        .query(
            "SELECT id, attempt, coalesce(worker_id, ''), cancel_requested_at IS NOT NULL FROM runs
             WHERE status IN ('running', 'waiting_for_build') AND lease_expires_at < now()
             ORDER BY lease_expires_at LIMIT 100
             FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?;
    let mut reaped = Reaped::default();
    for row in rows {
        let (id, attempt, worker, cancel): (Uuid, i32, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let event = if cancel {
            // Cancelled while its worker was lost: it ends here, not in the queue.
            end(&tx, id, "cancelled", None).await?
        } else if attempt < max_attempts as i32 {
            tx.execute(
                "UPDATE runs SET status = 'queued', attempt = attempt + 1, worker_id = NULL, lease_expires_at = NULL,
                                 started_at = NULL, dispatched_at = NULL
                 WHERE id = $1",
                &[&id],
            )
            .await?;
            reaped.requeued.push(id);
            let payload = json!({"reason": format!("worker {worker} stopped renewing its lease"), "next_attempt": attempt + 1});
            NewEvent::new("run.retry", Source::Worker, payload)
        } else {
            reaped.failed += 1;
            let failure = json!({
                "stage": "worker",
                "code": "worker_lost",
                "message": format!("the run's worker was lost on attempt {attempt} of {max_attempts}"),
            });
            end(&tx, id, "failed", Some(failure)).await?
        };
        reaped
            .events
            .extend(append_run_events(&tx, id, &[event]).await?);
    }
    requeue_orphaned_builds(&tx).await?;
    tx.commit().await?;
    Ok(reaped)
}

/// Writes a terminal state for a run nobody runs; returns its `run.completed`.
async fn end(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    status: &str,
    failure: Option<serde_json::Value>,
) -> Result<NewEvent, tokio_postgres::Error> {
    let row = tx
        .query_one(
            "UPDATE runs SET status = $2, failure = $3, completed_at = now(), lease_expires_at = NULL
             WHERE id = $1 RETURNING started_at, completed_at",
            &[&id, &status, &failure],
        )
        .await?;
    let payload = completed_payload(status, None, failure, row.get(0), row.get(1));
    Ok(NewEvent::new("run.completed", Source::Worker, payload))
}

/// Builds taken from the builds queue whose builder stopped heartbeating go
/// back to `queued` (and are offered again by the API's redispatcher).
async fn requeue_orphaned_builds(
    tx: &deadpool_postgres::Transaction<'_>,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        "UPDATE builds b SET status = 'queued', builder_id = NULL, started_at = NULL, dispatched_at = NULL
         WHERE b.status = 'building' AND b.started_at < now() - interval '30 seconds'
           AND NOT EXISTS (SELECT 1 FROM workers w
                           WHERE w.id = b.builder_id AND w.heartbeat_at > now() - interval '30 seconds')",
        &[],
    )
    .await
}

/// The `run.completed` payload for a run that ended without outputs.
pub fn completed_payload(
    status: &str,
    exit_code: Option<i32>,
    failure: Option<serde_json::Value>,
    started_at: Option<time::OffsetDateTime>,
    completed_at: time::OffsetDateTime,
) -> serde_json::Value {
    let started = started_at.unwrap_or(completed_at);
    json!({
        "status": status,
        "exit_code": exit_code,
        "failure": failure,
        "execution": {
            "started_at": started_at.map(crate::time_fmt::format),
            "completed_at": crate::time_fmt::format(completed_at),
            "duration_ms": (completed_at - started).whole_milliseconds() as i64,
        },
        "artifacts": {"outputs": []},
        "summary": {},
    })
}

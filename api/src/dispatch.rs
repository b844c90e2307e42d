//! Offering accepted runs to RabbitMQ.
//!
//! A run is committed before it is published. When the publish fails (broker
//! down, no confirm), `dispatched_at` stays empty and [`redispatch_loop`]
//! publishes it again after a grace period. A duplicate message is harmless:
//! workers claim runs with a compare-and-set in PostgreSQL.

use crate::state::AppState;
use ade_common::amqp::{JobKind, JobMessage};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a run may stay unpublished before the redispatcher offers it again.
pub const GRACE: Duration = Duration::from_secs(5);

/// Publishes a run job and records the dispatch; failures are logged and left
/// to the redispatcher.
pub async fn offer_run(state: &AppState, run_id: Uuid) -> bool {
    if let Err(e) = state
        .publisher
        .publish_job(JobMessage {
            kind: JobKind::Run,
            id: run_id,
        })
        .await
    {
        tracing::warn!(run.id = %run_id, error = %e, "run not published yet; it will be redispatched");
        return false;
    }
    let marked = match state.db().await {
        Ok(db) => db
            .execute(
                "UPDATE runs SET dispatched_at = now() WHERE id = $1",
                &[&run_id],
            )
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = marked {
        // Published but not marked: the run will be offered twice, which is harmless.
        tracing::warn!(run.id = %run_id, error = %e, "could not record the dispatch");
    }
    true
}

/// Every few seconds, publishes queued runs that were never confirmed on the broker.
pub async fn redispatch_loop(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(GRACE);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match undispatched(&state).await {
            Ok(ids) => {
                for id in ids {
                    if !offer_run(&state, id).await {
                        break;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "redispatch scan failed"),
        }
    }
}

async fn undispatched(state: &AppState) -> anyhow::Result<Vec<Uuid>> {
    let secs = GRACE.as_secs_f64();
    let rows = state
        .db()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .query(
            "SELECT id FROM runs WHERE status = 'queued' AND dispatched_at IS NULL
               AND created_at < now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT 500",
            &[&secs],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

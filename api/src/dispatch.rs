//! Offering accepted runs and builds to RabbitMQ.
//!
//! A run (or build) is committed before it is published. When the publish
//! fails (broker down, no confirm), `dispatched_at` stays empty and
//! [`redispatch_loop`] publishes it again after a grace period. A duplicate
//! message is harmless: workers claim with a compare-and-set in PostgreSQL.

use crate::state::AppState;
use ade_common::amqp::{JobKind, JobMessage};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a job may stay unpublished before the redispatcher offers it again.
pub const GRACE: Duration = Duration::from_secs(5);

/// Publishes a run job; see [`offer`].
pub async fn offer_run(state: &AppState, id: Uuid) -> bool {
    offer(state, JobKind::Run, id).await
}

/// Publishes a build job; see [`offer`].
pub async fn offer_build(state: &AppState, id: Uuid) -> bool {
    offer(state, JobKind::Build, id).await
}

/// Publishes a job and records the dispatch. Failures are logged and left to
/// the redispatcher; returns whether the broker confirmed.
pub async fn offer(state: &AppState, kind: JobKind, id: Uuid) -> bool {
    if let Err(e) = state.publisher.publish_job(JobMessage { kind, id }).await {
        tracing::warn!(job = ?kind, id = %id, error = %e, "job not published yet; it will be redispatched");
        return false;
    }
    let sql = match kind {
        JobKind::Run => "UPDATE runs SET dispatched_at = now() WHERE id = $1",
        JobKind::Build => "UPDATE builds SET dispatched_at = now() WHERE id = $1",
    };
    let marked = match state.db().await {
        Ok(db) => db.execute(sql, &[&id]).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = marked {
        // Published but not marked: the job will be offered twice, which is harmless.
        tracing::warn!(job = ?kind, id = %id, error = %e, "could not record the dispatch");
    }
    true
}

/// Every few seconds: reaps runs whose worker was lost, and publishes queued
/// jobs that were never confirmed on the broker.
pub async fn redispatch_loop(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(GRACE);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match ade_common::reaper::reap(&state.pool, state.settings.common.max_attempts).await {
            Ok(reaped) => {
                state.events.publish(reaped.events);
                for id in reaped.requeued {
                    offer_run(&state, id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "reaping failed"),
        }
        match undispatched(&state).await {
            Ok(jobs) => {
                for (kind, id) in jobs {
                    if !offer(&state, kind, id).await {
                        break;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "redispatch scan failed"),
        }
    }
}

async fn undispatched(state: &AppState) -> anyhow::Result<Vec<(JobKind, Uuid)>> {
    let secs = GRACE.as_secs_f64();
    let db = state.db().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows = db
        .query(
            "(SELECT 'build' AS kind, id, created_at FROM builds
               WHERE status = 'queued' AND dispatched_at IS NULL AND reason = 'on_demand'
                 AND created_at < now() - make_interval(secs => $1)
               ORDER BY created_at LIMIT 100)
             UNION ALL
             (SELECT 'run', id, created_at FROM runs
               WHERE status = 'queued' AND dispatched_at IS NULL
                 AND created_at < now() - make_interval(secs => $1)
               ORDER BY created_at LIMIT 500)",
            &[&secs],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let kind = if r.get::<_, &str>(0) == "build" {
                JobKind::Build
            } else {
                JobKind::Run
            };
            (kind, r.get(1))
        })
        .collect())
}

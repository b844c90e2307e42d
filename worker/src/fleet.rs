//! This worker in the fleet: its heartbeat row, and its share of reaping.
//!
//! The heartbeat keeps a `workers` row fresh (host, concurrency, runs in
//! flight, venv cache size, sandbox mode, cgroup) for `GET /api/v1/workers`; the row is removed on
//! a clean exit and simply goes stale when the worker is killed. Every worker
//! also runs the reaper; `SKIP LOCKED` lets them all do so at once.

use crate::Context;
use ade_common::db::Cached as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the heartbeat row is refreshed.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How often this worker reaps runs with expired leases.
pub const REAP_EVERY: Duration = Duration::from_secs(2);

/// Refreshes this worker's row until `shutdown`, then removes it.
pub async fn heartbeat_loop(
    ctx: Context,
    cache_bytes: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = beat(&ctx, cache_bytes.load(Ordering::Relaxed)).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
    // Wait for in-flight runs (drain) before leaving the fleet.
    while !ctx.running.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Ok(db) = ctx.pool.get().await {
        let _ = db
            .cached_execute(
                "DELETE FROM workers WHERE id = $1 AND incarnation = $2",
                &[&ctx.claimant.worker_id, &ctx.claimant.incarnation],
            )
            .await;
    }
}

async fn beat(ctx: &Context, cache_bytes: u64) -> anyhow::Result<()> {
    let db = ctx.pool.get().await?;
    db.cached_execute(
        "INSERT INTO workers (id, incarnation, host, concurrency, in_flight, venv_cache_bytes, sandbox, cgroup)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET incarnation = $2, host = $3, concurrency = $4, in_flight = $5,
             venv_cache_bytes = $6, sandbox = $7, cgroup = $8, heartbeat_at = now(),
             started_at = CASE WHEN workers.incarnation IS DISTINCT FROM $2 THEN now()
                               ELSE workers.started_at END",
        &[
            &ctx.claimant.worker_id,
            &ctx.claimant.incarnation,
            &ctx.host,
            &i32::from(ctx.slots.total()),
            &(ctx.running.len() as i32),
            &(cache_bytes as i64),
            &ctx.sandbox.mode().as_str(),
            &ctx.cgroups.as_ref().map_or("none", |c| c.label()),
        ],
    )
    .await?;
    Ok(())
}

/// Reaps runs with expired leases until `shutdown`, offering requeued runs to the broker.
pub async fn reap_loop(ctx: Context, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(REAP_EVERY) => {}
        }
        match ade_common::lifecycle::reaper::reap(&ctx.pool, ctx.max_attempts).await {
            Ok(reaped) => {
                ctx.metrics.reaped_leases.inc_by(reaped.leases as u64);
                ctx.events.publish(reaped.events);
                for job in reaped.requeued {
                    tracing::info!(run.id = %job.stream.id(), "requeued a run whose worker was lost");
                    ctx.dispatcher.offer(job);
                }
                if reaped.failed > 0 {
                    tracing::warn!(
                        runs = reaped.failed,
                        "failed runs whose workers were lost too often"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "reaping failed"),
        }
    }
}

//! Retention: terminal runs older than `ADE_RETENTION_DAYS` are deleted with
//! their events and their files under `ADE_DATA_DIR`.
//!
//! The collector runs once at start and every few minutes. It works in
//! batches of [`BATCH`] runs, one short transaction each, taking rows with
//! `SKIP LOCKED`: several API instances share the work without waiting on
//! each other, and no request waits on a collector. Files go after the
//! rows' commit, so a crash in between leaves only orphaned files, never a
//! run without its outputs. Only terminal runs are ever touched.

use crate::settings::ApiSettings;
use crate::state::AppState;
use ade_common::metrics::Metrics;
use ade_common::storage::DataDir;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs deleted per transaction.
pub const BATCH: i64 = 100;
/// How often the collector looks.
const EVERY: Duration = Duration::from_secs(300);

/// Deletes every expired run now, batch by batch; returns how many.
/// Does nothing when `ADE_RETENTION_DAYS` is 0.
pub async fn collect_once(
    pool: &deadpool_postgres::Pool,
    settings: &ApiSettings,
    metrics: &Metrics,
) -> anyhow::Result<usize> {
    if settings.retention_days == 0 {
        return Ok(0);
    }
    let data_dir = DataDir::new(&settings.common.data_dir);
    let mut total = 0;
    loop {
        let mut db = pool.get().await?;
        let ids =
            ade_common::lifecycle::runs::delete_expired(&mut db, settings.retention_days, BATCH)
                .await?;
        drop(db);
        for id in &ids {
            remove_files(&data_dir, *id).await;
        }
        metrics.retention_deleted.inc_by(ids.len() as u64);
        total += ids.len();
        if (ids.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}

async fn remove_files(data_dir: &DataDir, id: uuid::Uuid) {
    if let Err(e) = tokio::fs::remove_dir_all(data_dir.run(id)).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(run.id = %id, error = %e, "an expired run's files could not be removed");
    }
}

/// Collects at start and every five minutes until `stop`.
pub async fn collect_loop(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match collect_once(&state.pool, &state.settings, &state.metrics).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                runs = deleted,
                retention_days = state.settings.retention_days,
                "expired runs deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "retention collection failed"),
        }
    }
}

//! The queue as PostgreSQL sees it: what waits, what was never offered to
//! the broker, and the marks that say a job was offered.
//!
//! A job message is only a hint; `dispatched_at` records that the broker
//! confirmed one. A queued run or on-demand build without it (broker down,
//! crash between commit and publish, a hand-back) is offered again by the
//! redispatcher after a grace period.

use crate::db::Cached as _;
use crate::events::StreamRef;
use deadpool_postgres::GenericClient;
use std::time::Duration;
use uuid::Uuid;

/// A job to offer: which run or build, and which of its queued episodes
/// (its dispatch epoch; every return to `queued` starts a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// The run or build.
    pub stream: StreamRef,
    /// The episode offered.
    pub epoch: i32,
}

impl Job {
    /// The first episode of a job that was just created.
    pub fn created(stream: StreamRef) -> Self {
        Self { stream, epoch: 0 }
    }
}

/// Queued jobs older than `grace` that the broker never confirmed.
pub async fn undispatched(
    db: &impl GenericClient,
    grace: Duration,
) -> Result<Vec<Job>, tokio_postgres::Error> {
    let rows = db
        .cached_query(
            "(SELECT true, id, dispatch_epoch, created_at FROM builds
               WHERE status = 'queued' AND dispatched_at IS NULL AND reason = 'on_demand'
                 AND created_at < now() - make_interval(secs => $1)
               ORDER BY created_at LIMIT 100)
             UNION ALL
             (SELECT false, id, dispatch_epoch, created_at FROM runs
               WHERE status = 'queued' AND dispatched_at IS NULL
                 AND created_at < now() - make_interval(secs => $1)
               ORDER BY created_at LIMIT 500)",
            &[&grace.as_secs_f64()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: Uuid = r.get(1);
            let stream = if r.get::<_, bool>(0) {
                StreamRef::Build(id)
            } else {
                StreamRef::Run(id)
            };
            Job {
                stream,
                epoch: r.get(2),
            }
        })
        .collect())
}

/// Records that the broker confirmed these jobs, for the episodes offered
/// (a job queued again since keeps waiting for its own confirm).
pub async fn mark_dispatched(
    db: &impl GenericClient,
    jobs: &[Job],
) -> Result<(), tokio_postgres::Error> {
    for (table, build) in [("runs", false), ("builds", true)] {
        let (ids, epochs): (Vec<Uuid>, Vec<i32>) = jobs
            .iter()
            .filter(|j| matches!(j.stream, StreamRef::Build(_)) == build)
            .map(|j| (j.stream.id(), j.epoch))
            .unzip();
        if ids.is_empty() {
            continue;
        }
        let sql = format!(
            "UPDATE {table} t SET dispatched_at = now()
             FROM UNNEST($1::uuid[], $2::int[]) AS j(id, epoch)
             WHERE t.id = j.id AND t.dispatch_epoch = j.epoch AND t.status = 'queued'"
        );
        db.cached_execute(sql.as_str(), &[&ids, &epochs]).await?;
    }
    Ok(())
}

/// How many runs wait (queued or for their build), counting at most `max`.
/// Reads at most `max` entries of a partial index, so it stays cheap while
/// the queue is short.
pub async fn waiting(db: &impl GenericClient, max: i64) -> Result<i64, tokio_postgres::Error> {
    let row = db
        .cached_query_one(
            "SELECT count(*) FROM (SELECT 1 FROM runs
               WHERE status IN ('queued', 'waiting_for_build') LIMIT $1) waiting",
            &[&max],
        )
        .await?;
    Ok(row.get(0))
}

/// How much work waits and runs (the autoscaling signals).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counts {
    /// Runs waiting for a worker.
    pub queued_runs: i64,
    /// Claimed runs waiting for their build.
    pub waiting_for_build_runs: i64,
    /// Runs being executed.
    pub running_runs: i64,
    /// Builds waiting for a builder.
    pub queued_builds: i64,
    /// Builds in progress.
    pub building_builds: i64,
    /// Age of the oldest queued run.
    pub oldest_queued_run_age_seconds: Option<f64>,
}

/// Counts the open runs and builds.
pub async fn counts(db: &impl GenericClient) -> Result<Counts, tokio_postgres::Error> {
    let row = db
        .cached_query_one(
            "SELECT
               (SELECT count(*) FROM runs WHERE status = 'queued'),
               (SELECT count(*) FROM runs WHERE status = 'waiting_for_build'),
               (SELECT count(*) FROM runs WHERE status = 'running'),
               (SELECT count(*) FROM builds WHERE status = 'queued'),
               (SELECT count(*) FROM builds WHERE status = 'building'),
               (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM runs WHERE status = 'queued')",
            &[],
        )
        .await?;
    Ok(Counts {
        queued_runs: row.get(0),
        waiting_for_build_runs: row.get(1),
        running_runs: row.get(2),
        queued_builds: row.get(3),
        building_builds: row.get(4),
        oldest_queued_run_age_seconds: row.get(5),
    })
}

/// True when a queued, waiting or running run uses the document.
pub async fn document_in_use(
    db: &impl GenericClient,
    document_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let row = db
        .cached_query_one(
            "SELECT EXISTS (SELECT 1 FROM runs
               WHERE status IN ('queued', 'waiting_for_build', 'running')
                 AND options->'document_ids' ? $1)",
            &[&document_id.to_string()],
        )
        .await?;
    Ok(row.get(0))
}

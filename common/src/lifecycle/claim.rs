//! Claiming a queued run, and the status changes a claim makes while the
//! run is prepared (`waiting_for_build` ↔ `running`).
//!
//! The claim is one compare-and-set (`queued →`): a duplicate or redelivered
//! message finds nothing to claim. A run whose cancel was requested while it
//! sat in the queue (a hand-back racing a cancel leaves one) is finished as
//! `cancelled` by the claim instead of being left queued forever.

use super::fence::{Claimant, Fence};
use super::runs::{Completion, end_unclaimed};
use crate::db::Cached as _;
use crate::events::{Envelope, Origin, Source, StreamRef};
use crate::runs::RunOptions;
use crate::status::RunStatus;
use deadpool_postgres::GenericClient;
use std::time::Duration;
use uuid::Uuid;

/// A run this worker owns, and the token that fences its writes.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The run.
    pub run_id: Uuid,
    /// Its workspace.
    pub workspace_id: Uuid,
    /// Its configuration.
    pub configuration_id: Uuid,
    /// The build chosen when the run was accepted.
    pub build_id: Option<Uuid>,
    /// The attempt this claim executes.
    pub attempt: i32,
    /// The claiming process.
    pub incarnation: Uuid,
    /// What the client asked for.
    pub options: RunOptions,
    /// How long the run waited, from its creation to this claim.
    pub queue_wait: Duration,
}

impl Claim {
    /// The fence of every write this claim makes.
    pub fn fence(&self) -> Fence {
        Fence::Run {
            incarnation: self.incarnation,
            attempt: self.attempt,
        }
    }

    /// Who the run's events belong to.
    pub fn origin(&self) -> Origin {
        Origin {
            stream: StreamRef::Run(self.run_id),
            workspace_id: self.workspace_id,
            configuration_id: self.configuration_id,
            build_id: self.build_id,
            attempt: Some(self.attempt),
        }
    }
}

/// What a claim attempt found.
#[derive(Debug)]
pub enum Claimed {
    /// The run is ours.
    Run(Claim),
    /// Its cancel was pending in the queue: it is `cancelled` now (publish these).
    Cancelled(Vec<Envelope>),
    /// Not queued (already claimed, finished or unknown): nothing to do.
    Nothing,
}

/// Claims a queued run for `claimant` with a lease. The run goes to
/// `running` if its build is ready, else to `waiting_for_build`.
pub async fn claim(
    db: &mut deadpool_postgres::Object,
    run_id: Uuid,
    claimant: &Claimant,
    lease: Duration,
) -> Result<Claimed, tokio_postgres::Error> {
    let row = db
        .cached_query_opt(
            "UPDATE runs SET worker_id = $2, worker_incarnation = $3, started_at = now(),
                 lease_expires_at = now() + make_interval(secs => $4),
                 status = CASE WHEN (SELECT status FROM builds b WHERE b.id = runs.build_id) = 'ready'
                               THEN 'running' ELSE 'waiting_for_build' END
             WHERE id = $1 AND status = 'queued' AND cancel_requested_at IS NULL
             RETURNING workspace_id, configuration_id, build_id, attempt, options,
                       extract(epoch FROM started_at - created_at)::float8",
            &[
                &run_id,
                &claimant.worker_id,
                &claimant.incarnation,
                &lease.as_secs_f64(),
            ],
        )
        .await?;
    if let Some(row) = row {
        return Ok(Claimed::Run(Claim {
            run_id,
            workspace_id: row.get(0),
            configuration_id: row.get(1),
            build_id: row.get(2),
            attempt: row.get(3),
            incarnation: claimant.incarnation,
            options: serde_json::from_value(row.get(4)).unwrap_or_default(),
            queue_wait: Duration::from_secs_f64(row.get::<_, f64>(5).max(0.0)),
        }));
    }
    let tx = db.transaction().await?;
    let ended = end_unclaimed(
        &tx,
        run_id,
        "status = 'queued' AND cancel_requested_at IS NOT NULL",
        &Completion::cancelled(),
        Source::Worker,
    )
    .await?;
    tx.commit().await?;
    Ok(ended.map_or(Claimed::Nothing, Claimed::Cancelled))
}

/// `running → waiting_for_build`: the claim waits for its build.
pub async fn wait_for_build(
    db: &impl GenericClient,
    claim: &Claim,
) -> Result<bool, tokio_postgres::Error> {
    set_claimed_status(db, claim, RunStatus::WaitingForBuild).await
}

/// `waiting_for_build → running`: the claim's environment is ready.
pub async fn start(db: &impl GenericClient, claim: &Claim) -> Result<bool, tokio_postgres::Error> {
    set_claimed_status(db, claim, RunStatus::Running).await
}

/// Moves a claimed run between its two claimed states; false when fenced out.
async fn set_claimed_status(
    db: &impl GenericClient,
    claim: &Claim,
    status: RunStatus,
) -> Result<bool, tokio_postgres::Error> {
    debug_assert!(matches!(
        status,
        RunStatus::Running | RunStatus::WaitingForBuild
    ));
    let n = db
        .cached_execute(
            "UPDATE runs SET status = $2 WHERE id = $1 AND worker_incarnation = $3 AND attempt = $4
               AND status IN ('running', 'waiting_for_build')",
            &[
                &claim.run_id,
                &status.as_str(),
                &claim.incarnation,
                &claim.attempt,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Points the claimed run at another build (the worker re-resolved it for
/// the engine it actually has); false when fenced out.
pub async fn rebind_build(
    db: &impl GenericClient,
    claim: &Claim,
    build_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let n = db
        .cached_execute(
            "UPDATE runs SET build_id = $2 WHERE id = $1 AND worker_incarnation = $3 AND attempt = $4
               AND status IN ('running', 'waiting_for_build')",
            &[&claim.run_id, &build_id, &claim.incarnation, &claim.attempt],
        )
        .await?;
    Ok(n == 1)
}

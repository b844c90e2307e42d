//! Leases: how a worker keeps the runs it holds, and learns of cancels.
//!
//! One statement per worker (not per run) renews the leases of every run the
//! incarnation holds and reports, for each, whether a cancel was requested;
//! a run missing from the answer has moved on (reaped, or ended by another
//! attempt) and must be stopped. Between renewals a read-only poll with the
//! same shape notices cancels without locking the run rows that event
//! writers update.

use crate::db::Cached as _;
use deadpool_postgres::GenericClient;
use std::time::Duration;
use uuid::Uuid;

/// A run the incarnation still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The run.
    pub run_id: Uuid,
    /// The attempt held.
    pub attempt: i32,
    /// A client asked to cancel it.
    pub cancel_requested: bool,
}

/// Extends the leases of `runs` (id, attempt) held by `incarnation`; returns those still held.
pub async fn renew(
    db: &impl GenericClient,
    incarnation: Uuid,
    runs: &[(Uuid, i32)],
    lease: Duration,
) -> Result<Vec<Held>, tokio_postgres::Error> {
    let (ids, attempts): (Vec<Uuid>, Vec<i32>) = runs.iter().copied().unzip();
    let rows = db
        .cached_query(
            "UPDATE runs SET lease_expires_at = now() + make_interval(secs => $4)
             WHERE worker_incarnation = $1 AND status IN ('running', 'waiting_for_build')
               AND (id, attempt) IN (SELECT * FROM UNNEST($2::uuid[], $3::int[]))
             RETURNING id, attempt, cancel_requested_at IS NOT NULL",
            &[&incarnation, &ids, &attempts, &lease.as_secs_f64()],
        )
        .await?;
    Ok(rows.iter().map(held).collect())
}

/// The runs `incarnation` holds, without renewing anything.
pub async fn poll(
    db: &impl GenericClient,
    incarnation: Uuid,
) -> Result<Vec<Held>, tokio_postgres::Error> {
    let rows = db
        .cached_query(
            "SELECT id, attempt, cancel_requested_at IS NOT NULL FROM runs
             WHERE worker_incarnation = $1 AND status IN ('running', 'waiting_for_build')",
            &[&incarnation],
        )
        .await?;
    Ok(rows.iter().map(held).collect())
}

fn held(row: &tokio_postgres::Row) -> Held {
    Held {
        run_id: row.get(0),
        attempt: row.get(1),
        cancel_requested: row.get(2),
    }
}

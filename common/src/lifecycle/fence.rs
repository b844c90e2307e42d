//! Fences: the tokens that make a worker's writes legal.
//!
//! A worker process has an incarnation, a UUID new at every start (worker
//! ids can repeat: a container's pid is 1 after every restart). Claiming a
//! run records the incarnation next to the run's attempt; claiming a build
//! records it as the builder. Every later write for that run or build —
//! events, lease renewal, status changes, outputs, the terminal state, the
//! hand-back — carries the same token and is refused once the row has moved
//! on (reaped, requeued, completed by another attempt).

use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// A worker process: its id (shown to people) and its incarnation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    /// `ADE_WORKER_ID`.
    pub worker_id: String,
    /// New for every process start.
    pub incarnation: Uuid,
}

impl Claimant {
    /// A claimant with a fresh incarnation.
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            incarnation: crate::ids::new_id(),
        }
    }
}

/// The guard of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// No claim involved: the API and the reaper, inside their own transactions.
    Unfenced,
    /// Only while this incarnation holds this attempt of a claimed run.
    Run {
        /// The claiming process.
        incarnation: Uuid,
        /// The claimed attempt.
        attempt: i32,
    },
    /// Only while this incarnation is the build's builder.
    Builder {
        /// The building process.
        incarnation: Uuid,
    },
}

impl Fence {
    /// The SQL condition (starting with `AND`) on the owning row, numbering
    /// its parameters from `$first`, and the parameters.
    pub fn condition(&self, first: usize) -> (String, Vec<&(dyn ToSql + Sync)>) {
        match self {
            Self::Unfenced => (String::new(), vec![]),
            Self::Run {
                incarnation,
                attempt,
            } => (
                format!(
                    "AND worker_incarnation = ${first} AND attempt = ${} \
                     AND status IN ('running', 'waiting_for_build')",
                    first + 1
                ),
                vec![incarnation, attempt],
            ),
            Self::Builder { incarnation } => (
                format!("AND builder_incarnation = ${first} AND status = 'building'"),
                vec![incarnation],
            ),
        }
    }
}

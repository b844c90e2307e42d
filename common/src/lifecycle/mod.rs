//! Every state change of a run or a build, and nothing else.
//!
//! Each transition is one function, named after it, and one guarded
//! statement (or one transaction with its events); no other module writes
//! `runs.status` or `builds.status`, and SQL status literals live only here.
//!
//! Run: `queued → [waiting_for_build ↔] running → succeeded | failed |
//! cancelled`, and back to `queued` when its worker hands it back or is
//! lost. Build: `queued → building → ready | failed`, and back to `queued`
//! when its builder stops without a verdict.
//!
//! - [`fence`]: claimants and the fences that guard their writes.
//! - [`claim`]: claiming a queued run; `wait_for_build` and `start`.
//! - [`lease`]: renewing the leases of a worker's runs; the cancel poll.
//! - [`runs`]: create, complete, hand back, cancel.
//! - [`reaper`]: runs whose worker was lost, builds whose builder was lost.
//! - [`builds`]: resolve (find or create), claim, release, finish.
//! - [`queue`]: what waits, and the broker dispatch marks.

pub mod builds;
pub mod claim;
pub mod fence;
pub mod lease;
pub mod queue;
pub mod reaper;
pub mod runs;

pub use claim::{Claim, Claimed};
pub use fence::{Claimant, Fence};
pub use runs::Completion;

//! Admission control for run creation (`ADE_MAX_QUEUED_RUNS`).
//!
//! Counting the waiting runs costs an index scan of up to the limit, which
//! is cheap while the queue is short and expensive exactly when it is long.
//! So each API instance remembers its last count and the runs it accepted
//! since: while that estimate is below half the limit and under a second
//! old, a request is admitted without counting. Near the limit every
//! request counts, so the limit stays exact there; far from it, other
//! instances' acceptances go unseen for at most a second, which cannot
//! carry the queue from below half the limit to over it in practice.

use ade_common::lifecycle::queue;
use deadpool_postgres::GenericClient;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a count may stand in for a new one.
const FRESH: Duration = Duration::from_secs(1);

/// One instance's view of how many runs wait.
#[derive(Default)]
pub struct Admission {
    last: Mutex<Option<Estimate>>,
}

#[derive(Clone, Copy)]
struct Estimate {
    counted_at: Instant,
    waiting: i64,
}

impl Admission {
    /// True when a new run would exceed `max` waiting runs.
    pub async fn is_full(
        &self,
        db: &impl GenericClient,
        max: i64,
    ) -> Result<bool, tokio_postgres::Error> {
        let estimate = *self.last.lock().expect("admission lock");
        if let Some(e) = estimate
            && e.counted_at.elapsed() < FRESH
            && e.waiting < max / 2
        {
            self.note_accepted();
            return Ok(false);
        }
        let waiting = queue::waiting(db, max).await?;
        *self.last.lock().expect("admission lock") = Some(Estimate {
            counted_at: Instant::now(),
            waiting,
        });
        if waiting >= max {
            return Ok(true);
        }
        self.note_accepted();
        Ok(false)
    }

    fn note_accepted(&self) {
        if let Some(e) = self.last.lock().expect("admission lock").as_mut() {
            e.waiting += 1;
        }
    }
}

//! Stopping a run early, and why.
//!
//! Each in-flight run has a [`Stop`] in the worker's [`Running`] registry.
//! Three things can stop it: a cancel request (control message or database
//! flag), the loss of its lease (another attempt owns the run now), or the
//! end of the drain period on shutdown (the run is handed back). The first
//! reason recorded wins; the token kills the engine's process group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Why a run was stopped before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A client cancelled it: it ends `cancelled`.
    Cancelled,
    /// Its lease was lost: another attempt owns it; write nothing.
    LeaseLost,
    /// The worker is shutting down: put it back in the queue, same attempt.
    HandBack,
}

/// The stop signal of one run.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    reason: Arc<Mutex<Option<Reason>>>,
}

impl Stop {
    /// Stops the run for `reason` (unless it was already stopped for another).
    pub fn stop(&self, reason: Reason) {
        self.reason.lock().expect("stop lock").get_or_insert(reason);
        self.token.cancel();
    }

    /// Why the run was stopped, if it was.
    pub fn reason(&self) -> Option<Reason> {
        *self.reason.lock().expect("stop lock")
    }

    /// The token that subprocesses and builds watch.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

/// The runs in flight on this worker.
#[derive(Debug, Clone, Default)]
pub struct Running(Arc<Mutex<HashMap<Uuid, Stop>>>);

impl Running {
    /// Registers a run; it is removed again when the guard drops.
    pub fn register(&self, run_id: Uuid) -> (Stop, Registration) {
        let stop = Stop::default();
        self.0
            .lock()
            .expect("running lock")
            .insert(run_id, stop.clone());
        (
            stop,
            Registration {
                running: self.clone(),
                run_id,
            },
        )
    }

    /// Stops one run, if it is here.
    pub fn stop(&self, run_id: Uuid, reason: Reason) -> bool {
        let stop = self.0.lock().expect("running lock").get(&run_id).cloned();
        stop.map(|s| s.stop(reason)).is_some()
    }

    /// Stops every run here.
    pub fn stop_all(&self, reason: Reason) {
        let all: Vec<Stop> = self
            .0
            .lock()
            .expect("running lock")
            .values()
            .cloned()
            .collect();
        all.iter().for_each(|s| s.stop(reason));
    }

    /// How many runs are in flight.
    pub fn len(&self) -> usize {
        self.0.lock().expect("running lock").len()
    }

    /// True when no run is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes a run from [`Running`] when dropped.
pub struct Registration {
    running: Running,
    run_id: Uuid,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.running
            .0
            .lock()
            .expect("running lock")
            .remove(&self.run_id);
    }
}

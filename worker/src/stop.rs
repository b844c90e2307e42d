//! Stopping a run early, and why; the registry of runs in flight.
//!
//! Each in-flight run has a [`Stop`] in the worker's [`Running`] registry,
//! keyed by run *and attempt* (a later claim of the same run by this worker
//! is a different entry, so one registration never removes another's).
//! Three things can stop a run: a cancel request (control message or
//! database flag), the loss of its lease (another attempt owns the run now,
//! or this worker could not renew in time), or the end of the drain period
//! on shutdown (the run is handed back). The first reason recorded wins; the
//! token kills the engine's process group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Why a run was stopped before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A client cancelled it: it ends `cancelled`.
    Cancelled,
    /// Its lease was lost: another attempt owns it, or may; write nothing.
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

/// A claimed attempt: run id and attempt.
pub type Key = (Uuid, i32);

#[derive(Debug)]
struct Entry {
    stop: Stop,
    /// When the last request that (re)set the lease was sent.
    renewed: Instant,
}

/// The runs in flight on this worker.
#[derive(Debug, Clone, Default)]
pub struct Running(Arc<Mutex<HashMap<Key, Entry>>>);

impl Running {
    /// Registers a claimed attempt whose lease was set by a request sent at
    /// `claimed`; it is removed again when the guard drops.
    pub fn register(&self, key: Key, claimed: Instant) -> (Stop, Registration) {
        let stop = Stop::default();
        let entry = Entry {
            stop: stop.clone(),
            renewed: claimed,
        };
        self.lock().insert(key, entry);
        let registration = Registration {
            running: self.clone(),
            key,
        };
        (stop, registration)
    }

    /// Stops every attempt of `run_id` held here; false if none is.
    pub fn stop(&self, run_id: Uuid, reason: Reason) -> bool {
        let stops: Vec<Stop> = self
            .lock()
            .iter()
            .filter(|((id, _), _)| *id == run_id)
            .map(|(_, e)| e.stop.clone())
            .collect();
        stops.iter().for_each(|s| s.stop(reason));
        !stops.is_empty()
    }

    /// Stops one attempt; false if it is no longer here (it has ended).
    pub fn stop_attempt(&self, key: Key, reason: Reason) -> bool {
        let stop = self.lock().get(&key).map(|e| e.stop.clone());
        stop.map(|stop| stop.stop(reason)).is_some()
    }

    /// Stops every run here.
    pub fn stop_all(&self, reason: Reason) {
        let all: Vec<Stop> = self.lock().values().map(|e| e.stop.clone()).collect();
        all.iter().for_each(|s| s.stop(reason));
    }

    /// The attempts held, with when each lease was last set.
    pub fn held(&self) -> Vec<(Key, Instant)> {
        self.lock().iter().map(|(k, e)| (*k, e.renewed)).collect()
    }

    /// Records that a renewal sent at `sent` extended these attempts' leases.
    pub fn renewed(&self, keys: &[Key], sent: Instant) {
        let mut entries = self.lock();
        for key in keys {
            if let Some(entry) = entries.get_mut(key) {
                entry.renewed = entry.renewed.max(sent);
            }
        }
    }

    /// How many runs are in flight.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no run is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.0.lock().expect("running lock")
    }
}

/// Removes its attempt from [`Running`] when dropped.
pub struct Registration {
    running: Running,
    key: Key,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.running.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_removes_only_its_own_attempt() {
        let running = Running::default();
        let run = Uuid::now_v7();
        let (_first_stop, first) = running.register((run, 1), Instant::now());
        let (second_stop, _second) = running.register((run, 2), Instant::now());
        drop(first);
        assert_eq!(
            running.held().len(),
            1,
            "the later claim is still registered"
        );
        assert!(running.stop(run, Reason::Cancelled));
        assert_eq!(second_stop.reason(), Some(Reason::Cancelled));
    }

    #[test]
    fn an_attempt_that_has_ended_is_not_stopped() {
        let running = Running::default();
        let key = (Uuid::now_v7(), 1);
        let (stop, registration) = running.register(key, Instant::now());
        drop(registration);
        assert!(!running.stop_attempt(key, Reason::LeaseLost));
        assert_eq!(stop.reason(), None);
        let (stop, _registration) = running.register(key, Instant::now());
        assert!(running.stop_attempt(key, Reason::LeaseLost));
        assert_eq!(stop.reason(), Some(Reason::LeaseLost));
    }

    #[test]
    fn the_first_reason_wins() {
        let stop = Stop::default();
        stop.stop(Reason::HandBack);
        stop.stop(Reason::Cancelled);
        assert_eq!(stop.reason(), Some(Reason::HandBack));
        assert!(stop.token().is_cancelled());
    }
}

//! How an engine run ended, decided from what the worker observed: the
//! exit status, signals, the run's deadline, its cgroup's memory kills and
//! its area's fill. Never from what the engine said: its events tell the
//! run's story (they are kept as the run's events, and its own summary is
//! kept under `summary.engine`), but a `run.error` naming a limit, or a
//! summary of its own, decides nothing.

use crate::limits::{self, Limits};
use crate::process::{Breach, ProcessError};
use ade_common::lifecycle::Completion;
use ade_common::runs::Failure;
use std::time::Duration;

/// What the worker saw of an engine run.
#[derive(Debug)]
pub struct Observed {
    /// The exit code (128 + signal), or why the supervisor ended it.
    pub ended: Result<i32, ProcessError>,
    /// Processes of the run the kernel killed for memory (its cgroup).
    pub oom_kills: u64,
    /// Bytes its area held at the end (`None`: not measured).
    pub area_bytes: Option<u64>,
    /// From the launch to the end.
    pub elapsed: Duration,
}

/// The bounds a run is held to.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// `ADE_RUN_MEMORY_BYTES`.
    pub memory_bytes: u64,
    /// `ADE_MAX_OUTPUT_BYTES`.
    pub max_output_bytes: u64,
    /// The rlimits (the CPU limit tells a `SIGKILL` at the limit apart).
    pub limits: Limits,
}

/// What to do next.
#[derive(Debug)]
pub enum Verdict {
    /// The engine succeeded within its bounds: publish its outputs.
    Publish,
    /// The run ended so.
    Ended(Completion),
    /// A stop (cancel, lost lease, shutdown) interrupted it.
    Interrupted,
}

/// The exit status of a process killed with `SIGKILL`.
const KILLED: i32 = 128 + libc::SIGKILL;

/// Decides how a run ended from what was observed.
pub fn verdict(seen: Observed, bounds: &Bounds) -> Verdict {
    let code = match &seen.ended {
        Ok(code) => Some(*code),
        Err(ProcessError::Breach(_)) => Some(KILLED),
        Err(_) => None,
    };
    let failed = |failure: Failure| Verdict::Ended(Completion::failed(code, failure));
    let over_output = seen.area_bytes.is_some_and(|b| b > bounds.max_output_bytes);
    match seen.ended {
        Err(ProcessError::Cancelled) => Verdict::Interrupted,
        _ if seen.oom_kills > 0 => failed(limits::memory_limit(bounds.memory_bytes)),
        Err(ProcessError::Breach(Breach::Memory)) => {
            failed(limits::memory_limit(bounds.memory_bytes))
        }
        Err(ProcessError::Breach(Breach::Output)) => {
            failed(limits::output_limit(bounds.max_output_bytes))
        }
        _ if over_output => failed(limits::output_limit(bounds.max_output_bytes)),
        Err(ProcessError::Timeout(t)) => {
            Verdict::Ended(Completion::failed(Some(124), timed_out(t)))
        }
        Err(e) => Verdict::Ended(Completion::failed(
            Some(2),
            Failure::new("run", "environment_unavailable", e.to_string()),
        )),
        Ok(0) => Verdict::Publish,
        Ok(code) if bounds.limits.hit_cpu_limit(code, seen.elapsed) => {
            failed(limits::cpu_limit(bounds.limits.cpu_seconds))
        }
        Ok(code) => failed(Failure::new(
            "run",
            "engine_failed",
            format!(
                "the engine exited with code {code}; its output is in the run's console.line events"
            ),
        )),
    }
}

/// The failure of a run past its deadline (`ADE_RUN_TIMEOUT_SECONDS`).
pub fn timed_out(limit: Duration) -> Failure {
    let message = format!(
        "the engine ran longer than {}s and was stopped",
        limit.as_secs()
    );
    Failure::new("run", "timeout", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            memory_bytes: 1 << 30,
            max_output_bytes: 1 << 20,
            limits: Limits::run(1 << 30, Duration::from_secs(60), 1 << 20),
        }
    }

    fn seen(ended: Result<i32, ProcessError>) -> Observed {
        Observed {
            ended,
            oom_kills: 0,
            area_bytes: Some(0),
            elapsed: Duration::from_secs(1),
        }
    }

    fn code_of(verdict: Verdict) -> (String, Option<i32>) {
        match verdict {
            Verdict::Ended(c) => (c.failure.map(|f| f.code).unwrap_or_default(), c.exit_code),
            other => panic!("not ended: {other:?}"),
        }
    }

    #[test]
    fn a_clean_exit_within_bounds_is_published() {
        assert!(matches!(verdict(seen(Ok(0)), &bounds()), Verdict::Publish));
    }

    #[test]
    fn limits_come_from_what_the_worker_saw_not_from_the_exit() {
        let mut oom = seen(Ok(0));
        oom.oom_kills = 1;
        assert_eq!(
            code_of(verdict(oom, &bounds())),
            ("memory_limit".into(), Some(0))
        );
        let mut full = seen(Ok(1));
        full.area_bytes = Some((1 << 20) + 1);
        assert_eq!(
            code_of(verdict(full, &bounds())),
            ("output_limit".into(), Some(1))
        );
        let breach = seen(Err(ProcessError::Breach(Breach::Output)));
        assert_eq!(
            code_of(verdict(breach, &bounds())),
            ("output_limit".into(), Some(KILLED))
        );
        let xcpu = seen(Ok(128 + libc::SIGXCPU));
        assert_eq!(code_of(verdict(xcpu, &bounds())).0, "cpu_limit");
    }

    #[test]
    fn an_engine_failure_is_one_whatever_the_engine_claims() {
        // A run.error with `memory_limit` changes nothing: only the exit is seen.
        assert_eq!(
            code_of(verdict(seen(Ok(1)), &bounds())),
            ("engine_failed".into(), Some(1))
        );
        let timeout = seen(Err(ProcessError::Timeout(Duration::from_secs(3))));
        assert_eq!(
            code_of(verdict(timeout, &bounds())),
            ("timeout".into(), Some(124))
        );
        let cancelled = seen(Err(ProcessError::Cancelled));
        assert!(matches!(
            verdict(cancelled, &bounds()),
            Verdict::Interrupted
        ));
    }
}

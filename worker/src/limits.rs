//! Resource limits of a confined process, and the failure codes they produce.
//!
//! rlimits are per process: [`Limits::apply`] sets them in the child between
//! fork and exec, so the program and everything it starts inherit them. The
//! process count is the exception (see [`Limits::processes`]): the kernel
//! counts it per user, so it is set inside the sandbox, where the user is
//! the run's own.
//!
//! The failure codes of limits are decided from what the worker observed
//! (see `engine::completion`): a death by `SIGXCPU`, or by `SIGKILL` once
//! the CPU limit could have been reached, is the CPU limit; memory and
//! output bounds of a whole run are watched through its cgroup and area.

use ade_common::runs::Failure;
use serde::Serialize;
use std::io;
use std::time::Duration;

/// Seconds between the soft CPU limit (`SIGXCPU`) and the hard one (`SIGKILL`).
const CPU_GRACE_SECONDS: u64 = 5;

/// The rlimits of one confined process. Field names are those of the warm
/// pool's run requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// `RLIMIT_AS`: bytes of address space per process.
    pub address_space_bytes: u64,
    /// `RLIMIT_CPU`: CPU seconds per process (soft; the hard limit is a few seconds later).
    pub cpu_seconds: u64,
    /// `RLIMIT_FSIZE`: the largest file a process may write.
    pub file_size_bytes: u64,
    /// `RLIMIT_NOFILE`: open descriptors per process.
    pub open_files: u64,
    /// `RLIMIT_NPROC`: processes and threads of the sandbox's user. Each
    /// sandbox has a user namespace of its own, and since Linux 5.14 the
    /// kernel counts processes per user *per namespace* (and checks parent
    /// namespaces against the limit their creator had): set inside the
    /// sandbox, the count is the run's own, not every sandbox's on the host.
    pub processes: u64,
}

impl Limits {
    /// Limits for an engine run: `memory` bytes of address space, the run's
    /// timeout as CPU time, outputs up to `max_output` bytes.
    pub fn run(memory: u64, timeout: Duration, max_output: u64) -> Self {
        Self {
            address_space_bytes: memory,
            cpu_seconds: timeout.as_secs().max(1),
            file_size_bytes: max_output,
            // Python and a spreadsheet library need a few dozen.
            open_files: 1024,
            // The engine is one process; headroom for what a configuration
            // starts, few enough that a fork bomb stops at once.
            processes: 256,
        }
    }

    /// Limits for a build step: uv runs many threads and opens many files.
    pub fn build(memory: u64, timeout: Duration, max_output: u64) -> Self {
        Self {
            open_files: 4096,
            processes: 1024,
            ..Self::run(memory, timeout, max_output)
        }
    }

    /// Sets every limit but the process count on the calling process.
    /// Async-signal-safe: meant for `pre_exec`.
    pub fn apply(&self) -> io::Result<()> {
        let cpu_hard = self.cpu_seconds.saturating_add(CPU_GRACE_SECONDS);
        set(
            libc::RLIMIT_AS,
            self.address_space_bytes,
            self.address_space_bytes,
        )?;
        set(libc::RLIMIT_CPU, self.cpu_seconds, cpu_hard)?;
        set(
            libc::RLIMIT_FSIZE,
            self.file_size_bytes,
            self.file_size_bytes,
        )?;
        set(libc::RLIMIT_NOFILE, self.open_files, self.open_files)?;
        set(libc::RLIMIT_CORE, 0, 0)
    }

    /// These limits without the per-process address-space cap: where a
    /// cgroup bounds a run's memory as a whole, that bound decides (and the
    /// worker sees it), not a `MemoryError` the engine could fake.
    pub fn without_address_space(self) -> Self {
        Self {
            address_space_bytes: libc::RLIM_INFINITY,
            ..self
        }
    }

    /// Death by `SIGXCPU` is the soft limit. `SIGKILL` is the hard one only
    /// if that much CPU time could have been used: CPU seconds never exceed
    /// wall seconds times the CPUs of the host.
    pub fn hit_cpu_limit(&self, exit_code: i32, elapsed: Duration) -> bool {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        match exit_code - 128 {
            libc::SIGXCPU => true,
            libc::SIGKILL => elapsed.as_secs_f64() * cpus >= self.cpu_seconds as f64,
            _ => false,
        }
    }
}

/// The failure of a run whose outputs (or area) hold more than `max` bytes.
pub fn output_limit(max: u64) -> Failure {
    Failure::new(
        "run",
        "output_limit",
        format!("the run's outputs exceed {max} bytes (ADE_MAX_OUTPUT_BYTES)"),
    )
}

/// The failure of a run whose processes needed more than `memory` bytes.
pub fn memory_limit(memory: u64) -> Failure {
    Failure::new(
        "run",
        "memory_limit",
        format!(
            "the run needed more than its memory limit of {memory} bytes (ADE_RUN_MEMORY_BYTES)"
        ),
    )
}

/// The failure of a run killed at its CPU limit.
pub fn cpu_limit(seconds: u64) -> Failure {
    Failure::new(
        "run",
        "cpu_limit",
        format!("the run used more than its {seconds} seconds of CPU time and was killed"),
    )
}

fn set(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit(2) reads the struct and touches no other memory.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::run(1 << 31, Duration::from_secs(60), 1 << 30)
    }

    #[test]
    fn cpu_deaths_are_told_apart_from_other_kills() {
        let (xcpu, kill) = (128 + libc::SIGXCPU, 128 + libc::SIGKILL);
        assert!(limits().hit_cpu_limit(xcpu, Duration::from_secs(1)));
        // Killed after a second: 60 CPU seconds cannot have been used.
        assert!(!limits().hit_cpu_limit(kill, Duration::from_secs(1)));
        assert!(limits().hit_cpu_limit(kill, Duration::from_secs(65)));
        assert!(!limits().hit_cpu_limit(1, Duration::from_secs(65)));
    }

    #[test]
    fn limits_apply_in_a_child() {
        let limits = limits();
        let mut cmd = std::process::Command::new("sh");
        cmd.args([
            "-c",
            "ulimit -v; ulimit -f; ulimit -n; ulimit -c; ulimit -t",
        ]);
        // SAFETY: `apply` only calls setrlimit.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || limits.apply());
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        // ulimit reports kilobytes for -v and 512-byte blocks for -f.
        let want = format!(
            "{}\n{}\n1024\n0\n60\n",
            (1u64 << 31) / 1024,
            (1u64 << 30) / 512
        );
        assert_eq!(text, want);
    }
}

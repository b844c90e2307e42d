//! CPU time of process trees, from `/proc`.
//!
//! A tree's CPU is the sum, over its live processes, of their own time
//! (`utime + stime`) and the time of the children they reaped (`cutime +
//! cstime`). A process that exited and was reaped is counted once, in its
//! parent; a live process is counted once, by itself.

use std::collections::HashMap;

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
const TICKS: f64 = 100.0;

#[derive(Clone, Copy, Default)]
struct Stat {
    ppid: u32,
    own: u64,
    reaped: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after its closing paren.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(Stat {
        ppid: n(1) as u32,
        own: n(11) + n(12),
        reaped: n(13) + n(14),
    })
}

/// A snapshot of every live process.
pub struct Snapshot(HashMap<u32, Stat>);

impl Snapshot {
    /// Reads `/proc` now.
    pub fn take() -> Self {
        let mut all = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok())
                && let Some(s) = stat(pid)
            {
                all.insert(pid, s);
            }
        }
        Self(all)
    }

    /// Seconds of CPU of `root` alone.
    pub fn own(&self, root: u32) -> f64 {
        self.0.get(&root).map_or(0.0, |s| s.own as f64 / TICKS)
    }

    /// Seconds of CPU of `root` and everything below it, live or reaped.
    pub fn tree(&self, root: u32) -> f64 {
        let mut total = 0;
        for (pid, s) in &self.0 {
            if self.descends(*pid, root) {
                total += s.own + s.reaped;
            }
        }
        total as f64 / TICKS
    }

    fn descends(&self, mut pid: u32, root: u32) -> bool {
        for _ in 0..64 {
            if pid == root {
                return true;
            }
            match self.0.get(&pid) {
                Some(s) if s.ppid != 0 => pid = s.ppid,
                _ => return false,
            }
        }
        false
    }
}

/// Seconds of CPU the whole machine spent busy (all CPUs), from `/proc/stat`.
/// Processes in a PID namespace (the sandboxed engines) are not reliably
/// added to their parents' reaped time, so the engine's share is what the
/// machine spent beyond the processes counted by name.
pub fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: u64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| v)
        .sum();
    busy as f64 / TICKS
}

/// The pid of the oldest process whose command line starts with `name`
/// (the root of a service's tree, e.g. the postmaster), if any.
pub fn service_root(name: &str) -> Option<u32> {
    let snap = Snapshot::take();
    let mut found: Vec<u32> = snap
        .0
        .keys()
        .copied()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .ok()
                .and_then(|c| c.split(|b| *b == 0).next().map(|a| a.to_vec()))
                .is_some_and(|arg0| String::from_utf8_lossy(&arg0).ends_with(name))
        })
        .collect();
    // The root is the one whose parent is not itself one of them.
    found.sort_unstable();
    let set: Vec<u32> = found.clone();
    found
        .into_iter()
        .find(|pid| snap.0.get(pid).is_none_or(|s| !set.contains(&s.ppid)))
}

//! Per-run cgroups: every process of a run, together, under one memory and
//! process-count limit, and a list of them the worker can kill.
//!
//! rlimits bound each process; a run of many processes could use that many
//! times its memory. A cgroup bounds them together: the kernel charges every
//! page a run's processes touch (its files on tmpfs included) to the run's
//! cgroup and, at the limit, kills a process of that cgroup only. The worker
//! reads the kill from the cgroup (`oom_kill`), so `memory_limit` is what it
//! observed, never what the engine said.
//!
//! Where: under the worker's own cgroup, in a folder of this worker process
//! (`ade-worker-<pid>-<incarnation>`), one `run-…` or `zygote-…` cgroup per
//! run or warm engine. cgroup v1 needs the `memory` and `pids` controllers
//! mounted and writable; cgroup v2 needs `memory` and `pids` available in
//! the worker's cgroup, which must be allowed to hold children (the worker
//! moves itself into a leaf of its own when it is alone there). A host
//! without either runs runs with rlimits only, and the worker says so at
//! start and in `GET /api/v1/workers` (`cgroup: "none"`).
//!
//! A process joins a run's cgroup before any configuration code runs in it:
//! a spawned sandbox between fork and exec ([`RunCgroup::join_in_child`]),
//! a forked run when its first process says hello and the worker moves it
//! ([`RunCgroup::add`]). Sandboxes cannot leave: they see no cgroup file
//! system, and moving a process needs write access the host's root owns.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cgroup versions the worker can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The v1 `memory` and `pids` hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
}

/// What a run's cgroup holds it to.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Memory of all its processes (and their tmpfs files) together.
    pub memory_bytes: u64,
    /// Processes and threads together.
    pub processes: u64,
}

/// Where this worker makes cgroups.
#[derive(Debug)]
pub struct Cgroups {
    version: Version,
    /// v1: the memory and pids folders of this worker; v2: one folder.
    parents: Vec<PathBuf>,
}

impl Cgroups {
    /// Finds this process's cgroups and makes a folder for its runs in each.
    /// `Err` says why runs cannot have cgroups here.
    pub fn detect(incarnation: uuid::Uuid) -> Result<Self, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
        let name = format!("ade-worker-{}-{}", std::process::id(), incarnation.simple());
        match v1_folders(&own, &mounts) {
            Some(folders) => Self::make(Version::V1, folders, &name),
            None => match v2_folder(&own, &mounts) {
                Some(folder) => Self::make(Version::V2, vec![v2_delegate(&folder)?], &name),
                None => Err(
                    "neither the cgroup v1 memory and pids controllers nor cgroup v2 \
                             with them is mounted"
                        .into(),
                ),
            },
        }
    }

    fn make(version: Version, owns: Vec<PathBuf>, name: &str) -> Result<Self, String> {
        let mut parents = Vec::new();
        for own in owns {
            sweep(&own);
            let parent = own.join(name);
            std::fs::create_dir_all(&parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            if version == Version::V2 {
                write(&parent.join("cgroup.subtree_control"), "+memory +pids").map_err(|e| {
                    format!("enabling memory and pids in {}: {e}", parent.display())
                })?;
            }
            parents.push(parent);
        }
        Ok(Self { version, parents })
    }

    /// `"v1"` or `"v2"`, as `GET /api/v1/workers` shows it.
    pub fn label(&self) -> &'static str {
        match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }

    /// A new cgroup `name` (a run's or a warm engine's) held to `bounds`.
    pub fn create(&self, name: &str, bounds: Bounds) -> io::Result<RunCgroup> {
        let mut dirs = Vec::new();
        for parent in &self.parents {
            // Recreated if another worker's start swept the empty parent.
            let dir = parent.join(name);
            std::fs::create_dir_all(&dir)?;
            dirs.push(dir);
        }
        let cgroup = RunCgroup::new(self.version, dirs)?;
        cgroup.limit(bounds)?;
        Ok(cgroup)
    }

    /// Removes this worker's folders (at shutdown, once runs are gone).
    pub fn remove(&self) {
        for parent in &self.parents {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// One run's (or warm engine's) cgroup. Dropping it kills what is left in
/// it and removes it.
#[derive(Debug)]
pub struct RunCgroup {
    version: Version,
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each folder, ready for a child between fork and exec.
    procs: Vec<CString>,
}

impl RunCgroup {
    fn new(version: Version, dirs: Vec<PathBuf>) -> io::Result<Self> {
        let procs = dirs
            .iter()
            .map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(io::Error::other)?;
        Ok(Self {
            version,
            dirs,
            procs,
        })
    }

    fn limit(&self, bounds: Bounds) -> io::Result<()> {
        let (memory, processes) = (
            bounds.memory_bytes.to_string(),
            bounds.processes.to_string(),
        );
        match self.version {
            Version::V1 => {
                let (mem, pids) = (&self.dirs[0], &self.dirs[1]);
                write(&mem.join("memory.limit_in_bytes"), &memory)?;
                // No escape into swap either, where the host has it.
                let memsw = mem.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &memory)?;
                }
                write(&pids.join("pids.max"), &processes)
            }
            Version::V2 => {
                let dir = &self.dirs[0];
                write(&dir.join("memory.max"), &memory)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
                write(&dir.join("pids.max"), &processes)
            }
        }
    }

    /// Moves the calling process into this cgroup. Async-signal-safe: for a
    /// child between fork and exec (its descendants stay in it).
    pub fn join_in_child(&self) -> io::Result<()> {
        for procs in &self.procs {
            // SAFETY: open/write/close on a NUL-terminated path made before fork.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let written = libc::write(fd, c"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// Moves process `pid` (and the threads it has) into this cgroup.
    pub fn add(&self, pid: i32) -> io::Result<()> {
        for dir in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// How many of its processes the kernel killed for memory.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            Version::V1 => (self.dirs[0].join("memory.oom_control"), "oom_kill"),
            Version::V2 => (self.dirs[0].join("memory.events"), "oom_kill"),
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| counter(&text, key))
            .unwrap_or(0)
    }

    /// The processes in it now.
    pub fn processes(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills every process in it and waits (briefly) until none is left;
    /// true when it is empty.
    pub fn kill_all(&self) -> bool {
        for round in 0..200 {
            if self.version == Version::V2 {
                let _ = write(&self.dirs[0].join("cgroup.kill"), "1");
            }
            let pids = self.processes();
            if pids.is_empty() {
                return true;
            }
            for pid in pids {
                // SAFETY: kill(2) touches no memory; a pid that is gone is fine.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(if round < 10 { 1 } else { 10 }));
        }
        self.processes().is_empty()
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.kill_all() {
            tracing::warn!(cgroup = %self.dirs[0].display(), "processes outlived their run's cgroup kill");
        }
        for dir in &self.dirs {
            // The kernel may take a moment to let go of the last process.
            for _ in 0..50 {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    _ => break,
                }
            }
        }
    }
}

/// `key N` from a flat-keyed cgroup file.
fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
}

/// This process's v1 memory and pids folders, if both are mounted.
fn v1_folders(own: &str, mounts: &str) -> Option<Vec<PathBuf>> {
    ["memory", "pids"]
        .iter()
        .map(|controller| {
            let path = own.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == *controller)
                    .then_some(path)
            })?;
            let (root, mount) = mount_of(mounts, "cgroup", Some(controller))?;
            Some(mount.join(relative(path, &root)))
        })
        .collect()
}

/// This process's v2 folder, if the unified hierarchy is mounted and offers
/// `memory` and `pids` there.
fn v2_folder(own: &str, mounts: &str) -> Option<PathBuf> {
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let (root, mount) = mount_of(mounts, "cgroup2", None)?;
    let folder = mount.join(relative(path, &root));
    let offered = std::fs::read_to_string(folder.join("cgroup.controllers")).ok()?;
    let has = |c: &str| offered.split_whitespace().any(|o| o == c);
    (has("memory") && has("pids")).then_some(folder)
}

/// In v2 a cgroup with processes cannot have controllers in its children:
/// the worker moves itself into a leaf (`ade-worker`) and enables `memory`
/// and `pids` below its own cgroup. Refused if others share it.
fn v2_delegate(own: &Path) -> Result<PathBuf, String> {
    let enable = || write(&own.join("cgroup.subtree_control"), "+memory +pids");
    if enable().is_ok() {
        return Ok(own.to_owned());
    }
    let leaf = own.join("ade-worker");
    std::fs::create_dir_all(&leaf).map_err(|e| format!("creating {}: {e}", leaf.display()))?;
    write(&leaf.join("cgroup.procs"), &std::process::id().to_string())
        .map_err(|e| format!("moving the worker into {}: {e}", leaf.display()))?;
    enable().map_err(|e| {
        format!(
            "enabling memory and pids below {} (other processes share the worker's cgroup?): {e}",
            own.display()
        )
    })?;
    Ok(own.to_owned())
}

/// The root and mount point of the cgroup file system `fstype` (for v1, the
/// one with `controller` among its options).
fn mount_of(mounts: &str, fstype: &str, controller: Option<&str>) -> Option<(String, PathBuf)> {
    mounts.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let mut tail = after.split(' ');
        let (kind, _source, options) = (tail.next()?, tail.next()?, tail.next()?);
        let wanted = controller.is_none_or(|c| options.split(',').any(|o| o == c));
        (kind == fstype && wanted).then(|| (fields[3].to_owned(), PathBuf::from(fields[4])))
    })
}

/// `path` relative to a mount's `root` (cgroup namespaces mount a subtree).
fn relative<'a>(path: &'a str, root: &str) -> &'a str {
    let rest = path.strip_prefix(root).unwrap_or(path);
    rest.trim_start_matches('/')
}

/// Removes the cgroups of worker processes that are gone (killed workers):
/// their runs' processes are killed and the folders removed.
fn sweep(own: &Path) {
    let Ok(entries) = std::fs::read_dir(own) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("ade-worker-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let Ok(children) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for child in children.flatten().filter(|c| c.path().is_dir()) {
            drop(RunCgroup {
                version: Version::V1,
                procs: Vec::new(),
                dirs: vec![child.path()],
            });
        }
        let _ = std::fs::remove_dir(entry.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 /inner /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    #[test]
    fn v1_folders_are_found_from_the_process_and_the_mounts() {
        let own = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n0::/";
        assert_eq!(
            v1_folders(own, MOUNTS).unwrap(),
            [
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"),
                PathBuf::from("/sys/fs/cgroup/pids/")
            ]
        );
        assert_eq!(v1_folders("0::/x", MOUNTS), None, "no v1 memory line");
    }

    #[test]
    fn a_mounts_root_is_taken_off_the_process_path() {
        let (root, mount) = mount_of(MOUNTS, "cgroup2", None).unwrap();
        assert_eq!(root, "/inner");
        assert_eq!(
            mount.join(relative("/inner/service", &root)),
            PathBuf::from("/sys/fs/cgroup/unified/service")
        );
    }

    #[test]
    fn counters_are_read_by_key() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(counter(text, "oom_kill"), Some(3));
        assert_eq!(counter(text, "missing"), None);
    }
}

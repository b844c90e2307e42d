//! One warm engine process (`python -m ade_engine.zygote`) and its control
//! socket (see `engine/src/ade_engine/zygote.py` for its side).
//!
//! The zygote says `ready` once it has imported the engine and the
//! configuration and found itself alone, or `refused` (the configuration
//! left a process or thread behind at import). The worker checks that too
//! where it can, from outside: the zygote's sandbox runs in a cgroup of its
//! own, which must hold exactly bubblewrap, its init and the zygote, and
//! the zygote (whose pid the kernel gives with its message) one thread.
//! After that the zygote's socket only carries run requests, worker to
//! zygote: a run reports to the worker over a socket of its own
//! ([`super::warm`]), so nothing the zygote (or configuration code in it)
//! says decides a run's outcome. When the zygote dies its socket hangs up
//! and it is marked dead; its runs die with it (their namespaces end with
//! its sandbox).

use crate::cgroup::RunCgroup;
use crate::fdpass;
use rustix::fd::{BorrowedFd, OwnedFd};
use std::io;
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::process::Command;

/// The descriptor number the zygote finds its socket at.
pub const ZYGOTE_FD: i32 = 4;
/// Longest a zygote may take to import everything before it counts as broken.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Processes of a healthy zygote's sandbox: bubblewrap, its init, the zygote.
const SANDBOX_PROCESSES: usize = 3;

/// Why the pool could not take a run (the caller spawns instead, or stops).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ZygoteError {
    /// The zygote could not start or is gone.
    #[error("the warm engine is unavailable: {0}")]
    Unavailable(String),
    /// The zygote found (or the worker saw) something left running after import.
    #[error("the warm engine was refused: {0}")]
    Refused(String),
    /// The run was stopped (cancel, lost lease, shutdown) while it waited.
    #[error("the run was stopped while its warm engine started")]
    Stopped,
}

impl From<io::Error> for ZygoteError {
    fn from(e: io::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// A running zygote.
pub struct Zygote {
    socket: Arc<AsyncFd<OwnedFd>>,
    process: Mutex<tokio::process::Child>,
    pgid: i32,
    alive: Arc<AtomicBool>,
    watcher: tokio::task::JoinHandle<()>,
    /// Its sandbox's cgroup; dropping it kills whatever is left there.
    _cgroup: Option<Arc<RunCgroup>>,
}

impl Zygote {
    /// Starts `cmd` (the zygote's sandbox, joining `cgroup`) and waits until
    /// it is ready. Dropping the future kills it.
    pub async fn start(
        mut cmd: Command,
        cgroup: Option<Arc<RunCgroup>>,
    ) -> Result<Self, ZygoteError> {
        let (ours, theirs) = fdpass::seqpacket_pair()?;
        fdpass::pass_credentials(&ours)?;
        let theirs = crate::process::high(theirs)?;
        let theirs_fd = theirs.as_raw_fd();
        cmd.env("ADE_ZYGOTE_FD", ZYGOTE_FD.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                crate::process::place_fd(theirs_fd, ZYGOTE_FD)
            });
        }
        let mut process = cmd.spawn()?;
        drop(theirs);
        let pgid = process.id().expect("a just-spawned child has a pid") as i32;
        let stderr = process.stderr.take().expect("piped");
        let socket = Arc::new(fdpass::register(ours)?);
        let mut buf = vec![0u8; 4096];
        let said = tokio::time::timeout(READY_TIMEOUT, fdpass::recv(&socket, &mut buf)).await;
        let failed = |why: String| {
            crate::process::kill_group(pgid);
            why
        };
        let said = match said {
            Ok(Ok(m)) if m.len > 0 => (message(&buf[..m.len]), m.pid),
            Ok(_) => return Err(ZygoteError::Unavailable(failed(last_lines(stderr).await))),
            Err(_) => {
                return Err(ZygoteError::Unavailable(failed(
                    "it took too long to start".into(),
                )));
            }
        };
        match said.0["op"].as_str() {
            Some("ready") => {}
            Some("refused") => {
                let why = said.0["why"].as_str().unwrap_or("refused").to_owned();
                return Err(ZygoteError::Refused(failed(why)));
            }
            _ => {
                return Err(ZygoteError::Unavailable(failed(
                    "it said something else than ready".into(),
                )));
            }
        }
        if let Some(why) = not_alone(cgroup.as_deref(), said.1) {
            return Err(ZygoteError::Refused(failed(why)));
        }
        tokio::spawn(drain(stderr));
        let alive = Arc::new(AtomicBool::new(true));
        let watcher = tokio::spawn(watch(socket.clone(), alive.clone()));
        Ok(Self {
            socket,
            process: Mutex::new(process),
            pgid,
            alive,
            watcher,
            _cgroup: cgroup,
        })
    }

    /// True while the zygote lives.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Sends a run request with its descriptors.
    pub async fn request(&self, body: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), ZygoteError> {
        if !self.is_alive() {
            return Err(ZygoteError::Unavailable("it stopped".into()));
        }
        Ok(fdpass::send(&self.socket, body, fds).await?)
    }

    /// Kills the zygote and every run it has.
    pub fn kill_all(&self) {
        self.alive.store(false, Ordering::Relaxed);
        crate::process::kill_group(self.pgid);
        if let Ok(mut process) = self.process.lock() {
            let _ = process.start_kill();
        }
    }

    /// Kills the zygote and waits (briefly) until it is gone.
    pub async fn stop(&self) {
        self.kill_all();
        for _ in 0..100 {
            let exited = match self.process.lock() {
                Ok(mut process) => !matches!(process.try_wait(), Ok(None)),
                Err(_) => true,
            };
            if exited {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        self.watcher.abort();
        self.kill_all();
    }
}

/// Why a zygote that said `ready` is not alone, seen from outside: its
/// sandbox's cgroup holds more than bubblewrap, its init and itself, or
/// the zygote (`pid`, from its message's credentials) runs threads.
fn not_alone(cgroup: Option<&RunCgroup>, pid: Option<i32>) -> Option<String> {
    let mut why = Vec::new();
    if let Some(cgroup) = cgroup {
        let count = cgroup.processes().len();
        if count > SANDBOX_PROCESSES {
            let extra = count - SANDBOX_PROCESSES;
            why.push(format!(
                "{extra} process(es) were left running after the import"
            ));
        }
    }
    let threads = pid
        .and_then(|pid| std::fs::read_dir(format!("/proc/{pid}/task")).ok())
        .map_or(1, |tasks| tasks.count());
    if threads > 1 {
        why.push(format!(
            "{} thread(s) were left running after the import",
            threads - 1
        ));
    }
    (!why.is_empty()).then(|| format!("the configuration, once imported: {}", why.join(" and ")))
}

/// Marks the zygote dead when its socket hangs up (it never writes again).
async fn watch(socket: Arc<AsyncFd<OwnedFd>>, alive: Arc<AtomicBool>) {
    let mut buf = [0u8; 64];
    while matches!(fdpass::recv(&socket, &mut buf).await, Ok(m) if m.len > 0) {}
    alive.store(false, Ordering::Relaxed);
}

fn message(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null)
}

/// The zygote's stderr is read (so it never blocks) and dropped.
async fn drain(mut stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 4096];
    while matches!(stderr.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// The last lines a zygote printed before it failed to start.
async fn last_lines(mut stderr: tokio::process::ChildStderr) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    let said = lines.into_iter().rev().collect::<Vec<_>>().join(" | ");
    if said.is_empty() {
        "it ended before it was ready".into()
    } else {
        format!("it did not start: {said}")
    }
}

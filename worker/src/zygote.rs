//! One warm engine process (`python -m ade_engine.zygote`) and the runs it
//! forks (see `engine/src/ade_engine/zygote.py` for its side).
//!
//! The worker talks to it over a `SOCK_SEQPACKET` socket: a run request
//! carries the run's stdout, stderr and events pipes and its input files as
//! descriptors; the zygote answers `started`, later `exited` with the exit
//! code. A reader task routes answers to the runs waiting for them. When
//! the zygote dies (or its socket breaks) every run still waiting learns it
//! at once; its runs die with it (their namespaces end with their parent).
//! Cancel and timeout ask the zygote to kill the run; if it does not answer
//! within a second, the whole zygote is killed.

use crate::fdpass;
use crate::process::Supervised;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::process::Command;
use tokio::sync::oneshot;

/// The descriptor number the zygote finds its socket at.
pub const ZYGOTE_FD: i32 = 4;
/// Longest a zygote may take to import everything before it counts as broken.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a run request may wait for `started`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// After asking for a kill, how long before the whole zygote is killed.
const KILL_PATIENCE: Duration = Duration::from_secs(1);

/// Why the pool could not take a run (the caller spawns instead).
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    /// The zygote is gone or did not answer.
    #[error("the warm engine is unavailable: {0}")]
    Unavailable(String),
    /// Talking to it failed.
    #[error("the warm engine could not be reached: {0}")]
    Io(#[from] io::Error),
}

/// What a run asks of the zygote.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Arguments after `python -m ade_engine` (`run --input … --output-dir …`).
    pub argv: Vec<String>,
    /// The run's working folder, as the zygote sees it.
    pub cwd: String,
    /// The run's whole environment.
    pub env: Vec<(String, String)>,
    /// File names the inputs get in `<cwd>/inputs/` (one per input descriptor).
    pub inputs: Vec<String>,
    /// rlimits: `cpu_seconds`, `address_space_bytes`, `file_size_bytes`, `open_files`, `processes`.
    pub limits: Value,
}

type Waiters = Arc<Mutex<HashMap<u64, Waiter>>>;

#[derive(Default)]
struct Waiter {
    started: Option<oneshot::Sender<()>>,
    exited: Option<oneshot::Sender<i32>>,
}

/// A running zygote.
pub struct Zygote {
    socket: Arc<AsyncFd<OwnedFd>>,
    process: Mutex<tokio::process::Child>,
    pgid: i32,
    waiters: Waiters,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Zygote {
    /// Starts `cmd` (the zygote, perhaps under the sandbox) and waits until
    /// it has imported everything.
    pub async fn start(mut cmd: Command) -> Result<Self, ZygoteError> {
        let (ours, theirs) = fdpass::seqpacket_pair()?;
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
                if libc::dup2(theirs_fd, ZYGOTE_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut process = cmd.spawn()?;
        drop(theirs);
        let pgid = process.id().expect("a just-spawned child has a pid") as i32;
        let stderr = process.stderr.take().expect("piped");
        let socket = Arc::new(fdpass::register(ours)?);
        let mut buf = vec![0u8; 4096];
        let ready = tokio::time::timeout(READY_TIMEOUT, fdpass::recv(&socket, &mut buf)).await;
        match ready {
            Ok(Ok(n)) if n > 0 && message(&buf[..n])["op"] == "ready" => {}
            _ => {
                crate::process::kill_group(pgid);
                let why = last_lines(stderr).await;
                return Err(ZygoteError::Unavailable(format!("it did not start: {why}")));
            }
        }
        tokio::spawn(drain(stderr));
        let waiters = Waiters::default();
        let alive = Arc::new(AtomicBool::new(true));
        let reader = tokio::spawn(read_loop(socket.clone(), waiters.clone(), alive.clone()));
        Ok(Self {
            socket,
            process: Mutex::new(process),
            pgid,
            waiters,
            next_id: AtomicU64::new(1),
            alive,
            reader,
        })
    }

    /// True while the zygote answers.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Asks for a run: `pipes` are its stdout, stderr and events write ends,
    /// `inputs` its input files (all sent, then closed here).
    pub async fn run(
        self: &Arc<Self>,
        request: &RunRequest,
        pipes: [OwnedFd; 3],
        inputs: Vec<OwnedFd>,
    ) -> Result<PooledRun, ZygoteError> {
        if !self.is_alive() {
            return Err(ZygoteError::Unavailable("it stopped".into()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (started_tx, started) = oneshot::channel();
        let (exited_tx, exited) = oneshot::channel();
        self.waiters.lock().expect("zygote lock").insert(
            id,
            Waiter {
                started: Some(started_tx),
                exited: Some(exited_tx),
            },
        );
        let env: serde_json::Map<String, Value> = request
            .env
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let body = json!({
            "op": "run", "id": id, "argv": request.argv, "cwd": request.cwd,
            "env": env, "inputs": request.inputs, "limits": request.limits,
        });
        let fds: Vec<RawFd> = pipes.iter().chain(&inputs).map(|f| f.as_raw_fd()).collect();
        let sent = fdpass::send(&self.socket, body.to_string().as_bytes(), &fds).await;
        drop((pipes, inputs));
        if let Err(e) = sent {
            self.waiters.lock().expect("zygote lock").remove(&id);
            return Err(e.into());
        }
        match tokio::time::timeout(START_TIMEOUT, started).await {
            Ok(Ok(())) => Ok(PooledRun {
                id,
                zygote: self.clone(),
                exited: Some(exited),
                code: None,
            }),
            _ => {
                self.waiters.lock().expect("zygote lock").remove(&id);
                self.kill_all();
                Err(ZygoteError::Unavailable("it did not start the run".into()))
            }
        }
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

    async fn ask_kill(&self, id: u64) -> io::Result<()> {
        let body = json!({"op": "kill", "id": id}).to_string();
        fdpass::send(&self.socket, body.as_bytes(), &[]).await
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        self.reader.abort();
        self.kill_all();
    }
}

/// A run forked by a zygote, supervised like a spawned engine.
pub struct PooledRun {
    id: u64,
    zygote: Arc<Zygote>,
    exited: Option<oneshot::Receiver<i32>>,
    code: Option<i32>,
}

impl Supervised for PooledRun {
    async fn wait(&mut self) -> io::Result<i32> {
        if let Some(code) = self.code {
            return Ok(code);
        }
        // Polled through a reference: the supervisor's select! drops this
        // future whenever a line arrives first, and the receiver must survive.
        let exited = self.exited.as_mut().expect("not yet exited");
        let code = exited
            .await
            .map_err(|_| io::Error::other("the warm engine stopped during the run"))?;
        self.code = Some(code);
        self.exited = None;
        Ok(code)
    }

    fn kill(&mut self) {
        if self.code.is_some() {
            return;
        }
        let (zygote, id) = (self.zygote.clone(), self.id);
        let waiting = self
            .zygote
            .waiters
            .lock()
            .expect("zygote lock")
            .contains_key(&id);
        if !waiting {
            return;
        }
        tokio::spawn(async move {
            let asked = zygote.ask_kill(id).await.is_ok();
            tokio::time::sleep(KILL_PATIENCE).await;
            let still = zygote
                .waiters
                .lock()
                .expect("zygote lock")
                .contains_key(&id);
            if !asked || still {
                tracing::warn!("the warm engine did not kill a run in time; killing it whole");
                zygote.kill_all();
            }
        });
    }
}

/// Routes the zygote's answers; on hang-up, fails everyone waiting.
async fn read_loop(socket: Arc<AsyncFd<OwnedFd>>, waiters: Waiters, alive: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match fdpass::recv(&socket, &mut buf).await {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        let msg = message(&buf[..n]);
        let Some(id) = msg["id"].as_u64() else {
            continue;
        };
        let mut waiters = waiters.lock().expect("zygote lock");
        match msg["op"].as_str() {
            Some("started") => {
                if let Some(tx) = waiters.get_mut(&id).and_then(|w| w.started.take()) {
                    let _ = tx.send(());
                }
            }
            Some("exited") => {
                if let Some(tx) = waiters.remove(&id).and_then(|w| w.exited) {
                    let _ = tx.send(msg["code"].as_i64().unwrap_or(1) as i32);
                }
            }
            _ => {}
        }
    }
    alive.store(false, Ordering::Relaxed);
    // Dropping the senders wakes every run still waiting, with an error.
    waiters.lock().expect("zygote lock").clear();
}

fn message(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
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
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

//! One run through the warm engine pool: the same engine invocation as a
//! spawned one, forked by the build's zygote, isolated as a spawned run is.
//!
//! The worker sends the zygote the run's request with its stdout, stderr
//! and events pipes, a socket of the run's own and its input files as
//! descriptors (never a folder of the host). Everything after that goes
//! over the run's socket, which only the run's first two processes hold:
//!
//! 1. The run's first process (A) says hello. The kernel stamps the
//!    message with A's pid, so the worker knows which process is the run
//!    whatever the zygote might claim; it moves A into the run's cgroup,
//!    holds a pidfd of it, and says go.
//! 2. A makes the run's namespaces and forks their PID 1 (B), which mounts
//!    the run's area (a size-capped tmpfs) and hands its descriptor over.
//! 3. B forks the engine (C) and, when C ends, kills what is left and
//!    reports C's exit code.
//!
//! The run has ended when A is gone (then B and everything in the run's
//! namespaces are gone too). Killing it is killing A (and everything in
//! its cgroup); if A does not go within a second, the whole zygote is
//! killed. See `engine/src/ade_engine/zygote.py` for the zygote's side.

use super::zygote::{ZYGOTE_FD, Zygote, ZygoteError};
use crate::Context;
use crate::area::{self, RunArea};
use crate::cgroup::RunCgroup;
use crate::fdpass;
use crate::process::{Channel, Output, Supervised};
use crate::sandbox::{Sandbox, TMP_BYTES, layout};
use rustix::fd::{AsFd as _, OwnedFd};
use rustix::process::{Pid, PidfdFlags, Signal};
use serde_json::{Value, json};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Longest a forked run may take to say hello and hand over its area.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// After a kill, how long before the whole zygote is killed.
const KILL_PATIENCE: Duration = Duration::from_secs(1);

/// What a run asks the engine to do, in either launch mode.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Arguments after `python -m ade_engine`.
    pub argv: Vec<String>,
    /// The engine's whole environment.
    pub env: Vec<(String, String)>,
    /// Each input: the document's file on the host, and its name for the engine.
    pub inputs: Vec<(PathBuf, String)>,
}

/// A forked run, ready to be supervised.
pub struct Forked {
    /// The run, as the supervisor sees it.
    pub run: WarmRun,
    /// Its stdout, stderr and events.
    pub outputs: Vec<(Channel, Output)>,
    /// Its area.
    pub area: RunArea,
    /// Its cgroup, if the host has them.
    pub cgroup: Option<Arc<RunCgroup>>,
}

/// Where a forked run's inputs are inside: `<work>/inputs/<name>`.
pub fn input_path(name: &str) -> PathBuf {
    Path::new(area::WORK).join("inputs").join(name)
}

/// Forks the run in the warm engine of `build` (venv at `venv`). `Err`
/// means: spawn the engine instead, or stop ([`ZygoteError::Stopped`]).
pub async fn start(
    ctx: &Context,
    run: (Uuid, i32),
    (build, venv): (Uuid, &Path),
    invocation: &Invocation,
    stop: &CancellationToken,
) -> Result<Forked, ZygoteError> {
    let pool = ctx
        .engines
        .as_ref()
        .ok_or_else(|| ZygoteError::Unavailable("the pool is off".into()))?;
    let launch = || zygote_command(ctx, venv.to_owned());
    let zygote = pool.lease(build, venv, launch, stop).await?;
    let token = format!("run-{}-{}", run.0.simple(), run.1);
    let started = tokio::select! {
        biased;
        _ = stop.cancelled() => Err(ZygoteError::Stopped),
        started = tokio::time::timeout(START_TIMEOUT, fork(ctx, &zygote, &token, invocation)) => {
            started.unwrap_or_else(|_| Err(ZygoteError::Unavailable("the run did not start in time".into())))
        }
    };
    if let Err(ZygoteError::Unavailable(_)) = &started {
        // A zygote that cannot fork a run is broken: the next run gets a new one.
        zygote.kill_all();
    }
    started
}

/// Asks `zygote` for the run and follows its start until the area is handed over.
async fn fork(
    ctx: &Context,
    zygote: &Arc<Zygote>,
    token: &str,
    invocation: &Invocation,
) -> Result<Forked, ZygoteError> {
    let (ours, theirs) = fdpass::seqpacket_pair()?;
    fdpass::pass_credentials(&ours)?;
    let socket = fdpass::register(ours)?;
    let (writers, outputs) = pipes()?;
    let inputs: Vec<OwnedFd> = invocation
        .inputs
        .iter()
        .map(|(path, _)| open_input(path))
        .collect::<io::Result<_>>()?;
    let capacity = area::capacity(ctx.max_output_bytes);
    let body = request(ctx, invocation, capacity);
    let fds: Vec<_> = writers
        .iter()
        .chain([&theirs])
        .chain(&inputs)
        .map(|fd| fd.as_fd())
        .collect();
    zygote.request(body.to_string().as_bytes(), &fds).await?;
    drop(fds);
    drop((writers, theirs, inputs));

    let mut buf = [0u8; 256];
    let hello = fdpass::recv(&socket, &mut buf).await?;
    let pid = match (hello.len, hello.pid) {
        (n, Some(pid)) if n > 0 && said(&buf[..n]) == "hello" => pid,
        _ => return Err(ZygoteError::Unavailable("the run did not say hello".into())),
    };
    // The run's processes join its cgroup before any of them runs anything.
    let cgroup = match &ctx.cgroups {
        Some(cgroups) => {
            let cgroup = cgroups.create(token, ctx.run_bounds())?;
            cgroup.add(pid)?;
            Some(Arc::new(cgroup))
        }
        None => None,
    };
    let leader =
        rustix::process::pidfd_open(Pid::from_raw(pid).expect("a pid"), PidfdFlags::empty())
            .map_err(io::Error::from)?;
    fdpass::send(&socket, b"{\"op\": \"go\"}", &[]).await?;
    let mut run = WarmRun {
        socket,
        leader: fdpass::register(leader)?,
        zygote: zygote.clone(),
        reported: None,
    };
    let handed = fdpass::recv(&run.socket, &mut buf).await?;
    let area = match handed.fds.into_iter().next() {
        Some(dir) if said(&buf[..handed.len]) == "area" => RunArea::adopt(dir, capacity),
        _ => Err(io::Error::other("the run did not hand over its area")),
    };
    match area {
        Ok(area) => Ok(Forked {
            run,
            outputs,
            area,
            cgroup,
        }),
        Err(e) => {
            run.kill();
            Err(e.into())
        }
    }
}

/// The run request, as the zygote reads it.
fn request(ctx: &Context, invocation: &Invocation, capacity: u64) -> Value {
    let env: serde_json::Map<String, Value> = invocation
        .env
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let names: Vec<&str> = invocation.inputs.iter().map(|(_, n)| n.as_str()).collect();
    json!({
        "op": "run", "argv": invocation.argv, "env": env, "inputs": names,
        "limits": ctx.limits, "area_bytes": capacity, "tmp_bytes": TMP_BYTES,
    })
}

fn said(bytes: &[u8]) -> String {
    let message: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    message["op"].as_str().unwrap_or_default().to_owned()
}

/// A run forked by a zygote, supervised like a spawned engine.
pub struct WarmRun {
    socket: AsyncFd<OwnedFd>,
    /// A pidfd of the run's first process.
    leader: AsyncFd<OwnedFd>,
    zygote: Arc<Zygote>,
    /// What the run reported when it ended (`Some(None)`: it ended without a report).
    reported: Option<Option<i32>>,
}

impl WarmRun {
    /// Waits until the run's first process is gone (a second at most).
    async fn leader_gone(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(2), self.leader.readable())
            .await
            .is_ok()
    }
}

impl Supervised for WarmRun {
    async fn wait(&mut self) -> io::Result<i32> {
        // Polled through a reference: the supervisor's select! drops this
        // future whenever a line arrives first. So every step keeps what it
        // learnt in `self` before it awaits again; receiving is cancel-safe.
        if self.reported.is_none() {
            let mut buf = [0u8; 256];
            self.reported = Some(loop {
                let message = fdpass::recv(&self.socket, &mut buf).await?;
                if message.len == 0 {
                    break None;
                }
                let body: Value =
                    serde_json::from_slice(&buf[..message.len]).unwrap_or(Value::Null);
                if body["op"] == "exited" {
                    break body["code"].as_i64().map(|c| c as i32);
                }
            });
        }
        if !self.leader_gone().await {
            self.kill();
        }
        self.reported
            .flatten()
            .ok_or_else(|| io::Error::other("the run ended without a report of its exit"))
    }

    fn kill(&mut self) {
        let _ = rustix::process::pidfd_send_signal(self.leader.get_ref(), Signal::KILL);
        let zygote = self.zygote.clone();
        let leader = self.leader.get_ref().try_clone().and_then(fdpass::register);
        tokio::spawn(async move {
            let gone = match leader {
                Ok(pidfd) => tokio::time::timeout(KILL_PATIENCE, pidfd.readable())
                    .await
                    .is_ok(),
                Err(_) => false,
            };
            if !gone {
                tracing::warn!("a forked run outlived its kill; killing its warm engine whole");
                zygote.kill_all();
            }
        });
    }
}

/// A document's file, opened for the engine (a regular file, never a link).
fn open_input(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file.into())
}

/// The read ends of a run's pipes, by channel.
type Readers = Vec<(Channel, Output)>;

/// Pipes for stdout, stderr and events: write ends for the zygote, readers for us.
fn pipes() -> io::Result<(Vec<OwnedFd>, Readers)> {
    let mut writers = Vec::new();
    let mut readers = Readers::new();
    for channel in [Channel::Stdout, Channel::Stderr, Channel::Events] {
        let (reader, writer) = fdpass::pipe()?;
        let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(reader)?;
        readers.push((channel, Box::new(receiver)));
        writers.push(writer);
    }
    Ok((writers, readers))
}

/// The zygote of a build: the venv read-only, nothing of the host
/// writable, no network, user namespaces allowed (one per run), in a
/// cgroup of its own; limits as for runs but room for the processes of
/// all its runs together.
async fn zygote_command(ctx: &Context, venv: PathBuf) -> anyhow::Result<super::Launch> {
    let mut limits = ctx.limits;
    limits.processes = limits
        .processes
        .saturating_mul(u64::from(ctx.slots.total()))
        .saturating_add(64);
    let cgroup = match &ctx.cgroups {
        Some(cgroups) => {
            let mut bounds = ctx.run_bounds();
            bounds.processes = limits.processes;
            let name = format!("zygote-{}", Uuid::now_v7().simple());
            Some(Arc::new(cgroups.create(&name, bounds)?))
        }
        None => None,
    };
    // The scratch folder is for `ADE_ENGINE_SANDBOX=off`, which has no pool.
    let mut sb = Sandbox::new(
        Path::new(layout::VENV).join("bin/python"),
        limits,
        std::env::temp_dir(),
    );
    ctx.sandbox.mount_venv(&mut sb, &venv, false)?;
    sb.mount_point(area::INSIDE)
        .keep_fd(ZYGOTE_FD)
        .allow_user_namespaces()
        .args(["-m", "ade_engine.zygote"])
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    if let Some(cgroup) = &cgroup {
        sb.cgroup(cgroup.clone());
    }
    Ok((ctx.sandbox.command(&sb)?, cgroup))
}

//! A run through the warm engine pool: the same engine invocation as a
//! spawned one, forked by the build's zygote instead (see [`crate::pool`]).
//!
//! The zygote lives in a sandbox that sees only the build's venv and a
//! scratch folder of its own; a run gets `runs/<run>-<attempt>/` in it (its
//! working folder and its outputs), its inputs as descriptors of the
//! document files (never a folder of the host), and pipes for stdout,
//! stderr and events. After a successful run its outputs are published
//! like a spawned engine's and copied into the attempt's outputs folder on
//! shared storage, each opened without following links.

use crate::Context;
use crate::pool::Lease;
use crate::process::{Channel, Output};
use crate::sandbox::{Mode, Sandbox, layout};
use crate::zygote::{PooledRun, RunRequest, Zygote};
use ade_common::lifecycle::Claim;
use ade_common::runs::{Failure, OutputFile};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::process::Command;
use uuid::Uuid;

/// A run forked by a zygote, ready to be supervised.
pub struct WarmRun {
    /// The run, as the supervisor sees it.
    pub child: PooledRun,
    /// Its stdout, stderr and events.
    pub outputs: Vec<(Channel, Output)>,
    /// Its folder in the zygote's scratch.
    pub folder: RunFolder,
}

/// A warm run's folder in its zygote's scratch (host path). It holds the
/// zygote: a retired zygote's scratch is removed only once no run holds it
/// ([`crate::pool`]), so the folder lasts until the run's outputs are
/// copied and it is cleaned, not only while the engine runs.
pub struct RunFolder {
    path: PathBuf,
    _zygote: Arc<Zygote>,
}

impl RunFolder {
    /// The folder `runs/<token>` in the scratch of `lease`'s zygote.
    pub fn new(lease: &Lease, token: &str) -> Self {
        Self {
            path: lease.scratch.join("runs").join(token),
            _zygote: lease.zygote.clone(),
        }
    }

    /// Where it is on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One input: the document's file, and its name for the engine.
pub type Input = (PathBuf, String);

/// Starts the run in the warm engine of `build`; `None` when there is no
/// pool or it cannot take the run (the caller spawns the engine instead).
pub async fn start(
    ctx: &Context,
    claim: &Claim,
    build: Uuid,
    venv: &Path,
    inputs: &[Input],
) -> Option<WarmRun> {
    let pool = ctx.engines.as_ref()?;
    let lease = pool
        .lease(build, venv, |scratch| {
            zygote_command(ctx, venv.to_owned(), scratch)
        })
        .await;
    let lease = match lease {
        Ok(lease) => lease,
        Err(e) => {
            tracing::warn!(build.id = %build, error = %e, "no warm engine; spawning the engine");
            return None;
        }
    };
    let token = format!("{}-{}", claim.run_id.simple(), claim.attempt);
    let folder = RunFolder::new(&lease, &token);
    let started = async {
        let (request, fds) = prepare(ctx, claim, &lease.scratch, folder.path(), inputs).await?;
        let (pipes, outputs) = pipes()?;
        let child = lease.zygote.run(&request, pipes, fds).await?;
        anyhow::Ok((child, outputs))
    };
    match started.await {
        Ok((child, outputs)) => Some(WarmRun {
            child,
            outputs,
            folder,
        }),
        Err(e) => {
            tracing::warn!(run.id = %claim.run_id, error = %e, "the warm engine did not take the run; spawning the engine");
            clean(folder).await;
            None
        }
    }
}

/// Publishes a finished warm run's outputs into `outputs` (the attempt's
/// folder on shared storage).
pub async fn publish(
    ctx: &Context,
    folder: &RunFolder,
    outputs: &Path,
    events: &crate::events::EventSink,
) -> Result<Vec<OutputFile>, Failure> {
    let written = folder.path.join("outputs");
    let files = crate::outputs::publish(&ctx.sandbox, &written, &ctx.limits, events).await?;
    for file in &files {
        let (from, to) = (written.join(&file.name), outputs.join(&file.name));
        let copied = tokio::task::spawn_blocking(move || copy_regular(&from, &to)).await;
        if let Err(e) = copied.map_err(std::io::Error::other).and_then(|r| r) {
            let message = format!("the output {} could not be stored: {e}", file.name);
            return Err(Failure::new("run", "environment_unavailable", message));
        }
    }
    Ok(files)
}

/// Removes a warm run's folder (and lets its zygote's scratch go).
pub async fn clean(folder: RunFolder) {
    let _ = tokio::fs::remove_dir_all(&folder.path).await;
}

/// Copies a regular file without following a link at `from`.
fn copy_regular(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(from)?;
    if !source.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut target = std::fs::File::create(to)?;
    std::io::copy(&mut source, &mut target)?;
    target.sync_all()
}

/// The run's folder (lent to the sandbox user), its request and its inputs.
async fn prepare(
    ctx: &Context,
    claim: &Claim,
    scratch: &Path,
    dir: &Path,
    inputs: &[Input],
) -> anyhow::Result<(RunRequest, Vec<OwnedFd>)> {
    let _ = tokio::fs::remove_dir_all(dir).await;
    tokio::fs::create_dir_all(dir.join("work")).await?;
    tokio::fs::create_dir_all(dir.join("outputs")).await?;
    ctx.sandbox.lend(dir).await?;
    // The zygote sees its scratch at a fixed place when sandboxed.
    let inside = match ctx.sandbox.mode() {
        Mode::Bwrap => Path::new(layout::SCRATCH).join(dir.strip_prefix(scratch)?),
        Mode::Off => dir.to_owned(),
    };
    let (cwd, out) = (inside.join("work"), inside.join("outputs"));
    let mut argv = vec!["run".to_owned()];
    let mut fds = Vec::new();
    let mut names = Vec::new();
    for (source, name) in inputs {
        fds.push(open_input(source)?);
        argv.push("--input".into());
        argv.push(cwd.join("inputs").join(name).to_string_lossy().into_owned());
        names.push(name.clone());
    }
    argv.extend(["--output-dir".into(), out.to_string_lossy().into_owned()]);
    for sheet in &claim.options.input_sheet_names {
        argv.extend(["--input-sheet".into(), sheet.clone()]);
    }
    if claim.options.dry_run {
        argv.push("--dry-run".into());
    }
    if claim.options.validate_only {
        argv.push("--validate-only".into());
    }
    let cwd = cwd.to_string_lossy().into_owned();
    let env = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("HOME", cwd.as_str()),
        ("TMPDIR", layout::TMP),
        ("PYTHONUNBUFFERED", "1"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("ADE_EVENTS_FD", "3"),
    ];
    let env = env
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let request = RunRequest {
        argv,
        cwd,
        env,
        inputs: names,
        limits: serde_json::to_value(ctx.limits).expect("limits serialize"),
    };
    Ok((request, fds))
}

/// A document's file, opened for the engine (a regular file, never a link).
fn open_input(path: &Path) -> anyhow::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    anyhow::ensure!(file.metadata()?.file_type().is_file(), "not a regular file");
    Ok(file.into())
}

/// The read ends of a run's pipes, by channel.
type Readers = Vec<(Channel, Output)>;

/// Pipes for stdout, stderr and events: write ends for the zygote, readers for us.
fn pipes() -> std::io::Result<([OwnedFd; 3], Readers)> {
    let mut writers = Vec::new();
    let mut readers = Readers::new();
    for channel in [Channel::Stdout, Channel::Stderr, Channel::Events] {
        let (reader, writer) = crate::fdpass::pipe()?;
        let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(reader)?;
        readers.push((channel, Box::new(receiver)));
        writers.push(writer);
    }
    let writers: [OwnedFd; 3] = writers.try_into().expect("three pipes");
    Ok((writers, readers))
}

/// The zygote of a build: the venv read-only, its scratch writable, no
/// network, user namespaces allowed (one per run), limits as for runs but
/// room for the processes of all its runs together.
async fn zygote_command(ctx: &Context, venv: PathBuf, scratch: PathBuf) -> anyhow::Result<Command> {
    let mut limits = ctx.limits;
    limits.processes = limits
        .processes
        .saturating_mul(u64::from(ctx.slots.total()))
        .saturating_add(64);
    let own = scratch.join(".sandbox");
    tokio::fs::create_dir_all(&own).await?;
    let mut sb = Sandbox::new(Path::new(layout::VENV).join("bin/python"), limits, &own);
    ctx.sandbox.mount_venv(&mut sb, &venv, false)?;
    ctx.sandbox.lend(&scratch).await?;
    sb.writable(&scratch, layout::SCRATCH)
        .allow_user_namespaces()
        .args(["-m", "ade_engine.zygote"])
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    Ok(ctx.sandbox.command(&sb)?)
}

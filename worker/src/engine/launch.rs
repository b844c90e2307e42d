//! Starting a run's engine: forked by its build's warm engine when the pool
//! can take it ([`crate::pool::warm`]), else spawned in a fresh sandbox.
//! Either way the engine gets the same invocation, its run's cgroup and
//! area, and nothing else; the caller supervises it the same way.

use crate::Context;
use crate::area::{self, RunArea};
use crate::cgroup::RunCgroup;
use crate::events::EventSink;
use crate::pool::warm::{self, Invocation, WarmRun};
use crate::pool::zygote::ZygoteError;
use crate::process::{self, Channel, Output, Spawned, Supervised};
use crate::sandbox::{Sandbox, layout};
use crate::venv::Ready;
use ade_common::lifecycle::Claim;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest a spawned sandbox may take to hand over its area.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// The engine's variables besides `PATH`, `LANG`, `HOME` and `TMPDIR`.
const ENGINE_ENV: [(&str, &str); 3] = [
    ("PYTHONUNBUFFERED", "1"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    ("ADE_EVENTS_FD", "3"),
];

/// One input: the document's file on the host, and its name for the engine.
pub type Input = (PathBuf, String);

/// How the engine was started.
pub enum Launch {
    /// Forked by the build's warm engine.
    Forked(WarmRun),
    /// Spawned in a sandbox of its own.
    Spawned(Spawned),
}

/// A started engine and what the worker holds of it.
pub struct Launched {
    /// The engine.
    pub launch: Launch,
    /// Its stdout, stderr and events.
    pub outputs: Vec<(Channel, Output)>,
    /// Its area.
    pub area: RunArea,
    /// Its cgroup, where the host has them.
    pub cgroup: Option<Arc<RunCgroup>>,
}

impl Launched {
    /// `forked` or `spawned`, as `run.started` reports it.
    pub fn mode(&self) -> &'static str {
        match self.launch {
            Launch::Forked(_) => "forked",
            Launch::Spawned(_) => "spawned",
        }
    }
}

impl Supervised for Launch {
    async fn wait(&mut self) -> std::io::Result<i32> {
        match self {
            Self::Forked(run) => run.wait().await,
            Self::Spawned(child) => child.wait().await,
        }
    }

    fn kill(&mut self) {
        match self {
            Self::Forked(run) => run.kill(),
            Self::Spawned(child) => child.kill(),
        }
    }
}

/// Why the engine did not start.
pub enum NotLaunched {
    /// The run was stopped meanwhile.
    Stopped,
    /// It could not start; this says why.
    Failed(String),
}

/// Starts the engine for `claim` from `ready`'s venv over `inputs`.
pub async fn launch(
    ctx: &Context,
    claim: &Claim,
    ready: &Ready,
    inputs: &[Input],
    events: &EventSink,
    stop: &CancellationToken,
) -> Result<Launched, NotLaunched> {
    let venv = ready
        .python
        .parent()
        .and_then(Path::parent)
        .expect("<venv>/bin/python");
    if ctx.engines.is_some() {
        let invocation = warm_invocation(claim, inputs);
        let build = (ready.marker.build_id, venv);
        let run = (claim.run_id, claim.attempt);
        match warm::start(ctx, run, build, &invocation, stop).await {
            Ok(forked) => {
                return Ok(Launched {
                    launch: Launch::Forked(forked.run),
                    outputs: forked.outputs,
                    area: forked.area,
                    cgroup: forked.cgroup,
                });
            }
            Err(ZygoteError::Stopped) => return Err(NotLaunched::Stopped),
            Err(e) => {
                tracing::warn!(run.id = %claim.run_id, error = %e, "spawning the engine instead");
                let said = format!("{e}; the engine is spawned for this run");
                events.console("run", "stderr", said, None).await;
            }
        }
    }
    spawn(ctx, claim, venv, inputs, stop).await
}

/// The engine's arguments for a forked run.
fn warm_invocation(claim: &Claim, inputs: &[Input]) -> Invocation {
    let mut argv = vec!["run".to_owned()];
    for (_, name) in inputs {
        argv.push("--input".into());
        argv.push(warm::input_path(name).to_string_lossy().into_owned());
    }
    argv.extend(["--output-dir".into(), area::OUTPUTS.into()]);
    argv.extend(option_args(claim));
    let mut env = vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("HOME", layout::TMP),
        ("TMPDIR", layout::TMP),
    ];
    env.extend(ENGINE_ENV);
    Invocation {
        argv,
        env: env.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        inputs: inputs.to_vec(),
    }
}

/// The arguments that come from the run's options.
fn option_args(claim: &Claim) -> Vec<String> {
    let mut args = Vec::new();
    for sheet in &claim.options.input_sheet_names {
        args.extend(["--input-sheet".to_owned(), sheet.clone()]);
    }
    if claim.options.dry_run {
        args.push("--dry-run".into());
    }
    if claim.options.validate_only {
        args.push("--validate-only".into());
    }
    args
}

/// Spawns the engine in a sandbox of its own and takes its area.
async fn spawn(
    ctx: &Context,
    claim: &Claim,
    venv: &Path,
    inputs: &[Input],
    stop: &CancellationToken,
) -> Result<Launched, NotLaunched> {
    let failed = |e: &dyn std::fmt::Display| NotLaunched::Failed(e.to_string());
    let cgroup = match &ctx.cgroups {
        Some(cgroups) => {
            let name = format!("run-{}-{}", claim.run_id.simple(), claim.attempt);
            Some(Arc::new(
                cgroups
                    .create(&name, ctx.run_bounds())
                    .map_err(|e| failed(&e))?,
            ))
        }
        None => None,
    };
    let sb = engine_sandbox(ctx, claim, venv, inputs, cgroup.clone()).map_err(|e| failed(&e))?;
    let sandboxed = ctx.sandbox.sandboxed(&sb).map_err(|e| failed(&e))?;
    let handover = sandboxed.area.expect("a run's sandbox has an area");
    let (mut child, mut outputs) =
        process::spawn(sandboxed.command, true).map_err(|e| failed(&e))?;
    let area = tokio::select! {
        biased;
        _ = stop.cancelled() => Err(None),
        area = handover.receive(HANDOVER_TIMEOUT) => area.map_err(Some),
    };
    match area {
        Ok(area) => Ok(Launched {
            launch: Launch::Spawned(child),
            outputs,
            area,
            cgroup,
        }),
        Err(why) => {
            child.kill();
            let _ = child.wait().await;
            match why {
                None => Err(NotLaunched::Stopped),
                Some(e) => {
                    let said = process::first_lines(&mut outputs).await;
                    Err(NotLaunched::Failed(format!("{e}: {said}")))
                }
            }
        }
    }
}

/// The engine's sandbox: the venv and each input read-only, an area of
/// its own, no network, events on fd 3, in the run's cgroup.
fn engine_sandbox(
    ctx: &Context,
    claim: &Claim,
    venv: &Path,
    inputs: &[Input],
    cgroup: Option<Arc<RunCgroup>>,
) -> anyhow::Result<Sandbox> {
    // With `ADE_ENGINE_SANDBOX=off` the area and /tmp are folders here.
    let scratch = ctx
        .data_dir
        .attempt(claim.run_id, claim.attempt)
        .join("unconfined");
    let mut sb = Sandbox::new(
        Path::new(layout::VENV).join("bin/python"),
        ctx.limits,
        scratch,
    );
    ctx.sandbox.mount_venv(&mut sb, venv, false)?;
    sb.args(["-m", "ade_engine", "run"]);
    for (source, name) in inputs {
        let inside = Path::new(layout::INPUTS).join(name);
        sb.read_only(source, &inside)
            .arg("--input")
            .path_arg(inside);
    }
    sb.arg("--output-dir").path_arg(area::OUTPUTS);
    sb.args(option_args(claim));
    sb.area(area::capacity(ctx.max_output_bytes))
        .cwd(area::WORK)
        .keep_fd(process::EVENTS_FD);
    for (name, value) in ENGINE_ENV {
        sb.env(name, value);
    }
    if let Some(cgroup) = cgroup {
        sb.cgroup(cgroup);
    }
    Ok(sb)
}

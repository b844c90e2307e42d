//! The per-host venv cache: `${ADE_VENVS_DIR}/<workspace>/<configuration>/<build>/.venv`.
//!
//! A venv is built in a temporary sibling folder and renamed into place only
//! after `ade_build.json` (the marker) is written, so a `.venv` without a
//! valid marker is never used: it is removed and rebuilt. Builders of one
//! build on one host serialize on an `flock` of a lock file kept outside the
//! venv folders; the kernel releases it if the builder dies, so the next one
//! starts at once. Deleting any folder under the cache is always safe.
//!
//! Everything a build needs besides the venv (the unpacked package, the
//! constraints file) lives in one scratch folder beside it, removed after
//! the build and, if a builder died, by the next one.
//!
//! Errors say whose problem they are ([`BuildError`]): a failed step is the
//! build's own (it fails the build for everyone), a stop is nobody's, and a
//! host-local problem (disk, permissions, a missing tool) is this host's.

use crate::cache;
use crate::process::{self, Channel, Guard, ProcessError};
use crate::sandbox::build::BuildSandbox;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The worker's settings for uv that builds keep (the cache, package
/// indexes, TLS roots, proxies); nothing else of the worker's environment
/// reaches a build.
pub const UV_PASSED_THROUGH: &[&str] = &[
    "UV_CACHE_DIR",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_OFFLINE",
    "UV_NATIVE_TLS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// The marker file inside a finished venv.
pub const MARKER: &str = "ade_build.json";

/// What `ade_build.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    /// The build this venv belongs to.
    pub build_id: Uuid,
    /// Its workspace.
    pub workspace_id: Uuid,
    /// Its configuration.
    pub configuration_id: Uuid,
    /// Hash over config digest, engine version and Python identity.
    pub fingerprint: String,
    /// Digest of the configuration package.
    pub config_digest: String,
    /// Engine version, with the digest of its sources.
    pub engine_version: String,
    /// Python identity the venv was made with.
    pub python_version: String,
    /// `uv pip freeze` of the venv.
    pub packages: Vec<String>,
    /// When it was built.
    pub created_at: String,
}

/// Everything needed to build one venv.
pub struct BuildSpec {
    /// Identity written to the marker.
    pub marker: Marker,
    /// The canonical package archive (tar.gz) from the database.
    pub package: Vec<u8>,
    /// Shared folder holding the build's configuration wheel, once built.
    pub wheel_dir: PathBuf,
    /// Exact versions recorded by the first build (`name==version`), to
    /// reproduce its dependencies on every host.
    pub constraints: Vec<String>,
}

/// The phases reported as `build.phase.started`.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// `uv venv`.
    CreateVenv,
    /// Installing `ade-engine`.
    InstallEngine,
    /// Installing the configuration package.
    InstallConfig,
    /// Importing both.
    VerifyImports,
    /// Recording installed packages.
    CollectMetadata,
}

impl Phase {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateVenv => "create_venv",
            Self::InstallEngine => "install_engine",
            Self::InstallConfig => "install_config",
            Self::VerifyImports => "verify_imports",
            Self::CollectMetadata => "collect_metadata",
        }
    }
}

/// What a build reports while it works.
pub enum Progress {
    /// A phase began.
    Phase(Phase),
    /// A line of output from a build step.
    Line(Channel, String),
}

/// The host-local cache and the tools that fill it.
#[derive(Debug)]
pub struct VenvCache {
    /// `ADE_VENVS_DIR`, absolute.
    pub root: PathBuf,
    /// The `uv` executable.
    pub uv: String,
    /// The interpreter venvs are made from.
    pub python: String,
    /// Source of `ade-engine`.
    pub engine_dir: PathBuf,
    /// Longest a build may take.
    pub timeout: Duration,
    /// The engine version the wheel is built for (names its cache folder).
    pub engine_version: String,
    /// The engine wheel, built once per host and engine version.
    pub engine_wheel: std::sync::Mutex<Option<PathBuf>>,
    /// Where the steps that run configuration code are confined.
    pub sandbox: std::sync::Arc<crate::sandbox::Host>,
    /// The limits of those steps.
    pub limits: crate::limits::Limits,
}

/// Why a venv could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A build step failed or timed out: the build itself is broken.
    #[error("{0}")]
    Failed(String),
    /// Stopped by its token (cancel, drain, lost lease): no verdict.
    #[error("the build was stopped before it finished")]
    Stopped,
    /// This host could not do its part; another host may well succeed.
    #[error("{0:#}")]
    Host(anyhow::Error),
}

impl BuildError {
    /// The same error, counted as this host's problem if it was a step failure.
    pub fn on_host(self) -> Self {
        match self {
            Self::Failed(why) => Self::Host(anyhow::anyhow!(why)),
            e => e,
        }
    }

    fn host(context: &str) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |e| Self::Host(anyhow::Error::new(e).context(context.to_owned()))
    }
}

/// A usable venv.
pub struct Ready {
    /// `<venv>/bin/python`.
    pub python: PathBuf,
    /// True when an existing venv was used; false when this call built it.
    pub reused: bool,
    /// The marker of the venv.
    pub marker: Marker,
    /// Keeps the venv marked in use (safe from the collector) until dropped.
    pub in_use: std::fs::File,
}

impl VenvCache {
    /// The folder of one build (holding `.venv` and temporary siblings).
    pub fn build_dir(&self, m: &Marker) -> PathBuf {
        self.root
            .join(m.workspace_id.to_string())
            .join(m.configuration_id.to_string())
            .join(m.build_id.to_string())
    }

    /// Returns the build's venv, building it first if this host lacks a valid one.
    pub async fn ensure<F, Fut>(
        &self,
        spec: BuildSpec,
        cancel: CancellationToken,
        mut progress: F,
    ) -> Result<Ready, BuildError>
    where
        F: FnMut(Progress) -> Fut,
        Fut: Future<Output = ()>,
    {
        let dir = self.build_dir(&spec.marker);
        let venv = dir.join(".venv");
        let build_id = spec.marker.build_id;
        // Held first, so the collector cannot remove the venv between our check and our use.
        let in_use = cache::hold(&self.root, build_id)
            .await
            .map_err(BuildError::host("marking the venv in use"))?;
        let in_use = match reuse(&venv, build_id, in_use).await {
            Ok(ready) => return Ok(ready),
            Err(in_use) => in_use,
        };
        let _lock = match cache::lock_build(&self.root, build_id, &cancel).await {
            Ok(lock) => lock,
            Err(_) if cancel.is_cancelled() => return Err(BuildError::Stopped),
            Err(e) => return Err(BuildError::host("locking the build")(e)),
        };
        // Another builder may have finished while we waited for the lock.
        let in_use = match reuse(&venv, build_id, in_use).await {
            Ok(ready) => return Ok(ready),
            Err(in_use) => in_use,
        };
        clear_leftovers(&dir).await.map_err(BuildError::Host)?;
        let tmp = dir.join(format!(".venv.tmp-{}", Uuid::now_v7().simple()));
        let scratch = dir.join(format!(".scratch-{}", Uuid::now_v7().simple()));
        let result = self
            .build_into(&tmp, &scratch, spec, cancel, &mut progress)
            .await;
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        let marker = match result {
            Ok(marker) => marker,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&tmp).await;
                return Err(e);
            }
        };
        tokio::fs::rename(&tmp, &venv)
            .await
            .map_err(BuildError::host("moving the venv into place"))?;
        Ok(Ready {
            python: venv.join("bin/python"),
            reused: false,
            marker,
            in_use,
        })
    }

    async fn build_into<F, Fut>(
        &self,
        tmp: &Path,
        scratch: &Path,
        mut spec: BuildSpec,
        cancel: CancellationToken,
        progress: &mut F,
    ) -> Result<Marker, BuildError>
    where
        F: FnMut(Progress) -> Fut,
        Fut: Future<Output = ()>,
    {
        let step = Step {
            deadline: Instant::now() + self.timeout,
            limit: self.timeout,
            cancel: &cancel,
        };
        let python = tmp.join("bin/python");
        // The venv and the engine are this host's own software: a failure
        // there (a missing interpreter, an unreachable index) is the host's.
        progress(Progress::Phase(Phase::CreateVenv)).await;
        step.run(
            self.uv_cmd(&["venv", "--relocatable", "--quiet", "--python", &self.python])
                .arg(tmp),
            progress,
        )
        .await
        .map_err(BuildError::on_host)?;
        progress(Progress::Phase(Phase::InstallEngine)).await;
        let engine = self.engine_wheel(&step, progress).await?;
        step.run(self.uv_cmd(&INSTALL).arg(&python).arg(engine), progress)
            .await
            .map_err(BuildError::on_host)?;
        progress(Progress::Phase(Phase::InstallConfig)).await;
        tokio::fs::create_dir_all(scratch)
            .await
            .map_err(BuildError::host("creating the build's scratch folder"))?;
        // From here on the steps run configuration code: confined.
        let confined = BuildSandbox::prepare(&self.sandbox, tmp, scratch, self.limits)
            .await
            .map_err(|e| BuildError::Host(e.into()))?;
        spec.marker.packages = self
            .confined_steps(&confined, &spec, &step, progress)
            .await?;
        confined
            .finish()
            .await
            .map_err(|e| BuildError::Host(e.into()))?;
        spec.marker.created_at = ade_common::time_fmt::format(time::OffsetDateTime::now_utc());
        let body = serde_json::to_vec_pretty(&spec.marker).expect("a marker serializes");
        write_new(&tmp.join(MARKER), body)
            .await
            .map_err(BuildError::host("writing the marker"))?;
        Ok(spec.marker)
    }

    /// Installs the configuration, checks the imports and lists the
    /// packages, all in the build's sandbox.
    async fn confined_steps<F, Fut>(
        &self,
        confined: &BuildSandbox<'_>,
        spec: &BuildSpec,
        step: &Step<'_>,
        progress: &mut F,
    ) -> Result<Vec<String>, BuildError>
    where
        F: FnMut(Progress) -> Fut,
        Fut: Future<Output = ()>,
    {
        let confine = |e: crate::sandbox::SandboxError| BuildError::Host(e.into());
        let wheel = self.config_wheel(spec, confined, step, progress).await?;
        let pins: Vec<&String> = spec
            .constraints
            .iter()
            .filter(|l| l.contains("=="))
            .collect();
        let constraints = confined.scratch_file("constraints.txt");
        if !pins.is_empty() {
            let text: String = pins.iter().map(|l| format!("{l}\n")).collect();
            write_new(&constraints, text.into_bytes())
                .await
                .map_err(BuildError::host("writing the constraints"))?;
        }
        let pinned = (!pins.is_empty()).then_some(constraints.as_path());
        step.run(
            &mut confined.install(&wheel, pinned).map_err(confine)?,
            progress,
        )
        .await?;
        progress(Progress::Phase(Phase::VerifyImports)).await;
        step.run(&mut confined.import_check().map_err(confine)?, progress)
            .await?;
        progress(Progress::Phase(Phase::CollectMetadata)).await;
        step.output(confined.freeze().map_err(confine)?)
            .await
            .map_err(|e| BuildError::Host(e.context("listing the installed packages")))
    }

    pub(crate) fn uv_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = scrubbed(Path::new(&self.uv));
        cmd.args(args);
        cmd.env("UV_PYTHON_DOWNLOADS", "never")
            .env("UV_NO_PROGRESS", "1");
        for name in UV_PASSED_THROUGH {
            if let Ok(value) = std::env::var(name) {
                cmd.env(name, value);
            }
        }
        cmd
    }
}

/// One step of a build: a guarded process sharing the build's deadline.
pub(crate) struct Step<'a> {
    deadline: Instant,
    limit: Duration,
    cancel: &'a CancellationToken,
}

impl Step<'_> {
    pub(crate) async fn run<F, Fut>(
        &self,
        cmd: &mut Command,
        progress: &mut F,
    ) -> Result<(), BuildError>
    where
        F: FnMut(Progress) -> Fut,
        Fut: Future<Output = ()>,
    {
        let program = cmd.as_std().get_program().to_string_lossy().into_owned();
        let guard = Guard {
            timeout: self.deadline.saturating_duration_since(Instant::now()),
            cancel: self.cancel.clone(),
            events_pipe: false,
        };
        let cmd = std::mem::replace(cmd, Command::new("true"));
        // The last stderr lines say why a step failed; keep them for the error.
        let mut last_errors = std::collections::VecDeque::new();
        let code = process::run(cmd, guard, |channel, line| {
            if channel == Channel::Stderr && !line.trim().is_empty() {
                if last_errors.len() == 5 {
                    last_errors.pop_front();
                }
                last_errors.push_back(line.clone());
            }
            progress(Progress::Line(channel, line))
        })
        .await;
        let name = Path::new(&program)
            .file_name()
            .map_or(program.clone(), |n| n.to_string_lossy().into_owned());
        let code = match code {
            Ok(code) => code,
            Err(ProcessError::Cancelled) => return Err(BuildError::Stopped),
            Err(ProcessError::Timeout(_)) => {
                return Err(BuildError::Failed(format!(
                    "the build timed out after {}s (while running {name})",
                    self.limit.as_secs()
                )));
            }
            Err(e) => return Err(BuildError::Host(anyhow::Error::new(e).context(name))),
        };
        let detail = Vec::from(last_errors).join("\n");
        if code != 0 {
            let sep = if detail.is_empty() { "" } else { ":\n" };
            return Err(BuildError::Failed(format!(
                "{name} exited with code {code}{sep}{detail}"
            )));
        }
        Ok(())
    }
}

/// `uv pip install` of the engine and configuration wheels. Bytecode is compiled
/// at build time: runs use `PYTHONDONTWRITEBYTECODE` on a read-only venv, so
/// without it every run would compile the engine and its rules again (about
/// twice the start-up time of a small run).
pub(crate) const INSTALL: [&str; 5] = [
    "pip",
    "install",
    "--quiet",
    "--compile-bytecode",
    "--python",
];

impl Step<'_> {
    /// Runs `cmd` within the build's deadline and returns its stdout lines.
    pub(crate) async fn output(&self, cmd: Command) -> anyhow::Result<Vec<String>> {
        let guard = Guard {
            timeout: self.deadline.saturating_duration_since(Instant::now()),
            cancel: self.cancel.clone(),
            events_pipe: false,
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let code = process::run(cmd, guard, |channel, line| {
            match channel {
                Channel::Stdout => stdout.push(line),
                _ => stderr.push(line),
            }
            std::future::ready(())
        })
        .await?;
        let tail = stderr
            .iter()
            .rev()
            .take(5)
            .rev()
            .cloned()
            .collect::<Vec<_>>();
        anyhow::ensure!(code == 0, "exited with code {code}: {}", tail.join("\n"));
        Ok(stdout)
    }
}

/// Writes a new file at `path`, replacing whatever is there without
/// following it: the folder was the sandbox's to write, and a link it left
/// must not send the worker's write elsewhere.
async fn write_new(path: &Path, body: Vec<u8>) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.is_dir() => tokio::fs::remove_dir_all(path).await?,
        Ok(_) => tokio::fs::remove_file(path).await?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // create_new is O_CREAT | O_EXCL: it never follows a link.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await?;
    file.write_all(&body).await?;
    file.flush().await
}

/// A command with a minimal environment: no database or broker credentials.
pub fn scrubbed(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("LANG", "C.UTF-8");
    if let Ok(home) = std::env::var("HOME") {
        cmd.env("HOME", home);
    }
    cmd
}

/// The existing venv if its marker is valid; otherwise the in-use hold back.
async fn reuse(venv: &Path, build_id: Uuid, in_use: std::fs::File) -> Result<Ready, std::fs::File> {
    match valid_marker(venv, build_id).await {
        Some(marker) => Ok(Ready {
            python: venv.join("bin/python"),
            reused: true,
            marker,
            in_use,
        }),
        None => Err(in_use),
    }
}

async fn valid_marker(venv: &Path, build_id: Uuid) -> Option<Marker> {
    let body = tokio::fs::read(venv.join(MARKER)).await.ok()?;
    let marker: Marker = serde_json::from_slice(&body).ok()?;
    let python = tokio::fs::metadata(venv.join("bin/python")).await.ok()?;
    (marker.build_id == build_id && python.is_file()).then_some(marker)
}

/// Removes what a dead builder left: temporary venvs, scratch folders (and
/// the stray files of older layouts), and a `.venv` without a marker. Files
/// are removed as files and folders as folders, links never followed.
async fn clear_leftovers(dir: &Path) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .context("creating the build folder")?;
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".venv.tmp-")
            || name.starts_with(".scratch-")
            || name.starts_with(".src-")
            || name == ".venv")
        {
            continue;
        }
        let path = entry.path();
        let removed = if tokio::fs::symlink_metadata(&path).await?.is_dir() {
            tokio::fs::remove_dir_all(&path).await
        } else {
            tokio::fs::remove_file(&path).await
        };
        removed.with_context(|| format!("removing {name}"))?;
    }
    Ok(())
}

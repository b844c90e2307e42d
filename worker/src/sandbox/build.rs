//! The sandbox of a venv build's steps that run configuration code.
//!
//! Building the configuration wheel runs its build backend, installing it
//! may build its dependencies from source, and the import check and the
//! package listing run the venv's interpreter, which by then executes the
//! tenant's code (`.pth` files, `ade_config` itself). Those steps run here:
//! uv reaching package indexes and nothing else (through [`super::egress`]),
//! the interpreter offline; each seeing the interpreter, the venv being
//! built (writable only to uv) and the build's scratch folder, and nothing
//! of other builds, documents or the worker's environment. Creating the
//! venv and installing the engine run only this host's own software and
//! stay outside.
//!
//! uv's cache is private to the build, in its scratch folder: a shared
//! writable cache would let one workspace's build plant packages that
//! another workspace's build then installs. The price is that every build
//! downloads its dependencies again.

use super::egress::{self, Egress};
use super::{Host, Mode, Sandbox, SandboxError, layout};
use crate::limits::Limits;
use crate::venv::UV_PASSED_THROUGH;
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// The confined steps of one build: its venv and scratch folder, lent to
/// the sandbox user until [`BuildSandbox::finish`].
pub struct BuildSandbox<'a> {
    host: &'a Host,
    venv: PathBuf,
    scratch: PathBuf,
    limits: Limits,
    /// The tunnel to package indexes (with bwrap; `off` uses the host's network).
    egress: Option<Egress>,
}

/// Folders inside the scratch folder.
const SRC: &str = "src";
const WHEEL: &str = "wheel";
const CACHE: &str = "uv-cache";
const TMP: &str = "tmp";

impl<'a> BuildSandbox<'a> {
    /// Prepares `scratch` and lends it and `venv` to the sandbox user.
    pub async fn prepare(
        host: &'a Host,
        venv: &Path,
        scratch: &Path,
        limits: Limits,
    ) -> Result<Self, SandboxError> {
        for dir in [CACHE, TMP, WHEEL] {
            let path = scratch.join(dir);
            tokio::fs::create_dir_all(&path)
                .await
                .map_err(super::io_error(format!("creating {}", path.display())))?;
        }
        host.lend(venv).await?;
        host.lend(scratch).await?;
        let egress = match host.mode {
            Mode::Bwrap => Some(
                Egress::start(host.build_hosts.clone(), host.drop_to)
                    .await
                    .map_err(super::io_error("opening the build's network tunnel"))?,
            ),
            Mode::Off => None,
        };
        Ok(Self {
            host,
            venv: venv.to_owned(),
            scratch: scratch.to_owned(),
            limits,
            egress,
        })
    }

    /// Where the configuration package's source goes (host path).
    pub fn src(&self) -> PathBuf {
        self.scratch.join(SRC)
    }

    /// A file in the scratch folder (host path).
    pub fn scratch_file(&self, name: &str) -> PathBuf {
        self.scratch.join(name)
    }

    /// Where `uv build` leaves the configuration wheel (host path).
    pub fn wheel_dir(&self) -> PathBuf {
        self.scratch.join(WHEEL)
    }

    /// `uv build --wheel` of the package unpacked in [`Self::src`], with network.
    pub async fn build_wheel(&self) -> Result<Command, SandboxError> {
        // Build backends write next to the sources (`build/`, `*.egg-info`).
        self.host.lend(&self.src()).await?;
        let mut sb = self.uv(true)?;
        // Not `--quiet`: uv then passes on what the build backend prints,
        // which is the tenant's clue when its build fails.
        sb.args(["build", "--wheel", "--python"])
            .path_arg(python())
            .arg("--out-dir")
            .path_arg(inside(WHEEL))
            .path_arg(inside(SRC));
        self.host.command(&sb)
    }

    /// `uv pip install` of `wheel` (a host path) into the venv, with
    /// network, pinned by `constraints` (a file in the scratch folder).
    pub fn install(
        &self,
        wheel: &Path,
        constraints: Option<&Path>,
    ) -> Result<Command, SandboxError> {
        let name = wheel
            .file_name()
            .ok_or_else(|| SandboxError::Layout(format!("{} is not a file", wheel.display())))?;
        let wheel_inside = Path::new(layout::WHEELS).join(name);
        let mut sb = self.uv(true)?;
        sb.read_only(wheel, &wheel_inside)
            .args(crate::venv::INSTALL)
            .path_arg(python())
            .path_arg(wheel_inside);
        if let Some(file) = constraints {
            let rel = file.strip_prefix(&self.scratch).map_err(|_| {
                SandboxError::Layout(format!("{} is not in the scratch folder", file.display()))
            })?;
            sb.arg("--constraint")
                .path_arg(Path::new(layout::SCRATCH).join(rel));
        }
        self.host.command(&sb)
    }

    /// The interpreter importing the engine and the configuration, offline.
    pub fn import_check(&self) -> Result<Command, SandboxError> {
        let mut sb = self.interpreter()?;
        sb.args(["-c", "import ade_engine, ade_config"]);
        self.host.command(&sb)
    }

    /// `uv pip freeze` of the venv, offline (uv runs the venv's interpreter).
    pub fn freeze(&self) -> Result<Command, SandboxError> {
        let mut sb = self.uv(false)?;
        self.host.mount_venv(&mut sb, &self.venv, false)?;
        sb.args(["pip", "freeze", "--python"]).path_arg(python());
        self.host.command(&sb)
    }

    /// Takes the venv back from the sandbox user (the scratch folder is removed).
    pub async fn finish(self) -> Result<(), SandboxError> {
        self.host.reclaim(&self.venv).await
    }

    fn base(&self, program: impl Into<PathBuf>) -> Sandbox {
        let mut sb = Sandbox::new(program, self.limits, self.scratch.join(TMP));
        sb.writable(&self.scratch, layout::SCRATCH)
            .env_path("TMPDIR", inside(TMP))
            .env("PYTHONDONTWRITEBYTECODE", "1");
        sb
    }

    /// uv, with its private cache and the host's index and TLS settings
    /// (and the files those name); with `network`, reaching package indexes
    /// through the tunnel's relay.
    fn uv(&self, network: bool) -> Result<Sandbox, SandboxError> {
        let tool = Path::new(layout::TOOLS).join("uv");
        let mut sb = match (&self.egress, network) {
            (Some(egress), true) => {
                let mut sb = self.base(self.host.prefix.join("bin/python3"));
                sb.read_only(egress.socket(), egress::SOCKET_INSIDE)
                    .args(["-I", "-S", "-c", egress::FORWARDER, egress::SOCKET_INSIDE])
                    .path_arg(&tool);
                sb
            }
            _ => self.base(&tool),
        };
        sb.read_only(self.host.uv(), &tool).tls_roots();
        if network {
            self.host.mount_venv(&mut sb, &self.venv, true)?;
        }
        sb.env_path("UV_CACHE_DIR", inside(CACHE))
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("UV_NO_PROGRESS", "1");
        // The cache is the build's own; the proxy is the relay's (or, with
        // `off`, the host's own).
        let relayed = self.egress.is_some();
        let skip = |name: &str| {
            name == "UV_CACHE_DIR"
                || (relayed && ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"].contains(&name))
        };
        for name in UV_PASSED_THROUGH.iter().filter(|n| !skip(n)) {
            let Ok(value) = std::env::var(name) else {
                continue;
            };
            sb.env(name, &value);
            let path = Path::new(&value);
            let named_file = ["SSL_CERT_FILE", "SSL_CERT_DIR", "UV_FIND_LINKS"].contains(name);
            if named_file && path.is_absolute() && path.exists() && !self.host.provides(path) {
                sb.read_only(path, path);
            }
        }
        Ok(sb)
    }

    fn interpreter(&self) -> Result<Sandbox, SandboxError> {
        let mut sb = self.base(python());
        self.host.mount_venv(&mut sb, &self.venv, false)?;
        Ok(sb)
    }
}

fn python() -> PathBuf {
    Path::new(layout::VENV).join("bin/python")
}

fn inside(dir: &str) -> PathBuf {
    Path::new(layout::SCRATCH).join(dir)
}

//! The sandbox configuration code runs in: the one place that knows bubblewrap.
//!
//! A [`Sandbox`] describes what one process may see and do: read-only and
//! writable binds (host source → path inside), network or not, working
//! folder, environment and [`Limits`]. [`Host::command`] turns it into a
//! `tokio::process::Command` that runs the program under `bwrap`
//! (`ADE_ENGINE_SANDBOX=bwrap`), or directly with the same limits (`off`).
//!
//! # The boundary
//!
//! Inside, the program sees a fresh root that is read-only: `/usr` and the
//! `/lib*` links, a few files of `/etc` (the loader cache, the time zone,
//! and for uv in builds: the TLS roots), the interpreter's prefix
//! at its own path, a fresh `/proc` of its own PID namespace, a minimal
//! `/dev`, a private size-limited tmpfs on `/tmp`, and exactly the binds
//! its caller named (a run: the build's venv and its inputs read-only, its
//! attempt's output folder writable). Nothing else of the host exists
//! there: not `ADE_DATA_DIR`, `ADE_VENVS_DIR`, `/etc/shadow`, `/root`,
//! `/home`, nor other processes. It runs in new user, PID, IPC, UTS,
//! cgroup and network namespaces (loopback only: a build's uv reaches
//! package indexes through [`egress`]; [`Sandbox::network`] would share
//! the host's network, and nothing asks for it), with no capabilities,
//! `no_new_privs` (bwrap sets it), no nested user namespaces, in a session
//! of its own (`--new-session`: no terminal injection), killed with its
//! parent (`--die-with-parent`). When its PID 1 exits, the kernel kills
//! everything left in the namespace, double-forked or not. Descriptors the
//! caller leaves open for the child (the engine's events pipe on fd 3) pass
//! through bwrap unchanged.
//!
//! # Whose uid
//!
//! A user namespace made by an unprivileged user maps the sandbox to that
//! user outside. When the worker runs as root, that would be root, so the
//! child drops to [`SANDBOX_ID`] (`nobody`) before it executes `bwrap`: the
//! sandbox is then nobody both inside and outside, and its writes land as
//! nobody's files. What it must write (the output folder, a venv being
//! built) is lent to it ([`Host::lend`]) and taken back after
//! ([`Host::reclaim`]). A bind source nobody cannot reach (here the
//! interpreter lives under `/root`, mode 0700) is staged first: the child,
//! still root, enters a private mount namespace, covers the unreachable
//! ancestor with a tmpfs and binds the source back at its own path, so
//! bwrap finds it without the host's permissions changing (see `stage`).
//! bwrap 0.8's `--ro-bind-fd` does not help here: it resolves the
//! descriptor back to a path and walks it. Every sandbox shares the one
//! uid; that is safe between sandboxes (none sees another's processes or
//! files), but a host service that also runs as `nobody` would own their
//! user namespaces: a host that has one should get a dedicated uid here.
//!
//! Limits are rlimits (see [`crate::limits`]), inherited from the child
//! that executes bwrap, except the process count, which the sandbox's
//! first program, `ade-sandbox-init`, sets inside (the kernel counts it
//! per user namespace). That program also hands a run's area (its
//! size-capped tmpfs, [`crate::area`]) to the worker and closes every
//! descriptor the sandbox was not meant to have. A run's processes
//! together are bounded by its cgroup ([`crate::cgroup`]), which the child
//! joins before it executes bwrap.

pub mod build;
mod bwrap;
pub mod egress;
mod host;
mod off;
mod stage;

pub use host::Host;

use crate::limits::Limits;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// The uid and gid a sandbox runs as when the worker is root (`nobody`).
pub const SANDBOX_ID: u32 = 65534;
/// The descriptor a run's sandbox hands its area over on (see [`Sandboxed`]).
pub const HANDOVER_FD: i32 = 5;
/// Size of the private `/tmp` of a sandbox.
pub const TMP_BYTES: u64 = 256 * 1024 * 1024;

/// Where things are inside a sandbox.
pub mod layout {
    /// The build's venv.
    pub const VENV: &str = "/run/ade/venv";
    /// A run's input files.
    pub const INPUTS: &str = "/run/ade/inputs";
    /// A run's output folder.
    pub const OUTPUTS: &str = "/run/ade/outputs";
    /// A build's scratch folder.
    pub const SCRATCH: &str = "/run/ade/scratch";
    /// Wheels a build installs.
    pub const WHEELS: &str = "/run/ade/wheels";
    /// Tools (uv).
    pub const TOOLS: &str = "/run/ade/bin";
    /// `ade-sandbox-init`, the first program of every sandbox.
    pub const INIT: &str = "/run/ade/init";
    /// The private tmpfs, also `HOME` and the default working folder.
    pub const TMP: &str = "/tmp";
}

/// `ADE_ENGINE_SANDBOX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// bubblewrap (the default).
    Bwrap,
    /// No sandbox: for hosts without user namespaces. Limits still apply.
    Off,
}

impl Mode {
    /// The setting's spelling, as `/api/v1/workers` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bwrap => "bwrap",
            Self::Off => "off",
        }
    }
}

/// Why a sandbox could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A program the sandbox needs is missing.
    #[error("{0} was not found on PATH (Debian: apt-get install {1})")]
    Missing(&'static str, &'static str),
    /// The worker's own sandbox init is not beside it.
    #[error(
        "ade-sandbox-init was not found beside {0} nor on PATH (it is built with the worker: cargo build --bins)"
    )]
    InitMissing(String),
    /// The trial sandbox at start failed.
    #[error("bubblewrap cannot run a sandbox on this host: {0}")]
    Unusable(String),
    /// A venv's interpreter is not the one the worker vouches for.
    #[error(
        "the venv at {venv} was made with {found}, not with this worker's interpreter ({expected})"
    )]
    ForeignInterpreter {
        /// The venv.
        venv: PathBuf,
        /// Its `pyvenv.cfg` home's prefix.
        found: String,
        /// The worker's interpreter prefix.
        expected: PathBuf,
    },
    /// Two binds overlap, or a path inside is not absolute.
    #[error("invalid sandbox layout: {0}")]
    Layout(String),
    /// Reading the host failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let context = context.into();
    move |source| SandboxError::Io { context, source }
}

/// A sandbox ready to spawn: the command, and where its area will come from.
#[derive(Debug)]
pub struct Sandboxed {
    /// The command (spawn it with [`crate::process`]).
    pub command: tokio::process::Command,
    /// The run's area, when the sandbox has one.
    pub area: Option<crate::area::Handover>,
}

/// One bind of a host path into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    source: PathBuf,
    dest: PathBuf,
    writable: bool,
}

/// A value that is either text or a path inside the sandbox (which the
/// `off` mode maps to where the host has it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Text(OsString),
    Path(PathBuf),
}

/// What one sandboxed process may see and do.
#[derive(Debug, Clone)]
pub struct Sandbox {
    program: PathBuf,
    args: Vec<Value>,
    env: Vec<(String, Value)>,
    mounts: Vec<Mount>,
    cwd: PathBuf,
    network: bool,
    tls_roots: bool,
    user_namespaces: bool,
    limits: Limits,
    scratch: PathBuf,
    /// A run's area: a tmpfs of this many bytes at [`crate::area::INSIDE`].
    area: Option<u64>,
    /// Empty folders to make in the sandbox's root (mount points inside).
    dirs: Vec<PathBuf>,
    /// Descriptors the program is meant to have besides 0, 1 and 2.
    keep_fds: Vec<i32>,
    /// The cgroup the sandbox's processes run in.
    cgroup: Option<std::sync::Arc<crate::cgroup::RunCgroup>>,
}

impl Sandbox {
    /// `program` (a path inside) under `limits`. `scratch` is a host folder
    /// of the caller's that the `off` mode uses for its private tmp and for
    /// links standing in for binds.
    pub fn new(program: impl Into<PathBuf>, limits: Limits, scratch: impl Into<PathBuf>) -> Self {
        let tmp = || Value::Path(layout::TMP.into());
        Self {
            program: program.into(),
            args: Vec::new(),
            env: vec![
                (
                    "PATH".into(),
                    Value::Text("/usr/local/bin:/usr/bin:/bin".into()),
                ),
                ("LANG".into(), Value::Text("C.UTF-8".into())),
                ("HOME".into(), tmp()),
                ("TMPDIR".into(), tmp()),
            ],
            mounts: Vec::new(),
            cwd: layout::TMP.into(),
            network: false,
            tls_roots: false,
            user_namespaces: false,
            limits,
            scratch: scratch.into(),
            area: None,
            dirs: Vec::new(),
            keep_fds: Vec::new(),
            cgroup: None,
        }
    }

    /// Gives the program a run's area of `capacity` bytes (see
    /// [`crate::area`]), handed to the worker before the program starts.
    pub fn area(&mut self, capacity: u64) -> &mut Self {
        self.area = Some(capacity);
        self
    }

    /// Makes an empty folder at `inside` (a mount point for what the program mounts).
    pub fn mount_point(&mut self, inside: impl Into<PathBuf>) -> &mut Self {
        self.dirs.push(inside.into());
        self
    }

    /// Lets the program have descriptor `fd` (which the caller sets up).
    pub fn keep_fd(&mut self, fd: i32) -> &mut Self {
        self.keep_fds.push(fd);
        self
    }

    /// Runs the sandbox's processes in `cgroup`.
    pub fn cgroup(&mut self, cgroup: std::sync::Arc<crate::cgroup::RunCgroup>) -> &mut Self {
        self.cgroup = Some(cgroup);
        self
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl Into<OsString>) -> &mut Self {
        self.args.push(Value::Text(arg.into()));
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(&mut self, args: I) -> &mut Self {
        for arg in args {
            self.arg(arg);
        }
        self
    }

    /// Adds an argument that is a path inside the sandbox.
    pub fn path_arg(&mut self, inside: impl Into<PathBuf>) -> &mut Self {
        self.args.push(Value::Path(inside.into()));
        self
    }

    /// Sets an environment variable (replacing an earlier one).
    pub fn env(&mut self, name: &str, value: impl Into<OsString>) -> &mut Self {
        self.set_env(name, Value::Text(value.into()))
    }

    /// Sets an environment variable to a path inside the sandbox.
    pub fn env_path(&mut self, name: &str, inside: impl Into<PathBuf>) -> &mut Self {
        self.set_env(name, Value::Path(inside.into()))
    }

    fn set_env(&mut self, name: &str, value: Value) -> &mut Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value));
        self
    }

    /// Binds a host file or folder read-only at `dest`.
    pub fn read_only(&mut self, source: impl Into<PathBuf>, dest: impl Into<PathBuf>) -> &mut Self {
        self.mount(source.into(), dest.into(), false)
    }

    /// Binds a host folder writable at `dest` (lend it first: [`Host::lend`]).
    pub fn writable(&mut self, source: impl Into<PathBuf>, dest: impl Into<PathBuf>) -> &mut Self {
        self.mount(source.into(), dest.into(), true)
    }

    fn mount(&mut self, source: PathBuf, dest: PathBuf, writable: bool) -> &mut Self {
        self.mounts.push(Mount {
            source,
            dest,
            writable,
        });
        self
    }

    /// Shares the host's network (builds: package indexes). Off by default.
    pub fn network(&mut self, on: bool) -> &mut Self {
        self.network = on;
        self
    }

    /// Shows the host's TLS roots (`/etc/ssl/certs`, …), for uv talking to
    /// package indexes through [`egress`]. Implied by [`Sandbox::network`].
    pub fn tls_roots(&mut self) -> &mut Self {
        self.tls_roots = true;
        self
    }

    /// Allows user namespaces inside (the warm pool's zygote makes one per
    /// run). Off by default: fewer kernel interfaces for configuration code.
    pub fn allow_user_namespaces(&mut self) -> &mut Self {
        self.user_namespaces = true;
        self
    }

    /// The working folder, a path inside (default `/tmp`).
    pub fn cwd(&mut self, inside: impl Into<PathBuf>) -> &mut Self {
        self.cwd = inside.into();
        self
    }

    /// Refuses relative paths, binds inside binds, and binds onto the
    /// places the sandbox itself provides.
    fn check(&self) -> Result<(), SandboxError> {
        let reserved = ["/", "/usr", "/etc", "/proc", "/dev", "/tmp", "/lib", "/bin"];
        for m in &self.mounts {
            let bad = |why: &str| {
                Err(SandboxError::Layout(format!(
                    "{} → {}: {why}",
                    m.source.display(),
                    m.dest.display()
                )))
            };
            if !m.source.is_absolute() || !is_clean_absolute(&m.dest) {
                return bad("paths must be absolute and plain");
            }
            let provided =
                m.dest.starts_with(crate::area::INSIDE) || m.dest == Path::new(layout::INIT);
            if provided || reserved.iter().any(|r| m.dest == Path::new(r)) {
                return bad("the sandbox provides this path itself");
            }
            let nested = self
                .mounts
                .iter()
                .any(|o| o.dest != m.dest && m.dest.starts_with(&o.dest));
            if nested || self.mounts.iter().filter(|o| o.dest == m.dest).count() > 1 {
                return bad("binds may not overlap");
            }
        }
        Ok(())
    }
}

fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// The uid and gid a sandbox runs as outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Value {
    /// The value as the sandboxed program sees it.
    fn inside(&self) -> &std::ffi::OsStr {
        match self {
            Self::Text(t) => t,
            Self::Path(p) => p.as_os_str(),
        }
    }
}

#[cfg(test)]
mod tests;

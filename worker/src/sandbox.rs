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
//! package indexes through [`egress`], never the host's network), with no capabilities,
//! `no_new_privs` (bwrap sets it), no nested user namespaces, in a session
//! of its own (`--new-session`: no terminal injection), killed with its
//! parent (`--die-with-parent`). When its PID 1 exits, the kernel kills
//! everything left in the namespace, double-forked or not.
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
//! descriptor back to a path and walks it.
//!
//! Limits are rlimits (see [`crate::limits`]), inherited from the child
//! that executes bwrap, except the process count, which `prlimit` sets
//! inside. rlimits bound each process, not the run as a whole; a bound on a
//! run's total memory needs a cgroup, which this does not set up.

pub mod build;
mod bwrap;
pub mod egress;
mod stage;

use crate::limits::Limits;
use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Component, Path, PathBuf};
use tokio::process::Command;

/// The uid and gid a sandbox runs as when the worker is root (`nobody`).
pub const SANDBOX_ID: u32 = 65534;
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
        }
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
            if reserved.iter().any(|r| m.dest == Path::new(r)) {
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

/// What this host gives every sandbox: the tools, the system paths, the
/// interpreter, and the user to run as.
#[derive(Debug)]
pub struct Host {
    mode: Mode,
    bwrap: PathBuf,
    prlimit: PathBuf,
    /// `Some` when the worker is root: sandboxes drop to these ids.
    drop_to: Option<Ids>,
    system: Vec<bwrap::SystemPath>,
    dns_files: Vec<PathBuf>,
    tls_files: Vec<PathBuf>,
    prefix: PathBuf,
    uv: PathBuf,
    build_hosts: std::sync::Arc<egress::Allowed>,
}

impl Host {
    /// Finds what sandboxes need: `python` is `ADE_PYTHON` (its prefix is
    /// the interpreter every venv must use), `uv` is `ADE_UV`. With `bwrap`,
    /// runs a trial sandbox and fails, saying why, if it does not work.
    pub async fn detect(mode: Mode, python: &str, uv: &str) -> Result<Self, SandboxError> {
        let prefix = interpreter_prefix(python).await?;
        let uv = real_uv(uv).await?;
        let (bwrap, prlimit) = match mode {
            Mode::Bwrap => (
                which("bwrap").ok_or(SandboxError::Missing("bwrap", "bubblewrap"))?,
                which("prlimit").ok_or(SandboxError::Missing("prlimit", "util-linux"))?,
            ),
            Mode::Off => (PathBuf::new(), PathBuf::new()),
        };
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let root = unsafe { libc::geteuid() } == 0;
        let host = Self {
            mode,
            bwrap,
            prlimit,
            drop_to: root.then_some(Ids {
                uid: SANDBOX_ID,
                gid: SANDBOX_ID,
            }),
            system: bwrap::system_paths(),
            dns_files: bwrap::dns_files(),
            tls_files: bwrap::tls_files(),
            prefix,
            uv,
            build_hosts: std::sync::Arc::new(egress::Allowed::from_env(&[])),
        };
        if mode == Mode::Bwrap {
            host.probe().await?;
        } else {
            tracing::warn!(
                "ADE_ENGINE_SANDBOX=off: configuration code runs WITHOUT a sandbox, as this \
                 worker's user, seeing the whole host (documents of every workspace, venvs, \
                 the network, the database URL's host). Only rlimits apply. Use it only on a \
                 host where user namespaces are unavailable and every configuration is trusted."
            );
        }
        Ok(host)
    }

    /// Lets builds reach these hosts (`host` or `host:port`) besides PyPI
    /// and the indexes uv is configured with (`ADE_BUILD_NETWORK_HOSTS`).
    pub fn allow_build_hosts(mut self, extra: &[String]) -> Self {
        self.build_hosts = std::sync::Arc::new(egress::Allowed::from_env(extra));
        self
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The real uv executable (not a shim), which build sandboxes run.
    pub fn uv(&self) -> &Path {
        &self.uv
    }

    /// True when every sandbox with TLS roots sees `path` already.
    pub fn provides(&self, path: &Path) -> bool {
        self.system.iter().any(|s| s.covers(path))
            || self.tls_files.iter().any(|f| path.starts_with(f))
    }

    /// The interpreter prefix every venv must be made from.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Binds the venv at `venv` (its root folder) at [`layout::VENV`], and
    /// the interpreter prefix it was made from at its own path; refuses a
    /// venv whose `pyvenv.cfg` names another interpreter.
    pub fn mount_venv(
        &self,
        sandbox: &mut Sandbox,
        venv: &Path,
        writable: bool,
    ) -> Result<(), SandboxError> {
        let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg"))
            .map_err(io_error(format!("reading {}/pyvenv.cfg", venv.display())))?;
        let home = cfg
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == "home")
            .map(|(_, v)| PathBuf::from(v.trim()));
        // `home` is the interpreter's bin folder. The venv is the tenant's to
        // write while it builds, so its word only counts if it names the
        // interpreter this worker vouches for: never bind what it says.
        let found = home
            .as_deref()
            .and_then(|h| std::fs::canonicalize(h).ok())
            .and_then(|h| h.parent().map(Path::to_owned));
        if found.as_deref() != Some(self.prefix.as_path()) {
            return Err(SandboxError::ForeignInterpreter {
                venv: venv.to_owned(),
                found: home.map_or("no interpreter".into(), |h| h.display().to_string()),
                expected: self.prefix.clone(),
            });
        }
        sandbox.mount(venv.to_owned(), layout::VENV.into(), writable);
        self.mount_prefix(sandbox);
        Ok(())
    }

    /// Binds the interpreter prefix at its own path, unless every sandbox
    /// sees it already (a system interpreter under `/usr`).
    fn mount_prefix(&self, sandbox: &mut Sandbox) {
        if !self.system.iter().any(|s| s.covers(&self.prefix)) {
            sandbox.read_only(self.prefix.clone(), self.prefix.clone());
        }
    }

    /// Gives `path` (and everything in it) to the sandbox user, so a
    /// sandbox can write there. Nothing to do unless the worker is root.
    pub async fn lend(&self, path: &Path) -> Result<(), SandboxError> {
        match self.drop_to.filter(|_| self.mode == Mode::Bwrap) {
            Some(ids) => chown_tree(path, ids).await,
            None => Ok(()),
        }
    }

    /// Takes `path` back from the sandbox user (after the sandbox is gone).
    pub async fn reclaim(&self, path: &Path) -> Result<(), SandboxError> {
        match self.drop_to.filter(|_| self.mode == Mode::Bwrap) {
            // SAFETY: getegid(2) cannot fail and touches no memory.
            Some(_) => {
                chown_tree(
                    path,
                    Ids {
                        uid: 0,
                        gid: unsafe { libc::getegid() },
                    },
                )
                .await
            }
            None => Ok(()),
        }
    }

    /// The command that runs `sandbox`. Spawn it with [`crate::process`],
    /// which puts it in a process group of its own and kills that group on
    /// timeout or cancel: with bwrap, the group's leader is bwrap, and the
    /// kernel takes the sandbox's PID namespace down with it.
    pub fn command(&self, sandbox: &Sandbox) -> Result<Command, SandboxError> {
        sandbox.check()?;
        match self.mode {
            Mode::Bwrap => self.bwrap_command(sandbox),
            Mode::Off => unconfined(sandbox),
        }
    }

    fn bwrap_command(&self, sandbox: &Sandbox) -> Result<Command, SandboxError> {
        let mut mounts = sandbox.mounts.clone();
        for m in &mut mounts {
            m.source = std::fs::canonicalize(&m.source)
                .map_err(io_error(format!("resolving {}", m.source.display())))?;
        }
        let plan = match self.drop_to {
            Some(ids) => stage::Plan::for_sources(mounts.iter().map(|m| m.source.as_path()), ids)
                .map_err(io_error("staging the sandbox's binds"))?,
            None => stage::Plan::default(),
        };
        let args = bwrap::args(self, sandbox, &mounts);
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(args).current_dir("/").env_clear();
        for (name, value) in &sandbox.env {
            cmd.env(name, value.inside());
        }
        let (limits, drop_to, mut plan) = (sandbox.limits, self.drop_to, plan);
        // SAFETY: between fork and exec only async-signal-safe calls are
        // made: mount(2) and friends on prepared strings, setrlimit(2),
        // setgroups(2), setresgid(2), setresuid(2).
        unsafe {
            cmd.as_std_mut().pre_exec(move || {
                plan.enter()?;
                limits.apply()?;
                match drop_to {
                    Some(ids) => stage::drop_privileges(ids),
                    None => Ok(()),
                }
            });
        }
        Ok(cmd)
    }

    /// Runs a trivial sandbox (the interpreter printing its uid) and fails,
    /// with its output, if that does not work.
    async fn probe(&self) -> Result<(), SandboxError> {
        let python = self.prefix.join("bin/python3");
        let scratch = std::env::temp_dir();
        let limits = Limits::run(1 << 31, std::time::Duration::from_secs(30), 1 << 20);
        let mut sandbox = Sandbox::new(&python, limits, scratch);
        self.mount_prefix(&mut sandbox);
        sandbox.args(["-I", "-S", "-c", "import os; print(os.getuid())"]);
        let mut cmd = self.command(&sandbox)?;
        cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
        let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
            .await
            .map_err(|_| SandboxError::Unusable("the trial sandbox did not finish in 30s".into()))?
            .map_err(io_error(format!("starting {}", self.bwrap.display())))?;
        let said = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || said.trim() != SANDBOX_ID.to_string() {
            let err = String::from_utf8_lossy(&out.stderr);
            let why = format!("{} {}", out.status, err.trim());
            return Err(SandboxError::Unusable(why.chars().take(500).collect()));
        }
        tracing::info!(bwrap = %self.bwrap.display(), as_nobody = self.drop_to.is_some(), "engine sandbox ready");
        Ok(())
    }
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

/// `off`: the program runs directly, with the same limits. Binds become
/// links in `<scratch>/view`, `/tmp` a folder there, and paths inside map
/// to the view, so callers describe one layout for both modes.
fn unconfined(sandbox: &Sandbox) -> Result<Command, SandboxError> {
    let view = sandbox.scratch.join("view");
    let _ = std::fs::remove_dir_all(&view);
    let made = |p: &Path| io_error(format!("preparing {}", p.display()));
    let tmp = view.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(made(&tmp))?;
    for m in &sandbox.mounts {
        let link = view.join(m.dest.strip_prefix("/").expect("checked absolute"));
        let parent = link.parent().expect("inside the view");
        std::fs::create_dir_all(parent).map_err(made(parent))?;
        std::os::unix::fs::symlink(&m.source, &link).map_err(made(&link))?;
    }
    let map = |v: &Value| -> OsString {
        match v {
            Value::Text(t) => t.clone(),
            Value::Path(p) => view_path(sandbox, &view, p).into_os_string(),
        }
    };
    let mut cmd = Command::new(view_path(sandbox, &view, &sandbox.program));
    cmd.args(sandbox.args.iter().map(map))
        .current_dir(view_path(sandbox, &view, &sandbox.cwd))
        .env_clear();
    for (name, value) in &sandbox.env {
        cmd.env(name, map(value));
    }
    let limits = sandbox.limits;
    // SAFETY: `apply` only calls setrlimit(2).
    unsafe {
        cmd.as_std_mut().pre_exec(move || limits.apply());
    }
    Ok(cmd)
}

/// Where `off` has a path inside: under a bind or `/tmp`, in the view.
fn view_path(sandbox: &Sandbox, view: &Path, inside: &Path) -> PathBuf {
    let viewed = sandbox.mounts.iter().any(|m| inside.starts_with(&m.dest))
        || inside.starts_with(layout::TMP);
    if viewed {
        view.join(inside.strip_prefix("/").unwrap_or(inside))
    } else {
        inside.to_owned()
    }
}

/// `sys.base_prefix` of the interpreter venvs are made from, resolved.
async fn interpreter_prefix(python: &str) -> Result<PathBuf, SandboxError> {
    let out = Command::new(python)
        .args(["-I", "-c", "import sys; print(sys.base_prefix)"])
        .output()
        .await
        .map_err(io_error(format!("running {python}")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(SandboxError::Unusable(format!("{python} failed: {why}")));
    }
    let prefix = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    std::fs::canonicalize(&prefix).map_err(io_error(format!("resolving {prefix}")))
}

/// The uv executable itself. `ADE_UV` may name a wrapper (a pyenv shim is a
/// shell script that needs `/root/.pyenv`): uv tells its own path to the
/// programs it runs, in `UV`.
async fn real_uv(uv: &str) -> Result<PathBuf, SandboxError> {
    let found = which(uv).ok_or(SandboxError::Missing("uv", "(pip install uv)"))?;
    let found = std::fs::canonicalize(&found).map_err(io_error(format!("resolving {uv}")))?;
    let mut head = [0u8; 4];
    let elf = std::fs::File::open(&found)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && head == *b"\x7fELF";
    if elf {
        return Ok(found);
    }
    let out = Command::new(&found)
        .args([
            "run",
            "--no-project",
            "--no-config",
            "--quiet",
            "--",
            "printenv",
            "UV",
        ])
        .current_dir("/")
        .output()
        .await
        .map_err(io_error(format!("asking {uv} for its path")))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !path.is_absolute() {
        return Err(SandboxError::Unusable(format!(
            "{uv} is a wrapper and did not say where uv is; set ADE_UV to the uv executable"
        )));
    }
    std::fs::canonicalize(&path).map_err(io_error(format!("resolving {}", path.display())))
}

/// `program` on `PATH` (or itself, if it is a path).
fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Changes the owner of `path` and everything under it, never following links.
async fn chown_tree(path: &Path, ids: Ids) -> Result<(), SandboxError> {
    let root = path.to_owned();
    let walk = move || -> std::io::Result<()> {
        let mut stack = vec![root];
        while let Some(path) = stack.pop() {
            std::os::unix::fs::lchown(&path, Some(ids.uid), Some(ids.gid))?;
            if std::fs::symlink_metadata(&path)?.is_dir() {
                for entry in std::fs::read_dir(&path)? {
                    stack.push(entry?.path());
                }
            }
        }
        Ok(())
    };
    tokio::task::spawn_blocking(walk)
        .await
        .expect("chown does not panic")
        .map_err(io_error(format!(
            "changing the owner of {}",
            path.display()
        )))
}

#[cfg(test)]
mod tests;

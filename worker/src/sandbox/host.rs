//! What this host gives every sandbox, and the commands sandboxes become.

use super::{
    Ids, Limits, Mode, SANDBOX_ID, Sandbox, SandboxError, Sandboxed, bwrap, egress, io_error,
    layout, stage,
};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// What this host gives every sandbox: the tools, the system paths, the
/// interpreter, and the user to run as.
#[derive(Debug)]
pub struct Host {
    pub(super) mode: Mode,
    pub(super) bwrap: PathBuf,
    /// `ade-sandbox-init` on the host.
    pub(super) init: PathBuf,
    /// `Some` when the worker is root: sandboxes drop to these ids.
    pub(super) drop_to: Option<Ids>,
    pub(super) system: Vec<bwrap::SystemPath>,
    pub(super) dns_files: Vec<PathBuf>,
    pub(super) tls_files: Vec<PathBuf>,
    pub(super) prefix: PathBuf,
    pub(super) uv: PathBuf,
    pub(super) build_hosts: std::sync::Arc<egress::Allowed>,
}

impl Host {
    /// Finds what sandboxes need: `python` is `ADE_PYTHON` (its prefix is
    /// the interpreter every venv must use), `uv` is `ADE_UV`. With `bwrap`,
    /// runs a trial sandbox and fails, saying why, if it does not work.
    pub async fn detect(mode: Mode, python: &str, uv: &str) -> Result<Self, SandboxError> {
        let prefix = interpreter_prefix(python).await?;
        let uv = real_uv(uv).await?;
        let (bwrap, init) = match mode {
            Mode::Bwrap => (
                which("bwrap").ok_or(SandboxError::Missing("bwrap", "bubblewrap"))?,
                init_program()?,
            ),
            Mode::Off => (PathBuf::new(), PathBuf::new()),
        };
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let root = unsafe { libc::geteuid() } == 0;
        let host = Self {
            mode,
            bwrap,
            init,
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
            egress::sweep();
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
        Ok(self.sandboxed(sandbox)?.command)
    }

    /// The command that runs `sandbox`, and the handle of its area.
    pub fn sandboxed(&self, sandbox: &Sandbox) -> Result<Sandboxed, SandboxError> {
        sandbox.check()?;
        match self.mode {
            Mode::Bwrap => self.bwrap_command(sandbox),
            Mode::Off => super::off::unconfined(sandbox),
        }
    }

    fn bwrap_command(&self, sandbox: &Sandbox) -> Result<Sandboxed, SandboxError> {
        let mut mounts = sandbox.mounts.clone();
        for m in &mut mounts {
            m.source = std::fs::canonicalize(&m.source)
                .map_err(io_error(format!("resolving {}", m.source.display())))?;
        }
        let plan = match self.drop_to {
            Some(ids) => {
                let sources = mounts.iter().map(|m| m.source.as_path());
                stage::Plan::for_sources(sources.chain([self.init.as_path()]), ids)
                    .map_err(io_error("staging the sandbox's binds"))?
            }
            None => stage::Plan::default(),
        };
        let args = bwrap::args(self, sandbox, &mounts);
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(args).current_dir("/").env_clear();
        for (name, value) in &sandbox.env {
            cmd.env(name, value.inside());
        }
        let area = match sandbox.area {
            Some(capacity) => Some(
                crate::area::Handover::socket(capacity)
                    .map_err(io_error("making the area's handover socket"))?,
            ),
            None => None,
        };
        let handover = area.as_ref().and_then(|a| a.child_end());
        let (limits, drop_to, mut plan) = (sandbox.limits, self.drop_to, plan);
        let cgroup = sandbox.cgroup.clone();
        // SAFETY: between fork and exec only async-signal-safe calls are
        // made: mount(2) and friends on prepared strings, open/write/close
        // of prepared cgroup paths, setrlimit(2), dup2(2), fcntl(2),
        // setgroups(2), setresgid(2), setresuid(2).
        unsafe {
            cmd.as_std_mut().pre_exec(move || {
                plan.enter()?;
                if let Some(cgroup) = &cgroup {
                    cgroup.join_in_child()?;
                }
                limits.apply()?;
                if let Some(fd) = handover {
                    crate::process::place_fd(fd, super::HANDOVER_FD)?;
                }
                match drop_to {
                    Some(ids) => stage::drop_privileges(ids),
                    None => Ok(()),
                }
            });
        }
        Ok(Sandboxed { command: cmd, area })
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

/// `ade-sandbox-init`: beside the running executable (or one folder up,
/// for test binaries in `target/*/deps`), else on `PATH`.
fn init_program() -> Result<PathBuf, SandboxError> {
    const NAME: &str = "ade-sandbox-init";
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(NAME))
        .find(|p| p.is_file())
        .or_else(|| which(NAME))
        .ok_or_else(|| SandboxError::InitMissing(exe.display().to_string()))
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

//! The `bwrap` command line of a sandbox.

use super::{HANDOVER_FD, Host, Mount, SANDBOX_ID, Sandbox, TMP_BYTES, Value, layout};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Top-level system folders a program needs to start (or the links that
/// stand for them on merged-`/usr` systems).
const SYSTEM_ROOTS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// Files of `/etc` every interpreter needs: the loader cache, the time zone,
/// and the alternatives some `/usr/bin` names link through.
const SYSTEM_ETC: &[&str] = &["/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives"];
/// Files of `/etc` that name resolution needs, for sandboxes with network.
const DNS_ETC: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
];
/// The TLS roots of the host, for sandboxes that talk to package indexes.
const TLS_ETC: &[&str] = &[
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust",
];

/// A system path every sandbox gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SystemPath {
    /// Bound read-only at its own path.
    Bind(PathBuf),
    /// A link (`/lib` → `usr/lib`), recreated as such.
    Link { path: PathBuf, target: PathBuf },
}

impl SystemPath {
    /// True when `path` is inside this bind.
    pub(super) fn covers(&self, path: &Path) -> bool {
        matches!(self, Self::Bind(p) if path.starts_with(p))
    }
}

/// What of [`SYSTEM_ROOTS`] and [`SYSTEM_ETC`] this host has.
pub(super) fn system_paths() -> Vec<SystemPath> {
    let mut paths = Vec::new();
    for path in SYSTEM_ROOTS.iter().chain(SYSTEM_ETC).map(PathBuf::from) {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(&path) {
                    paths.push(SystemPath::Link { path, target });
                }
            }
            Ok(_) => paths.push(SystemPath::Bind(path)),
            Err(_) => {}
        }
    }
    paths
}

/// What of [`DNS_ETC`] this host has.
pub(super) fn dns_files() -> Vec<PathBuf> {
    existing(DNS_ETC)
}

/// What of [`TLS_ETC`] this host has.
pub(super) fn tls_files() -> Vec<PathBuf> {
    existing(TLS_ETC)
}

fn existing(paths: &[&str]) -> Vec<PathBuf> {
    paths
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

/// The arguments of `bwrap` for `sandbox`, whose binds have resolved sources.
pub(super) fn args(host: &Host, sandbox: &Sandbox, mounts: &[Mount]) -> Vec<OsString> {
    let mut a = Args::default();
    a.flags(&[
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
    ]);
    a.flags(&["--unshare-cgroup"]);
    if !sandbox.network {
        a.flags(&["--unshare-net"]);
    }
    if !sandbox.user_namespaces {
        a.flags(&["--disable-userns"]);
    }
    let id = SANDBOX_ID.to_string();
    a.flags(&["--uid", &id, "--gid", &id, "--hostname", "ade"]);
    a.flags(&["--die-with-parent", "--new-session", "--cap-drop", "ALL"]);
    a.flags(&["--proc", "/proc", "--dev", "/dev"]);
    a.flags(&["--size", &TMP_BYTES.to_string(), "--tmpfs", layout::TMP]);
    for path in &host.system {
        match path {
            SystemPath::Bind(p) => a.pair("--ro-bind", p, p),
            SystemPath::Link { path, target } => a.pair("--symlink", target, path),
        }
    }
    let dns = host.dns_files.iter().filter(|_| sandbox.network);
    let tls = host
        .tls_files
        .iter()
        .filter(|_| sandbox.network || sandbox.tls_roots);
    for file in dns.chain(tls) {
        a.pair("--ro-bind", file, file);
    }
    for m in mounts {
        let flag = if m.writable { "--bind" } else { "--ro-bind" };
        a.pair(flag, &m.source, &m.dest);
    }
    if let Some(capacity) = sandbox.area {
        let inside = crate::area::INSIDE;
        a.flags(&["--size", &capacity.to_string(), "--tmpfs", inside]);
        a.flags(&["--dir", crate::area::WORK, "--dir", crate::area::OUTPUTS]);
    }
    for dir in &sandbox.dirs {
        a.flags(&["--dir"]);
        a.path(dir);
    }
    a.pair("--ro-bind", &host.init, Path::new(layout::INIT));
    // The root and /dev are tmpfs mounts the sandbox could fill; nothing
    // else is writable but the private /tmp, the area and the writable binds.
    a.flags(&["--remount-ro", "/dev", "--remount-ro", "/"]);
    a.flags(&["--chdir"]);
    a.path(&sandbox.cwd);
    a.flags(&["--", layout::INIT]);
    // The process count is per user namespace: the init sets it inside.
    a.flags(&["--nproc", &sandbox.limits.processes.to_string()]);
    for fd in &sandbox.keep_fds {
        a.flags(&["--keep", &fd.to_string()]);
    }
    if sandbox.area.is_some() {
        a.flags(&["--handover", &HANDOVER_FD.to_string(), crate::area::INSIDE]);
    }
    a.flags(&["--"]);
    a.path(&sandbox.program);
    for arg in &sandbox.args {
        match arg {
            Value::Text(t) => a.0.push(t.clone()),
            Value::Path(p) => a.path(p),
        }
    }
    a.0
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flags(&mut self, flags: &[&str]) {
        self.0.extend(flags.iter().map(OsString::from));
    }

    fn path(&mut self, path: &Path) {
        self.0.push(path.as_os_str().to_owned());
    }

    fn pair(&mut self, flag: &str, a: &Path, b: &Path) {
        self.flags(&[flag]);
        self.path(a);
        self.path(b);
    }
}

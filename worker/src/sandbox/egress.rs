//! The only network a build's sandbox has: an HTTPS tunnel to package indexes.
//!
//! A build runs the tenant's code (a build backend, a dependency's
//! `setup.py`) while uv downloads packages. Sharing the host's network
//! would let that code reach whatever the host reaches: PostgreSQL and
//! RabbitMQ on loopback, the cloud's metadata service, internal hosts. So
//! the sandbox keeps a network namespace of its own (loopback only), and
//! uv's `HTTPS_PROXY` points at a small relay inside it (`FORWARDER`, run
//! by the interpreter) that passes each connection to a Unix socket bound
//! into the sandbox. Behind that socket the worker accepts `CONNECT
//! host:port` for the allowed hosts only: PyPI, the hosts of the indexes
//! uv is configured with, and `ADE_BUILD_NETWORK_HOSTS`. TLS runs end to
//! end through the tunnel. Plain-HTTP requests are refused. If the worker
//! itself goes out through a proxy (`HTTPS_PROXY`), allowed tunnels are
//! asked of that proxy.

use super::Ids;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixListener, UnixStream};

/// Where the tunnel's socket appears inside the sandbox.
pub(super) const SOCKET_INSIDE: &str = "/run/ade/egress.sock";
/// Hosts every build may reach: the default index and where it serves files.
const PYPI: &[&str] = &["pypi.org", "files.pythonhosted.org"];
/// Variables naming uv's package indexes.
const INDEX_VARIABLES: &[&str] = &[
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
];
/// Longest request head accepted from the sandbox.
const MAX_HEAD: usize = 8 * 1024;
/// Longest wait for a request head, or for the far end to accept.
const PATIENCE: Duration = Duration::from_secs(30);

/// The relay inside the sandbox: listens on loopback, points uv's proxy
/// variables at itself, runs the command and passes every connection to
/// the tunnel's socket. Arguments: the socket, then the command.
pub(super) const FORWARDER: &str = r#"import os, socket, subprocess, sys, threading
path, argv = sys.argv[1], sys.argv[2:]
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(128)
proxy = "http://127.0.0.1:%d" % listener.getsockname()[1]
env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "all_proxy")}
for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
    env[name] = proxy
def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve():
    while True:
        client, _ = listener.accept()
        tunnel = socket.socket(socket.AF_UNIX)
        try:
            tunnel.connect(path)
        except OSError:
            client.close()
            continue
        for a, b in ((client, tunnel), (tunnel, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
code = subprocess.run(argv, env=env).returncode
sys.exit(128 - code if code < 0 else code)
"#;

/// The `host:port` pairs builds may reach, and the proxy to reach them through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    hosts: Vec<(String, u16)>,
    upstream: Option<(String, u16)>,
}

impl Allowed {
    /// PyPI, the indexes the worker's environment configures for uv, and `extra`
    /// (`host` or `host:port`, port 443 by default).
    pub fn from_env(extra: &[String]) -> Self {
        let mut allowed = Self::default();
        for host in PYPI {
            allowed.add(host, 443);
        }
        for name in INDEX_VARIABLES {
            if let Ok(value) = std::env::var(name) {
                for url in value.split([' ', ',', '\n']).filter(|u| !u.is_empty()) {
                    // `UV_INDEX` entries may be `name=url`.
                    let url = url.split_once('=').map_or(url, |(_, u)| u);
                    if let Some((host, port)) = url_host(url) {
                        allowed.add(&host, port);
                    }
                }
            }
        }
        for entry in extra {
            if let Some((host, port)) = split_host_port(entry.trim(), 443) {
                allowed.add(&host, port);
            }
        }
        let proxy = std::env::var("HTTPS_PROXY").or_else(|_| std::env::var("https_proxy"));
        allowed.upstream = proxy
            .ok()
            .filter(|p| p.starts_with("http://"))
            .and_then(|p| url_host(&p));
        allowed
    }

    fn add(&mut self, host: &str, port: u16) {
        let pair = (host.to_ascii_lowercase(), port);
        if !self.hosts.contains(&pair) {
            self.hosts.push(pair);
        }
    }

    /// True when `host:port` may be reached.
    pub fn permits(&self, host: &str, port: u16) -> bool {
        self.hosts
            .iter()
            .any(|(h, p)| *p == port && h.eq_ignore_ascii_case(host))
    }

    fn shown(&self) -> String {
        let pairs: Vec<String> = self.hosts.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        pairs.join(", ")
    }
}

/// `https://user@host:port/path` → (`host`, port).
fn url_host(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    split_host_port(authority, default)
}

/// `host`, `host:port` or `[v6]:port`.
fn split_host_port(text: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => default,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_owned(), port.parse().ok()?)),
        Some(_) => None,
        None if !text.is_empty() => Some((text.to_owned(), default)),
        None => None,
    }
}

/// A running tunnel; it stops, and its socket goes, when dropped.
pub(super) struct Egress {
    socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Egress {
    /// Listens on a new socket (owned by `owner`, so the sandbox user may
    /// connect) in a folder only the worker may enter.
    pub(super) async fn start(allowed: Arc<Allowed>, owner: Option<Ids>) -> io::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let top = sockets_root();
        tokio::fs::create_dir_all(&top).await?;
        tokio::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o700)).await?;
        let dir = top.join(std::process::id().to_string());
        tokio::fs::create_dir_all(&dir).await?;
        let socket = dir.join(format!("{}.sock", uuid::Uuid::now_v7().simple()));
        let listener = UnixListener::bind(&socket)?;
        if let Some(ids) = owner {
            std::os::unix::fs::lchown(&socket, Some(ids.uid), Some(ids.gid))?;
        }
        let task = tokio::spawn(serve(listener, allowed));
        Ok(Self { socket, task })
    }

    /// The socket, to bind into the sandbox at [`SOCKET_INSIDE`].
    pub(super) fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Where tunnels' sockets are: short paths (a socket's is at most 108
/// bytes), so not under the build's folder; one folder per worker process.
fn sockets_root() -> PathBuf {
    std::env::temp_dir().join("ade-egress")
}

/// Removes the socket folders of worker processes that are gone (a killed
/// worker cannot remove its own). Call at start.
pub(super) fn sweep() {
    let Ok(entries) = std::fs::read_dir(sockets_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

async fn serve(listener: UnixListener, allowed: Arc<Allowed>) {
    let mut tunnels = tokio::task::JoinSet::new();
    // Tunnels end with the listener: aborting this task drops the set.
    while let Ok((stream, _)) = listener.accept().await {
        tunnels.spawn(tunnel(stream, allowed.clone()));
        while tunnels.try_join_next().is_some() {}
    }
}

/// Answers one `CONNECT` and relays the connection.
async fn tunnel(mut inside: UnixStream, allowed: Arc<Allowed>) {
    let head = match tokio::time::timeout(PATIENCE, read_head(&mut inside)).await {
        Ok(Ok(head)) => head,
        _ => return,
    };
    let target = match check(&head, &allowed) {
        Ok(target) => target,
        Err(why) => {
            tracing::info!(request = %head.lines().next().unwrap_or(""), "build network: refused ({why})");
            let body = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}\n",
                why.len() + 1
            );
            let _ = inside.write_all(body.as_bytes()).await;
            return;
        }
    };
    // Through the worker's own proxy, which then answers the CONNECT itself.
    let hop = allowed.upstream.as_ref().unwrap_or(&target);
    let outside = tokio::time::timeout(PATIENCE, TcpStream::connect((hop.0.as_str(), hop.1))).await;
    let mut outside = match outside {
        Ok(Ok(stream)) => stream,
        _ => {
            let _ = inside
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n")
                .await;
            return;
        }
    };
    let opened = match allowed.upstream {
        Some(_) => outside.write_all(head.as_bytes()).await,
        None => {
            inside
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
        }
    };
    if opened.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
    }
}

/// The target of an allowed `CONNECT`, or why the request is refused.
fn check(head: &str, allowed: &Allowed) -> Result<(String, u16), String> {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if method != "CONNECT" {
        return Err("only HTTPS (CONNECT) to package indexes is allowed in builds".into());
    }
    let (host, port) = split_host_port(target, 443).ok_or("a malformed CONNECT target")?;
    if !allowed.permits(&host, port) {
        let shown: String = target.chars().take(100).collect();
        return Err(format!(
            "{shown} is not a package index this worker allows ({}; see ADE_BUILD_NETWORK_HOSTS)",
            allowed.shown()
        ));
    }
    Ok((host, port))
}

/// Reads up to the blank line that ends a request head.
async fn read_head(stream: &mut UnixStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD || stream.read(&mut byte).await? == 0 {
            return Err(io::ErrorKind::InvalidData.into());
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_and_extra_hosts_are_allowed_and_nothing_else() {
        let allowed = Allowed::from_env(&["mirror.example:8443".into(), "wheels.example".into()]);
        assert!(allowed.permits("pypi.org", 443));
        assert!(allowed.permits("FILES.pythonhosted.org", 443));
        assert!(allowed.permits("mirror.example", 8443));
        assert!(allowed.permits("wheels.example", 443));
        assert!(!allowed.permits("pypi.org", 80));
        assert!(!allowed.permits("127.0.0.1", 5432));
        assert!(!allowed.permits("evil.example", 443));
    }

    #[test]
    fn index_urls_name_their_hosts() {
        assert_eq!(
            url_host("https://pypi.example/simple"),
            Some(("pypi.example".into(), 443))
        );
        assert_eq!(
            url_host("https://u:p@idx.example:8443/s/"),
            Some(("idx.example".into(), 8443))
        );
        assert_eq!(
            url_host("http://[::1]:3141/root/pypi"),
            Some(("::1".into(), 3141))
        );
        assert_eq!(url_host("/opt/wheels"), None);
    }

    #[test]
    fn only_allowed_connects_pass() {
        let allowed = Allowed::from_env(&[]);
        let ok = check(
            "CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n",
            &allowed,
        );
        assert_eq!(ok, Ok(("pypi.org".into(), 443)));
        for head in [
            "CONNECT 127.0.0.1:5432 HTTP/1.1\r\n\r\n",
            "CONNECT pypi.org:22 HTTP/1.1\r\n\r\n",
            "GET http://pypi.org/simple/ HTTP/1.1\r\n\r\n",
            "CONNECT [::1]:443 HTTP/1.1\r\n\r\n",
        ] {
            assert!(check(head, &allowed).is_err(), "{head}");
        }
    }
}

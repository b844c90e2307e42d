//! A TCP proxy between the browser and the API, for the page tests: it
//! records what passes (to check the requests the pages make) and can cut
//! every open connection at once, as a flaky network or a restarted load
//! balancer would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The bytes of one proxied connection, both ways.
#[derive(Default)]
struct Traffic {
    from_client: Vec<u8>,
    from_server: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    /// Cancelled by `cut`; new connections get a fresh one.
    current: Mutex<CancellationToken>,
    connections: Mutex<Vec<Arc<Mutex<Traffic>>>>,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    /// `http://<its address>`.
    pub base: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

/// One HTTP request as the proxy saw it.
#[derive(Debug)]
pub struct Request {
    /// `GET /path?query HTTP/1.1`.
    pub line: String,
    /// Header names lower-cased, with their values.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The request target (path and query).
    pub fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }
}

impl Proxy {
    /// Proxies a new local port to `upstream` (an `http://host:port` base URL).
    pub async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("the API base is http://<ip>:<port>");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, upstream, shared.clone(), stop.clone()));
        Self { base, shared, stop }
    }

    /// Closes every open connection; returns how many there were.
    pub fn cut(&self) -> usize {
        let mut current = self.shared.current.lock().unwrap();
        current.cancel();
        *current = CancellationToken::new();
        self.shared
            .connections
            .lock()
            .unwrap()
            .iter()
            .filter(|c| Arc::strong_count(c) > 1)
            .count()
    }

    /// True when `needle` was ever sent to the browser.
    pub fn delivered(&self, needle: &str) -> bool {
        self.shared.connections.lock().unwrap().iter().any(|c| {
            let traffic = c.lock().unwrap();
            String::from_utf8_lossy(&traffic.from_server).contains(needle)
        })
    }

    /// Every request the browser sent (the pages send only bodiless GETs).
    pub fn requests(&self) -> Vec<Request> {
        let mut requests = Vec::new();
        for connection in self.shared.connections.lock().unwrap().iter() {
            let traffic = connection.lock().unwrap();
            let text = String::from_utf8_lossy(&traffic.from_client).into_owned();
            for head in text.split("\r\n\r\n").filter(|h| !h.trim().is_empty()) {
                let mut lines = head.lines();
                let line = lines.next().unwrap_or("").to_owned();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                requests.push(Request { line, headers });
            }
        }
        requests
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.shared.current.lock().unwrap().cancel();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
        };
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        shared.connections.lock().unwrap().push(traffic.clone());
        let cut = shared.current.lock().unwrap().clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            // Dropping the sockets on a cut closes both sides mid-response.
            tokio::select! {
                _ = cut.cancelled() => {}
                _ = relay(client, server, &traffic) => {}
            }
        });
    }
}

/// Copies both ways until both sides are done, recording the bytes.
async fn relay(client: TcpStream, server: TcpStream, traffic: &Mutex<Traffic>) {
    let (client_in, client_out) = client.into_split();
    let (server_in, server_out) = server.into_split();
    let up = copy(client_in, server_out, traffic, |t| &mut t.from_client);
    let down = copy(server_in, client_out, traffic, |t| &mut t.from_server);
    tokio::join!(up, down);
}

async fn copy(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    traffic: &Mutex<Traffic>,
    record: fn(&mut Traffic) -> &mut Vec<u8>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        record(&mut traffic.lock().unwrap()).extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

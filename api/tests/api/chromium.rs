//! Headless Chromium driven over the DevTools protocol (CDP), for the page tests.
//!
//! The browser starts with `--remote-debugging-port=0` and prints its
//! WebSocket URL on stderr. One WebSocket carries every command; each tab is
//! a flattened session on it (`Target.attachToTarget` with `flatten`), so a
//! command names its session and a reader task routes replies by id. The
//! reader also keeps what a page reports (exceptions, console and log
//! entries), so a failing test can say what went wrong in the browser.
//!
//! The browser runs in its own process group: `close` (and, after a panic,
//! `Drop`) kills the whole group, renderers and zygotes included, and the
//! profile folder is removed.

use crate::helpers::{DEADLINE, processes_mentioning};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Flags that keep Chromium quiet and offline on a closed network.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
];

type Replies = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A running headless Chromium.
pub struct Browser {
    child: tokio::process::Child,
    /// The profile folder (`--user-data-dir`), fresh per browser.
    pub profile: PathBuf,
    commands: mpsc::UnboundedSender<String>,
    replies: Replies,
    reports: Arc<Mutex<Vec<Report>>>,
    next_id: AtomicU64,
}

/// Something a page reported: an exception, a console message or a log entry.
#[derive(Debug, Clone)]
pub struct Report {
    /// The tab's session.
    session: String,
    /// `exception`, `console.<type>` or `log.<source>.<level>`.
    pub kind: String,
    /// The text.
    pub text: String,
}

/// The Chromium executable: `ADE_TEST_CHROMIUM`, or Debian's `/usr/bin/chromium`.
fn executable() -> PathBuf {
    let path = std::env::var_os("ADE_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        path.exists(),
        "Chromium is missing ({}): run scripts/setup, which installs it for the page tests \
         (or point ADE_TEST_CHROMIUM at a Chromium binary)",
        path.display()
    );
    path
}

impl Browser {
    /// Starts Chromium with a fresh profile and connects to it.
    pub async fn launch() -> Self {
        let profile = std::env::temp_dir().join(format!("ade-chromium-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = tokio::process::Command::new(executable())
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("Chromium starts");
        let ws_url = devtools_url(child.stderr.take().unwrap()).await;
        let (socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("the DevTools WebSocket connects");
        let (commands, replies, reports) = serve_socket(socket);
        Self {
            child,
            profile,
            commands,
            replies,
            reports,
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends a command (to a tab's session, or to the browser) and waits for its result.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params)
            .await
            .unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    /// As [`Self::call`], with Chromium's refusal as an error (e.g. a page navigating away).
    async fn try_call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        let (tx, rx) = oneshot::channel();
        self.replies.lock().unwrap().insert(id, tx);
        self.commands
            .send(message.to_string())
            .expect("the DevTools connection is open");
        match tokio::time::timeout(DEADLINE, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => panic!("{method}: the DevTools connection closed"),
            Err(_) => panic!("{method}: no reply from Chromium"),
        }
    }

    /// Opens a new tab (with its own, empty sessionStorage).
    pub async fn page(&self) -> Page<'_> {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            self.call(Some(&session), domain, json!({})).await;
        }
        Page {
            browser: self,
            session,
        }
    }

    /// Lets downloads go to `dir`.
    pub async fn allow_downloads(&self, dir: &Path) {
        self.call(
            None,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": dir.to_str().unwrap()}),
        )
        .await;
    }

    /// Closes the browser, checks that none of its processes is left, and removes its profile.
    pub async fn close(mut self) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .commands
            .send(json!({"id": id, "method": "Browser.close"}).to_string());
        // The browser is not reaped yet, so its group id cannot be reused meanwhile.
        let needle = self.profile.to_string_lossy().into_owned();
        let start = Instant::now();
        while !processes_mentioning(&needle).is_empty() {
            if start.elapsed() > DEADLINE {
                self.kill_group();
                panic!("Chromium processes were still running after Browser.close");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child.wait().await.unwrap();
        std::fs::remove_dir_all(&self.profile).unwrap();
    }

    fn kill_group(&self) {
        if let Some(pid) = self.child.id() {
            // The browser leads its own group: this reaches its helpers too.
            unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
        }
    }

    fn reports_of(&self, session: &str) -> Vec<Report> {
        let reports = self.reports.lock().unwrap();
        reports
            .iter()
            .filter(|r| r.session == session)
            .cloned()
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a panic `close` never ran: leave no browser behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
            let _ = std::fs::remove_dir_all(&self.profile);
        }
    }
}

/// Reads Chromium's stderr until it names its DevTools URL, then keeps
/// draining it (a full pipe would stall the browser).
async fn devtools_url(stderr: tokio::process::ChildStderr) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                return Some(url.trim().to_owned());
            }
            seen.push(line);
        }
        None
    })
    .await;
    let url = match found {
        Ok(Some(url)) => url,
        _ => panic!(
            "Chromium did not print its DevTools URL; its stderr:\n{}",
            seen.join("\n")
        ),
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    url
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs the socket: a writer fed by a channel, and a reader that routes
/// replies to their callers and keeps the pages' reports.
fn serve_socket(
    socket: Socket,
) -> (
    mpsc::UnboundedSender<String>,
    Replies,
    Arc<Mutex<Vec<Report>>>,
) {
    let (mut sink, mut stream) = socket.split();
    let (commands, mut outgoing) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(text) = outgoing.recv().await {
            if sink.send(Message::text(text)).await.is_err() {
                return;
            }
        }
    });
    let replies: Replies = Arc::default();
    let reports: Arc<Mutex<Vec<Report>>> = Arc::default();
    let (routes, keeps) = (replies.clone(), reports.clone());
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if let Some(id) = value["id"].as_u64() {
                let reply = match value.get("error") {
                    Some(error) => Err(error.to_string()),
                    None => Ok(value["result"].clone()),
                };
                if let Some(tx) = routes.lock().unwrap().remove(&id) {
                    let _ = tx.send(reply);
                }
            } else if let Some(report) = report_of(&value) {
                keeps.lock().unwrap().push(report);
            }
        }
    });
    (commands, replies, reports)
}

/// The report in a CDP event, if it is one a test may care about.
fn report_of(event: &Value) -> Option<Report> {
    let params = &event["params"];
    let (kind, text) = match event["method"].as_str()? {
        "Runtime.exceptionThrown" => {
            let details = &params["exceptionDetails"];
            let text = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("?");
            ("exception".to_owned(), text.to_owned())
        }
        "Runtime.consoleAPICalled" => {
            let args: Vec<String> = params["args"]
                .as_array()?
                .iter()
                .map(|a| {
                    a["value"]
                        .as_str()
                        .map_or_else(|| a.to_string(), str::to_owned)
                })
                .collect();
            (
                format!("console.{}", params["type"].as_str()?),
                args.join(" "),
            )
        }
        "Log.entryAdded" => {
            let entry = &params["entry"];
            (
                format!(
                    "log.{}.{}",
                    entry["source"].as_str()?,
                    entry["level"].as_str()?
                ),
                entry["text"].as_str()?.to_owned(),
            )
        }
        _ => return None,
    };
    Some(Report {
        session: event["sessionId"].as_str()?.to_owned(),
        kind,
        text,
    })
}

/// One tab.
pub struct Page<'b> {
    browser: &'b Browser,
    session: String,
}

impl Page<'_> {
    /// Loads a URL (the page's scripts then run on their own; wait for what they show).
    pub async fn navigate(&self, url: &str) {
        let result = self
            .browser
            .call(Some(&self.session), "Page.navigate", json!({"url": url}))
            .await;
        assert!(
            result.get("errorText").is_none(),
            "navigating to {url}: {result}"
        );
    }

    /// Evaluates a JavaScript expression (awaiting a promise) and returns its value as JSON.
    pub async fn eval(&self, expression: &str) -> Value {
        self.try_eval(expression)
            .await
            .unwrap_or_else(|e| panic!("evaluating {expression}: {e}"))
    }

    async fn try_eval(&self, expression: &str) -> Result<Value, String> {
        let result = self
            .browser
            .try_call(
                Some(&self.session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        match result.get("exceptionDetails") {
            Some(details) => Err(details["exception"]["description"]
                .as_str()
                .map_or_else(|| details.to_string(), str::to_owned)),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Evaluates `expression` until it is truthy (an exception or a refusal
    /// counts as not yet: the page may be navigating or loading); panics with `what` and the page's
    /// reports when it is not by the deadline.
    pub async fn wait_for(&self, what: &str, expression: &str) -> Value {
        let start = Instant::now();
        loop {
            let value = self.try_eval(expression).await;
            if let Ok(value) = &value
                && !matches!(value, Value::Null | Value::Bool(false))
                && *value != json!(0)
                && *value != json!("")
            {
                return value.clone();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the page never showed {what}; last value {value:?}; the page reported:\n{}",
                self.describe_reports()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything the page reported, one per line.
    pub fn describe_reports(&self) -> String {
        self.browser
            .reports_of(&self.session)
            .iter()
            .map(|r| format!("  [{}] {}", r.kind, r.text))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asserts that the page threw no exception and broke no Content-Security-Policy rule.
    pub fn assert_no_script_errors(&self) {
        let bad: Vec<Report> = self
            .browser
            .reports_of(&self.session)
            .into_iter()
            .filter(|r| {
                r.kind == "exception"
                    || r.text.contains("Content Security Policy")
                    || r.kind == "console.error"
            })
            .collect();
        assert!(
            bad.is_empty(),
            "the page reported errors:\n{}",
            self.describe_reports()
        );
    }
}

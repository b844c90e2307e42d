//! The `ade` command-line client, run as a real process (the built
//! `target/*/ade`) against a real API with real workers.

use crate::configurations::{config_package, template_dir};
use crate::fixtures::{run_code_package, silent_sleeper_package};
use crate::helpers::{DEADLINE, Options, TestApp, assert_gapless, make_key, repo_root};
use crate::proxy::Proxy;
use crate::streams::chatty_setup;
use ade_api::keys::Scope;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// The built `ade` binary (`scripts/test` builds every binary first).
fn ade_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("ade");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// Where `ade` talks to, and with which key.
struct Target {
    base: String,
    key: Option<String>,
}

impl Target {
    /// The test's API with its admin key.
    fn admin(app: &TestApp) -> Self {
        Self::at(&app.base, Some(&app.key))
    }

    /// An API at `base` with `key`.
    fn at(base: &str, key: Option<&str>) -> Self {
        Self {
            base: base.to_owned(),
            key: key.map(str::to_owned),
        }
    }
}

/// `ade <args>` against `target`, with no terminal.
fn ade(target: &Target, args: &[&str]) -> Command {
    let mut cmd = Command::new(ade_bin());
    cmd.args(args).env("ADE_API_URL", &target.base);
    match &target.key {
        Some(key) => cmd.env("ADE_API_KEY", key),
        None => cmd.env_remove("ADE_API_KEY"),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// What a finished `ade` printed, and how it exited.
#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Asserts exit code 0 and parses stdout as one JSON document.
    fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// Parses stdout as NDJSON.
    fn ndjson(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Runs `ade` to its end.
async fn run_ade(target: &Target, args: &[&str]) -> Output {
    let child = ade(target, args).spawn().unwrap();
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("ade {args:?} did not end"))
        .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A running `ade` whose stdout is read line by line as it prints.
struct Live {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Live {
    fn spawn(target: &Target, args: &[&str]) -> Self {
        let mut child = ade(target, args).spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stdout until a line satisfies `wanted`; returns it.
    async fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push(line.clone());
                if wanted(&line) {
                    return line;
                }
            }
            panic!("ade ended before printing {what}: {:?}", self.seen)
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .unwrap_or_else(|_| panic!("ade never printed {what}"))
    }

    /// Reads the rest and waits for the exit.
    async fn finish(mut self) -> Output {
        let rest = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push(line);
            }
            let mut stderr = String::new();
            let mut pipe = self.child.stderr.take().unwrap();
            pipe.read_to_string(&mut stderr).await.unwrap();
            let status = self.child.wait().await.unwrap();
            (status, stderr)
        };
        let (status, stderr) = tokio::time::timeout(DEADLINE, rest)
            .await
            .expect("ade ends");
        Output {
            code: status.code(),
            stdout: self.seen.join("\n"),
            stderr,
        }
    }
}

/// Waits until `GET /api/v1/workers` lists a worker (its first heartbeat).
async fn wait_for_live_worker(app: &TestApp) {
    let start = std::time::Instant::now();
    loop {
        let workers: Value = app.get("/api/v1/workers").await.json().await.unwrap();
        if !workers["items"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "no worker became live");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The run id in `==> run <id> queued`.
fn run_id_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("==> run ")?.split_once(" queued"))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no `==> run <id> queued` line: {stdout}"))
}

/// The console lines of a run's log, as `ade` prints them.
fn logged_console(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "console.line")
        .map(|e| {
            let message = e["payload"]["message"].as_str().unwrap();
            match e["payload"]["scope"].as_str() {
                Some("build") => format!("[build] {message}"),
                _ => message.to_owned(),
            }
        })
        .collect()
}

/// What `ade` printed apart from its `==>` notes: the console lines.
fn printed_console(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.starts_with("==> "))
        .map(str::to_owned)
        .collect()
}

mod commands;
mod follow;
mod smoke;

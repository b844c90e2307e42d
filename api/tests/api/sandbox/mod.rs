//! The engine sandbox, in both engine modes (forked by a warm engine, the
//! default, and spawned):
//!
//! - [`hostile`]: what a hostile configuration can do (nothing that matters);
//! - [`bounds`]: a run's memory and disk, bounded as a whole;
//! - [`isolation`]: runs of one configuration apart, import-time leftovers,
//!   a warm engine's start;
//!
//! and here: builds' network, a host where bubblewrap cannot work, and
//! `ADE_ENGINE_SANDBOX=off`.

mod bounds;
mod hostile;
mod isolation;

use crate::helpers::{DEADLINE, Options, TestApp, ok_json, processes_mentioning};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The `message` of every `console.line` of the run's own scope.
pub(super) fn run_console(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "console.line" && e["payload"]["scope"] == "run")
        .map(|e| {
            e["payload"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The line a probing configuration printed about `what`.
pub(super) fn verdict<'a>(console: &'a [String], what: &str) -> &'a str {
    let prefix = format!("HOSTILE {what}: ");
    console
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no report of {what:?} in {console:#?}"))
}

/// Waits until no process's command line mentions `needle`.
pub(super) async fn wait_gone(needle: &str) {
    let start = Instant::now();
    while !processes_mentioning(needle).is_empty() {
        assert!(
            start.elapsed() < DEADLINE,
            "still running: {:?}",
            processes_mentioning(needle)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_the_sandbox_off_runs_still_work_and_workers_say_so() {
    let mut app = TestApp::with(Options::default()).await;
    let mut settings = app.worker_settings("unconfined", None);
    settings.engine_sandbox = ade_worker::sandbox::Mode::Off;
    app.start_worker_with(settings).await;
    let (config, doc) = app.sample_setup().await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = run["id"].as_str().unwrap();
    let outputs = ok_json(
        app.get(&format!("/api/v1/runs/{id}/outputs")).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        !outputs["files"].as_array().unwrap().is_empty(),
        "{outputs}"
    );
    let workers = wait_for_workers(&app, 1).await;
    assert_eq!(workers[0]["sandbox"], "off", "{workers:?}");
    // The test hosts give runs cgroups (the bound tests need them); workers say which.
    let cgroup = workers[0]["cgroup"].as_str().unwrap_or_default();
    assert!(matches!(cgroup, "v1" | "v2"), "{workers:?}");
    // A sandboxed worker beside it says so too.
    app.start_worker("confined", None).await;
    let workers = wait_for_workers(&app, 2).await;
    let modes: Vec<&str> = workers
        .iter()
        .map(|w| w["sandbox"].as_str().unwrap())
        .collect();
    assert_eq!(
        modes,
        ["bwrap", "off"],
        "ordered by id: confined, unconfined"
    );
    app.finish().await;
}

/// The live workers, once there are `n`.
async fn wait_for_workers(app: &TestApp, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let body = ok_json(app.get("/api/v1/workers").await, StatusCode::OK).await;
        let items = body["items"].as_array().unwrap().clone();
        if items.len() == n {
            return items;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{n} workers did not show up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A build backend (the tenant's code, run by `uv build`) that tries the
/// network, says what happened, then fails so uv shows what it printed.
const PROBING_BACKEND: &str = r#"import socket, sys, urllib.request

def get_requires_for_build_wheel(config_settings=None):
    return []

def report(what, attempt):
    try:
        print(f"PROBE {what}: SUCCEEDED {attempt()}", file=sys.stderr, flush=True)
    except BaseException as e:
        print(f"PROBE {what}: blocked {type(e).__name__}", file=sys.stderr, flush=True)

def fetch(url):
    request = urllib.request.Request(url, method="HEAD")
    return urllib.request.urlopen(request, timeout=30).status

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    report("connect 5432", lambda: socket.create_connection(("127.0.0.1", 5432), timeout=5))
    report("connect 5672", lambda: socket.create_connection(("127.0.0.1", 5672), timeout=5))
    report("fetch a non-index host", lambda: fetch("https://example.com/"))
    report("fetch the package index", lambda: fetch("https://pypi.org/simple/uv-build/"))
    raise SystemExit("probe done")
"#;

#[tokio::test]
async fn a_build_reaches_package_indexes_and_nothing_else() {
    let app = TestApp::spawn().await;
    let pyproject = r#"[project]
name = "ade-config"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = []

[build-system]
requires = []
build-backend = "probing_backend"
backend-path = ["."]
"#;
    let package = crate::configurations::package_of(&[
        ("pyproject.toml", pyproject),
        ("probing_backend.py", PROBING_BACKEND),
    ]);
    let (config, doc) = app.package_setup(package).await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["failure"]["code"], "build_failed", "{run}");
    let events = app.all_events(run["id"].as_str().unwrap()).await;
    let console: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "console.line" && e["payload"]["scope"] == "build")
        .map(|e| {
            e["payload"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let said = |what: &str| -> String {
        let prefix = format!("PROBE {what}: ");
        console
            .iter()
            .find_map(|l| l.split_once(&prefix).map(|(_, v)| v.to_owned()))
            .unwrap_or_else(|| panic!("no report of {what:?} in {console:#?}"))
    };
    assert!(said("connect 5432").starts_with("blocked"), "{console:#?}");
    assert!(said("connect 5672").starts_with("blocked"), "{console:#?}");
    assert!(
        said("fetch a non-index host").starts_with("blocked"),
        "{console:#?}"
    );
    assert_eq!(
        said("fetch the package index"),
        "SUCCEEDED 200",
        "{console:#?}"
    );
    app.finish().await;
}

/// `program` itself, not a wrapper (a pyenv shim needs its whole tree).
fn real_program(program: &str, ask: &[&str]) -> std::path::PathBuf {
    let out = std::process::Command::new(program)
        .args(ask)
        .output()
        .unwrap();
    assert!(out.status.success(), "{program} {ask:?}");
    std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[tokio::test]
async fn a_worker_whose_sandbox_cannot_work_refuses_to_start_and_says_why() {
    let app = TestApp::with(Options::default()).await;
    // A PATH with the interpreter and uv, but no bubblewrap.
    let bin = app.data_dir.join("bin-without-bwrap");
    std::fs::create_dir_all(&bin).unwrap();
    let python = real_program("python3", &["-c", "import sys; print(sys.executable)"]);
    let uv = real_program(
        "uv",
        &[
            "run",
            "--no-project",
            "--no-config",
            "-q",
            "--",
            "printenv",
            "UV",
        ],
    );
    std::os::unix::fs::symlink(python, bin.join("python3")).unwrap();
    std::os::unix::fs::symlink(uv, bin.join("uv")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let worker = exe.parent().unwrap().parent().unwrap().join("ade-worker");
    assert!(
        worker.exists(),
        "run `cargo build --bins` first (scripts/test does)"
    );
    let run = tokio::process::Command::new(worker)
        .env_clear()
        .env("PATH", &bin)
        .env("ADE_DATABASE_URL", &app.db_url)
        .env("ADE_AMQP_PREFIX", &app.prefix)
        .env("ADE_DATA_DIR", &app.data_dir)
        .env("ADE_VENVS_DIR", app.data_dir.join("venvs"))
        .env("ADE_ENGINE_DIR", crate::helpers::repo_root().join("engine"))
        .env("ADE_WORKER_ID", "no-sandbox")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(DEADLINE, run)
        .await
        .expect("the worker exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("ADE_ENGINE_SANDBOX"), "{stderr}");
    assert!(stderr.contains("bwrap was not found"), "{stderr}");
    assert!(stderr.contains("bubblewrap"), "{stderr}");
    app.finish().await;
}

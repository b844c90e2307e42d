//! The engine sandbox: what a hostile configuration can do (nothing that
//! matters), the limits a run is held to, and `ADE_ENGINE_SANDBOX=off`.

use crate::fixtures::run_code_package;
use crate::helpers::{DEADLINE, Options, TestApp, ok_json, processes_mentioning};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The `message` of every `console.line` of the run's own scope.
fn run_console(events: &[Value]) -> Vec<String> {
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

/// The line the hostile configuration printed about `what`.
fn verdict<'a>(console: &'a [String], what: &str) -> &'a str {
    let prefix = format!("HOSTILE {what}: ");
    console
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no report of {what:?} in {console:#?}"))
}

/// Waits until no process's command line mentions `needle`.
async fn wait_gone(needle: &str) {
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

/// Everything the issue's attacker did, tried from inside a run; each
/// attempt prints what it tried and what happened.
const HOSTILE: &str = r#"import os, socket
def report(what, attempt):
    try:
        print(f"HOSTILE {what}: SUCCEEDED {attempt()}", flush=True)
    except BaseException as e:
        print(f"HOSTILE {what}: blocked {type(e).__name__}", flush=True)
def search():
    for top in ("DATA_DIR", "/run", "/tmp", "/root", "/home"):
        for folder, _, files in os.walk(top):
            if "VICTIM_ID" in files:
                return os.path.join(folder, "VICTIM_ID")
    raise FileNotFoundError("VICTIM_ID")
def sleeper():
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.execv("/bin/sleep", ["sleep", "NONCE"])
        os._exit(0)
    os.waitpid(child, 0)
    import time
    for _ in range(200):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if b"NONCE" in open(f"/proc/{pid}/cmdline", "rb").read():
                    return "running"
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError("the sleeper did not start")
report("read /etc/shadow", lambda: open("/etc/shadow").read()[:10])
report("search the data dir", search)
report("open the other document", lambda: open("VICTIM_PATH").read()[:10])
report("connect 5432", lambda: socket.create_connection(("127.0.0.1", 5432), timeout=5))
report("connect 5672", lambda: socket.create_connection(("127.0.0.1", 5672), timeout=5))
report("double-fork a sleeper", sleeper)
report("allocate 3 GiB", lambda: len(bytearray(3 * 1024 ** 3)))
report("link to /etc/passwd", lambda: os.symlink("/etc/passwd", os.path.join(run.output_dir, "passwd.csv")))
report("make a FIFO", lambda: os.mkfifo(os.path.join(run.output_dir, "fifo.csv")))
report("count processes", lambda: len([p for p in os.listdir("/proc") if p.isdigit()]))
"#;

#[tokio::test]
async fn a_hostile_configuration_gets_nothing() {
    let app = TestApp::spawn().await;
    // Workspace B's document, the one the attacker looks for.
    let other = app.create_workspace().await;
    let other = other["id"].as_str().unwrap();
    let victim = app
        .upload_document(other, "payroll.csv", b"name,salary\nceo,1000000\n".to_vec())
        .await;
    let victim_id = victim["id"].as_str().unwrap();
    let victim_path = app.data_dir.join("documents").join(other).join(victim_id);
    assert!(
        victim_path.is_file(),
        "the victim is where the attacker looks"
    );
    // A duration no other process has on its command line: `sleep 7NNNNNNNNN`.
    let nonce = format!("7{:09}", uuid::Uuid::now_v7().as_u128() % 1_000_000_000);
    let code = HOSTILE
        .replace("DATA_DIR", &app.data_dir.to_string_lossy())
        .replace("VICTIM_ID", victim_id)
        .replace("VICTIM_PATH", &victim_path.to_string_lossy())
        .replace("NONCE", &nonce);
    let (config, doc) = app.package_setup(run_code_package(&code)).await;

    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    let id = run["id"].as_str().unwrap();
    let console = run_console(&app.all_events(id).await);
    for (what, blocked) in [
        ("read /etc/shadow", "FileNotFoundError"),
        ("search the data dir", "FileNotFoundError"),
        ("open the other document", "FileNotFoundError"),
        ("allocate 3 GiB", "MemoryError"),
    ] {
        assert_eq!(
            verdict(&console, what),
            format!("blocked {blocked}"),
            "{what}"
        );
    }
    for port in ["connect 5432", "connect 5672"] {
        let said = verdict(&console, port);
        assert!(said.starts_with("blocked"), "{port}: {said}");
    }
    // What the sandbox allows, and what becomes of it.
    assert_eq!(
        verdict(&console, "double-fork a sleeper"),
        "SUCCEEDED running"
    );
    assert_eq!(verdict(&console, "link to /etc/passwd"), "SUCCEEDED None");
    assert_eq!(verdict(&console, "make a FIFO"), "SUCCEEDED None");
    let seen: u32 = verdict(&console, "count processes")
        .trim_start_matches("SUCCEEDED ")
        .parse()
        .unwrap();
    assert!(seen < 10, "the run sees only its own processes ({seen})");

    // The run itself completes; the planted entries are reported, not published.
    assert_eq!(run["status"], "succeeded", "{run}");
    for planted in ["passwd.csv", "fifo.csv"] {
        assert!(
            console
                .iter()
                .any(|l| l.contains(&format!("{planted:?}")) && l.contains("not published")),
            "{planted} is reported: {console:#?}"
        );
    }
    let outputs = ok_json(
        app.get(&format!("/api/v1/runs/{id}/outputs")).await,
        StatusCode::OK,
    )
    .await;
    let names: Vec<&str> = outputs["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.is_empty(),
        "the engine's own outputs are published: {outputs}"
    );
    assert!(
        !names.contains(&"passwd.csv") && !names.contains(&"fifo.csv"),
        "{names:?}"
    );
    for planted in ["passwd.csv", "fifo.csv"] {
        let res = app
            .get(&format!("/api/v1/runs/{id}/outputs/{planted}"))
            .await;
        assert_eq!(
            res.status(),
            StatusCode::NOT_FOUND,
            "{planted} is not served"
        );
    }
    // The double-forked, setsid sleeper died with the run.
    wait_gone(&nonce).await;
    app.finish().await;
}

#[tokio::test]
async fn a_run_over_its_memory_limit_fails_with_memory_limit() {
    let app = TestApp::spawn().await;
    let (config, doc) = app
        .package_setup(run_code_package("_hog = bytearray(3 * 1024 ** 3)"))
        .await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["failure"]["code"], "memory_limit", "{run}");
    let message = run["failure"]["message"].as_str().unwrap();
    assert!(message.contains("2147483648"), "{message}");
    // The worker is unharmed: the next run of another configuration succeeds.
    let (config, doc) = app.sample_setup().await;
    let next = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(next["status"], "succeeded", "{next}");
    app.finish().await;
}

#[tokio::test]
async fn outputs_over_the_cap_fail_the_run_with_output_limit() {
    let mut app = TestApp::with(Options::default()).await;
    let mut settings = app.worker_settings("capped", None);
    settings.max_output_bytes = 1024 * 1024;
    app.start_worker_with(settings).await;
    // Two files under the per-file limit, over the total together.
    let code = r#"for _n in ("a", "b"):
    with open(os.path.join(run.output_dir, f"{_n}.bin"), "wb") as _f:
        _f.write(b"x" * 700 * 1024)"#;
    let (config, doc) = app.package_setup(run_code_package(code)).await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["failure"]["code"], "output_limit", "{run}");
    let id = run["id"].as_str().unwrap();
    let outputs = ok_json(
        app.get(&format!("/api/v1/runs/{id}/outputs")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        outputs["files"],
        json!([]),
        "nothing of a failed run is served"
    );
    app.finish().await;
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

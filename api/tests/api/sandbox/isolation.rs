//! Runs of one configuration do not see each other, in both engine modes;
//! what configuration code leaves behind at import does not outlive its
//! runs; a warm engine's start is stoppable and counts against the run's
//! deadline; nothing of a run stays on the host's disk.

use super::{run_console, wait_gone};
use crate::fixtures::{import_code_package, run_code_package};
use crate::helpers::{DEADLINE, Options, TestApp, ok_json};
use crate::modes::{Mode, assert_failed, assert_launched, in_both_modes, launched, warm_engines};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Leaves a mark in /tmp, waits for a sibling, then says what it saw of
/// other runs: marks in /tmp, and processes in /proc.
const LOOK_AROUND: &str = r#"import time, uuid
mine = f"/tmp/ade-mark-{uuid.uuid4().hex}"
open(mine, "w").write("x")
time.sleep(WAIT)
marks = [n for n in os.listdir("/tmp") if n.startswith("ade-mark-")]
pids = [p for p in os.listdir("/proc") if p.isdigit()]
print(f"SAW marks={len(marks)} processes={len(pids)}", flush=True)"#;

/// What a run said it saw: (marks in /tmp, processes in /proc).
async fn saw(app: &TestApp, id: &str) -> (u32, u32) {
    let console = run_console(&app.all_events(id).await);
    let line = console
        .iter()
        .find_map(|l| l.strip_prefix("SAW "))
        .unwrap_or_else(|| panic!("no SAW line in {console:#?}"));
    let field = |name: &str| -> u32 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("marks"), field("processes"))
}

/// When a run's engine started and ended, from its events.
async fn span(app: &TestApp, id: &str) -> (String, String) {
    let events = app.all_events(id).await;
    let at = |kind: &str| -> String {
        let event: &Value = events.iter().find(|e| e["type"] == kind).unwrap();
        event["created_at"].as_str().unwrap().to_owned()
    };
    (at("run.started"), at("run.completed"))
}

async fn runs_of_one_configuration_do_not_see_each_other(mode: Mode) {
    let mut app = TestApp::with(Options::default()).await;
    mode.start_worker(&mut app, |_| {}).await;
    let (config, doc) = app
        .package_setup(run_code_package(&LOOK_AROUND.replace("WAIT", "3")))
        .await;
    let options = json!({"document_ids": [doc]});
    // Two at once (the worker has two slots), then one more after them.
    let (a, b) = (
        app.submit(&config, options.clone()).await,
        app.submit(&config, options.clone()).await,
    );
    let ids = [a["id"].as_str().unwrap(), b["id"].as_str().unwrap()];
    for id in ids {
        assert_eq!(app.wait_for_run(id).await["status"], "succeeded");
        assert_launched(&app, id, mode).await;
    }
    let ((a_start, a_end), (b_start, b_end)) = (span(&app, ids[0]).await, span(&app, ids[1]).await);
    assert!(
        a_start < b_end && b_start < a_end,
        "the two runs overlapped"
    );
    let after = app.run_to_end(&config, options).await;
    for id in [ids[0], ids[1], after["id"].as_str().unwrap()] {
        let (marks, processes) = saw(&app, id).await;
        assert_eq!(marks, 1, "run {id} saw only its own mark in /tmp");
        assert!(processes <= 3, "run {id} saw {processes} processes");
    }
    app.finish().await;
}

/// Configuration code that double-forks a sleeper when it is imported.
const IMPORT_SLEEPER: &str = r#"if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for _fd in (0, 1, 2):
            os.dup2(null, _fd)
        os.execv("/bin/sleep", ["sleep", "NONCE"])
    os._exit(0)
os.wait()"#;

async fn a_process_started_at_import_does_not_outlive_its_run(mode: Mode) {
    let mut app = TestApp::with(Options::default()).await;
    mode.start_worker(&mut app, |_| {}).await;
    let nonce = format!("8{:09}", uuid::Uuid::now_v7().as_u128() % 1_000_000_000);
    let code = IMPORT_SLEEPER.replace("NONCE", &nonce);
    let (config, doc) = app.package_setup(import_code_package(&code)).await;
    for _ in 0..2 {
        let run = app
            .run_to_end(&config, json!({"document_ids": [doc]}))
            .await;
        let id = run["id"].as_str().unwrap();
        assert_eq!(run["status"], "succeeded", "{run}");
        // A warm engine that is not alone after the import is refused: the
        // run (and the next, for a minute) spawns, and says why.
        assert_eq!(launched(&app, id).await, "spawned");
        if mode == Mode::Forked {
            let console = run_console(&app.all_events(id).await);
            let said = console
                .iter()
                .any(|l| l.contains("refused") && l.contains("process"));
            assert!(said, "{console:#?}");
        }
        wait_gone(&nonce).await;
    }
    app.finish().await;
}

in_both_modes!(
    runs_of_one_configuration_do_not_see_each_other,
    a_process_started_at_import_does_not_outlive_its_run,
);

/// Configuration code that is slow to import in a warm engine only (not
/// when the build checks that it imports, nor in a spawned run).
const SLOW_IN_A_WARM_ENGINE: &str = r#"import time
_main = getattr(sys.modules["__main__"], "__spec__", None)
if _main is not None and _main.name == "ade_engine.zygote":
    time.sleep(55)"#;

#[tokio::test]
async fn a_run_cancelled_while_its_warm_engine_starts_ends_at_once() {
    let mut app = TestApp::with(Options::default()).await;
    Mode::Forked.start_worker(&mut app, |_| {}).await;
    let (config, doc) = app
        .package_setup(import_code_package(SLOW_IN_A_WARM_ENGINE))
        .await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap();
    let start = Instant::now();
    while warm_engines(&app) == 0 {
        assert!(start.elapsed() < DEADLINE, "the warm engine never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = app
        .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    let requested = Instant::now();
    ok_json(res, StatusCode::ACCEPTED).await;
    assert_eq!(app.wait_for_run(id).await["status"], "cancelled");
    assert!(
        requested.elapsed() < Duration::from_secs(5),
        "the cancel waited for the warm engine's import ({:?})",
        requested.elapsed()
    );
    while warm_engines(&app) > 0 {
        assert!(
            requested.elapsed() < DEADLINE,
            "the starting warm engine was left running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn a_warm_engines_start_counts_against_the_runs_deadline() {
    let mut app = TestApp::with(Options::default()).await;
    Mode::Forked
        .start_worker(&mut app, |s| s.run_timeout_seconds = 3)
        .await;
    let (config, doc) = app
        .package_setup(import_code_package(SLOW_IN_A_WARM_ENGINE))
        .await;
    let started = Instant::now();
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_failed(&run, "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run waited out the import ({:?})",
        started.elapsed()
    );
    app.finish().await;
}

#[tokio::test]
async fn scratch_of_an_earlier_worker_is_removed_at_start() {
    let mut app = TestApp::with(Options::default()).await;
    // What a killed worker of an earlier release left: a warm run's copies
    // of a customer's input and output.
    let left = app.data_dir.join("venvs/.pool/0190/0191/runs/r-1");
    std::fs::create_dir_all(left.join("outputs")).unwrap();
    std::fs::write(left.join("outputs/members.normalized.csv"), "id\n1\n").unwrap();
    Mode::Forked.start_worker(&mut app, |_| {}).await;
    assert!(
        !app.data_dir.join("venvs/.pool").exists(),
        "the old scratch is gone"
    );
    // Runs leave nothing of theirs on the host's disk outside the attempt's outputs.
    let (config, doc) = app.sample_setup().await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_launched(&app, run["id"].as_str().unwrap(), Mode::Forked).await;
    assert!(!app.data_dir.join("venvs/.pool").exists());
    app.finish().await;
}

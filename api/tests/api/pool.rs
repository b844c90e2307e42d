//! The warm engine pool: a run forked by a build's zygote is indistinguishable
//! from a spawned engine — the same events, byte-identical outputs, and the
//! same ends for a broken configuration, a timeout, a cancel and a crash
//! (each run proves how it was started). Its isolation is tested with the
//! sandbox's, in both modes (`sandbox/`).

use crate::fixtures::run_code_package;
use crate::helpers::{DEADLINE, Options, TestApp, ok_json, processes_mentioning};
use crate::modes::{Mode, assert_launched, warm_engines};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Payload keys that differ between any two runs (times and durations).
const VARYING: &[&str] = &["duration_ms", "elapsed_ms", "started_at", "completed_at"];

fn normalized(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.retain(|k, _| !VARYING.contains(&k.as_str()));
            for v in map.values_mut() {
                *v = normalized(v.take());
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                *v = normalized(v.take());
            }
        }
        _ => {}
    }
    value
}

/// What the engine said in a run: its own events, and its console lines,
/// each in order. (The two travel on different pipes, so how they
/// interleave is up to the scheduler, warm or not.)
async fn engine_view(app: &TestApp, id: &str) -> [Vec<Value>; 2] {
    let events = app.all_events(id).await;
    let pick = |keep: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        events
            .iter()
            .filter(|e| keep(e))
            .map(|e| json!({"type": e["type"], "payload": normalized(e["payload"].clone())}))
            .collect()
    };
    [
        pick(&|e| e["source"] == "engine"),
        pick(&|e| e["type"] == "console.line" && e["payload"]["scope"] == "run"),
    ]
}

async fn outputs(app: &TestApp, id: &str) -> Vec<(String, Vec<u8>)> {
    let list = ok_json(
        app.get(&format!("/api/v1/runs/{id}/outputs")).await,
        StatusCode::OK,
    )
    .await;
    let mut files = Vec::new();
    for file in list["files"].as_array().unwrap() {
        let bytes = app
            .get(file["download_url"].as_str().unwrap())
            .await
            .bytes()
            .await
            .unwrap();
        files.push((file["name"].as_str().unwrap().to_owned(), bytes.to_vec()));
    }
    files
}

/// Runs `options` once spawned, once forked (fresh workers each time;
/// `timeout` seconds per run); returns both finished runs.
async fn both_ways(app: &mut TestApp, config: &str, options: Value, timeout: u64) -> [Value; 2] {
    let mut ran = Vec::new();
    for mode in [Mode::Spawned, Mode::Forked] {
        mode.start_worker(app, |s| s.run_timeout_seconds = timeout)
            .await;
        let run = app.run_to_end(config, options.clone()).await;
        assert_launched(app, run["id"].as_str().unwrap(), mode).await;
        ran.push(run);
        app.stop_workers().await;
    }
    ran.try_into().unwrap()
}

#[tokio::test]
async fn a_warm_run_gives_the_same_events_and_byte_identical_outputs() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    let [spawned, warm] = both_ways(&mut app, &config, json!({"document_ids": [doc]}), 900).await;
    for run in [&spawned, &warm] {
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let (a, b) = (
        spawned["id"].as_str().unwrap(),
        warm["id"].as_str().unwrap(),
    );
    assert_eq!(engine_view(&app, a).await, engine_view(&app, b).await);
    let files = outputs(&app, a).await;
    assert!(files.len() >= 2, "{files:?}");
    assert_eq!(files, outputs(&app, b).await, "byte-identical outputs");
    app.finish().await;
}

#[tokio::test]
async fn a_broken_configuration_a_timeout_and_a_crash_end_the_same_way_warm_or_spawned() {
    let mut app = TestApp::with(Options::default()).await;
    let cases = [
        (
            "raise ValueError('broken on purpose')",
            "engine_failed",
            Some(1),
        ),
        ("import time\ntime.sleep(600)", "timeout", Some(124)),
        (
            "import signal\nos.kill(os.getpid(), signal.SIGSEGV)",
            "engine_failed",
            Some(139),
        ),
    ];
    for (code, failure, exit_code) in cases {
        let ws = app.create_workspace().await;
        let ws = ws["id"].as_str().unwrap();
        let config = ok_json(
            app.upload_configuration(ws, run_code_package(code)).await,
            StatusCode::CREATED,
        )
        .await;
        let doc = app.upload_sample(ws).await;
        let options = json!({"document_ids": [doc["id"]]});
        let config = config["id"].as_str().unwrap();
        let [spawned, warm] = both_ways(&mut app, config, options, 3).await;
        for run in [&spawned, &warm] {
            assert_eq!(run["status"], "failed", "{code}: {run}");
            assert_eq!(run["failure"]["code"], failure, "{code}: {run}");
            assert_eq!(run["exit_code"], json!(exit_code), "{code}: {run}");
        }
        let errors = |id: &str| {
            let id = id.to_owned();
            let app = &app;
            async move {
                let events = app.all_events(&id).await;
                let errors: Vec<Value> = events
                    .into_iter()
                    .filter(|e| e["type"] == "run.error")
                    .map(|e| normalized(e["payload"].clone()))
                    .collect();
                errors
            }
        };
        assert_eq!(
            errors(spawned["id"].as_str().unwrap()).await,
            errors(warm["id"].as_str().unwrap()).await,
            "{code}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn a_warm_run_is_cancelled_with_everything_it_started() {
    let mut app = TestApp::with(Options::default()).await;
    let marker = format!("ade-warm-orphan-{}", app.prefix);
    let (config, doc) = app
        .package_setup(crate::fixtures::silent_sleeper_package(&marker))
        .await;
    Mode::Forked.start_worker(&mut app, |_| {}).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    while processes_mentioning(&marker).is_empty() {
        assert!(
            start.elapsed() < DEADLINE,
            "the run's sleeper never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = app
        .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    let requested = Instant::now();
    ok_json(res, StatusCode::ACCEPTED).await;
    while !processes_mentioning(&marker).is_empty() {
        assert!(
            requested.elapsed() <= Duration::from_secs(2),
            "the run outlived its cancel by 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.wait_for_run(&id).await["status"], "cancelled");
    assert_launched(&app, &id, Mode::Forked).await;
    // The warm engine itself lives on and takes the next run.
    assert!(warm_engines(&app) > 0);
    app.finish().await;
}

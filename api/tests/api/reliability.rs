use crate::helpers::{
    DEADLINE, Options, TestApp, assert_gapless, assert_problem, count_of, ok_json,
    processes_mentioning,
};
use crate::streams::chatty_setup;
use ade_common::events::StreamRef;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Polls until `cond` holds for the run.
async fn wait_until(app: &TestApp, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let run = app.run(id).await;
        if cond(&run) {
            return run;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "waited too long for {what}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the engine of the run has printed (so it is really running).
async fn wait_for_engine_output(app: &TestApp, id: &str) {
    let start = Instant::now();
    while !app
        .all_events(id)
        .await
        .iter()
        .any(|e| e["type"] == "console.line" && e["payload"]["scope"] == "run")
    {
        assert!(start.elapsed() < DEADLINE, "the engine never printed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: signalling a child process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

#[tokio::test]
async fn a_run_whose_worker_is_killed_completes_on_another_worker() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = chatty_setup(&app, 300, 0.01).await;
    let doomed = app.worker_process("doomed", &[("ADE_LEASE_SECONDS", "3")]);
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    wait_for_engine_output(&app, &id).await;
    kill(doomed, libc::SIGKILL);
    let killed_at = Instant::now();
    app.wait_process(doomed).await;
    let mut settings = app.worker_settings("survivor", None);
    settings.lease_seconds = 3;
    app.start_worker_with(settings).await;
    let retried = wait_until(&app, &id, "attempt 2", |r| {
        r["attempt"] == 2 && r["status"] != "queued"
    })
    .await;
    println!(
        "recovered {:?} after the kill (lease 3 s)",
        killed_at.elapsed()
    );
    assert!(
        retried["worker_id"]
            .as_str()
            .unwrap()
            .starts_with("survivor")
    );
    let run = app.wait_for_run(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 2);
    let events = app.all_events(&id).await;
    assert_gapless(&events);
    assert_eq!(count_of(&events, "run.retry"), 1);
    assert_eq!(count_of(&events, "run.completed"), 1);
    let retry = events.iter().find(|e| e["type"] == "run.retry").unwrap();
    assert_eq!(retry["payload"]["next_attempt"], 2);
    assert!(
        processes_mentioning(&id).is_empty(),
        "the killed worker's engine died with it"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_redelivered_message_does_not_start_a_live_run_twice() {
    let app = TestApp::spawn().await;
    let (config, doc) = chatty_setup(&app, 100, 0.01).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    wait_for_engine_output(&app, &id).await;
    let publisher = app.job_publisher().await;
    for _ in 0..3 {
        publisher
            .publish_job(StreamRef::Run(id.parse().unwrap()))
            .await
            .unwrap();
    }
    let run = app.wait_for_run(&id).await;
    assert_eq!(run["status"], "succeeded");
    let events = app.all_events(&id).await;
    assert_eq!(count_of(&events, "run.started"), 1);
    assert_eq!(count_of(&events, "run.completed"), 1);
    app.finish().await;
}

#[tokio::test]
async fn the_reaper_retries_lost_runs_then_gives_up() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    let db = ade_common::db::connect(&app.db_url).await.unwrap();
    let lose = async |attempt: i32| {
        let run = app.submit(&config, json!({"document_ids": [doc]})).await;
        let id: uuid::Uuid = run["id"].as_str().unwrap().parse().unwrap();
        // As if a worker claimed it and died: running, lease long expired.
        db.execute(
            "UPDATE runs SET status = 'running', worker_id = 'ghost', attempt = $2, started_at = now(),
                             lease_expires_at = now() - interval '1 minute' WHERE id = $1",
            &[&id, &attempt],
        )
        .await
        .unwrap();
        id.to_string()
    };
    let retried = lose(1).await;
    let exhausted = lose(3).await;
    let failed = app.wait_for_run(&exhausted).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failure"]["code"], "worker_lost");
    assert_eq!(failed["failure"]["stage"], "worker");
    let events = app.all_events(&exhausted).await;
    assert_eq!(
        events.last().unwrap()["payload"]["failure"]["code"],
        "worker_lost"
    );
    wait_until(&app, &retried, "the requeue", |r| {
        r["status"] == "queued" && r["attempt"] == 2
    })
    .await;
    app.start_worker("w", None).await;
    let run = app.wait_for_run(&retried).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["attempt"], 2);
    let events = app.all_events(&retried).await;
    assert_gapless(&events);
    assert_eq!(count_of(&events, "run.retry"), 1);
    app.finish().await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_runs_and_others_go_elsewhere() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = chatty_setup(&app, 100, 0.02).await;
    let draining = app.worker_process("draining", &[("ADE_WORKER_DRAIN_SECONDS", "60")]);
    let first = app.submit(&config, json!({"document_ids": [doc]})).await;
    let first = first["id"].as_str().unwrap().to_owned();
    wait_for_engine_output(&app, &first).await;
    let second = app.submit(&config, json!({"document_ids": [doc]})).await;
    let second = second["id"].as_str().unwrap().to_owned();
    kill(draining, libc::SIGTERM);
    app.start_worker("other", None).await;
    let second = app.wait_for_run(&second).await;
    assert_eq!(second["status"], "succeeded");
    assert!(
        second["worker_id"].as_str().unwrap().starts_with("other"),
        "{second}"
    );
    let first = app.wait_for_run(&first).await;
    assert_eq!(
        first["status"], "succeeded",
        "the in-flight run finished during the drain"
    );
    assert!(first["worker_id"].as_str().unwrap().starts_with("draining"));
    assert_eq!(first["attempt"], 1);
    assert_eq!(
        app.wait_process(draining).await,
        Some(0),
        "a drained worker exits 0"
    );
    app.finish().await;
}

#[tokio::test]
async fn runs_still_running_after_the_drain_period_are_handed_back() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = chatty_setup(&app, 400, 0.02).await;
    let draining = app.worker_process("draining", &[("ADE_WORKER_DRAIN_SECONDS", "1")]);
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    wait_for_engine_output(&app, &id).await;
    app.start_worker("other", None).await;
    kill(draining, libc::SIGTERM);
    assert_eq!(app.wait_process(draining).await, Some(0));
    let run = app.wait_for_run(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 1, "handing back spends no attempt");
    assert!(run["worker_id"].as_str().unwrap().starts_with("other"));
    let events = app.all_events(&id).await;
    assert_gapless(&events);
    assert_eq!(count_of(&events, "run.retry"), 1);
    assert_eq!(count_of(&events, "run.started"), 2);
    app.finish().await;
}

/// A configuration whose runs start a grandchild process and then take long.
fn lingering_package(marker: &str) -> Vec<u8> {
    crate::fixtures::run_code_package(&format!(
        "import subprocess, sys, time\n\
         subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '{marker}'])\n\
         print('started a grandchild', flush=True)\n\
         time.sleep(600)"
    ))
}

#[tokio::test]
async fn cancel_stops_queued_and_running_runs() {
    let mut app = TestApp::with(Options::default()).await;
    let marker = format!("ade-grandchild-{}", app.prefix);
    let (config, doc) = app.package_setup(lingering_package(&marker)).await;
    let config = config.as_str();

    // Queued (no worker yet): cancelled at once.
    let queued = app.submit(config, json!({"document_ids": [doc]})).await;
    let queued = queued["id"].as_str().unwrap();
    let res = app
        .post_json(&format!("/api/v1/runs/{queued}/cancel"), &json!({}))
        .await;
    let cancelled = ok_json(res, StatusCode::ACCEPTED).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["exit_code"], Value::Null);
    assert_eq!(
        app.all_events(queued).await.last().unwrap()["payload"]["status"],
        "cancelled"
    );

    // Running: the engine and its grandchild are killed.
    app.start_worker("w", None).await;
    let running = app.submit(config, json!({"document_ids": [doc]})).await;
    let running = running["id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    while !app
        .all_events(&running)
        .await
        .iter()
        .any(|e| e["payload"]["message"] == "started a grandchild")
    {
        assert!(started.elapsed() < DEADLINE, "the grandchild never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !processes_mentioning(&marker).is_empty(),
        "the grandchild runs"
    );
    let res = app
        .post_json(&format!("/api/v1/runs/{running}/cancel"), &json!({}))
        .await;
    let requested = Instant::now();
    ok_json(res, StatusCode::ACCEPTED).await;
    // SPEC §8.7: the engine's whole process group is gone within 2 seconds.
    while !processes_mentioning(&marker).is_empty() {
        assert!(
            requested.elapsed() <= Duration::from_secs(2),
            "the grandchild outlived the cancel by more than 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run = app.wait_for_run(&running).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["exit_code"], Value::Null);

    let again = app
        .post_json(&format!("/api/v1/runs/{running}/cancel"), &json!({}))
        .await;
    assert_problem(again, StatusCode::CONFLICT, "run_already_terminal").await;
    let unknown = uuid::Uuid::now_v7();
    assert_problem(
        app.post_json(&format!("/api/v1/runs/{unknown}/cancel"), &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "run_not_found",
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn a_run_past_its_timeout_is_killed_with_exit_code_124() {
    let mut app = TestApp::with(Options::default()).await;
    let marker = format!("ade-grandchild-{}", app.prefix);
    let (config, doc) = app.package_setup(lingering_package(&marker)).await;
    let mut settings = app.worker_settings("w", None);
    settings.run_timeout_seconds = 2;
    app.start_worker_with(settings).await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["exit_code"], 124);
    assert_eq!(run["failure"]["code"], "timeout");
    assert!(processes_mentioning(&marker).is_empty());
    app.finish().await;
}

#[tokio::test]
async fn runs_accepted_while_the_broker_is_away_run_once_it_is_back() {
    // This API cannot reach any broker: runs are still accepted (PostgreSQL keeps them).
    let mut app = TestApp::with(Options {
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".into()),
        ..Default::default()
    })
    .await;
    let (config, doc) = app.sample_setup().await;
    let ready = ok_json(app.get("/health/ready").await, StatusCode::OK).await;
    assert_eq!(ready["status"], "degraded");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            app.submit(&config, json!({"document_ids": [doc], "dry_run": true}))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // The broker "comes back": an instance that reaches it redispatches them.
    app.spawn_api().await;
    app.start_worker("w", None).await;
    for id in &ids {
        let run = app.wait_for_run(id).await;
        assert_eq!(run["status"], "succeeded");
    }
    app.finish().await;
}

#[tokio::test]
async fn run_creation_answers_503_while_the_database_is_away() {
    let app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    let admin = ade_common::db::connect(
        &app.db_url
            .rsplit_once('/')
            .map(|(base, _)| format!("{base}/postgres"))
            .unwrap(),
    )
    .await
    .unwrap();
    let name = app.db_url.rsplit('/').next().unwrap().to_owned();
    admin
        .execute(
            &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
            &[],
        )
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap();
    let res = app
        .create_run(&config, &json!({"options": {"document_ids": [doc]}}))
        .await;
    assert_eq!(res.headers()["retry-after"], "5");
    assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;
    assert_eq!(
        app.get("/health/ready").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    admin
        .execute(
            &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
            &[],
        )
        .await
        .unwrap();
    let run = app
        .create_run(
            &config,
            &json!({"options": {"document_ids": [doc], "dry_run": true}}),
        )
        .await;
    assert_eq!(run.status(), StatusCode::CREATED);
    let mut app = app;
    app.start_worker("w", None).await;
    let id = ok_json(run, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_run(&id).await;
    app.finish().await;
}

#[tokio::test]
async fn workers_and_the_queue_are_visible() {
    let app = TestApp::spawn().await;
    let start = Instant::now();
    let workers = loop {
        let workers = ok_json(app.get("/api/v1/workers").await, StatusCode::OK).await;
        if !workers["items"].as_array().unwrap().is_empty() {
            break workers;
        }
        assert!(start.elapsed() < DEADLINE);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let worker = &workers["items"][0];
    assert!(worker["id"].as_str().unwrap().starts_with("worker-0"));
    assert_eq!(worker["concurrency"], 2);
    assert!(worker["last_heartbeat_at"].is_string());
    let queue = ok_json(app.get("/api/v1/queue").await, StatusCode::OK).await;
    assert_eq!(queue["queued_runs"], 0);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("ade_queue_oldest_run_age_seconds 0"),
        "{metrics}"
    );
    assert!(metrics.contains("ade_workers_live 1"), "{metrics}");
    app.finish().await;
}

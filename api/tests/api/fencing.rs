//! The ways a run used to be lost, wedged or executed twice, each tried as
//! it happens: frozen workers, broker reconnects, cancels mid-build, odd
//! output, filesystems, an unresponsive broker.

use crate::fixtures::{
    local_wheel, nul_package, pinned_package, silent_sleeper_package, slow_build_package,
};
use crate::helpers::{
    DEADLINE, Options, TestApp, assert_gapless, count_of, ok_json, processes_mentioning,
};
use crate::streams::chatty_setup;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn kill(pid: u32, signal: i32) {
    // SAFETY: signalling a child process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// Polls `cond` until it holds.
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "waited too long for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn has_event(app: &TestApp, id: &str, pick: impl Fn(&Value) -> bool) -> bool {
    app.all_events(id).await.iter().any(pick)
}

async fn wait_for_engine_output(app: &TestApp, id: &str) {
    until("engine output", || {
        has_event(app, id, |e| {
            e["type"] == "console.line" && e["payload"]["scope"] == "run"
        })
    })
    .await;
}

/// The run's outputs: names and bytes.
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

#[tokio::test]
async fn a_worker_frozen_past_its_lease_writes_nothing_when_it_wakes() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = chatty_setup(&app, 300, 0.01).await;
    let frozen = app.worker_process("frozen", &[("ADE_LEASE_SECONDS", "3")]);
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    wait_for_engine_output(&app, &id).await;
    kill(frozen, libc::SIGSTOP);
    let mut settings = app.worker_settings("peer", None);
    settings.lease_seconds = 3;
    app.start_worker_with(settings).await;
    let done = app.wait_for_run(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempt"], 2);
    assert!(done["worker_id"].as_str().unwrap().starts_with("peer"));
    let (events, files) = (app.all_events(&id).await, outputs(&app, &id).await);
    assert!(!files.is_empty());

    // It wakes, finds its claim gone, and stops; then it drains and exits.
    kill(frozen, libc::SIGCONT);
    kill(frozen, libc::SIGTERM);
    assert_eq!(app.wait_process(frozen).await, Some(0));
    assert_eq!(app.run(&id).await, done, "the terminal state is unchanged");
    let after = app.all_events(&id).await;
    assert_eq!(after, events, "no event of the frozen worker landed");
    assert_eq!(after.last().unwrap()["type"], "run.completed");
    assert_gapless(&after);
    assert_eq!(outputs(&app, &id).await, files, "the outputs are untouched");
    app.finish().await;
}

#[tokio::test]
async fn nul_characters_and_invalid_utf8_in_engine_output_are_stored_replaced() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.package_setup(nul_package()).await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let events = app.all_events(run["id"].as_str().unwrap()).await;
    assert_gapless(&events);
    let lines: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "console.line")
        .map(|e| e["payload"]["message"].as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"nul:\u{FFFD} bad:\u{FFFD}\u{FFFD} end"),
        "{lines:?}"
    );
    assert!(lines.contains(&"\u{FFFD}\u{FFFD}"), "{lines:?}");
    let progress = events
        .iter()
        .find(|e| e["type"] == "run.progress" && e["payload"]["note"].is_string());
    assert_eq!(progress.unwrap()["payload"]["note"], "a\u{FFFD}b");
    app.finish().await;
}

/// Connections of this test's broker peers whose name passes `pick`.
fn connections(app: &TestApp, pick: impl Fn(&str) -> bool) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "client_properties",
            "--no-table-headers",
            "-q",
        ])
        .output()
        .unwrap();
    let ours = format!("{{\"connection_name\",\"{}:", app.prefix);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(&ours))
        .filter(|(_, rest)| pick(rest.split('"').next().unwrap_or_default()))
        .count()
}

/// Closes a worker's consumer connection and waits for it to come back.
async fn reconnect_worker(app: &TestApp, name: &str) {
    let consumer = |n: &str| n.starts_with(name) && !n.contains(':');
    assert_eq!(app.close_broker_connections_where(consumer), 1);
    until("the worker's reconnect", || async {
        connections(app, consumer) == 1
    })
    .await;
}

#[tokio::test]
async fn a_run_handed_back_after_a_broker_reconnect_runs_elsewhere() {
    let mut app = TestApp::with(Options::default()).await;
    // Runs that outlast the drain period, however slow the machine.
    let (config, doc) = app
        .package_setup(crate::fixtures::run_code_package(
            "print('working', flush=True)\nimport time\ntime.sleep(600)",
        ))
        .await;
    let draining = app.worker_process("draining", &[("ADE_WORKER_DRAIN_SECONDS", "1")]);
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    wait_for_engine_output(&app, &id).await;
    // The delivery's channel is gone: a nack on it could not requeue the run.
    reconnect_worker(&app, "draining").await;
    app.start_worker("other", None).await;
    kill(draining, libc::SIGTERM);
    assert_eq!(app.wait_process(draining).await, Some(0));
    until("the other worker's claim", || async {
        let run = app.run(&id).await;
        run["status"] == "running" && run["worker_id"].as_str().unwrap_or("").starts_with("other")
    })
    .await;
    let run = app.run(&id).await;
    assert_eq!(run["attempt"], 1, "handing back spends no attempt");
    let res = app
        .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    ok_json(res, StatusCode::ACCEPTED).await;
    assert_eq!(app.wait_for_run(&id).await["status"], "cancelled");
    let events = app.all_events(&id).await;
    assert_gapless(&events);
    assert_eq!(count_of(&events, "run.retry"), 1);
    assert_eq!(count_of(&events, "run.started"), 2);
    app.finish().await;
}

async fn build_of(app: &TestApp, run: &Value) -> Value {
    let id = run["build_id"].as_str().unwrap();
    ok_json(
        app.get(&format!("/api/v1/builds/{id}")).await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn cancelling_a_run_during_its_build_leaves_the_build_to_others() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.package_setup(slow_build_package(3.0)).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    until("the build's install_config phase", || {
        has_event(&app, &id, |e| {
            e["type"] == "build.phase.started" && e["payload"]["phase"] == "install_config"
        })
    })
    .await;
    let res = app
        .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    ok_json(res, StatusCode::ACCEPTED).await;
    let cancelled = app.wait_for_run(&id).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let build = build_of(&app, &cancelled).await;
    assert_eq!(build["status"], "queued", "released, not failed: {build}");
    // The next run builds it and succeeds.
    let next = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(next["status"], "succeeded", "{next}");
    assert_eq!(next["build_id"], cancelled["build_id"]);
    assert_eq!(build_of(&app, &next).await["status"], "ready");
    app.finish().await;
}

fn device(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(path).unwrap())
}

#[tokio::test]
async fn the_venv_cache_may_live_on_another_filesystem_than_the_data_dir() {
    let mut app = TestApp::with(Options::default()).await;
    let venvs = PathBuf::from("/dev/shm").join(format!("ade-venvs-{}", app.prefix));
    std::fs::create_dir_all(&venvs).unwrap();
    assert_ne!(device(&venvs), device(&app.data_dir), "two filesystems");
    app.start_worker("w", Some(venvs.clone())).await;
    let (config, doc) = app.sample_setup().await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let wheels = app
        .data_dir
        .join("builds")
        .join(run["build_id"].as_str().unwrap())
        .join("wheels");
    let shared = std::fs::read_dir(&wheels).unwrap().flatten();
    assert_eq!(
        shared
            .filter(|e| e.file_name().to_string_lossy().ends_with(".whl"))
            .count(),
        1
    );
    app.finish().await;
    std::fs::remove_dir_all(venvs).unwrap();
}

fn marker_packages(venvs: &Path, run: &Value) -> Vec<String> {
    let marker = venvs
        .join(run["workspace_id"].as_str().unwrap())
        .join(run["configuration_id"].as_str().unwrap())
        .join(run["build_id"].as_str().unwrap())
        .join(".venv/ade_build.json");
    let marker: Value = serde_json::from_slice(&std::fs::read(marker).unwrap()).unwrap();
    serde_json::from_value(marker["packages"].clone()).unwrap()
}

#[tokio::test]
async fn a_pinned_dependency_hydrates_on_a_host_with_a_dead_builders_leftovers() {
    let mut app = TestApp::with(Options::default()).await;
    let links = app.data_dir.join("find-links");
    local_wheel(&links);
    let links = links.to_string_lossy().into_owned();
    let (host_a, host_b) = (app.data_dir.join("host-a"), app.data_dir.join("host-b"));
    let (a, b) = (
        host_a.to_string_lossy().into_owned(),
        host_b.to_string_lossy().into_owned(),
    );
    let first = app.worker_process("first", &[("UV_FIND_LINKS", &links), ("ADE_VENVS_DIR", &a)]);
    let (config, doc) = app.package_setup(pinned_package()).await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(marker_packages(&host_a, &run).contains(&"adepin==1.0".to_owned()));
    kill(first, libc::SIGTERM);
    assert_eq!(app.wait_process(first).await, Some(0));

    // Host B had a builder of this build die, leaving its scratch behind.
    let folder = host_b
        .join(run["workspace_id"].as_str().unwrap())
        .join(run["configuration_id"].as_str().unwrap())
        .join(run["build_id"].as_str().unwrap());
    std::fs::create_dir_all(folder.join(".venv.tmp-dead/bin")).unwrap();
    std::fs::write(folder.join(".src-dead.constraints.txt"), "adepin==1.0\n").unwrap();
    std::fs::write(
        folder.join(".scratch-dead"),
        "a file where a folder would be",
    )
    .unwrap();
    app.worker_process(
        "second",
        &[("UV_FIND_LINKS", &links), ("ADE_VENVS_DIR", &b)],
    );
    let again = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(again["status"], "succeeded", "{again}");
    let events = app.all_events(again["id"].as_str().unwrap()).await;
    let created = events
        .iter()
        .find(|e| e["type"] == "build.created")
        .unwrap();
    assert_eq!(created["payload"]["reason"], "hydration");
    let pinned = |packages: Vec<String>| -> Vec<String> {
        packages.into_iter().filter(|p| p.contains("==")).collect()
    };
    assert_eq!(
        pinned(marker_packages(&host_b, &again)),
        pinned(marker_packages(&host_a, &run)),
        "the same exact versions"
    );
    let left: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![".venv"], "leftovers are removed");
    app.finish().await;
}

#[tokio::test]
async fn after_a_reconnect_a_busy_worker_takes_no_more_than_its_free_slots() {
    let mut app = TestApp::with(Options::default()).await;
    let (long_config, long_doc) = chatty_setup(&app, 3000, 0.02).await;
    let mut busy = app.worker_settings("busy", None);
    busy.concurrency = Some(1);
    app.start_worker_with(busy).await;
    let long = app
        .submit(&long_config, json!({"document_ids": [long_doc]}))
        .await;
    let long = long["id"].as_str().unwrap().to_owned();
    wait_for_engine_output(&app, &long).await;
    reconnect_worker(&app, "busy").await;
    let (config, doc) = app.sample_setup().await;
    let short = app.submit(&config, json!({"document_ids": [doc]})).await;
    app.start_worker("idle", None).await;
    let short = app.wait_for_run(short["id"].as_str().unwrap()).await;
    assert_eq!(short["status"], "succeeded", "{short}");
    assert!(
        short["worker_id"].as_str().unwrap().starts_with("idle"),
        "the busy worker's only slot was taken: {short}"
    );
    assert_eq!(app.run(&long).await["status"], "running");
    let res = app
        .post_json(&format!("/api/v1/runs/{long}/cancel"), &json!({}))
        .await;
    ok_json(res, StatusCode::ACCEPTED).await;
    assert_eq!(app.wait_for_run(&long).await["status"], "cancelled");
    app.finish().await;
}

#[tokio::test]
async fn run_creation_never_waits_for_an_unresponsive_broker() {
    // A broker that accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            held.push(socket);
        }
    });
    let app = TestApp::with(Options {
        amqp_url: Some(format!("amqp://guest:guest@{addr}/%2f")),
        ..Default::default()
    })
    .await;
    let (config, doc) = app.sample_setup().await;
    let body = json!({"options": {"document_ids": [doc]}});
    let creations = (0..30).map(|_| app.create_run(&config, &body));
    let answers = tokio::time::timeout(DEADLINE, futures_util::future::join_all(creations))
        .await
        .expect("every request is answered without waiting for the broker");
    let mut ids = Vec::new();
    for res in answers {
        ids.push(
            ok_json(res, StatusCode::CREATED).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in ids {
        let res = app
            .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
            .await;
        ok_json(res, StatusCode::ACCEPTED).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn a_cancel_whose_message_is_lost_still_stops_the_run() {
    let app = TestApp::spawn().await;
    let (config, doc) = chatty_setup(&app, 3000, 0.02).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    wait_for_engine_output(&app, &id).await;
    // Only the database flag, as if the control message had been lost.
    let db = ade_common::db::connect(&app.db_url).await.unwrap();
    db.execute(
        "UPDATE runs SET cancel_requested_at = now() WHERE id = $1",
        &[&id.parse::<uuid::Uuid>().unwrap()],
    )
    .await
    .unwrap();
    let run = app.wait_for_run(&id).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    app.finish().await;
}

/// A run (spawned, or forked by a warm engine) that starts a silent sleeper
/// and sleeps itself; the worker is SIGKILLed: within a second nothing of
/// the run is left.
async fn a_run_dies_within_a_second_of_its_worker(pool: &str) {
    let mut app = TestApp::with(Options::default()).await;
    let marker = format!("ade-orphan-{}", app.prefix);
    let (config, doc) = app.package_setup(silent_sleeper_package(&marker)).await;
    let env = [("ADE_LEASE_SECONDS", "3"), ("ADE_ENGINE_POOL", pool)];
    let doomed = app.worker_process("doomed", &env);
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    until("the run's sleeper to start", || async {
        !processes_mentioning(&marker).is_empty()
    })
    .await;
    kill(doomed, libc::SIGKILL);
    let killed = Instant::now();
    while !processes_mentioning(&marker).is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "the run outlived its worker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.wait_process(doomed).await;
    // Nobody else runs it: cancel it (queued again after the lease, or still claimed).
    let res = app
        .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    ok_json(res, StatusCode::ACCEPTED).await;
    assert_eq!(app.wait_for_run(&id).await["status"], "cancelled");
    app.finish().await;
}

#[tokio::test]
async fn a_spawned_engine_dies_within_a_second_of_its_worker() {
    a_run_dies_within_a_second_of_its_worker("off").await;
}

#[tokio::test]
async fn a_warm_engines_run_dies_within_a_second_of_its_worker() {
    a_run_dies_within_a_second_of_its_worker("on").await;
}

#[tokio::test]
async fn a_builder_killed_mid_build_is_replaced_and_its_build_finished_by_another() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = app.package_setup(slow_build_package(2.0)).await;
    let doomed = app.worker_process("doomed", &[("ADE_LEASE_SECONDS", "3")]);
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    until("the build's install_config phase", || {
        has_event(&app, &id, |e| {
            e["type"] == "build.phase.started" && e["payload"]["phase"] == "install_config"
        })
    })
    .await;
    kill(doomed, libc::SIGKILL);
    app.wait_process(doomed).await;
    let mut settings = app.worker_settings("heir", None);
    settings.lease_seconds = 3;
    app.start_worker_with(settings).await;
    let run = app.wait_for_run(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 2);
    assert!(run["worker_id"].as_str().unwrap().starts_with("heir"));
    let build = build_of(&app, &run).await;
    assert_eq!(
        build["status"], "ready",
        "finished by the second builder: {build}"
    );
    let own = ok_json(
        app.get(&format!(
            "/api/v1/builds/{}/events?limit=1000",
            build["id"].as_str().unwrap()
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    let own = own["items"].as_array().unwrap();
    assert_eq!(count_of(own, "build.started"), 2, "one start per builder");
    assert_eq!(count_of(own, "build.completed"), 1);
    assert_eq!(own.last().unwrap()["type"], "build.completed");
    assert_gapless(own);
    let events = app.all_events(&id).await;
    assert_gapless(&events);
    assert_eq!(count_of(&events, "run.retry"), 1);
    app.finish().await;
}

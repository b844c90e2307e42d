use crate::configurations::zip_of;
use crate::helpers::{DEADLINE, Options, TestApp, assert_problem, ok_json};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Instant;

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// Runs the sample once and returns the finished run.
async fn sample_run(app: &TestApp, config: &str, doc: &str, extra: Value) -> Value {
    let mut options = json!({"document_ids": [doc]});
    options
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    app.run_to_end(config, options).await
}

async fn wait_for_build(app: &TestApp, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let build = ok_json(
            app.get(&format!("/api/v1/builds/{id}")).await,
            StatusCode::OK,
        )
        .await;
        if matches!(build["status"].as_str(), Some("ready" | "failed")) {
            return build;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "build {id} did not finish: {build}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn builds_are_deduplicated_unless_forced() {
    let app = TestApp::spawn().await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let config = app.create_template_configuration(ws).await;
    let path = format!(
        "/api/v1/workspaces/{ws}/configurations/{}/builds",
        config["id"].as_str().unwrap()
    );
    let first = ok_json(app.post_json(&path, &json!({})).await, StatusCode::CREATED).await;
    let again = ok_json(
        app.post_json(&path, &json!({"options": {"force": false}}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        first["id"], again["id"],
        "an equal build in progress or ready is returned"
    );
    let id = first["id"].as_str().unwrap();
    let build = wait_for_build(&app, id).await;
    assert_eq!(build["status"], "ready", "{build}");
    assert!(
        build["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(build["config_digest"], config["content_digest"]);
    let ready_again = ok_json(app.post_json(&path, &json!({})).await, StatusCode::OK).await;
    assert_eq!(ready_again["id"], first["id"]);
    let forced = ok_json(
        app.post_json(&path, &json!({"options": {"force": true}}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_ne!(forced["id"], first["id"]);
    assert_eq!(
        wait_for_build(&app, forced["id"].as_str().unwrap()).await["status"],
        "ready"
    );

    let events = ok_json(
        app.get(&format!("/api/v1/builds/{id}/events")).await,
        StatusCode::OK,
    )
    .await;
    let events = events["items"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"build.created"));
    assert_eq!(kinds.last(), Some(&"build.completed"));
    assert_eq!(events[0]["payload"]["reason"], "on_demand");
    for phase in [
        "create_venv",
        "install_engine",
        "install_config",
        "verify_imports",
        "collect_metadata",
    ] {
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "build.phase.started" && e["payload"]["phase"] == phase),
            "{phase}"
        );
    }
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=events.len() as i64).collect::<Vec<_>>());
    let unknown = uuid::Uuid::now_v7();
    assert_problem(
        app.get(&format!("/api/v1/builds/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "build_not_found",
    )
    .await;
    assert_problem(
        app.post_json(
            &format!("/api/v1/workspaces/{ws}/configurations/{unknown}/builds"),
            &json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "configuration_not_found",
    )
    .await;
    assert_problem(
        app.post_json(&path, &json!({"options": {"fast": true}}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn a_host_without_the_venv_hydrates_it() {
    let mut app = TestApp::with(Options::default()).await;
    let host_a = app.data_dir.join("host-a");
    let host_b = app.data_dir.join("host-b");
    let (config, doc) = app.sample_setup().await;
    app.start_worker("a", Some(host_a.clone())).await;
    let first = sample_run(&app, &config, &doc, json!({})).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    app.stop_workers().await;

    app.start_worker("b", Some(host_b.clone())).await;
    let second = sample_run(&app, &config, &doc, json!({})).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(
        second["build_id"], first["build_id"],
        "one build record, two local copies"
    );
    let events = app.all_events(second["id"].as_str().unwrap()).await;
    let created = of_type(&events, "build.created");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["payload"]["reason"], "hydration");
    assert_eq!(
        of_type(&events, "run.started")[0]["payload"]["env_reused"],
        false
    );

    // Host B now has it: the next run reuses it without building.
    let third = sample_run(&app, &config, &doc, json!({})).await;
    let events = app.all_events(third["id"].as_str().unwrap()).await;
    assert!(of_type(&events, "build.started").is_empty());
    assert_eq!(
        of_type(&events, "run.started")[0]["payload"]["env_reused"],
        true
    );

    // Deleting the venv folder by hand is safe: the next run rehydrates.
    let build = first["build_id"].as_str().unwrap();
    let ws = first["workspace_id"].as_str().unwrap();
    std::fs::remove_dir_all(host_b.join(ws).join(&config).join(build)).unwrap();
    let fourth = sample_run(&app, &config, &doc, json!({})).await;
    assert_eq!(fourth["status"], "succeeded");
    let events = app.all_events(fourth["id"].as_str().unwrap()).await;
    assert_eq!(
        of_type(&events, "build.created")[0]["payload"]["reason"],
        "hydration"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_venv_without_a_valid_marker_is_rebuilt_not_used() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.sample_setup().await;
    let first = sample_run(&app, &config, &doc, json!({})).await;
    let venv = app
        .data_dir
        .join("venvs")
        .join(first["workspace_id"].as_str().unwrap())
        .join(&config)
        .join(first["build_id"].as_str().unwrap())
        .join(".venv");
    for corrupt in ["not json", r#"{"build_id": "someone-else"}"#] {
        std::fs::write(venv.join("ade_build.json"), corrupt).unwrap();
        let run = sample_run(&app, &config, &doc, json!({})).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let events = app.all_events(run["id"].as_str().unwrap()).await;
        assert_eq!(
            of_type(&events, "build.started").len(),
            1,
            "rebuilt after marker {corrupt:?}"
        );
        let marker: Value =
            serde_json::from_slice(&std::fs::read(venv.join("ade_build.json")).unwrap()).unwrap();
        assert_eq!(marker["build_id"], first["build_id"]);
        assert!(
            marker["packages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p.as_str().unwrap().starts_with("ade-engine"))
        );
    }
    std::fs::remove_file(venv.join("ade_build.json")).unwrap();
    let run = sample_run(&app, &config, &doc, json!({})).await;
    let events = app.all_events(run["id"].as_str().unwrap()).await;
    assert_eq!(
        of_type(&events, "build.started").len(),
        1,
        "rebuilt after the marker was removed"
    );
    app.finish().await;
}

#[tokio::test]
async fn concurrent_runs_on_one_host_share_one_build() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    let mut settings = app.worker_settings("busy", None);
    settings.concurrency = Some(8);
    app.start_worker_with(settings).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(
            app.submit(&config, json!({"document_ids": [doc]})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut builds = std::collections::HashSet::new();
    for id in &ids {
        let run = app.wait_for_run(id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        builds.insert(run["build_id"].as_str().unwrap().to_owned());
        // Every run's stream shows the build it waited for, to its end.
        let events = app.all_events(id).await;
        assert_eq!(of_type(&events, "build.completed").len(), 1, "{id}");
    }
    assert_eq!(builds.len(), 1, "one build record");
    let build = builds.into_iter().next().unwrap();
    let own = ok_json(
        app.get(&format!("/api/v1/builds/{build}/events?limit=1000"))
            .await,
        StatusCode::OK,
    )
    .await;
    let own = own["items"].as_array().unwrap();
    assert_eq!(
        of_type(own, "build.started").len(),
        1,
        "exactly one build on this host"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_killed_builder_does_not_hold_up_the_next_one() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.sample_setup().await;
    // Find the build the next run will use, then impersonate a builder that
    // holds its lock and left a half-built venv behind.
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc], "dry_run": true}))
        .await;
    let (ws, build) = (
        run["workspace_id"].as_str().unwrap(),
        run["build_id"].as_str().unwrap(),
    );
    let venvs = app.data_dir.join("venvs");
    let build_dir = venvs.join(ws).join(&config).join(build);
    std::fs::remove_dir_all(&build_dir).unwrap();
    std::fs::create_dir_all(build_dir.join(".venv.tmp-dead/bin")).unwrap();
    let lock = venvs.join(".locks").join(format!("{build}.lock"));
    let mut holder = std::process::Command::new("python3")
        .args(["-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(600)"])
        .arg(&lock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");

    let waiting = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = waiting["id"].as_str().unwrap();
    // The worker is blocked on the lock: the run has started but not finished.
    let start = Instant::now();
    while app.run(id).await["status"] == "queued" {
        assert!(start.elapsed() < DEADLINE);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_ne!(app.run(id).await["status"], "succeeded");
    holder.kill().unwrap(); // SIGKILL: the kernel releases the flock
    holder.wait().unwrap();
    let run = app.wait_for_run(id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        !build_dir.join(".venv.tmp-dead").exists(),
        "leftovers of the dead builder are removed"
    );
    app.finish().await;
}

#[tokio::test]
async fn force_rebuild_makes_a_new_build() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.sample_setup().await;
    let first = sample_run(&app, &config, &doc, json!({})).await;
    let forced = sample_run(&app, &config, &doc, json!({"force_rebuild": true})).await;
    assert_eq!(forced["status"], "succeeded");
    assert_ne!(forced["build_id"], first["build_id"]);
    let events = app.all_events(forced["id"].as_str().unwrap()).await;
    assert_eq!(
        of_type(&events, "build.created")[0]["payload"]["reason"],
        "force_rebuild"
    );
    let later = sample_run(&app, &config, &doc, json!({})).await;
    assert!(later["build_id"] == forced["build_id"] || later["build_id"] == first["build_id"]);
    app.finish().await;
}

#[tokio::test]
async fn a_broken_dependency_fails_the_build_and_its_runs() {
    let app = TestApp::spawn().await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let columns = crate::configurations::template_columns();
    // The template, plus a dependency that cannot exist.
    let pyproject = crate::configurations::template_file("pyproject.toml");
    let broken = pyproject.replacen(
        "dependencies = []",
        "dependencies = [\"ade-missing-dependency @ file:///nonexistent/ade-missing-dependency\"]",
        1,
    );
    assert_ne!(broken, pyproject);
    let package = zip_of(&[
        ("pyproject.toml", &broken),
        ("README.md", "x"),
        ("src/ade_config/__init__.py", "from . import columns\n"),
        ("src/ade_config/columns.py", &columns),
    ]);
    let config = ok_json(
        app.upload_configuration(ws, package).await,
        StatusCode::CREATED,
    )
    .await;
    let doc = app.upload_sample(ws).await;
    let run = app
        .run_to_end(
            config["id"].as_str().unwrap(),
            json!({"document_ids": [doc["id"]]}),
        )
        .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["failure"]["code"], "build_failed");
    let message = run["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains("ade-missing-dependency"),
        "the message names the dependency: {message}"
    );
    let build = ok_json(
        app.get(&format!(
            "/api/v1/builds/{}",
            run["build_id"].as_str().unwrap()
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(build["status"], "failed");
    assert!(
        build["error_message"]
            .as_str()
            .unwrap()
            .contains("ade-missing-dependency")
    );
    app.finish().await;
}

#[tokio::test]
async fn a_hundred_runs_at_once_share_one_build_record() {
    let app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    let body = json!({"options": {"document_ids": [doc], "dry_run": true}});
    let url = app.url(&format!("/api/v1/configs/{config}/runs"));
    let requests = (0..100).map(|_| {
        let (url, body) = (url.clone(), body.clone());
        tokio::spawn(async move {
            crate::helpers::client()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
        })
    });
    let mut builds = std::collections::HashSet::new();
    let mut runs = Vec::new();
    for request in requests {
        let run = ok_json(request.await.unwrap(), StatusCode::CREATED).await;
        builds.insert(run["build_id"].as_str().unwrap().to_owned());
        runs.push(run["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(builds.len(), 1, "one build for equal content: {builds:?}");
    // No worker here: cancel them (queued runs end at once).
    for id in runs {
        let res = app
            .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
            .await;
        ok_json(res, StatusCode::ACCEPTED).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn a_build_past_its_timeout_fails_its_run() {
    let mut app = TestApp::with(Options::default()).await;
    let columns = crate::configurations::template_columns();
    // Importing the rules hangs outside a run, so the build's import check never ends.
    let hang = "\nimport os as _os, time as _time\nif not _os.environ.get('ADE_EVENTS_FD'):\n    _time.sleep(600)\n";
    let (config, doc) = app
        .package_setup(crate::configurations::config_package(&(columns + hang)))
        .await;
    let mut settings = app.worker_settings("w", None);
    // Long enough for the trusted steps (venv, engine and its dependencies)
    // on a cold cache; the hanging import check then runs into it.
    settings.build_timeout_seconds = 20;
    app.start_worker_with(settings).await;
    let run = sample_run(&app, &config, &doc, json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["failure"]["code"], "build_failed");
    let message = run["failure"]["message"].as_str().unwrap();
    assert!(message.contains("timed out"), "{message}");
    let build = ok_json(
        app.get(&format!(
            "/api/v1/builds/{}",
            run["build_id"].as_str().unwrap()
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(build["status"], "failed");
    app.finish().await;
}

use crate::configurations::config_package;
use crate::helpers::{Options, TestApp, assert_gapless, assert_problem, ok_json};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_run_succeeds_with_outputs_and_a_complete_log() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.sample_setup().await;
    let res = app
        .create_run(&config, &json!({"options": {"document_ids": [doc]}}))
        .await;
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let run = ok_json(res, StatusCode::CREATED).await;
    let id = run["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/runs/{id}"));
    assert_eq!(run["status"], "queued");
    assert_eq!(
        run["links"]["logfile"],
        format!("/api/v1/runs/{id}/logfile")
    );

    let run = app.wait_for_run(id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["exit_code"], 0);
    assert_eq!(run["attempt"], 1);
    assert!(run["build_id"].is_string() && run["duration_ms"].is_i64());

    let events = app.all_events(id).await;
    assert_gapless(&events);
    let kinds = types(&events);
    assert_eq!(kinds.first(), Some(&"run.queued"));
    assert_eq!(kinds.last(), Some(&"run.completed"));
    for expected in [
        "build.created",
        "build.started",
        "build.phase.started",
        "build.completed",
        "run.started",
        "run.phase.started",
        "run.table.summary",
        "console.line",
    ] {
        assert!(kinds.contains(&expected), "no {expected} in {kinds:?}");
    }
    assert!(
        events
            .iter()
            .all(|e| e["run_id"] == id && e["event_id"].as_str().unwrap().starts_with("evt_"))
    );
    let summary = events
        .iter()
        .find(|e| e["type"] == "run.table.summary")
        .unwrap();
    assert_eq!(summary["source"], "engine");
    assert_eq!(summary["payload"]["rows"], 12);
    let completed = events.last().unwrap();
    assert_eq!(completed["payload"]["status"], "succeeded");
    assert_eq!(completed["payload"]["summary"]["engine"]["rows"], 12);

    let logfile = app.get(&format!("/api/v1/runs/{id}/logfile")).await;
    assert_eq!(logfile.headers()["content-type"], "application/x-ndjson");
    assert_eq!(
        logfile.headers()["content-disposition"],
        format!("attachment; filename=\"run-{id}-events.ndjson\"")
    );
    let lines: Vec<Value> = logfile
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, events, "the log file holds exactly the events");

    let outputs = ok_json(
        app.get(&format!("/api/v1/runs/{id}/outputs")).await,
        StatusCode::OK,
    )
    .await;
    let files = outputs["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    // Named after the input file (the document id), never after the upload's name.
    assert_eq!(
        names,
        [
            format!("{doc}.normalized.xlsx"),
            format!("{doc}.table-1.csv")
        ],
        "{outputs}"
    );
    assert_eq!(completed["payload"]["artifacts"]["outputs"], json!(names));
    let csv = app
        .get(files[1]["download_url"].as_str().unwrap())
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with("member_id,first_name,last_name,email,phone,joined_on,Notes"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 13);
    app.finish().await;
}

#[tokio::test]
async fn a_dry_run_writes_no_outputs() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.sample_setup().await;
    let run = app
        .submit(&config, json!({"document_ids": [doc], "dry_run": true}))
        .await;
    let id = run["id"].as_str().unwrap();
    let run = app.wait_for_run(id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let outputs = ok_json(
        app.get(&format!("/api/v1/runs/{id}/outputs")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(outputs["files"], json!([]));
    let events = app.all_events(id).await;
    assert!(
        types(&events).contains(&"run.table.summary"),
        "a dry run still reads and maps"
    );
    app.finish().await;
}

#[tokio::test]
async fn an_engine_failure_fails_the_run_with_its_stderr() {
    let app = TestApp::spawn().await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    // Imports fine (the build verifies imports), fails when the engine reads the rules.
    let columns = "class Broken(list):\n    def __iter__(self):\n        raise RuntimeError('boom: the rules are broken')\n\nFIELDS = Broken([1])\n";
    let package = config_package(columns);
    let config = ok_json(
        app.upload_configuration(ws, package).await,
        StatusCode::CREATED,
    )
    .await;
    let doc = app.upload_sample(ws).await;
    let run = app
        .submit(
            config["id"].as_str().unwrap(),
            json!({"document_ids": [doc["id"]]}),
        )
        .await;
    let id = run["id"].as_str().unwrap();
    let run = app.wait_for_run(id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["exit_code"], 1, "{run}");
    assert_eq!(run["failure"]["stage"], "run");
    assert_eq!(run["failure"]["code"], "engine_failed");
    let events = app.all_events(id).await;
    assert_gapless(&events);
    let stderr: Vec<&str> = events
        .iter()
        .filter(|e| {
            e["type"] == "console.line"
                && e["payload"]["stream"] == "stderr"
                && e["payload"]["scope"] == "run"
        })
        .map(|e| e["payload"]["message"].as_str().unwrap())
        .collect();
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("boom: the rules are broken")),
        "{stderr:?}"
    );
    assert_eq!(events.last().unwrap()["payload"]["exit_code"], 1);
    app.finish().await;
}

#[tokio::test]
async fn a_venv_that_cannot_be_built_fails_the_run_with_exit_code_2() {
    let app = TestApp::spawn().await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let package = crate::configurations::zip_of(&[
        ("pyproject.toml", "this is [not toml"),
        ("src/ade_config/__init__.py", ""),
    ]);
    let config = ok_json(
        app.upload_configuration(ws, package).await,
        StatusCode::CREATED,
    )
    .await;
    let config = config["id"].as_str().unwrap();
    let doc = app.upload_sample(ws).await;
    let run = app
        .run_to_end(config, json!({"document_ids": [doc["id"]]}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["exit_code"], 2);
    assert_eq!(run["failure"]["stage"], "build");
    assert_eq!(run["failure"]["code"], "build_failed");
    assert!(
        run["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be built"),
        "{run}"
    );
    let events = app.all_events(run["id"].as_str().unwrap()).await;
    let completed = events
        .iter()
        .find(|e| e["type"] == "build.completed")
        .unwrap();
    assert_eq!(completed["payload"]["status"], "failed");

    // The configuration's build failed: new runs fail fast until forced.
    let again = app
        .create_run(config, &json!({"options": {"document_ids": [doc["id"]]}}))
        .await;
    assert_problem(again, StatusCode::CONFLICT, "environment_not_ready").await;
    let forced = app
        .run_to_end(
            config,
            json!({"document_ids": [doc["id"]], "force_rebuild": true}),
        )
        .await;
    assert_eq!(forced["exit_code"], 2);
    assert_ne!(
        forced["build_id"], run["build_id"],
        "force_rebuild makes a new build"
    );
    app.finish().await;
}

#[tokio::test]
async fn safe_mode_refuses_runs() {
    let app = TestApp::with(Options {
        safe_mode: true,
        ..Default::default()
    })
    .await;
    let (config, doc) = app.sample_setup().await;
    let res = app
        .create_run(&config, &json!({"options": {"document_ids": [doc]}}))
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "safe_mode_enabled").await;
    app.finish().await;
}

#[tokio::test]
async fn a_full_queue_refuses_runs_exactly_at_the_limit_and_admits_again_below_it() {
    const MAX: i64 = 4;
    let app = TestApp::with(Options {
        workers: 0,
        tune_api: Some(|s| s.max_queued_runs = MAX),
        ..Default::default()
    })
    .await;
    let (config, doc) = app.sample_setup().await;
    let body = json!({"options": {"document_ids": [doc]}});
    let mut queued = Vec::new();
    for _ in 0..MAX {
        let run = ok_json(app.create_run(&config, &body).await, StatusCode::CREATED).await;
        queued.push(run["id"].as_str().unwrap().to_owned());
    }
    let res = app.create_run(&config, &body).await;
    assert_eq!(res.headers()["retry-after"], "5");
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "run_queue_full").await;

    // One leaves the queue: the next request counts again and is admitted.
    let cancel = |id: String| {
        let app = &app;
        async move {
            let res = app
                .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
                .await;
            ok_json(res, StatusCode::ACCEPTED).await;
        }
    };
    cancel(queued.pop().unwrap()).await;
    let run = ok_json(app.create_run(&config, &body).await, StatusCode::CREATED).await;
    queued.push(run["id"].as_str().unwrap().to_owned());
    let res = app.create_run(&config, &body).await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "run_queue_full").await;

    for id in queued {
        cancel(id).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn unknown_configurations_documents_and_runs_are_404() {
    let app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    let unknown = uuid::Uuid::now_v7();
    let res = app
        .create_run(
            &unknown.to_string(),
            &json!({"options": {"document_ids": [doc]}}),
        )
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "configuration_not_found").await;
    let res = app
        .create_run(&config, &json!({"options": {"document_ids": [unknown]}}))
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "document_not_found").await;
    // A document of another workspace is not visible either.
    let other = app.create_workspace().await;
    let foreign = app.upload_sample(other["id"].as_str().unwrap()).await;
    let res = app
        .create_run(
            &config,
            &json!({"options": {"document_ids": [foreign["id"]]}}),
        )
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "document_not_found").await;
    for path in ["", "/events", "/logfile", "/outputs", "/outputs/x.csv"] {
        assert_problem(
            app.get(&format!("/api/v1/runs/{unknown}{path}")).await,
            StatusCode::NOT_FOUND,
            "run_not_found",
        )
        .await;
    }
    app.finish().await;
}

#[tokio::test]
async fn bad_options_are_422() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.sample_setup().await;
    let cases = [
        (json!({"options": {"document_ids": []}}), "invalid_options"),
        (
            json!({"options": {"document_ids": [doc, doc]}}),
            "invalid_options",
        ),
        (
            json!({"options": {"document_ids": [doc], "metadata": {"": "x"}}}),
            "invalid_options",
        ),
        (
            json!({"options": {"document_ids": [doc], "dry_run": "yes"}}),
            "invalid_request",
        ),
        (
            json!({"options": {"document_ids": [doc], "turbo": true}}),
            "invalid_request",
        ),
        (
            json!({"options": {"document_ids": ["not-a-uuid"]}}),
            "invalid_request",
        ),
        (json!({"option": {}}), "invalid_request"),
    ];
    for (body, code) in cases {
        let res = app.create_run(&config, &body).await;
        let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, code).await;
        if code == "invalid_options" {
            assert!(
                problem["errors"][0]["field"]
                    .as_str()
                    .unwrap()
                    .starts_with("options."),
                "{problem}"
            );
        }
    }
    let run = app
        .submit(&config, json!({"document_ids": [doc], "dry_run": true}))
        .await;
    let id = run["id"].as_str().unwrap();
    for query in ["limit=0", "limit=1001", "after_sequence=-1", "colour=red"] {
        let res = app.get(&format!("/api/v1/runs/{id}/events?{query}")).await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query").await;
    }
    app.wait_for_run(id).await;
    app.finish().await;
}

#[tokio::test]
async fn idempotency_keys_return_the_same_run() {
    let app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    let body = json!({"options": {"document_ids": [doc], "dry_run": true}});
    let send = |body: Value| {
        let url = app.url(&format!("/api/v1/configs/{config}/runs"));
        async move {
            crate::helpers::client()
                .post(url)
                .header("idempotency-key", "k-1")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let first = ok_json(send(body.clone()).await, StatusCode::CREATED).await;
    let second = ok_json(send(body).await, StatusCode::OK).await;
    assert_eq!(first["id"], second["id"]);
    let different = send(json!({"options": {"document_ids": [doc]}})).await;
    assert_problem(different, StatusCode::CONFLICT, "idempotency_key_reused").await;
    // No worker here: start one so the run finishes and nothing is left queued.
    let mut app = app;
    app.start_worker("late", None).await;
    app.wait_for_run(first["id"].as_str().unwrap()).await;
    app.finish().await;
}

#[tokio::test]
async fn runs_are_listed_newest_first_with_filters() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.sample_setup().await;
    let a = app
        .submit(&config, json!({"document_ids": [doc], "dry_run": true}))
        .await;
    let b = app
        .submit(&config, json!({"document_ids": [doc], "dry_run": true}))
        .await;
    // The alias path creates runs too.
    let c = ok_json(
        app.post_json(
            &format!("/api/v1/configurations/{config}/runs"),
            &json!({"options": {"document_ids": [doc], "dry_run": true}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    for run in [&a, &b, &c] {
        app.wait_for_run(run["id"].as_str().unwrap()).await;
    }
    let ws = a["workspace_id"].as_str().unwrap();
    let page = ok_json(
        app.get(&format!("/api/v1/workspaces/{ws}/runs?limit=2"))
            .await,
        StatusCode::OK,
    )
    .await;
    let ids: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, vec![&c["id"], &b["id"]]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = ok_json(
        app.get(&format!(
            "/api/v1/workspaces/{ws}/runs?limit=2&cursor={cursor}"
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rest["items"][0]["id"], a["id"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    let succeeded = ok_json(
        app.get(&format!(
            "/api/v1/workspaces/{ws}/runs?status=succeeded&configuration_id={config}"
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(succeeded["items"].as_array().unwrap().len(), 3);
    let failed = ok_json(
        app.get(&format!("/api/v1/workspaces/{ws}/runs?status=failed"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(failed["items"], json!([]));
    assert_problem(
        app.get(&format!("/api/v1/workspaces/{ws}/runs?status=bogus"))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_query",
    )
    .await;
    app.finish().await;
}

use crate::helpers::{Options, TestApp, assert_problem, follow_url};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The template configuration, plus `lines` lines printed during each run
/// (`delay_s` apart), so runs produce many console events.
pub fn chatty_package(lines: usize, delay_s: f64) -> Vec<u8> {
    crate::fixtures::run_code_package(&format!(
        "import time\nfor i in range({lines}):\n    print(f'line {{i}}', flush=True)\n    if {delay_s}:\n        time.sleep({delay_s})"
    ))
}

pub async fn chatty_setup(app: &TestApp, lines: usize, delay_s: f64) -> (String, String) {
    app.package_setup(chatty_package(lines, delay_s)).await
}

async fn logfile(app: &TestApp, id: &str) -> Vec<Value> {
    let text = app
        .get(&format!("/api/v1/runs/{id}/logfile"))
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn followers_from_before_the_start_see_exactly_the_log_file() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = chatty_setup(&app, 300, 0.0).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/runs/{id}/events?stream=true");
    let sse = tokio::spawn(follow_url(app.url(&path).leak(), true, None));
    let ndjson = tokio::spawn(follow_url(app.url(&path).leak(), false, None));
    // The followers are waiting on a queued run; now a worker picks it up.
    app.start_worker("late", None).await;
    let (sse, ndjson) = (sse.await.unwrap(), ndjson.await.unwrap());
    let log = logfile(&app, &id).await;
    assert_eq!(log.last().unwrap()["type"], "run.completed");
    assert!(log.len() > 300, "{} events", log.len());
    assert_eq!(sse, log, "SSE follower saw every event once, in order");
    assert_eq!(
        ndjson, log,
        "NDJSON follower saw every event once, in order"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_stream_resumes_after_last_event_id() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.sample_setup().await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap();
    app.wait_for_run(id).await;
    let log = logfile(&app, id).await;
    let path = format!("/api/v1/runs/{id}/events?stream=true");
    let resumed = app.follow(&path, true, Some(5)).await;
    assert_eq!(
        resumed,
        log[5..].to_vec(),
        "continues exactly after sequence 5"
    );
    let by_query = app
        .follow(&format!("{path}&after_sequence=7"), false, None)
        .await;
    assert_eq!(by_query, log[7..].to_vec());
    // A follower arriving after the end gets the replay and the end.
    assert_eq!(app.follow(&path, false, None).await, log);
    // One resuming after the last event gets nothing, and the stream closes.
    assert!(
        app.follow(&path, true, Some(log.len() as i64))
            .await
            .is_empty()
    );
    let bad = crate::helpers::client()
        .get(app.url(&path))
        .header("last-event-id", "abc")
        .send()
        .await
        .unwrap();
    assert_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    app.finish().await;
}

#[tokio::test]
async fn followers_on_two_api_instances_see_every_event() {
    let mut app = TestApp::with(Options::default()).await;
    let second = app.spawn_api().await;
    let (config, doc) = chatty_setup(&app, 500, 0.0).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/runs/{id}/events?stream=true");
    let first = tokio::spawn(follow_url(app.url(&path).leak(), true, None));
    let other = tokio::spawn(follow_url(format!("{second}{path}").leak(), true, None));
    app.start_worker("w", None).await;
    let log_first = first.await.unwrap();
    let log_other = other.await.unwrap();
    let log = logfile(&app, &id).await;
    assert_eq!(log_first, log);
    assert_eq!(log_other, log);
    app.finish().await;
}

#[tokio::test]
async fn fifty_followers_of_one_run_all_see_every_event() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = chatty_setup(&app, 200, 0.0).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    let url: &'static str = app
        .url(&format!("/api/v1/runs/{id}/events?stream=true"))
        .leak();
    let followers: Vec<_> = (0..50)
        .map(|n| tokio::spawn(follow_url(url, n % 2 == 0, None)))
        .collect();
    app.start_worker("w", None).await;
    let mut seen = Vec::new();
    for f in followers {
        seen.push(f.await.unwrap());
    }
    let log = logfile(&app, &id).await;
    assert!(
        seen.iter().all(|s| *s == log),
        "every follower got the whole log"
    );
    app.finish().await;
}

#[tokio::test]
async fn followers_survive_broker_connections_closing_mid_run() {
    let app = TestApp::spawn().await;
    let (config, doc) = chatty_setup(&app, 400, 0.005).await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    let url: &'static str = app
        .url(&format!("/api/v1/runs/{id}/events?stream=true"))
        .leak();
    let followers: Vec<_> = (0..4)
        .map(|n| tokio::spawn(follow_url(url, n % 2 == 0, None)))
        .collect();
    // Wait until the engine is printing, then cut every connection of this test.
    let start = std::time::Instant::now();
    while !app
        .all_events(&id)
        .await
        .iter()
        .any(|e| e["type"] == "console.line" && e["payload"]["scope"] == "run")
    {
        assert!(start.elapsed() < crate::helpers::DEADLINE);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        app.close_broker_connections() >= 2,
        "the API's and the worker's connections were closed"
    );
    let run = app.wait_for_run(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let log = logfile(&app, &id).await;
    for f in followers {
        assert_eq!(f.await.unwrap(), log);
    }
    app.finish().await;
}

#[tokio::test]
async fn creating_with_stream_true_returns_the_stream() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.sample_setup().await;
    let res = crate::helpers::client()
        .post(app.url(&format!("/api/v1/configs/{config}/runs")))
        .header("accept", "text/event-stream")
        .json(&json!({"stream": true, "options": {"document_ids": [doc]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body = res.text().await.unwrap();
    assert!(body.contains("event: run.completed"), "{body}");
    let id = location.rsplit('/').next().unwrap();
    assert_eq!(app.run(id).await["status"], "succeeded");

    let ws = app.run(id).await["workspace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .post_json(
            &format!("/api/v1/workspaces/{ws}/configurations/{config}/builds"),
            &json!({"stream": true, "options": {"force": true}}),
        )
        .await;
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let events: Vec<Value> = res
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["type"], "build.created");
    assert_eq!(events.last().unwrap()["type"], "build.completed");
    app.finish().await;
}

#[tokio::test]
async fn following_an_unknown_run_or_build_is_404() {
    let app = TestApp::with(Options::default()).await;
    let unknown = uuid::Uuid::now_v7();
    let res = app
        .get(&format!("/api/v1/runs/{unknown}/events?stream=true"))
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "run_not_found").await;
    let res = app
        .get(&format!("/api/v1/builds/{unknown}/events?stream=true"))
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "build_not_found").await;
    app.finish().await;
}

#[tokio::test]
async fn followers_catch_up_on_events_missed_while_the_api_reconnects() {
    use ade_common::events::{EventKind, NewEvent, Source, append};
    use ade_common::lifecycle::Fence;
    // The quiet check is an hour here: only the resync after a reconnect can help.
    let app = TestApp::with(crate::helpers::Options {
        workers: 1,
        tune_api: Some(|s| s.stream_quiet_check_seconds = 3600),
        ..Default::default()
    })
    .await;
    let (config, doc) = app
        .package_setup(crate::fixtures::run_code_package(
            "print('working', flush=True)\nimport time\ntime.sleep(600)",
        ))
        .await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    let followers: Vec<_> = (0..3)
        .map(|_| {
            crate::follow::follow_live(app.url(&format!("/api/v1/runs/{id}/events?stream=true")))
        })
        .collect();
    let caught_up = async |last: i64| {
        for f in &followers {
            let start = std::time::Instant::now();
            while f.last.load(std::sync::atomic::Ordering::SeqCst) < last {
                assert!(
                    start.elapsed() < crate::helpers::DEADLINE,
                    "a follower stayed behind {last}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    let until_working = std::time::Instant::now();
    while !app
        .all_events(&id)
        .await
        .iter()
        .any(|e| e["payload"]["message"] == "working")
    {
        assert!(until_working.elapsed() < crate::helpers::DEADLINE);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    caught_up(
        app.all_events(&id).await.last().unwrap()["sequence"]
            .as_i64()
            .unwrap(),
    )
    .await;

    // An event committed but never delivered live (published while this API
    // had no queue on the events exchange), then the API reconnects.
    let pool = ade_common::db::pool(&app.db_url, 1).unwrap();
    let stored = app.all_events(&id).await;
    let last = &stored[stored.len() - 1];
    let origin = ade_common::events::Origin {
        stream: ade_common::events::StreamRef::Run(id.parse().unwrap()),
        workspace_id: last["workspace_id"].as_str().unwrap().parse().unwrap(),
        configuration_id: last["configuration_id"].as_str().unwrap().parse().unwrap(),
        build_id: None,
        attempt: Some(1),
    };
    let missed = NewEvent::new(
        EventKind::ConsoleLine,
        Source::Worker,
        json!({"message": "missed"}),
    );
    let written = append(
        &pool.get().await.unwrap(),
        &origin,
        &Fence::Unfenced,
        &[missed],
    )
    .await
    .unwrap()
    .written();
    let api_events = |n: &str| n.starts_with("api:") && n.ends_with(":events");
    assert_eq!(app.close_broker_connections_where(api_events), 1);
    caught_up(written[0].sequence).await;
    assert_eq!(
        app.run(&id).await["status"],
        "running",
        "caught up before the run ended"
    );

    let res = app
        .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    crate::helpers::ok_json(res, reqwest::StatusCode::ACCEPTED).await;
    app.wait_for_run(&id).await;
    let log = logfile(&app, &id).await;
    for f in followers {
        assert_eq!(f.events.await.unwrap(), log);
    }
    app.finish().await;
}

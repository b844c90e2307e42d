//! Metrics: a run measured on the worker that ran it, its follower on the
//! API, failures by code, and what the API counts itself.

use crate::configurations::config_package;
use crate::follow::follow_live;
use crate::helpers::{DEADLINE, Options, TestApp, client, ok_json};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

/// The value of the series `series` (name and labels, exactly as written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a sample value"))
}

/// Scrapes `url` until `series` has the value `want`; returns the text.
async fn scrape_until(url: &str, series: &str, want: f64) -> String {
    let start = Instant::now();
    loop {
        let res = client().get(url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("application/openmetrics-text"));
        let text = res.text().await.unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        if value(&text, series) == Some(want) {
            return text;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{series} never became {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_run_is_measured_by_its_worker_and_its_follower_by_the_api() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap();
    let follower = follow_live(app.url(&format!("/api/v1/runs/{id}/events?stream=true")));
    let api = app.url("/metrics");
    scrape_until(&api, "ade_stream_followers", 1.0).await;

    let worker = app.start_worker_with_metrics("measured").await;
    let events = tokio::time::timeout(DEADLINE, follower.events)
        .await
        .expect("the stream ends")
        .unwrap();
    assert_eq!(events.last().unwrap()["type"], "run.completed");
    assert_eq!(app.wait_for_run(id).await["status"], "succeeded");

    let text = scrape_until(&api, "ade_stream_followers", 0.0).await;
    let lag = value(&text, "ade_event_delivery_lag_seconds_count").unwrap();
    assert!(lag >= 1.0, "live events were delivered:\n{text}");
    let series = r#"ade_runs_completed_total{status="succeeded",code="none"}"#;
    let text = scrape_until(&worker, series, 1.0).await;
    assert_eq!(value(&text, "ade_run_duration_seconds_count"), Some(1.0));
    assert_eq!(value(&text, "ade_run_queue_wait_seconds_count"), Some(1.0));
    assert!(value(&text, "ade_run_queue_wait_seconds_sum").unwrap() > 0.0);
    assert_eq!(value(&text, "ade_worker_slots_busy"), Some(0.0));
    assert_eq!(value(&text, "ade_worker_slots_free"), Some(2.0));
    let misses = value(&text, "ade_venv_cache_misses_total").unwrap();
    assert!(misses >= 1.0, "the venv was built on this host:\n{text}");
    assert_eq!(value(&text, "ade_build_duration_seconds_count"), Some(1.0));
    for name in [
        "ade_venv_cache_hits_total",
        "ade_venv_cache_evictions_total",
    ] {
        assert!(value(&text, name).is_some(), "{name}:\n{text}");
    }
    assert_eq!(value(&text, "ade_messages_dead_lettered_total"), Some(0.0));
    app.finish().await;
}

#[tokio::test]
async fn a_failed_run_is_counted_by_its_failure_code() {
    let mut app = TestApp::with(Options::default()).await;
    let worker = app.start_worker_with_metrics("failing").await;
    let columns = "class Broken(list):\n    def __iter__(self):\n        raise RuntimeError('boom')\n\nFIELDS = Broken([1])\n";
    let (config, doc) = app.package_setup(config_package(columns)).await;
    let run = app
        .run_to_end(&config, json!({"document_ids": [doc]}))
        .await;
    assert_eq!(run["failure"]["code"], "engine_failed", "{run}");
    let series = r#"ade_runs_completed_total{status="failed",code="engine_failed"}"#;
    let text = scrape_until(&worker, series, 1.0).await;
    let succeeded = r#"ade_runs_completed_total{status="succeeded",code="none"}"#;
    assert_eq!(value(&text, succeeded), None, "{text}");
    assert_eq!(value(&text, "ade_run_duration_seconds_count"), Some(1.0));
    app.finish().await;
}

#[tokio::test]
async fn the_api_counts_the_runs_it_ends_and_reads_the_queue_at_scrape_time() {
    let app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    let run = app.submit(&config, json!({"document_ids": [doc]})).await;
    let id = run["id"].as_str().unwrap();
    let api = app.url("/metrics");
    scrape_until(&api, "ade_runs_queued", 1.0).await;
    ok_json(
        app.post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let series = r#"ade_runs_completed_total{status="cancelled",code="none"}"#;
    let text = scrape_until(&api, series, 1.0).await;
    assert_eq!(value(&text, "ade_runs_queued"), Some(0.0));
    assert_eq!(
        value(&text, "ade_run_duration_seconds_count"),
        Some(0.0),
        "a run that never started has no duration"
    );
    app.finish().await;
}

use crate::helpers::{Options, TestApp, count_of};
use ade_common::events::StreamRef;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn two_workers_share_the_queue_and_each_run_executes_once() {
    let app = TestApp::with(Options {
        workers: 2,
        ..Default::default()
    })
    .await;
    let (config, doc) = app.sample_setup().await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        let run = app.submit(&config, json!({"document_ids": [doc]})).await;
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    let mut workers = HashSet::new();
    for id in &ids {
        let run = app.wait_for_run(id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["attempt"], 1);
        workers.insert(run["worker_id"].as_str().unwrap().to_owned());
        let events = app.all_events(id).await;
        assert_eq!(count_of(&events, "run.started"), 1, "run {id} started once");
        assert_eq!(
            count_of(&events, "run.completed"),
            1,
            "run {id} completed once"
        );
    }
    assert!(
        workers.iter().all(|w| w.starts_with("worker-")),
        "{workers:?}"
    );
    // Both workers built from one build record: at most one build.created in all.
    let mut created = 0;
    for id in &ids {
        created += count_of(&app.all_events(id).await, "build.created");
    }
    assert_eq!(created, 1);
    app.finish().await;
}

#[tokio::test]
async fn duplicate_and_poison_messages_are_harmless() {
    let app = TestApp::spawn().await;
    let (config, doc) = app.sample_setup().await;
    let run = app
        .submit(&config, json!({"document_ids": [doc], "dry_run": true}))
        .await;
    let id = run["id"].as_str().unwrap();
    app.wait_for_run(id).await;

    let publisher = app.job_publisher().await;
    let run_id: uuid::Uuid = id.parse().unwrap();
    publisher.publish_job(StreamRef::Run(run_id)).await.unwrap();
    publisher
        .publish(&format!("{}.jobs", app.prefix), "runs", b"not json")
        .await
        .unwrap();
    // A later run still goes through, so the worker survived the poison message,
    // and the duplicate did not start the finished run again.
    let later = app
        .submit(&config, json!({"document_ids": [doc], "dry_run": true}))
        .await;
    assert_eq!(
        app.wait_for_run(later["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    let events = app.all_events(id).await;
    assert_eq!(count_of(&events, "run.started"), 1);
    assert_eq!(count_of(&events, "run.completed"), 1);
    app.finish().await;
}

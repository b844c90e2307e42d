//! Moving between releases. Migrations across a rollback: the previous
//! release must start on a schema a newer release migrated (the runbook's
//! "roll back the image, leave the schema in place"), and a schema with a
//! hole must still be refused. Job queues: classic queues of a release
//! before quorum queues are named as such, and the runbook's move works.

use crate::helpers::{Options, TestApp, client};
use ade_common::amqp::{BrokerError, Topology};
use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use serde_json::json;

const APPLIED_BY_A_NEWER_RELEASE: i32 = 9_999;

async fn history(app: &TestApp, sql: &str) {
    let db = ade_common::db::connect(&app.db_url).await.unwrap();
    db.batch_execute(sql).await.unwrap();
}

#[tokio::test]
async fn a_binary_starts_on_a_schema_migrated_by_a_newer_release() {
    let mut app = TestApp::with(Options::default()).await;
    history(
        &app,
        &format!(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES ({APPLIED_BY_A_NEWER_RELEASE}, 'from_the_future', now()::text, '1')"
        ),
    )
    .await;

    ade_common::db::migrate(&app.db_url)
        .await
        .expect("an older binary accepts a newer schema");
    // A whole API (it migrates at start) serves on it.
    let base = app.spawn_api().await;
    let res = client()
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.finish().await;
}

#[tokio::test]
async fn a_schema_missing_an_older_migration_is_refused() {
    let app = TestApp::with(Options::default()).await;
    history(
        &app,
        "DELETE FROM refinery_schema_history WHERE version = 2",
    )
    .await;

    let err = ade_common::db::migrate(&app.db_url)
        .await
        .expect_err("a hole in the history is not a rollback");
    assert!(
        format!("{err:#}").contains("applying migrations"),
        "{err:#}"
    );
    app.finish().await;
}

#[tokio::test]
async fn classic_job_queues_of_an_earlier_release_are_named_and_moved_as_the_runbook_says() {
    let mut app = TestApp::with(Options::default()).await;
    let (config, doc) = app.sample_setup().await;
    // The runs queue as a release before quorum queues left it: classic,
    // bound to the jobs exchange.
    let url = ade_common::settings::amqp_url_from_env();
    let conn = ade_common::amqp::connect(&url, "test-earlier-release")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let topology = Topology::new(app.prefix.clone());
    let runs = topology.runs_queue();
    let delete = QueueDeleteOptions::default();
    channel
        .queue_delete(runs.as_str().into(), delete)
        .await
        .unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(runs.as_str().into(), durable, Default::default())
        .await
        .unwrap();
    channel
        .queue_bind(
            runs.as_str().into(),
            topology.jobs_exchange().as_str().into(),
            ade_common::amqp::RUNS_KEY.into(),
            QueueBindOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();

    // Declaring this release's topology names the queue and the way out.
    let declared = conn.create_channel().await.unwrap();
    let err = ade_common::amqp::declare(&declared, &topology)
        .await
        .expect_err("a classic queue cannot become a quorum queue");
    let text = err.to_string();
    assert!(
        matches!(&err, BrokerError::Inequivalent { queue, .. } if *queue == runs),
        "{text}"
    );
    assert!(
        text.contains("Moving the job queues to quorum queues"),
        "{text}"
    );

    // A worker of this release cannot consume; a run accepted meanwhile waits.
    app.start_worker("w", None).await;
    let id = app
        .submit(&config, json!({"document_ids": [doc], "dry_run": true}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(app.run(&id).await["status"], "queued");

    // The runbook's move: delete the classic queues, offer again what waits.
    channel
        .queue_delete(runs.as_str().into(), delete)
        .await
        .unwrap();
    let db = ade_common::db::connect(&app.db_url).await.unwrap();
    db.batch_execute(
        "UPDATE runs SET dispatched_at = NULL WHERE status = 'queued';
         UPDATE builds SET dispatched_at = NULL WHERE status = 'queued' AND reason = 'on_demand';",
    )
    .await
    .unwrap();
    let run = app.wait_for_run(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let _ = conn.close(200, "done".into()).await;
    app.finish().await;
}

//! Migrations across a rollback: the previous release must start on a schema
//! a newer release migrated (the runbook's "roll back the image, leave the
//! schema in place"), and a schema with a hole must still be refused.

use crate::helpers::{Options, TestApp, client};

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

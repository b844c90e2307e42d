//! Retention: expired terminal runs go with their events and files; recent
//! and open runs stay; `ADE_RETENTION_DAYS=0` keeps everything.

use crate::helpers::{Options, TestApp, ok_json};
use ade_api::settings::ApiSettings;
use ade_common::metrics::Metrics;
use ade_common::settings::CommonSettings;
use reqwest::StatusCode;
use serde_json::json;
use std::path::PathBuf;
use uuid::Uuid;

struct Fixture {
    app: TestApp,
    pool: deadpool_postgres::Pool,
    settings: ApiSettings,
}

impl Fixture {
    async fn new() -> Self {
        let app = TestApp::with(Options::default()).await;
        let pool = ade_common::db::pool(&app.db_url, 2).unwrap();
        let common =
            CommonSettings::for_tests(app.db_url.clone(), app.prefix.clone(), app.data_dir.clone());
        Self {
            settings: ApiSettings::for_tests(common),
            app,
            pool,
        }
    }

    /// A queued run (no worker runs it here).
    async fn queued(&self, config: &str, doc: &str) -> Uuid {
        let run = self
            .app
            .submit(config, json!({"document_ids": [doc]}))
            .await;
        run["id"].as_str().unwrap().parse().unwrap()
    }

    /// A cancelled run that finished `days` days ago, with a file in its folder.
    async fn ended(&self, config: &str, doc: &str, days: i32) -> Uuid {
        let id = self.queued(config, doc).await;
        self.cancel(id).await;
        let file = self.folder(id).join("attempts/1/outputs/out.csv");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, "a,b\n").unwrap();
        self.backdate(id, days).await;
        id
    }

    async fn cancel(&self, id: Uuid) {
        let res = self
            .app
            .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
            .await;
        ok_json(res, StatusCode::ACCEPTED).await;
    }

    async fn backdate(&self, id: Uuid, days: i32) {
        let db = self.pool.get().await.unwrap();
        db.execute(
            "UPDATE runs SET created_at = created_at - make_interval(days => $2),
                             completed_at = completed_at - make_interval(days => $2)
             WHERE id = $1",
            &[&id, &days],
        )
        .await
        .unwrap();
    }

    fn folder(&self, id: Uuid) -> PathBuf {
        self.app.data_dir.join("runs").join(id.to_string())
    }

    /// (run rows, event rows) of a run.
    async fn rows(&self, id: Uuid) -> (i64, i64) {
        let db = self.pool.get().await.unwrap();
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM runs WHERE id = $1),
                        (SELECT count(*) FROM run_events WHERE run_id = $1)",
                &[&id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    async fn collect(&self, days: u32) -> (usize, u64) {
        let mut settings = self.settings.clone();
        settings.retention_days = days;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let deleted = ade_api::retention::collect_once(&self.pool, &settings, &metrics)
            .await
            .unwrap();
        (deleted, metrics.retention_deleted.get())
    }
}

#[tokio::test]
async fn expired_terminal_runs_go_with_their_events_and_files_and_nothing_else() {
    let f = Fixture::new().await;
    let (config, doc) = f.app.sample_setup().await;
    let expired = f.ended(&config, &doc, 31).await;
    let recent = f.ended(&config, &doc, 29).await;
    let open = f.queued(&config, &doc).await;
    f.backdate(open, 90).await;
    assert!(f.rows(expired).await.1 >= 2, "run.queued and run.completed");

    assert_eq!(f.collect(0).await, (0, 0), "0 keeps everything");
    assert_eq!(f.rows(expired).await.0, 1);

    let (deleted, counted) = f.collect(30).await;
    assert_eq!(
        deleted as u64, counted,
        "the counter counts what was deleted"
    );
    assert_eq!(f.rows(expired).await, (0, 0));
    assert!(!f.folder(expired).exists(), "its files are gone");
    let res = f.app.get(&format!("/api/v1/runs/{expired}")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let (runs, events) = f.rows(recent).await;
    assert_eq!(runs, 1);
    assert!(events >= 2);
    assert!(f.folder(recent).join("attempts/1/outputs/out.csv").exists());
    assert_eq!(f.rows(open).await.0, 1, "a queued run is never collected");
    assert_eq!(f.app.run(&open.to_string()).await["status"], "queued");

    f.cancel(open).await;
    f.app.finish().await;
}

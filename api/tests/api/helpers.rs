//! `TestApp`: an isolated API (and workers) per test.
//!
//! Each test gets its own database, cloned from a template that is migrated
//! once per migration set, its own `ADE_AMQP_PREFIX`, data folder and venv
//! cache. `finish` stops everything, checks that nothing was left queued,
//! running or alive, and removes the database and the broker objects.

use ade_api::settings::ApiSettings;
use ade_common::settings::CommonSettings;
use ade_worker::settings::WorkerSettings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use crate::follow::follow_url;
pub use crate::infra::processes_mentioning;
use crate::infra::{create_from_template, delete_broker_objects, drop_database, ready_messages};

mod requests;

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn admin_url(db: &str) -> String {
    let base = std::env::var("ADE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    format!("{}/{db}", base.trim_end_matches('/'))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A running API (with optional workers) for one test.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The test's database URL.
    pub db_url: String,
    /// The test's AMQP prefix.
    pub prefix: String,
    /// The test's data folder.
    pub data_dir: PathBuf,
    /// An admin API key (also sent by [`client`]).
    pub key: String,
    db_name: String,
    client: reqwest::Client,
    api: (CancellationToken, JoinHandle<anyhow::Result<()>>),
    extra_apis: Vec<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    workers: Vec<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    processes: Vec<std::process::Child>,
}

/// How to start a `TestApp`.
#[derive(Default)]
pub struct Options {
    /// Workers to start at once.
    pub workers: usize,
    /// `ADE_SAFE_MODE`.
    pub safe_mode: bool,
    /// The first API's broker URL (default: the real broker).
    pub amqp_url: Option<String>,
    /// Changes to the first API's settings.
    pub tune_api: Option<fn(&mut ApiSettings)>,
}

impl TestApp {
    /// An API with one worker.
    pub async fn spawn() -> Self {
        Self::with(Options {
            workers: 1,
            ..Default::default()
        })
        .await
    }

    /// An API configured by `options`.
    pub async fn with(options: Options) -> Self {
        tracing_subscriber_init();
        let db_name = format!("ade_test_{}", Uuid::now_v7().simple());
        create_from_template(&db_name).await;
        let prefix = format!("test-{}", Uuid::now_v7().simple());
        let data_dir = std::env::temp_dir().join("ade-tests").join(&prefix);
        std::fs::create_dir_all(&data_dir).unwrap();
        let db_url = admin_url(&db_name);
        let mut settings = ApiSettings::for_tests(CommonSettings::for_tests(
            db_url.clone(),
            prefix.clone(),
            data_dir.clone(),
        ));
        settings.safe_mode = options.safe_mode;
        if let Some(url) = options.amqp_url {
            settings.common.amqp_url = url;
        }
        if let Some(tune) = options.tune_api {
            tune(&mut settings);
        }
        let app = ade_api::Application::build(settings)
            .await
            .expect("the API starts");
        let base = format!("http://{}", app.addr());
        let token = CancellationToken::new();
        let stop = token.clone();
        let api = (
            token,
            tokio::spawn(app.run_until(async move { stop.cancelled().await })),
        );
        let key = make_key(&db_url, ade_api::keys::Scope::Admin).await;
        ADMIN_KEY.get_or_init(|| key.clone());
        let mut this = Self {
            base,
            db_url,
            prefix,
            data_dir,
            db_name,
            key: key.clone(),
            client: client_with(&key),
            api,
            extra_apis: vec![],
            workers: vec![],
            processes: vec![],
        };
        for n in 0..options.workers {
            this.start_worker(&format!("worker-{n}"), None).await;
        }
        this
    }

    /// Settings for a worker of this app; `venvs` defaults to the app's own cache.
    pub fn worker_settings(&self, name: &str, venvs: Option<PathBuf>) -> WorkerSettings {
        let common = CommonSettings::for_tests(
            self.db_url.clone(),
            self.prefix.clone(),
            self.data_dir.clone(),
        );
        let venvs = venvs.unwrap_or_else(|| self.data_dir.join("venvs"));
        let mut settings = WorkerSettings::for_tests(common, venvs);
        settings.worker_id = Some(format!("{name}-{}", &self.prefix[5..13]));
        settings
    }

    /// Starts a worker with the given id prefix.
    pub async fn start_worker(&mut self, name: &str, venvs: Option<PathBuf>) {
        self.start_worker_with(self.worker_settings(name, venvs))
            .await;
    }

    /// Starts a worker with explicit settings.
    pub async fn start_worker_with(&mut self, settings: WorkerSettings) {
        let worker = ade_worker::Worker::build(settings)
            .await
            .expect("the worker starts");
        let token = CancellationToken::new();
        let handle = tokio::spawn(worker.run(token.clone()));
        self.workers.push((token, handle));
    }

    /// Starts a worker serving its metrics on an ephemeral port; returns
    /// the endpoint's URL.
    pub async fn start_worker_with_metrics(&mut self, name: &str) -> String {
        let mut settings = self.worker_settings(name, None);
        settings.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        let worker = ade_worker::Worker::build(settings)
            .await
            .expect("the worker starts");
        let addr = worker
            .metrics_addr()
            .expect("the metrics endpoint is bound");
        let token = CancellationToken::new();
        let handle = tokio::spawn(worker.run(token.clone()));
        self.workers.push((token, handle));
        format!("http://{addr}/metrics")
    }

    /// Starts another API instance on the same database and broker; returns its base URL.
    pub async fn spawn_api(&mut self) -> String {
        let common = CommonSettings::for_tests(
            self.db_url.clone(),
            self.prefix.clone(),
            self.data_dir.clone(),
        );
        let app = ade_api::Application::build(ApiSettings::for_tests(common))
            .await
            .expect("the API starts");
        let base = format!("http://{}", app.addr());
        let token = CancellationToken::new();
        let stop = token.clone();
        self.extra_apis.push((
            token,
            tokio::spawn(app.run_until(async move { stop.cancelled().await })),
        ));
        base
    }

    /// Closes every broker connection of this test (API and workers), as a broker restart would.
    pub fn close_broker_connections(&self) -> usize {
        self.close_broker_connections_where(|_| true)
    }

    /// Closes this test's broker connections whose name (after `<prefix>:`)
    /// satisfies `pick`, e.g. a worker's (its id first) or the API's events
    /// consumer (`api:<instance>:events`).
    pub fn close_broker_connections_where(&self, pick: impl Fn(&str) -> bool) -> usize {
        let out = std::process::Command::new("rabbitmqctl")
            .args([
                "list_connections",
                "pid",
                "client_properties",
                "--no-table-headers",
                "-q",
            ])
            .output()
            .expect("rabbitmqctl runs");
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let ours = format!("{{\"connection_name\",\"{}:", self.prefix);
        let mut closed = 0;
        for line in listing.lines() {
            let Some((_, rest)) = line.split_once(&ours) else {
                continue;
            };
            let name = rest.split('"').next().unwrap_or_default();
            if !pick(name) {
                continue;
            }
            let pid = line.split('\t').next().unwrap();
            let status = std::process::Command::new("rabbitmqctl")
                .args(["close_connection", pid, "test: simulated broker failure"])
                .output()
                .unwrap();
            assert!(status.status.success(), "{status:?}");
            closed += 1;
        }
        closed
    }

    /// A key that sees only the workspace of `configuration_id`.
    pub async fn workspace_key(&self, configuration_id: &str) -> String {
        let db = ade_common::db::connect(&self.db_url).await.unwrap();
        let ws: Uuid = db
            .query_one(
                "SELECT workspace_id FROM configurations WHERE id = $1",
                &[&configuration_id.parse::<Uuid>().unwrap()],
            )
            .await
            .unwrap()
            .get(0);
        make_key(&self.db_url, ade_api::keys::Scope::Workspace(ws)).await
    }

    /// A job publisher on this test's prefix, connected.
    pub async fn job_publisher(&self) -> ade_common::amqp::Publisher {
        let publisher = ade_common::amqp::Publisher::new(
            ade_common::settings::amqp_url_from_env(),
            format!("{}:test", self.prefix),
            ade_common::amqp::Topology::new(self.prefix.clone()),
        );
        assert!(publisher.check(DEADLINE).await, "the broker is reachable");
        publisher
    }

    /// Reads a whole event stream (it ends after the terminal event).
    pub async fn follow(&self, path: &str, sse: bool, last_event_id: Option<i64>) -> Vec<Value> {
        follow_url(&self.url(path), sse, last_event_id).await
    }

    /// Starts a real `ade-worker` process (so it can be killed); `env` adds or overrides settings.
    pub fn worker_process(&mut self, name: &str, env: &[(&str, &str)]) -> u32 {
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().unwrap().parent().unwrap().join("ade-worker");
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --bins` first (scripts/test does)",
            bin.display()
        );
        let mut cmd = std::process::Command::new(bin);
        cmd.env("ADE_DATABASE_URL", &self.db_url)
            .env("ADE_AMQP_PREFIX", &self.prefix)
            .env("ADE_DATA_DIR", &self.data_dir)
            .env("ADE_VENVS_DIR", self.data_dir.join("venvs"))
            .env("ADE_ENGINE_DIR", repo_root().join("engine"))
            .env("ADE_WORKER_ID", format!("{name}-{}", &self.prefix[5..13]))
            .env("ADE_WORKER_CONCURRENCY", "1")
            .env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        self.processes.push(child);
        pid
    }

    /// Waits (without blocking the runtime) for a worker process started by
    /// [`Self::worker_process`] to exit; returns its exit code.
    pub async fn wait_process(&mut self, pid: u32) -> Option<i32> {
        let i = self
            .processes
            .iter()
            .position(|c| c.id() == pid)
            .expect("a process of this test");
        let mut child = self.processes.remove(i);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "worker process {pid} did not exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every worker (each finishes its in-flight runs first).
    pub async fn stop_workers(&mut self) {
        for (token, handle) in self.workers.drain(..) {
            token.cancel();
            handle.await.unwrap().unwrap();
        }
    }

    /// Stops everything and checks that nothing was left behind.
    pub async fn finish(mut self) {
        // Every job message is settled by a live worker (duplicates find their
        // run done and are acknowledged); none may stay in the queue.
        if !self.workers.is_empty() {
            let start = Instant::now();
            while ready_messages(&self.prefix).await > 0 {
                assert!(
                    start.elapsed() < DEADLINE,
                    "run messages stayed in the queue"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for mut child in self.processes.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (token, handle) in self.extra_apis {
            token.cancel();
            handle.await.unwrap().unwrap();
        }
        for (token, handle) in self.workers {
            token.cancel();
            handle.await.unwrap().unwrap();
        }
        self.api.0.cancel();
        self.api.1.await.unwrap().unwrap();
        let db = ade_common::db::connect(&self.db_url).await.unwrap();
        let open: i64 = db
            .query_one("SELECT count(*) FROM runs WHERE status IN ('queued', 'waiting_for_build', 'running')", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(open, 0, "runs were left queued or running");
        drop(db);
        let data = self.data_dir.to_string_lossy().into_owned();
        assert!(
            processes_mentioning(&data).is_empty(),
            "engine processes were left running"
        );
        drop_database(&self.db_name).await;
        delete_broker_objects(&self.prefix).await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The admin key of this test process's app, for clients made outside it.
static ADMIN_KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A client that sends the test app's admin key.
pub fn client() -> reqwest::Client {
    client_with(ADMIN_KEY.get().expect("a TestApp was started"))
}

/// A client that sends `key` as its Bearer token.
pub fn client_with(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {key}").parse().unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Makes an API key with `scope` directly in the database.
pub async fn make_key(db_url: &str, scope: ade_api::keys::Scope) -> String {
    let pool = ade_common::db::pool(db_url, 1).unwrap();
    let db = pool.get().await.unwrap();
    ade_api::keys::create(&db, scope, "test").await.unwrap().key
}

/// How many events of `kind` there are.
pub fn count_of(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

/// Asserts that sequences run 1, 2, … without holes or repeats.
pub fn assert_gapless(events: &[Value]) {
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=events.len() as i64).collect::<Vec<_>>());
}

/// Asserts the status and returns the JSON body.
pub async fn ok_json(res: reqwest::Response, status: StatusCode) -> Value {
    let got = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Asserts a problem+json error with this status and code.
pub async fn assert_problem(res: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = ok_json(res, status).await;
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

fn tracing_subscriber_init() {
    if std::env::var("TEST_LOG").is_ok() {
        ade_common::telemetry::init(ade_common::telemetry::LogFormat::Text);
    }
}

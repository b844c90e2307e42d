//! The two ways a run's engine starts — forked by a build's warm engine
//! (the default) or spawned — for the tests of promises that hold in both.
//! A test in forked mode proves the run was forked (`run.started` says
//! `launch: forked`): a silent fallback to spawning does not pass it.

use crate::helpers::TestApp;
use ade_worker::settings::{Switch, WorkerSettings};

/// How a run's engine is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// By the build's warm engine (`ADE_ENGINE_POOL=on`, the default).
    Forked,
    /// In a fresh sandbox (`ADE_ENGINE_POOL=off`).
    Spawned,
}

impl Mode {
    /// As `run.started`'s `launch` spells it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Forked => "forked",
            Self::Spawned => "spawned",
        }
    }

    /// Starts a worker that launches engines this way; `tune` changes its
    /// other settings.
    pub async fn start_worker(self, app: &mut TestApp, tune: impl FnOnce(&mut WorkerSettings)) {
        let mut settings = app.worker_settings(self.label(), None);
        settings.engine_pool = match self {
            Self::Forked => Switch::On,
            Self::Spawned => Switch::Off,
        };
        tune(&mut settings);
        app.start_worker_with(settings).await;
    }
}

/// How run `id`'s engine was started, as its `run.started` event says.
pub async fn launched(app: &TestApp, id: &str) -> String {
    let events = app.all_events(id).await;
    let started = events
        .iter()
        .find(|e| e["type"] == "run.started")
        .unwrap_or_else(|| panic!("run {id} has no run.started: {events:#?}"));
    started["payload"]["launch"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Asserts that run `id`'s engine was started in `mode`.
pub async fn assert_launched(app: &TestApp, id: &str, mode: Mode) {
    assert_eq!(
        launched(app, id).await,
        mode.label(),
        "how run {id} was started"
    );
}

/// Runs `config` over `doc` to its end and checks that it was started in `mode`.
pub async fn run_in(app: &TestApp, mode: Mode, config: &str, doc: &str) -> serde_json::Value {
    let run = app
        .run_to_end(config, serde_json::json!({"document_ids": [doc]}))
        .await;
    assert_launched(app, run["id"].as_str().unwrap(), mode).await;
    run
}

/// Asserts that `run` failed with `code`.
pub fn assert_failed(run: &serde_json::Value, code: &str) {
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["failure"]["code"], code, "{run}");
}

/// Warm engines of this test's workers (their command lines name its data folder).
pub fn warm_engines(app: &TestApp) -> usize {
    let data = app.data_dir.to_string_lossy().into_owned();
    crate::helpers::processes_mentioning("ade_engine.zygote")
        .iter()
        .filter(|cmd| cmd.contains(&data))
        .count()
}

/// One `#[tokio::test]` per mode for `async fn $name(mode: Mode)`:
/// `$name::forked` and `$name::spawned`.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::modes::Mode;
            #[tokio::test]
            async fn forked() {
                super::$name(Mode::Forked).await
            }
            #[tokio::test]
            async fn spawned() {
                super::$name(Mode::Spawned).await
            }
        }
    )*};
}
pub(crate) use in_both_modes;

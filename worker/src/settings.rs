//! `ade-worker` settings.

use ade_common::settings::CommonSettings;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting of the worker, from flags or `ADE_*` environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ade-worker", version, about = "ADE Runs worker")]
pub struct WorkerSettings {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonSettings,
    /// This worker's id (default `<hostname>-<pid>`).
    #[arg(long, env = "ADE_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Runs executed at once (default: number of CPUs).
    #[arg(long, env = "ADE_WORKER_CONCURRENCY")]
    pub concurrency: Option<u16>,
    /// Host-local cache of build venvs.
    #[arg(long, env = "ADE_VENVS_DIR", default_value = "./data/venvs")]
    pub venvs_dir: PathBuf,
    /// The `uv` executable that builds venvs.
    #[arg(long, env = "ADE_UV", default_value = "uv")]
    pub uv: String,
    /// Longest a run's engine may work, in seconds.
    #[arg(long, env = "ADE_RUN_TIMEOUT_SECONDS", default_value_t = 900)]
    pub run_timeout_seconds: u64,
    /// Longest a venv build may take, in seconds.
    #[arg(long, env = "ADE_BUILD_TIMEOUT_SECONDS", default_value_t = 600)]
    pub build_timeout_seconds: u64,
    /// Run lease, renewed every third of it.
    #[arg(long, env = "ADE_LEASE_SECONDS", default_value_t = 30)]
    pub lease_seconds: u64,
    /// How long SIGTERM waits for in-flight runs.
    #[arg(long, env = "ADE_WORKER_DRAIN_SECONDS", default_value_t = 30)]
    pub drain_seconds: u64,
    /// Venv cache size the collector keeps under.
    #[arg(long, env = "ADE_VENVS_MAX_BYTES", default_value_t = 10_737_418_240)]
    pub venvs_max_bytes: u64,
    /// Unused venvs older than this many seconds are removed.
    #[arg(long, env = "ADE_VENVS_MAX_AGE_SECONDS", default_value_t = 7 * 24 * 3600)]
    pub venvs_max_age_seconds: u64,
    /// Where configuration code runs: `bwrap` (a bubblewrap sandbox) or
    /// `off` (no sandbox, for hosts without user namespaces; logged loudly).
    #[arg(long, env = "ADE_ENGINE_SANDBOX", value_enum, default_value = "bwrap")]
    pub engine_sandbox: crate::sandbox::Mode,
    /// Address space of each engine (and build) process, in bytes.
    #[arg(long, env = "ADE_RUN_MEMORY_BYTES", default_value_t = 2_147_483_648)]
    pub run_memory_bytes: u64,
    /// Largest total of a run's outputs (and largest file any sandboxed process writes), in bytes.
    #[arg(long, env = "ADE_MAX_OUTPUT_BYTES", default_value_t = 1_073_741_824)]
    pub max_output_bytes: u64,
    /// Hosts (`host` or `host:port`, comma-separated) builds may reach over
    /// HTTPS besides PyPI and the indexes uv is configured with.
    #[arg(
        long,
        env = "ADE_BUILD_NETWORK_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub build_network_hosts: Vec<String>,
    /// The warm engine pool: a zygote per build forks each run (`on`), or
    /// every run spawns Python (`off`).
    #[arg(long, env = "ADE_ENGINE_POOL", value_enum, default_value = "on")]
    pub engine_pool: Switch,
    /// Live warm engines per host at most (the least recently used goes first).
    #[arg(long, env = "ADE_ENGINE_POOL_SIZE", default_value_t = 8)]
    pub engine_pool_size: usize,
    /// Runs a warm engine forks before it is replaced.
    #[arg(long, env = "ADE_ENGINE_POOL_MAX_RUNS", default_value_t = 200)]
    pub engine_pool_max_runs: u32,
    /// A warm engine without a run for this many seconds is stopped.
    #[arg(long, env = "ADE_ENGINE_POOL_IDLE_SECONDS", default_value_t = 300)]
    pub engine_pool_idle_seconds: u64,
    /// Where this worker serves its Prometheus metrics (unset: nowhere).
    #[arg(long, env = "ADE_WORKER_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// An on/off setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

impl WorkerSettings {
    /// Defaults around the given shared settings and folders.
    pub fn for_tests(common: CommonSettings, venvs_dir: PathBuf) -> Self {
        Self {
            common,
            worker_id: None,
            concurrency: Some(2),
            venvs_dir,
            uv: "uv".into(),
            run_timeout_seconds: 900,
            build_timeout_seconds: 600,
            lease_seconds: 30,
            drain_seconds: 30,
            venvs_max_bytes: 10_737_418_240,
            venvs_max_age_seconds: 7 * 24 * 3600,
            engine_sandbox: crate::sandbox::Mode::Bwrap,
            run_memory_bytes: 2_147_483_648,
            max_output_bytes: 1_073_741_824,
            build_network_hosts: vec![],
            engine_pool: Switch::On,
            engine_pool_size: 8,
            engine_pool_max_runs: 200,
            engine_pool_idle_seconds: 300,
            metrics_addr: None,
        }
    }

    /// The warm pool's limits, if the pool is on.
    pub fn pool(&self) -> Option<crate::pool::PoolSettings> {
        (self.engine_pool == Switch::On).then(|| crate::pool::PoolSettings {
            size: self.engine_pool_size.max(1),
            max_runs: self.engine_pool_max_runs.max(1),
            idle: Duration::from_secs(self.engine_pool_idle_seconds),
        })
    }

    /// The id this worker reports and claims under.
    pub fn worker_id(&self) -> String {
        self.worker_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()))
    }

    /// Runs at once.
    pub fn concurrency(&self) -> u16 {
        self.concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u16))
            .max(1)
    }

    /// The run lease.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds.max(3))
    }

    /// The limits of an engine run.
    pub fn run_limits(&self) -> crate::limits::Limits {
        crate::limits::Limits::run(
            self.run_memory_bytes,
            Duration::from_secs(self.run_timeout_seconds),
            self.max_output_bytes,
        )
    }

    /// The limits of a build step that runs configuration code.
    pub fn build_limits(&self) -> crate::limits::Limits {
        crate::limits::Limits::build(
            self.run_memory_bytes,
            Duration::from_secs(self.build_timeout_seconds),
            self.max_output_bytes,
        )
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

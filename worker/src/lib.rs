//! The ADE Runs worker.
//!
//! - [`settings`]: the typed settings of `ade-worker`.
//! - [`queue`]: the consume loop: deliveries in, acks out, reconnects.
//! - [`slots`]: run slots and the prefetch that keeps dispatch fair.
//! - [`runs`]: one run from claim to terminal state ([`runs::process_one`]).
//! - [`lease`]: the lease keeper: renewals, the cancel poll, self-fencing.
//! - [`builds`]: the build record a run uses and its venv on this host.
//! - [`builder`]: building a claimed build and recording its verdict.
//! - [`venv`]: the host-local venv cache (lock, temp folder, marker, rename).
//! - [`wheels`]: the engine and configuration wheels venvs are installed from.
//! - [`cache`]: build and in-use locks, and the collector of unused venvs.
//! - [`engine`]: one run's engine, top-down: launch (forked or spawned),
//!   supervision, how it ended ([`engine::completion`]).
//! - [`sandbox`]: what configuration code may see and do (bubblewrap).
//! - [`cgroup`]: a cgroup per run: its processes' memory and count together.
//! - [`area`]: a run's size-capped tmpfs, held by the worker through a descriptor.
//! - [`limits`]: rlimits of sandboxed processes and the failure codes of limits.
//! - [`outputs`]: publishing an attempt's output files (regular files only).
//! - [`process`]: guarded subprocesses (process group, deadline, cancel, bounds).
//! - [`pool`]: the warm engine pool: a zygote per build and host, runs forked.
//! - [`fdpass`]: messages with descriptors (and the sender's pid) over seqpacket sockets.
//! - [`stop`]: why an in-flight run is stopped early (cancel, lost lease, shutdown).
//! - [`fleet`]: this worker's heartbeat and the reaper of lost runs.
//! - [`events`]: batched, fenced event writes for one stream.
//! - [`metrics`]: the metrics endpoint (`ADE_WORKER_METRICS_ADDR`).
//!
//! [`Worker::build`] prepares everything; [`Worker::run`] consumes until its
//! cancellation token fires, then lets in-flight runs finish.

pub mod area;
pub mod builder;
pub mod builds;
pub mod cache;
pub mod cgroup;
pub mod engine;
pub mod events;
pub mod fdpass;
pub mod fleet;
pub mod lease;
pub mod limits;
pub mod metrics;
pub mod outputs;
pub mod pool;
pub mod process;
pub mod queue;
pub mod runs;
pub mod sandbox;
pub mod settings;
pub mod slots;
pub mod stop;
pub mod venv;
pub mod wheels;

use ade_common::amqp::Topology;
use ade_common::events::Origin;
use ade_common::lifecycle::{Claimant, Fence};
use ade_common::storage::DataDir;
use anyhow::Context as _;
use settings::WorkerSettings;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a run's preparation waits out a database outage before it fails.
pub const DB_PATIENCE: Duration = Duration::from_secs(60);

/// What a job needs from its worker; cheap to clone.
#[derive(Clone)]
pub struct Context {
    /// PostgreSQL.
    pub pool: deadpool_postgres::Pool,
    /// This worker process: its id and incarnation (claims carry both).
    pub claimant: Claimant,
    /// This host's name.
    pub host: String,
    /// The run lease.
    pub lease: Duration,
    /// Longest an engine run may take.
    pub run_timeout: Duration,
    /// Where configuration code runs.
    pub sandbox: Arc<sandbox::Host>,
    /// The limits of an engine run.
    pub limits: limits::Limits,
    /// The venv cache of this host.
    pub venvs: Arc<venv::VenvCache>,
    /// Engine and Python identity.
    pub identity: Arc<ade_common::identity::Identity>,
    /// Shared storage.
    pub data_dir: DataDir,
    /// Publishes committed events to the events fanout.
    pub events: ade_common::amqp::EventPublisher,
    /// Offers run jobs to the broker (hand-backs, runs the reaper requeues).
    pub dispatcher: ade_common::dispatch::Dispatcher,
    /// The runs in flight here.
    pub running: stop::Running,
    /// The run slots (`ADE_WORKER_CONCURRENCY`).
    pub slots: slots::Slots,
    /// The warm engine pool (`ADE_ENGINE_POOL=on`, with the sandbox on).
    pub engines: Option<Arc<pool::Pool>>,
    /// Where runs get cgroups; `None` where the host offers none.
    pub cgroups: Option<Arc<cgroup::Cgroups>>,
    /// `ADE_RUN_MEMORY_BYTES`: a run's processes together.
    pub memory_bytes: u64,
    /// `ADE_MAX_OUTPUT_BYTES`: what a run's area may hold.
    pub max_output_bytes: u64,
    /// Attempts before a lost run fails.
    pub max_attempts: u32,
    /// This worker's metric families.
    pub metrics: ade_common::metrics::Metrics,
}

impl Context {
    /// A new event sink for a stream, writing under `fence`.
    pub fn sink(&self, origin: Origin, fence: Fence) -> events::EventSink {
        events::EventSink::start(self.pool.clone(), self.events.clone(), origin, fence)
    }

    /// What a run's cgroup holds it to.
    pub fn run_bounds(&self) -> cgroup::Bounds {
        cgroup::Bounds {
            memory_bytes: self.memory_bytes,
            processes: self.limits.processes,
        }
    }

    /// What a run's outcome is decided against.
    pub fn completion_bounds(&self) -> engine::completion::Bounds {
        engine::completion::Bounds {
            memory_bytes: self.memory_bytes,
            max_output_bytes: self.max_output_bytes,
            limits: self.limits,
        }
    }
}

/// A worker ready to consume.
pub struct Worker {
    ctx: Context,
    settings: WorkerSettings,
    registry: Arc<prometheus_client::registry::Registry>,
    metrics_listener: Option<tokio::net::TcpListener>,
}

impl Worker {
    /// Detects the engine and Python, prepares the cache and the pool.
    pub async fn build(settings: WorkerSettings) -> anyhow::Result<Self> {
        close_inherited_descriptors();
        let engine_dir =
            std::path::absolute(&settings.common.engine_dir).context("resolving ADE_ENGINE_DIR")?;
        let identity =
            ade_common::identity::Identity::detect(&engine_dir, &settings.common.python).await?;
        let root = std::path::absolute(&settings.venvs_dir).context("resolving ADE_VENVS_DIR")?;
        let sandbox = sandbox::Host::detect(
            settings.engine_sandbox,
            &settings.common.python,
            &settings.uv,
        )
        .await
        .context("preparing the engine sandbox (ADE_ENGINE_SANDBOX=bwrap; `off` is for hosts without user namespaces)")?
        .allow_build_hosts(&settings.build_network_hosts);
        let sandbox = Arc::new(sandbox);
        tokio::fs::create_dir_all(&root)
            .await
            .with_context(|| format!("creating {}", root.display()))?;
        let pool_size = usize::from(settings.concurrency()) * 2 + 4;
        let pool = ade_common::db::pool(&settings.common.database_url, pool_size)?;
        let claimant = Claimant::new(settings.worker_id());
        let cgroups = match cgroup::Cgroups::detect(claimant.incarnation) {
            Ok(cgroups) => Some(Arc::new(cgroups)),
            Err(why) => {
                tracing::warn!(
                    "runs get no cgroup on this host ({why}): a run's processes are bounded one by \
                     one (rlimits), not together, and memory_limit cannot be observed. \
                     GET /api/v1/workers shows cgroup: none."
                );
                None
            }
        };
        // A run's area on the host is only ever reached through descriptors;
        // the warm pool's scratch folders of earlier releases are removed.
        let _ = tokio::fs::remove_dir_all(root.join(".pool")).await;
        let prefix = &settings.common.amqp_prefix;
        let topology = Topology::new(prefix.clone());
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ade_common::metrics::Metrics::register(&mut registry);
        let metrics_listener = match settings.metrics_addr {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding ADE_WORKER_METRICS_ADDR {addr}"))?,
            ),
            None => None,
        };
        let name = format!("{prefix}:{}", claimant.worker_id);
        let jobs = ade_common::amqp::Publisher::new(
            settings.common.amqp_url.clone(),
            format!("{name}:jobs"),
            topology.clone(),
        );
        let ctx = Context {
            dispatcher: ade_common::dispatch::Dispatcher::spawn(jobs, pool.clone()),
            events: ade_common::amqp::EventPublisher::spawn(
                settings.common.amqp_url.clone(),
                format!("{name}:events"),
                topology,
                metrics.clone(),
            ),
            pool,
            claimant,
            host: settings::hostname(),
            lease: settings.lease(),
            run_timeout: Duration::from_secs(settings.run_timeout_seconds),
            limits: match cgroups {
                Some(_) => settings.run_limits().without_address_space(),
                None => settings.run_limits(),
            },
            cgroups,
            memory_bytes: settings.run_memory_bytes,
            max_output_bytes: settings.max_output_bytes,
            venvs: Arc::new(venv::VenvCache {
                root: root.clone(),
                uv: settings.uv.clone(),
                python: settings.common.python.clone(),
                engine_dir,
                timeout: Duration::from_secs(settings.build_timeout_seconds),
                engine_version: identity.engine_version.clone(),
                engine_wheel: Default::default(),
                sandbox: sandbox.clone(),
                limits: settings.build_limits(),
            }),
            sandbox,
            identity: Arc::new(identity),
            data_dir: DataDir::new(&settings.common.data_dir),
            running: stop::Running::default(),
            slots: slots::Slots::new(settings.concurrency()),
            engines: pool_of(&settings),
            max_attempts: settings.common.max_attempts,
            metrics,
        };
        tracing::info!(
            worker.id = %ctx.claimant.worker_id,
            incarnation = %ctx.claimant.incarnation,
            engine = %ctx.identity.engine_version,
            python = %ctx.identity.python_version,
            sandbox = ?settings.engine_sandbox,
            engine_pool = ?settings.engine_pool,
            concurrency = settings.concurrency(),
            amqp_prefix = %settings.common.amqp_prefix,
            database = %ade_common::db::redacted(&settings.common.database_url),
            metrics_addr = ?metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
            "worker ready"
        );
        Ok(Self {
            ctx,
            settings,
            registry: Arc::new(registry),
            metrics_listener,
        })
    }

    /// The bound address of the metrics endpoint, if `ADE_WORKER_METRICS_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    /// The job context (tests call [`runs::process_one`] with it).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Consumes runs until `shutdown` fires, then drains in-flight runs.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let limits = cache::Limits {
            max_bytes: self.settings.venvs_max_bytes,
            max_age: Duration::from_secs(self.settings.venvs_max_age_seconds),
        };
        let cache_bytes = Arc::new(AtomicU64::new(0));
        let root = self.ctx.venvs.root.clone();
        let collector = tokio::spawn(collect_loop(
            root,
            limits,
            (cache_bytes.clone(), self.ctx.metrics.clone()),
            shutdown.clone(),
        ));
        let exporter = metrics::Exporter {
            registry: self.registry.clone(),
            metrics: self.ctx.metrics.clone(),
            slots: self.ctx.slots.clone(),
        };
        let scrapes = self
            .metrics_listener
            .map(|l| tokio::spawn(metrics::serve(l, exporter, shutdown.clone())));
        let heartbeat = tokio::spawn(fleet::heartbeat_loop(
            self.ctx.clone(),
            cache_bytes,
            shutdown.clone(),
        ));
        let reaper = tokio::spawn(fleet::reap_loop(self.ctx.clone(), shutdown.clone()));
        let engines = self.ctx.engines.clone();
        let cgroups = self.ctx.cgroups.clone();
        let idle = engines
            .clone()
            .map(|p| tokio::spawn(idle_loop(p, shutdown.clone())));
        // Leases are kept through the drain, until the consumer has returned.
        let drained = CancellationToken::new();
        let keeper = tokio::spawn(lease::keep_loop(self.ctx.clone(), drained.clone()));
        let consumer = queue::Consumer {
            ctx: self.ctx,
            url: self.settings.common.amqp_url.clone(),
            topology: Topology::new(self.settings.common.amqp_prefix.clone()),
            drain: Duration::from_secs(self.settings.drain_seconds),
        };
        consumer.run(shutdown).await;
        drained.cancel();
        keeper.await?;
        if let Some(engines) = engines {
            engines.close().await;
        }
        if let Some(cgroups) = &cgroups {
            cgroups.remove();
        }
        if let Some(idle) = idle {
            idle.await?;
        }
        collector.await?;
        if let Some(scrapes) = scrapes {
            scrapes.await?;
        }
        reaper.await?;
        heartbeat.await?;
        Ok(())
    }
}

/// The warm pool, if it is on and the sandbox too: a forked run is
/// isolated with namespaces, which `ADE_ENGINE_SANDBOX=off` hosts lack.
fn pool_of(settings: &WorkerSettings) -> Option<Arc<pool::Pool>> {
    let pool = settings.pool()?;
    if settings.engine_sandbox == sandbox::Mode::Off {
        tracing::warn!(
            "ADE_ENGINE_POOL=on needs the sandbox; with ADE_ENGINE_SANDBOX=off every run spawns"
        );
        return None;
    }
    Some(Arc::new(pool::Pool::new(pool)))
}

/// Marks every descriptor this process inherited close-on-exec, so none
/// reaches a sandbox (a launching shell's pipe, say).
fn close_inherited_descriptors() {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag.
    unsafe {
        libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32);
    }
}

/// Stops idle warm engines every half minute until `shutdown`.
async fn idle_loop(pool: Arc<pool::Pool>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => pool.collect_idle(),
        }
    }
}

/// How often the venv cache is collected.
const COLLECT_EVERY: Duration = Duration::from_secs(60);

/// Keeps the venv cache within its limits until `shutdown`; `bytes` tracks
/// its size (for the heartbeat and the metrics).
async fn collect_loop(
    root: std::path::PathBuf,
    limits: cache::Limits,
    (bytes, metrics): (Arc<AtomicU64>, ade_common::metrics::Metrics),
    shutdown: CancellationToken,
) {
    loop {
        match cache::collect(root.clone(), limits).await {
            Ok(c) => {
                bytes.store(c.bytes_left, Ordering::Relaxed);
                metrics.cache_bytes.set(c.bytes_left as i64);
                metrics.cache_evictions.inc_by(c.removed as u64);
                if c.removed > 0 {
                    tracing::info!(
                        removed = c.removed,
                        bytes_left = c.bytes_left,
                        "venv cache collected"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "venv cache collection failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(COLLECT_EVERY) => {}
        }
    }
}

//! The ADE Runs HTTP API.
//!
//! - [`settings`]: the typed settings of `ade-api`.
//! - [`auth`]: the caller of a request (API key → principal and scope).
//! - [`keys`]: API keys: made, listed, revoked, looked up by hash.
//! - [`admission`]: whether the queue has room for another run.
//! - [`rate_limit`]: a token bucket per key.
//! - [`routes`]: one module per resource, mirroring the URL tree.
//! - [`error`]: `ApiError`, the one error type at the HTTP edge (problem+json).
//! - [`openapi`]: the OpenAPI document, generated from the handlers and the route table.
//! - [`package`]: reading uploaded configuration packages safely.
//! - [`live`]: this instance's events queue and the hub that feeds followers.
//! - [`dispatch`]: the redispatcher and the reaper.
//! - [`metrics`]: this process's registry and the gauges read at scrape time.
//! - [`retention`]: the collector of terminal runs older than `ADE_RETENTION_DAYS`.
//! - [`server`]: serving HTTP with header-read and idle timeouts.
//!
//! [`Application::build`] binds the listener and returns a handle that knows
//! its address; [`Application::run_until`] serves until the shutdown future
//! resolves. Tests build the application on port 0 the same way `main` does.

pub mod admission;
pub mod auth;
pub mod dispatch;
pub mod error;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod package;
pub mod rate_limit;
pub mod retention;
pub mod routes;
pub mod server;
pub mod settings;
pub mod state;

use ade_common::amqp::{Publisher, Topology};
use ade_common::storage::DataDir;
use anyhow::Context as _;
use settings::ApiSettings;
use state::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Creates the database if needed and applies migrations.
pub async fn migrate(settings: &ApiSettings) -> anyhow::Result<()> {
    ade_common::db::create_database_if_missing(&settings.common.database_url).await?;
    ade_common::db::migrate(&settings.common.database_url).await
}

/// How long open connections may take to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A bound, not yet serving API.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl Application {
    /// Migrates, connects and binds `ADE_API_ADDR`.
    pub async fn build(settings: ApiSettings) -> anyhow::Result<Self> {
        migrate(&settings).await?;
        let listener = tokio::net::TcpListener::bind(settings.api_addr)
            .await
            .with_context(|| format!("binding {}", settings.api_addr))?;
        let pool = ade_common::db::pool(&settings.common.database_url, 16)?;
        let engine_dir =
            std::path::absolute(&settings.common.engine_dir).context("resolving ADE_ENGINE_DIR")?;
        let identity =
            ade_common::identity::Identity::detect(&engine_dir, &settings.common.python).await?;
        let topology = Topology::new(settings.common.amqp_prefix.clone());
        let instance = ade_common::ids::new_id();
        let name = format!("{}:api:{}", settings.common.amqp_prefix, instance.simple());
        let publisher = Publisher::new(
            settings.common.amqp_url.clone(),
            name.clone(),
            topology.clone(),
        );
        let jobs = Publisher::new(
            settings.common.amqp_url.clone(),
            format!("{name}:jobs"),
            topology.clone(),
        );
        let (registry, metrics) = metrics::ApiRegistry::new();
        let events = ade_common::amqp::EventPublisher::spawn(
            settings.common.amqp_url.clone(),
            format!("{name}:publish"),
            topology,
            metrics.clone(),
        );
        let state = AppState(Arc::new(state::Inner {
            dispatcher: ade_common::dispatch::Dispatcher::spawn(jobs, pool.clone()),
            pool,
            publisher,
            identity,
            hub: Arc::default(),
            events,
            instance,
            shutdown: CancellationToken::new(),
            keys: auth::KeyCache::default(),
            admission: admission::Admission::default(),
            rate_limiter: rate_limit::RateLimiter::new(settings.rate_limit_per_second),
            data_dir: DataDir::new(&settings.common.data_dir),
            metrics,
            registry,
            settings,
        }));
        Ok(Self { listener, state })
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let token = self.state.shutdown.clone();
        let redispatch = tokio::spawn(dispatch::redispatch_loop(self.state.clone(), token.clone()));
        let retention = tokio::spawn(retention::collect_loop(self.state.clone(), token.clone()));
        let live = tokio::spawn(live::consume_loop(
            self.state.hub.clone(),
            self.state.settings.common.amqp_url.clone(),
            self.state.publisher.topology().clone(),
            self.state.instance,
            token.clone(),
        ));
        let stop = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.cancel();
        });
        routes::table::log_mounted();
        let settings = &self.state.settings;
        tracing::info!(
            addr = %self.addr(),
            safe_mode = settings.safe_mode,
            metrics_public = settings.metrics_public,
            retention_days = settings.retention_days,
            rate_limit_per_second = settings.rate_limit_per_second,
            amqp_prefix = %settings.common.amqp_prefix,
            database = %ade_common::db::redacted(&settings.common.database_url),
            "serving"
        );
        let limits = server::Limits {
            header_read: Duration::from_secs(settings.http_header_timeout_seconds),
            idle: Duration::from_secs(settings.http_idle_timeout_seconds),
        };
        let routes = routes::routes(self.state);
        server::serve(self.listener, routes, limits, token.clone(), SHUTDOWN_GRACE).await;
        token.cancel();
        redispatch.await.context("redispatch task")?;
        retention.await.context("retention task")?;
        live.await.context("live events task")?;
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

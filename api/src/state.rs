//! What every handler shares.

use crate::settings::ApiSettings;
use ade_common::amqp::Publisher;
use ade_common::storage::DataDir;
use std::sync::Arc;

/// Cheap to clone; one per API process.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// The shared parts.
pub struct Inner {
    /// PostgreSQL, the source of truth.
    pub pool: deadpool_postgres::Pool,
    /// Publishes control messages (cancel) to every worker.
    pub publisher: Publisher,
    /// Offers committed runs and builds to the broker, without waiting.
    pub dispatcher: ade_common::dispatch::Dispatcher,
    /// The engine and Python that builds are fingerprinted with (same as the workers').
    pub identity: ade_common::identity::Identity,
    /// Shared storage.
    pub data_dir: DataDir,
    /// The API's settings.
    pub settings: ApiSettings,
    /// Live events for followers.
    pub hub: Arc<crate::live::Hub>,
    /// Publishes events this API commits (e.g. `run.queued`).
    pub events: ade_common::amqp::EventPublisher,
    /// This instance's id (names its events queue).
    pub instance: uuid::Uuid,
    /// API key lookups, cached.
    pub keys: crate::auth::KeyCache,
    /// Whether the queue has room for another run.
    pub admission: crate::admission::Admission,
    /// Per-key request budgets.
    pub rate_limiter: crate::rate_limit::RateLimiter,
    /// This process's metric families.
    pub metrics: ade_common::metrics::Metrics,
    /// This process's registry (`/metrics`).
    pub registry: crate::metrics::ApiRegistry,
    /// Cancelled when the API shuts down; ends live streams.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// A pooled database connection; pool exhaustion or an unreachable database is 503.
    pub async fn db(&self) -> Result<deadpool_postgres::Object, crate::error::ApiError> {
        Ok(self.pool.get().await?)
    }
}

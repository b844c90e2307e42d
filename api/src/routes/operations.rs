//! `GET /api/v1/workers`, `GET /api/v1/queue` and `GET /metrics`.

use super::{Items, authed, json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use ade_common::db::Cached as _;
use ade_common::lifecycle::queue::Counts;
use ade_common::time_fmt::serde_ts;
use serde::Serialize;
use time::OffsetDateTime;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// A worker counts as live while its heartbeat is younger than this.
const LIVE_SECONDS: f64 = 30.0;

/// A live worker, as of its last heartbeat.
#[derive(Serialize, utoipa::ToSchema)]
struct Worker {
    /// `ADE_WORKER_ID`.
    id: String,
    host: String,
    /// Runs it executes at once.
    concurrency: i32,
    /// Runs it is executing.
    in_flight: i32,
    /// Size of its host-local venv cache.
    venv_cache_bytes: i64,
    /// `ADE_ENGINE_SANDBOX` of the worker: `bwrap`, `off` (no isolation), or null if unknown.
    sandbox: Option<String>,
    /// How it bounds a run's processes together: `v1` or `v2` (a cgroup per
    /// run), `none` (each process by its rlimits only), or null if unknown.
    cgroup: Option<String>,
    #[serde(with = "serde_ts")]
    started_at: OffsetDateTime,
    #[serde(with = "serde_ts")]
    last_heartbeat_at: OffsetDateTime,
}

/// The `/api/v1` operations routes (workers, queue).
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let workers = warp::path!("workers")
        .and(warp::get())
        .and(authed(state.clone()))
        .then(workers);
    let queue = warp::path!("queue")
        .and(warp::get())
        .and(authed(state))
        .then(queue);
    workers
        .or(queue)
        .unify()
        .map(warp::Reply::into_response)
        .boxed()
}

/// `/metrics`, at the root.
pub fn metrics_route(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .and(authed(state))
        .then(metrics)
        .map(warp::Reply::into_response)
        .boxed()
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(workers, queue, metrics))]
pub struct Api;

/// List live workers.
///
/// Those whose heartbeat is younger than 30 s, by id.
#[utoipa::path(get, path = "/api/v1/workers", operation_id = "listWorkers",
    responses((status = 200, description = "The live workers.", body = Items<Worker>)))]
async fn workers(state: AppState, who: Result<Principal, ApiError>) -> Result<Response, ApiError> {
    who?.admin()?;
    let rows = state
        .db()
        .await?
        .cached_query(
            "SELECT id, host, concurrency, in_flight, venv_cache_bytes, started_at, heartbeat_at, sandbox, cgroup FROM workers
             WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY id",
            &[&LIVE_SECONDS],
        )
        .await?;
    let items: Vec<Worker> = rows
        .iter()
        .map(|r| Worker {
            id: r.get(0),
            host: r.get(1),
            concurrency: r.get(2),
            in_flight: r.get(3),
            venv_cache_bytes: r.get(4),
            started_at: r.get(5),
            last_heartbeat_at: r.get(6),
            sandbox: r.get(7),
            cgroup: r.get(8),
        })
        .collect();
    Ok(json(StatusCode::OK, &Items { items }))
}

async fn queue_state(state: &AppState) -> Result<Counts, ApiError> {
    Ok(ade_common::lifecycle::queue::counts(&state.db().await?).await?)
}

/// Get the queue depth: the autoscaling signal.
#[utoipa::path(get, path = "/api/v1/queue", operation_id = "getQueue",
    responses((status = 200, description = "Open runs and builds by state.", body = Counts)))]
async fn queue(state: AppState, who: Result<Principal, ApiError>) -> Result<Response, ApiError> {
    who?.admin()?;
    Ok(json(StatusCode::OK, &queue_state(&state).await?))
}

/// Get Prometheus metrics.
///
/// OpenMetrics text: this process's histograms and counters, and the queue
/// and worker gauges read from the database now.
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics",
    responses((status = 200, description = "OpenMetrics text format.",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
async fn metrics(state: AppState, who: Result<Principal, ApiError>) -> Result<Response, ApiError> {
    if !state.settings.metrics_public {
        who?.admin()?;
    }
    let q = queue_state(&state).await?;
    let live: i64 = state
        .db()
        .await?
        .cached_query_one(
            "SELECT count(*) FROM workers WHERE heartbeat_at > now() - make_interval(secs => $1)",
            &[&LIVE_SECONDS],
        )
        .await?
        .get(0);
    let text = state.registry.render(&q, live, state.hub.streams());
    let mut res = Response::new(text.into());
    res.headers_mut().insert(
        "content-type",
        ade_common::metrics::CONTENT_TYPE
            .parse()
            .expect("valid header"),
    );
    Ok(res)
}

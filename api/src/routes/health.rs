//! `/health/live` and `/health/ready`.

use super::{json, with};
use crate::state::AppState;
use serde::Serialize;
use std::time::Duration;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// `{"status": "ok"}`.
#[derive(Serialize, utoipa::ToSchema)]
struct Liveness {
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
}

/// The API's readiness and the state of each dependency.
#[derive(Serialize, utoipa::ToSchema)]
struct Readiness {
    /// `ready`, `degraded` (broker down: runs are still accepted and
    /// dispatched later) or `unavailable` (PostgreSQL down).
    #[schema(value_type = String, pattern = "^(ready|degraded|unavailable)$")]
    status: &'static str,
    #[schema(inline)]
    dependencies: Dependencies,
}

/// `up` or `down`, per dependency.
#[derive(Serialize, utoipa::ToSchema)]
struct Dependencies {
    #[schema(value_type = String, pattern = "^(up|down)$")]
    database: &'static str,
    #[schema(value_type = String, pattern = "^(up|down)$")]
    broker: &'static str,
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(live, ready))]
pub struct Api;

/// Liveness and readiness.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let live = warp::path!("health" / "live").and(warp::get()).map(live);
    let ready = warp::path!("health" / "ready")
        .and(warp::get())
        .and(with(state))
        .then(ready);
    live.or(ready).unify().boxed()
}

/// Is the process serving?
///
/// Touches no dependency.
#[utoipa::path(get, path = "/health/live", operation_id = "getLiveness",
    responses((status = 200, description = "The process serves.", body = Liveness)))]
fn live() -> Response {
    json(StatusCode::OK, &Liveness { status: "ok" })
}

/// Can the API accept work?
///
/// 200 while PostgreSQL answers (a broker outage is `degraded`: runs are still
/// accepted and dispatched later); 503 when it does not.
#[utoipa::path(get, path = "/health/ready", operation_id = "getReadiness",
    responses(
        (status = 200, description = "Ready, or degraded (broker down).", body = Readiness),
        (status = 503, description = "PostgreSQL does not answer.", body = Readiness),
    ))]
async fn ready(state: AppState) -> Response {
    let database = tokio::time::timeout(Duration::from_secs(2), async {
        let db = state.pool.get().await.ok()?;
        db.query_one("SELECT 1", &[]).await.ok()
    })
    .await
    .ok()
    .flatten()
    .is_some();
    let broker = state.publisher.check(Duration::from_secs(2)).await;
    let (status, code) = match (database, broker) {
        (true, true) => ("ready", StatusCode::OK),
        (true, false) => ("degraded", StatusCode::OK),
        (false, _) => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
    };
    let up = |ok: bool| if ok { "up" } else { "down" };
    let dependencies = Dependencies {
        database: up(database),
        broker: up(broker),
    };
    json(
        code,
        &Readiness {
            status,
            dependencies,
        },
    )
}

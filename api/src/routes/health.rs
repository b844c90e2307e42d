//! `/health/live` and `/health/ready`.

use super::{json, with};
use crate::state::AppState;
use serde_json::json;
use std::time::Duration;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// Liveness and readiness.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let live = warp::path!("health" / "live")
        .and(warp::get())
        .map(|| json(StatusCode::OK, &json!({"status": "ok"})));
    let ready = warp::path!("health" / "ready")
        .and(warp::get())
        .and(with(state))
        .then(ready);
    live.or(ready).unify().boxed()
}

/// 200 while PostgreSQL answers (a broker outage is `degraded`: runs are still
/// accepted and dispatched later); 503 when it does not.
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
    json(
        code,
        &json!({"status": status, "dependencies": {"database": up(database), "broker": up(broker)}}),
    )
}

//! `POST /runs/{id}/cancel`.
//!
//! A queued run is cancelled at once, in one transaction with its
//! `run.completed`. A running one gets `cancel_requested_at`, and a message
//! on the `<prefix>.control` fanout tells every worker; the one running it
//! kills the engine's process group and writes the terminal state. Workers
//! also poll the flag every second, so a lost message delays, never loses, a
//! cancel.

use super::resource::RunResource;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::routes::{authed, json};
use crate::state::AppState;
use ade_common::lifecycle::runs::{Cancel, cancel as cancel_run};
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// The cancel route.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("runs" / Uuid / "cancel")
        .and(warp::post())
        .and(authed(state))
        .then(cancel)
        .map(warp::Reply::into_response)
        .boxed()
}

/// Cancel a run.
///
/// A queued run is cancelled at once (the reply shows `cancelled`); a
/// running one gets a cancel request that its worker carries out within
/// seconds (the reply still shows the old status).
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/cancel", operation_id = "cancelRun",
    params(("run_id" = Uuid, Path, description = "A run id.")),
    responses((status = 202, description = "The run as it is now.", body = RunResource)),
    extensions(("x-problems" = json!({"404": ["run_not_found"], "409": ["run_already_terminal"]}))))]
pub(super) async fn cancel(
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let who = who?;
    super::find(&state, &who, id).await?;
    let outcome = cancel_run(&mut state.db().await?, id).await?;
    match outcome {
        Cancel::NotFound => return Err(ApiError::NotFound("run")),
        Cancel::AlreadyTerminal(status) => {
            return Err(ApiError::Conflict {
                code: "run_already_terminal",
                detail: format!("the run already ended ({status})"),
            });
        }
        Cancel::Cancelled(events) => state.events.publish(events),
        Cancel::Requested => {
            let body = serde_json::json!({ "cancel": id }).to_string();
            let exchange = state.publisher.topology().control_exchange();
            if let Err(e) = state
                .publisher
                .publish(&exchange, "", body.as_bytes())
                .await
            {
                tracing::warn!(run.id = %id, error = %e, "cancel not broadcast; workers will see the flag in the database");
            }
        }
    }
    let run: RunResource = super::find(&state, &who, id).await?;
    Ok(json(StatusCode::ACCEPTED, &run))
}

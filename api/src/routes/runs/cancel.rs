//! `POST /runs/{id}/cancel`.
//!
//! A queued run is cancelled at once, in one transaction with its
//! `run.completed`. A running one gets `cancel_requested_at`, and a message
//! on the `<prefix>.control` fanout tells every worker; the one running it
//! kills the engine's process group and writes the terminal state. Workers
//! also poll the flag every second, so a lost message delays, never loses, a
//! cancel.

use super::resource::RunResource;
use crate::error::ApiError;
use crate::routes::{json, with};
use crate::state::AppState;
use ade_common::events::{NewEvent, Source, append_run_events};
use ade_common::reaper::completed_payload;
use time::OffsetDateTime;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// The cancel route.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("runs" / Uuid / "cancel")
        .and(warp::post())
        .and(with(state))
        .then(cancel)
        .map(warp::Reply::into_response)
        .boxed()
}

async fn cancel(id: Uuid, state: AppState) -> Result<Response, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT status, started_at FROM runs WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or(ApiError::NotFound("run"))?;
    let status: String = row.get(0);
    let mut written = Vec::new();
    match status.as_str() {
        "succeeded" | "failed" | "cancelled" => {
            return Err(ApiError::Conflict {
                code: "run_already_terminal",
                detail: format!("the run already ended ({status})"),
            });
        }
        "queued" => {
            let completed_at: OffsetDateTime = tx
                .query_one(
                    "UPDATE runs SET status = 'cancelled', cancel_requested_at = now(), completed_at = now(),
                                     lease_expires_at = NULL
                     WHERE id = $1 RETURNING completed_at",
                    &[&id],
                )
                .await?
                .get(0);
            let payload = completed_payload("cancelled", None, None, row.get(1), completed_at);
            written = append_run_events(
                &tx,
                id,
                &[NewEvent::new("run.completed", Source::Api, payload)],
            )
            .await?;
        }
        _ => {
            tx.execute(
                "UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, now()) WHERE id = $1",
                &[&id],
            )
            .await?;
        }
    }
    tx.commit().await?;
    drop(db);
    if written.is_empty() {
        let body = serde_json::json!({ "cancel": id }).to_string();
        let exchange = state.publisher.topology().control_exchange();
        if let Err(e) = state
            .publisher
            .publish(&exchange, "", body.as_bytes())
            .await
        {
            tracing::warn!(run.id = %id, error = %e, "cancel not broadcast; workers will see the flag in the database");
        }
    } else {
        state.events.publish(written);
    }
    let run: RunResource = super::find(&state, id).await?;
    Ok(json(StatusCode::ACCEPTED, &run))
}

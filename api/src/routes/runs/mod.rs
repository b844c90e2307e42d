//! `/runs` and `/configs/{id}/runs`: creating, reading and listing runs.

mod cancel;
mod create;
pub mod events;
pub mod outputs;
pub mod resource;

use super::{Page, PageQuery, authed, json, page};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use ade_common::status::RunStatus;
use resource::{COLUMNS, RunResource};
use serde::Deserialize;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create::create,
        get,
        list,
        delete,
        cancel::cancel,
        events::page,
        events::logfile,
        outputs::list,
        outputs::download,
    ),
    components(responses(outputs::FileDownload))
)]
pub struct Api;

/// Create, get, list, and the per-run sub-resources.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let get = warp::path!("runs" / Uuid)
        .and(warp::get())
        .and(authed(state.clone()))
        .then(get);
    let list = warp::path!("workspaces" / Uuid / "runs")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(warp::query::<ListQuery>())
        .then(list);
    let delete = warp::path!("runs" / Uuid)
        .and(warp::delete())
        .and(authed(state.clone()))
        .then(delete);
    create::routes(state.clone())
        .or(get.map(warp::Reply::into_response))
        .unify()
        .or(delete.map(warp::Reply::into_response))
        .unify()
        .or(list.map(warp::Reply::into_response))
        .unify()
        .or(events::routes(state.clone()))
        .unify()
        .or(outputs::routes(state.clone()))
        .unify()
        .or(cancel::routes(state))
        .unify()
        .boxed()
}

/// Get a run.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", operation_id = "getRun",
    params(("run_id" = Uuid, Path, description = "A run id.")),
    responses((status = 200, description = "The run.", body = RunResource)),
    extensions(("x-problems" = json!({"404": ["run_not_found"]}))))]
async fn get(
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &find(&state, &who?, id).await?))
}

/// Delete a run.
///
/// Only an ended run, with its events and files.
#[utoipa::path(delete, path = "/api/v1/runs/{run_id}", operation_id = "deleteRun",
    params(("run_id" = Uuid, Path, description = "A run id.")),
    responses((status = 204, description = "Deleted.")),
    extensions(("x-problems" = json!({"404": ["run_not_found"], "409": ["run_not_terminal"]}))))]
async fn delete(
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    find(&state, &who?, id).await?;
    let mut db = state.db().await?;
    match ade_common::lifecycle::runs::delete(&mut db, id).await? {
        ade_common::lifecycle::runs::Deleted::Deleted => {}
        ade_common::lifecycle::runs::Deleted::Open(status) => {
            return Err(ApiError::Conflict {
                code: "run_not_terminal",
                detail: format!("the run is {status}; cancel it first"),
            });
        }
        ade_common::lifecycle::runs::Deleted::Missing => return Err(ApiError::NotFound("run")),
    }
    if let Err(e) = tokio::fs::remove_dir_all(state.data_dir.run(id)).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(run.id = %id, error = %e, "the run's files could not be removed");
    }
    Ok(warp::Reply::into_response(warp::reply::with_status(
        warp::reply(),
        StatusCode::NO_CONTENT,
    )))
}

/// The run if `who` may see it, or 404 `run_not_found`.
pub async fn find(state: &AppState, who: &Principal, id: Uuid) -> Result<RunResource, ApiError> {
    let row = state
        .db()
        .await?
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM runs WHERE id = $1 AND ($2::uuid IS NULL OR workspace_id = $2)"
            ),
            &[&id, &who.workspace()],
        )
        .await?
        .ok_or(ApiError::NotFound("run"))?;
    Ok(RunResource::from(&row))
}

/// Filters and paging of a workspace's runs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only runs in this state.
    #[param(value_type = Option<RunStatus>)]
    status: Option<String>,
    /// Only runs of this configuration.
    configuration_id: Option<Uuid>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

/// List a workspace's runs, newest first.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/runs", operation_id = "listRuns",
    params(("workspace_id" = Uuid, Path, description = "A workspace id."), ListQuery),
    responses((status = 200, description = "A page of runs.", body = Page<RunResource>)),
    extensions(("x-problems" = json!({"404": ["workspace_not_found"]}))))]
async fn list(
    ws: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
    q: ListQuery,
) -> Result<Response, ApiError> {
    super::workspaces::find(&state, &who?, ws).await?;
    let limit = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .limit()?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<RunStatus>)
        .transpose()
        .map_err(|e| ApiError::field("invalid_query", "status", e.to_string()))?;
    let rows = state
        .db()
        .await?
        .query(
            &format!(
                "SELECT {COLUMNS} FROM runs WHERE workspace_id = $1
                   AND ($2::text IS NULL OR status = $2)
                   AND ($3::uuid IS NULL OR configuration_id = $3)
                   AND id < $4
                 ORDER BY id DESC LIMIT $5"
            ),
            &[
                &ws,
                &status.map(RunStatus::as_str),
                &q.configuration_id,
                &q.cursor.unwrap_or(Uuid::max()),
                &(limit + 1),
            ],
        )
        .await?;
    let items = rows.iter().map(RunResource::from).collect();
    Ok(json(StatusCode::OK, &page(items, limit, RunResource::id)))
}

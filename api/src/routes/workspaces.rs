//! `/workspaces`: the tenants that own configurations, documents and runs.

use super::{Page, PageQuery, authed, created, json, json_body, page, parse_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use ade_common::db::Cached as _;
use ade_common::time_fmt::serde_ts;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// A workspace as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Workspace {
    id: Uuid,
    #[schema(schema_with = crate::openapi::schemas::name)]
    name: String,
    #[serde(with = "serde_ts")]
    created_at: OffsetDateTime,
}

impl From<&Row> for Workspace {
    fn from(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            name: row.get("name"),
            created_at: row.get("created_at"),
        }
    }
}

/// A new workspace.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWorkspace {
    /// 1 to 200 printable characters (surrounding spaces are trimmed).
    #[schema(schema_with = crate::openapi::schemas::name)]
    name: String,
}

/// `POST /workspaces`, `GET /workspaces`, `GET /workspaces/{id}`.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let create = warp::path!("workspaces")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(json_body())
        .then(create);
    let list = warp::path!("workspaces")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(warp::query::<PageQuery>())
        .then(list);
    let get = warp::path!("workspaces" / Uuid)
        .and(warp::get())
        .and(authed(state))
        .then(get);
    create
        .or(list)
        .unify()
        .or(get)
        .unify()
        .map(into_response)
        .boxed()
}

fn into_response(r: Result<Response, ApiError>) -> Response {
    warp::Reply::into_response(r)
}

/// Create a workspace.
#[utoipa::path(post, path = "/api/v1/workspaces", operation_id = "createWorkspace",
    request_body = CreateWorkspace,
    responses((status = 201, description = "The new workspace.", body = Workspace,
        headers(("Location" = String, description = "`/api/v1/workspaces/{id}`")))))]
async fn create(
    state: AppState,
    who: Result<Principal, ApiError>,
    body: Bytes,
) -> Result<Response, ApiError> {
    who?.admin()?;
    let req: CreateWorkspace = parse_json(&body)?;
    let name = checked_name(&req.name)?;
    let row = state
        .db()
        .await?
        .cached_query_one(
            "INSERT INTO workspaces (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
            &[&ade_common::ids::new_id(), &name],
        )
        .await?;
    let ws = Workspace::from(&row);
    Ok(created(format!("/api/v1/workspaces/{}", ws.id), &ws))
}

/// List workspaces.
///
/// Every workspace for an admin key; a workspace key's own only. Newest first.
#[utoipa::path(get, path = "/api/v1/workspaces", operation_id = "listWorkspaces",
    params(PageQuery),
    responses((status = 200, description = "A page of workspaces.", body = Page<Workspace>)))]
async fn list(
    state: AppState,
    who: Result<Principal, ApiError>,
    q: PageQuery,
) -> Result<Response, ApiError> {
    let who = who?;
    let limit = q.limit()?;
    let cursor = q.cursor.unwrap_or(Uuid::max());
    let rows = state
        .db()
        .await?
        .cached_query(
            "SELECT id, name, created_at FROM workspaces
             WHERE id < $1 AND ($3::uuid IS NULL OR id = $3) ORDER BY id DESC LIMIT $2",
            &[&cursor, &(limit + 1), &who.workspace()],
        )
        .await?;
    let items = rows.iter().map(Workspace::from).collect();
    Ok(json(
        StatusCode::OK,
        &page(items, limit, |w: &Workspace| w.id),
    ))
}

/// Get a workspace.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}", operation_id = "getWorkspace",
    params(("workspace_id" = Uuid, Path, description = "A workspace id.")),
    responses((status = 200, description = "The workspace.", body = Workspace)),
    extensions(("x-problems" = json!({"404": ["workspace_not_found"]}))))]
async fn get(
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let row = find(&state, &who?, id).await?;
    Ok(json(StatusCode::OK, &Workspace::from(&row)))
}

/// The workspace row if `who` may see it, or 404 `workspace_not_found`.
pub async fn find(state: &AppState, who: &Principal, id: Uuid) -> Result<Row, ApiError> {
    if !who.sees(id) {
        return Err(ApiError::NotFound("workspace"));
    }
    state
        .db()
        .await?
        .cached_query_opt(
            "SELECT id, name, created_at FROM workspaces WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or(ApiError::NotFound("workspace"))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, get))]
pub struct Api;

/// A display name: trimmed, 1..=200 characters, no control characters.
pub fn checked_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::field(
            "invalid_request",
            "name",
            "name must be 1 to 200 printable characters",
        ));
    }
    Ok(name.to_owned())
}

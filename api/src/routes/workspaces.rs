//! `/workspaces`: the tenants that own configurations, documents and runs.

use super::{PageQuery, authed, created, json, json_body, page, parse_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
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
#[derive(Debug, Serialize)]
pub struct Workspace {
    id: Uuid,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWorkspace {
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
        .query_one(
            "INSERT INTO workspaces (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
            &[&ade_common::ids::new_id(), &name],
        )
        .await?;
    let ws = Workspace::from(&row);
    Ok(created(format!("/api/v1/workspaces/{}", ws.id), &ws))
}

/// Every workspace for an admin; a workspace key's own only.
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
        .query(
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
        .query_opt(
            "SELECT id, name, created_at FROM workspaces WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or(ApiError::NotFound("workspace"))
}

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

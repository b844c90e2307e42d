//! `/keys`: API keys made, listed and revoked by admins.

use super::{authed, created, json, json_body, parse_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::keys::{self, Scope};
use crate::state::AppState;
use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// `{"name", "admin": true}` or `{"name", "workspace_id"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    #[serde(default)]
    admin: bool,
    workspace_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    workspace_id: Option<Uuid>,
}

/// Create, list, revoke.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let create = warp::path!("keys")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(json_body())
        .then(create);
    let list = warp::path!("keys")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(warp::query::<ListQuery>())
        .then(list);
    let revoke = warp::path!("keys" / Uuid)
        .and(warp::delete())
        .and(authed(state))
        .then(revoke);
    create
        .or(list)
        .unify()
        .or(revoke)
        .unify()
        .map(warp::Reply::into_response)
        .boxed()
}

async fn create(
    state: AppState,
    who: Result<Principal, ApiError>,
    body: Bytes,
) -> Result<Response, ApiError> {
    who?.admin()?;
    let req: CreateKey = parse_json(&body)?;
    let name = super::workspaces::checked_name(&req.name)?;
    let scope = match (req.admin, req.workspace_id) {
        (true, None) => Scope::Admin,
        (false, Some(ws)) => Scope::Workspace(ws),
        _ => {
            return Err(ApiError::field(
                "invalid_request",
                "workspace_id",
                "give either \"admin\": true or a workspace_id",
            ));
        }
    };
    let db = state.db().await?;
    if let Scope::Workspace(ws) = scope
        && db
            .query_opt("SELECT 1 FROM workspaces WHERE id = $1", &[&ws])
            .await?
            .is_none()
    {
        return Err(ApiError::NotFound("workspace"));
    }
    let new = keys::create(&db, scope, &name)
        .await
        .map_err(ApiError::Internal)?;
    Ok(created(format!("/api/v1/keys/{}", new.record.id), &new))
}

async fn list(
    state: AppState,
    who: Result<Principal, ApiError>,
    q: ListQuery,
) -> Result<Response, ApiError> {
    who?.admin()?;
    let items = keys::list(&state.db().await?, q.workspace_id).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "items": items })))
}

async fn revoke(
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    who?.admin()?;
    let key = keys::revoke(&state.db().await?, id)
        .await?
        .ok_or(ApiError::NotFound("key"))?;
    state.keys.forget_all();
    Ok(json(StatusCode::OK, &key))
}

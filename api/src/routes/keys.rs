//! `/keys`: API keys made, listed and revoked by admins.

use super::{Items, authed, created, json, json_body, parse_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::keys::{self, KeyRecord, NewKey, Scope};
use crate::state::AppState;
use ade_common::db::Cached as _;
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
pub(crate) struct CreateKey {
    name: String,
    #[serde(default)]
    admin: bool,
    workspace_id: Option<Uuid>,
}

/// Written out: a derive cannot say "either `admin: true` or a
/// `workspace_id`", which `create` checks.
impl utoipa::PartialSchema for CreateKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let object = serde_json::json!({
            "type": "object",
            "description": "`{\"name\", \"admin\": true}` for an admin key, or \
                `{\"name\", \"workspace_id\"}` for a key that sees one workspace.",
            "required": ["name"],
            "properties": {
                "name": crate::openapi::schemas::name(),
                "admin": {"type": "boolean", "default": false, "description": "An admin key."},
                "workspace_id": {"type": ["string", "null"], "format": "uuid",
                                 "description": "The one workspace a workspace key sees."},
            },
            "additionalProperties": false,
        });
        let either = serde_json::json!({"oneOf": [
            {"type": "object", "required": ["admin"], "properties": {
                "admin": {"type": "boolean", "enum": [true]}, "workspace_id": {"type": "null"}}},
            {"type": "object", "required": ["workspace_id"], "properties": {
                "admin": {"type": "boolean", "enum": [false]}, "workspace_id": {"type": "string"}}},
        ]});
        crate::openapi::schemas::from(serde_json::json!({"allOf": [object, either]})).into()
    }
}

impl utoipa::ToSchema for CreateKey {}

/// Which keys to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this workspace's keys.
    workspace_id: Option<Uuid>,
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, revoke))]
pub struct Api;

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

/// Create an API key.
///
/// The key itself is in the reply only: store it.
#[utoipa::path(post, path = "/api/v1/keys", operation_id = "createKey",
    request_body = CreateKey,
    responses((status = 201, description = "The new key, shown once.", body = NewKey,
        headers(("Location" = String, description = "`/api/v1/keys/{id}`")))),
    extensions(("x-problems" = json!({"404": ["workspace_not_found"]}))))]
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
            .cached_query_opt("SELECT 1 FROM workspaces WHERE id = $1", &[&ws])
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

/// List API keys (never the keys themselves), newest first.
#[utoipa::path(get, path = "/api/v1/keys", operation_id = "listKeys",
    params(ListQuery),
    responses((status = 200, description = "The keys.", body = Items<KeyRecord>)))]
async fn list(
    state: AppState,
    who: Result<Principal, ApiError>,
    q: ListQuery,
) -> Result<Response, ApiError> {
    who?.admin()?;
    let items = keys::list(&state.db().await?, q.workspace_id).await?;
    Ok(json(StatusCode::OK, &Items { items }))
}

/// Revoke an API key.
///
/// Other API instances refuse it within 10 s, this one at once.
#[utoipa::path(delete, path = "/api/v1/keys/{key_id}", operation_id = "revokeKey",
    params(("key_id" = Uuid, Path, description = "A key id.")),
    responses((status = 200, description = "The revoked key.", body = KeyRecord)),
    extensions(("x-problems" = json!({"404": ["key_not_found"]}))))]
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

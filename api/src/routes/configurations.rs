//! `/workspaces/{id}/configurations`: config packages, from the template or an upload.

use super::multipart::{bad_multipart, read_part, read_text};
use super::workspaces::{self, checked_name};
use super::{Page, PageQuery, authed, created, json, json_body, page, parse_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::package::{self, CanonicalPackage, MAX_ARCHIVE_BYTES, PackageError};
use crate::state::AppState;
use ade_common::db::Cached as _;
use ade_common::time_fmt::serde_ts;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::multipart::FormData;
use warp::reply::Response;

const COLUMNS: &str =
    "id, workspace_id, name, content_digest, active_build_id, created_at, updated_at";

/// A configuration as the API shows it (the package itself is not included).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Configuration {
    id: Uuid,
    workspace_id: Uuid,
    #[schema(schema_with = crate::openapi::schemas::name)]
    name: String,
    /// `sha256:<hex>` of the canonical package.
    #[schema(pattern = "^sha256:[0-9a-f]{64}$")]
    content_digest: String,
    /// The build runs use, once one is ready.
    active_build_id: Option<Uuid>,
    #[serde(with = "serde_ts")]
    created_at: OffsetDateTime,
    #[serde(with = "serde_ts")]
    updated_at: OffsetDateTime,
}

impl From<&Row> for Configuration {
    fn from(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            workspace_id: row.get("workspace_id"),
            name: row.get("name"),
            content_digest: row.get("content_digest"),
            active_build_id: row.get("active_build_id"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

/// A configuration made from a built-in source.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateFromSource {
    #[schema(schema_with = crate::openapi::schemas::name)]
    name: String,
    #[serde(deserialize_with = "crate::routes::object")]
    source: Source,
}

/// `{"type": "template"}`: a struct, so unknown fields are refused too.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConfigurationSource)]
pub(crate) struct Source {
    #[serde(rename = "type")]
    kind: SourceKind,
}

/// The built-in sources: `template`, the starter configuration.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SourceKind {
    Template,
}

/// The multipart form of a new configuration (read part by part by the handler).
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes the form for the OpenAPI document only
pub(crate) struct ConfigurationForm {
    #[schema(schema_with = crate::openapi::schemas::name)]
    name: String,
    /// A `.zip` or `.tar.gz` of an `ade_config` package.
    #[schema(schema_with = crate::openapi::schemas::binary)]
    package: Vec<u8>,
}

/// The multipart form of a package replacement.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes the form for the OpenAPI document only
pub(crate) struct PackageForm {
    /// Accepted and ignored: the configuration keeps its name.
    name: Option<String>,
    /// A `.zip` or `.tar.gz` of an `ade_config` package.
    #[schema(schema_with = crate::openapi::schemas::binary)]
    package: Vec<u8>,
}

/// What a create or replace request carries, however it was encoded.
struct Upload {
    name: Option<String>,
    package: CanonicalPackage,
}

/// Create (multipart or JSON), replace the package, list, get.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let form = warp::multipart::form().max_length(MAX_ARCHIVE_BYTES as u64 + 64 * 1024);
    let create_multipart = warp::path!("workspaces" / Uuid / "configurations")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(form.clone())
        .then(|ws, state, who, form| create(ws, state, who, Body::Form(form)));
    let create_json = warp::path!("workspaces" / Uuid / "configurations")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(json_body())
        .then(|ws, state, who, body: Bytes| create(ws, state, who, Body::Json(body)));
    let replace = warp::path!("workspaces" / Uuid / "configurations" / Uuid / "package")
        .and(warp::put())
        .and(authed(state.clone()))
        .and(form)
        .then(replace);
    let list = warp::path!("workspaces" / Uuid / "configurations")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(warp::query::<PageQuery>())
        .then(list);
    let get = warp::path!("workspaces" / Uuid / "configurations" / Uuid)
        .and(warp::get())
        .and(authed(state))
        .then(get);
    create_multipart
        .or(create_json)
        .unify()
        .or(replace)
        .unify()
        .or(list)
        .unify()
        .or(get)
        .unify()
        .map(warp::Reply::into_response)
        .boxed()
}

/// A create request's body, read only once the caller is known.
enum Body {
    Form(FormData),
    Json(Bytes),
}

/// Create a configuration.
///
/// From an uploaded package (multipart `name` and `package`), or from the
/// starter template (JSON `{"name", "source": {"type": "template"}}`).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/configurations",
    operation_id = "createConfiguration",
    params(("workspace_id" = Uuid, Path, description = "A workspace id.")),
    request_body(content(
        (ConfigurationForm = "multipart/form-data"),
        (CreateFromSource = "application/json"),
    )),
    responses((status = 201, description = "The new configuration.", body = Configuration,
        headers(("Location" = String, description = "The configuration's URL.")))),
    extensions(("x-problems" = json!({"404": ["workspace_not_found"], "422": ["invalid_package"]}))))]
async fn create(
    ws: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
    body: Body,
) -> Result<Response, ApiError> {
    workspaces::find(&state, &who?, ws).await?;
    let upload = match body {
        Body::Form(form) => from_form(form).await?,
        Body::Json(body) => from_json(&body)?,
    };
    let name = checked_name(
        upload
            .name
            .as_deref()
            .ok_or_else(|| ApiError::field("invalid_request", "name", "name is required"))?,
    )?;
    let row = state
        .db()
        .await?
        .cached_query_one(
            &format!(
                "INSERT INTO configurations (id, workspace_id, name, content_digest, package)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[
                &ade_common::ids::new_id(),
                &ws,
                &name,
                &upload.package.digest.as_str(),
                &upload.package.archive,
            ],
        )
        .await?;
    let config = Configuration::from(&row);
    Ok(created(
        format!("/api/v1/workspaces/{ws}/configurations/{}", config.id),
        &config,
    ))
}

/// Replace a configuration's package.
///
/// The configuration gets a new `content_digest`; its name stays.
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace_id}/configurations/{configuration_id}/package",
    operation_id = "replacePackage",
    params(("workspace_id" = Uuid, Path, description = "A workspace id."),
        ("configuration_id" = Uuid, Path, description = "A configuration id.")),
    request_body(content((PackageForm = "multipart/form-data"))),
    responses((status = 200, description = "The configuration with its new package.", body = Configuration)),
    extensions(("x-problems" = json!({"404": ["workspace_not_found", "configuration_not_found"], "422": ["invalid_package"]}))))]
async fn replace(
    ws: Uuid,
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
    form: FormData,
) -> Result<Response, ApiError> {
    find(&state, &who?, ws, id).await?;
    let upload = from_form(form).await?;
    let row = state
        .db()
        .await?
        .cached_query_opt(
            &format!(
                "UPDATE configurations SET content_digest = $3, package = $4, updated_at = now()
                 WHERE workspace_id = $1 AND id = $2 RETURNING {COLUMNS}"
            ),
            &[
                &ws,
                &id,
                &upload.package.digest.as_str(),
                &upload.package.archive,
            ],
        )
        .await?
        .ok_or(ApiError::NotFound("configuration"))?;
    Ok(json(StatusCode::OK, &Configuration::from(&row)))
}

/// List a workspace's configurations, newest first.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/configurations",
    operation_id = "listConfigurations",
    params(("workspace_id" = Uuid, Path, description = "A workspace id."), PageQuery),
    responses((status = 200, description = "A page of configurations.", body = Page<Configuration>)),
    extensions(("x-problems" = json!({"404": ["workspace_not_found"]}))))]
async fn list(
    ws: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
    q: PageQuery,
) -> Result<Response, ApiError> {
    workspaces::find(&state, &who?, ws).await?;
    let limit = q.limit()?;
    let cursor = q.cursor.unwrap_or(Uuid::max());
    let rows = state
        .db()
        .await?
        .cached_query(
            &format!(
                "SELECT {COLUMNS} FROM configurations WHERE workspace_id = $1 AND id < $2
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&ws, &cursor, &(limit + 1)],
        )
        .await?;
    let items = rows.iter().map(Configuration::from).collect();
    Ok(json(
        StatusCode::OK,
        &page(items, limit, |c: &Configuration| c.id),
    ))
}

/// Get a configuration.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/configurations/{configuration_id}",
    operation_id = "getConfiguration",
    params(("workspace_id" = Uuid, Path, description = "A workspace id."),
        ("configuration_id" = Uuid, Path, description = "A configuration id.")),
    responses((status = 200, description = "The configuration.", body = Configuration)),
    extensions(("x-problems" = json!({"404": ["workspace_not_found", "configuration_not_found"]}))))]
async fn get(
    ws: Uuid,
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let row = find(&state, &who?, ws, id).await?;
    Ok(json(StatusCode::OK, &Configuration::from(&row)))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, replace, list, get))]
pub struct Api;

async fn find(state: &AppState, who: &Principal, ws: Uuid, id: Uuid) -> Result<Row, ApiError> {
    workspaces::find(state, who, ws).await?;
    state
        .db()
        .await?
        .cached_query_opt(
            &format!("SELECT {COLUMNS} FROM configurations WHERE workspace_id = $1 AND id = $2"),
            &[&ws, &id],
        )
        .await?
        .ok_or(ApiError::NotFound("configuration"))
}

fn from_json(body: &[u8]) -> Result<Upload, ApiError> {
    let req: CreateFromSource = parse_json(body)?;
    match req.source.kind {
        SourceKind::Template => Ok(Upload {
            name: Some(req.name),
            package: package::template(),
        }),
    }
}

async fn from_form(form: FormData) -> Result<Upload, ApiError> {
    let mut parts = form;
    let (mut name, mut archive) = (None, None);
    while let Some(part) = parts.try_next().await.map_err(bad_multipart)? {
        match part.name() {
            "name" => name = Some(read_text(part, 1024).await?),
            "package" => archive = Some(read_part(part, MAX_ARCHIVE_BYTES).await?),
            other => {
                return Err(ApiError::field(
                    "invalid_request",
                    other,
                    "unknown form field",
                ));
            }
        }
    }
    let archive = archive
        .ok_or_else(|| ApiError::field("invalid_request", "package", "package is required"))?;
    // Decompressing is CPU work: keep it off the async threads.
    let package = tokio::task::spawn_blocking(move || package::from_upload(&archive))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(package_error)?;
    Ok(Upload { name, package })
}

fn package_error(e: PackageError) -> ApiError {
    match e {
        PackageError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
        _ => ApiError::field("invalid_package", "package", e.to_string()),
    }
}

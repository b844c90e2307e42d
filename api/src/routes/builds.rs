//! `/workspaces/{id}/configurations/{id}/builds` and `/builds/{id}`.
//!
//! A build request without `force` returns the equal build (same
//! fingerprint) that is ready or in progress (200); otherwise it creates a
//! queued build (201) and offers it to the builds queue.

use super::{authed, created, json, json_body, parse_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::routes::event_pages::{self, EventsPage, EventsQuery};
use crate::routes::streams::{Format, follow};
use crate::state::AppState;
use ade_common::db::Cached as _;
use ade_common::events::StreamRef;
use ade_common::lifecycle::builds::{Reason, Resolved, Target, resolve};
use ade_common::lifecycle::queue::Job;
use ade_common::status::BuildStatus;
use ade_common::time_fmt::serde_ts;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::http::StatusCode;
use warp::reply::Response;

const COLUMNS: &str = "id, workspace_id, configuration_id, status, fingerprint, config_digest, engine_version, \
     python_version, exit_code, error_message, created_at, started_at, completed_at";

/// A build as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BuildResource {
    id: Uuid,
    workspace_id: Uuid,
    configuration_id: Uuid,
    status: BuildStatus,
    /// Hash over the config digest, engine version and Python identity.
    fingerprint: String,
    /// `content_digest` of the configuration it was built from.
    config_digest: String,
    engine_version: String,
    python_version: String,
    /// 0 when ready, 1 when failed, `null` before the end.
    exit_code: Option<i32>,
    /// Why it failed.
    error_message: Option<String>,
    #[serde(with = "serde_ts")]
    created_at: OffsetDateTime,
    #[serde(with = "serde_ts::option")]
    started_at: Option<OffsetDateTime>,
    #[serde(with = "serde_ts::option")]
    completed_at: Option<OffsetDateTime>,
    #[schema(inline)]
    links: Links,
}

/// URLs of the build and its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Links {
    #[serde(rename = "self")]
    this: String,
    events: String,
}

impl From<&Row> for BuildResource {
    fn from(row: &Row) -> Self {
        let id: Uuid = row.get("id");
        Self {
            id,
            workspace_id: row.get("workspace_id"),
            configuration_id: row.get("configuration_id"),
            status: row.get("status"),
            fingerprint: row.get("fingerprint"),
            config_digest: row.get("config_digest"),
            engine_version: row.get("engine_version"),
            python_version: row.get("python_version"),
            exit_code: row.get("exit_code"),
            error_message: row.get("error_message"),
            created_at: row.get("created_at"),
            started_at: row.get("started_at"),
            completed_at: row.get("completed_at"),
            links: Links {
                this: format!("/api/v1/builds/{id}"),
                events: format!("/api/v1/builds/{id}/events"),
            },
        }
    }
}

/// A build request; every field is optional (an empty body reads as `{}`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBuild {
    /// Answer with the build's live event stream instead of the build.
    #[serde(default)]
    stream: bool,
    #[serde(default, deserialize_with = "crate::routes::object")]
    options: BuildOptions,
}

/// How to build.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildOptions {
    /// Make a new build even if an equal one is ready.
    #[serde(default)]
    force: bool,
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, get, events))]
pub struct Api;

/// Create, get, events.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let create = warp::path!("workspaces" / Uuid / "configurations" / Uuid / "builds")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(warp::header::headers_cloned())
        .and(json_body())
        .then(create);
    let get = warp::path!("builds" / Uuid)
        .and(warp::get())
        .and(authed(state.clone()))
        .then(get);
    let events = warp::path!("builds" / Uuid / "events")
        .and(warp::get())
        .and(authed(state))
        .and(warp::query::<EventsQuery>())
        .and(warp::header::headers_cloned())
        .then(events);
    create
        .or(get)
        .unify()
        .or(events)
        .unify()
        .map(warp::Reply::into_response)
        .boxed()
}

/// Request a build of a configuration.
///
/// Without `force`, an equal build (same fingerprint) that is ready or in
/// progress is returned (200); otherwise a new one is queued (201). With
/// `"stream": true` the reply is the build's live event stream.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/configurations/{configuration_id}/builds",
    operation_id = "createBuild",
    params(("workspace_id" = Uuid, Path, description = "A workspace id."),
        ("configuration_id" = Uuid, Path, description = "A configuration id.")),
    request_body(content = Option<CreateBuild>, description = "May be empty."),
    responses(
        (status = 201, description = "The new, queued build.", body = BuildResource,
            headers(("Location" = String, description = "`/api/v1/builds/{id}`"))),
        (status = 200, description = "An equal build that is ready or in progress, \
            or (`\"stream\": true`) the build's live event stream.", content(
            (BuildResource = "application/json"),
            (String = "text/event-stream"),
            (String = "application/x-ndjson"),
        )),
    ),
    extensions(("x-problems" = json!({
        "404": ["workspace_not_found", "configuration_not_found"],
        "409": ["conflict"],
    }))))]
async fn create(
    ws: Uuid,
    config: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = who?;
    super::workspaces::find(&state, &who, ws).await?;
    let req: CreateBuild = parse_json(&body)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let row = tx
        .cached_query_opt(
            "SELECT content_digest FROM configurations WHERE workspace_id = $1 AND id = $2",
            &[&ws, &config],
        )
        .await?
        .ok_or(ApiError::NotFound("configuration"))?;
    let target = Target {
        workspace_id: ws,
        configuration_id: config,
        config_digest: row.get(0),
    };
    let resolved = resolve(
        &tx,
        &target,
        &state.identity,
        req.options.force,
        true,
        Reason::OnDemand,
    )
    .await?;
    tx.commit().await?;
    drop(db);
    let build = find(&state, &who, resolved.id()).await?;
    match resolved {
        Resolved::Created { id, .. } => {
            state.dispatcher.offer(Job::created(StreamRef::Build(id)));
            if req.stream {
                return Ok(follow(
                    state,
                    StreamRef::Build(id),
                    0,
                    Format::from_headers(&headers),
                ));
            }
            Ok(created(format!("/api/v1/builds/{id}"), &build))
        }
        resolved if req.stream => Ok(follow(
            state,
            StreamRef::Build(resolved.id()),
            0,
            Format::from_headers(&headers),
        )),
        _ => Ok(json(StatusCode::OK, &build)),
    }
}

/// Get a build.
#[utoipa::path(get, path = "/api/v1/builds/{build_id}", operation_id = "getBuild",
    params(("build_id" = Uuid, Path, description = "A build id.")),
    responses((status = 200, description = "The build.", body = BuildResource)),
    extensions(("x-problems" = json!({"404": ["build_not_found"]}))))]
async fn get(
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &find(&state, &who?, id).await?))
}

/// The build if `who` may see it, or 404 `build_not_found`.
pub async fn find(state: &AppState, who: &Principal, id: Uuid) -> Result<BuildResource, ApiError> {
    let row = state
        .db()
        .await?
        .cached_query_opt(
            &format!(
                "SELECT {COLUMNS} FROM builds WHERE id = $1 AND ($2::uuid IS NULL OR workspace_id = $2)"
            ),
            &[&id, &who.workspace()],
        )
        .await?
        .ok_or(ApiError::NotFound("build"))?;
    Ok(BuildResource::from(&row))
}

/// Read a build's own events.
///
/// As for a run's events; the live stream ends after `build.completed`.
#[utoipa::path(get, path = "/api/v1/builds/{build_id}/events", operation_id = "getBuildEvents",
    params(("build_id" = Uuid, Path, description = "A build id."), EventsQuery,
        ("Last-Event-ID" = Option<String>, Header,
            description = "With `stream=true` (and no `after_sequence`): resume after this sequence \
                number (otherwise 422 `invalid_request`). Ignored without `stream=true`.")),
    responses((status = 200, description = "A page of events (`application/json`), or with `stream=true` \
            the live stream: SSE (`Accept: text/event-stream`: `id: <sequence>`, `event: <type>`, \
            `data: <Event>`), or NDJSON (one event per line).", content(
            (EventsPage = "application/json"),
            (String = "text/event-stream"),
            (String = "application/x-ndjson"),
        ))),
    extensions(("x-problems" = json!({"404": ["build_not_found"]}))))]
async fn events(
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
    q: EventsQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    find(&state, &who?, id).await?;
    event_pages::events(state, StreamRef::Build(id), q, &headers).await
}

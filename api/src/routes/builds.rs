//! `/workspaces/{id}/configurations/{id}/builds` and `/builds/{id}`.
//!
//! A build request without `force` returns the equal build (same
//! fingerprint) that is ready or in progress (200); otherwise it creates a
//! queued build (201) and offers it to the builds queue.

use super::{authed, created, json, json_body, parse_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::routes::event_pages::{self, EventsQuery};
use crate::routes::streams::{Format, follow};
use crate::state::AppState;
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
#[derive(Debug, Serialize)]
pub struct BuildResource {
    id: Uuid,
    workspace_id: Uuid,
    configuration_id: Uuid,
    status: BuildStatus,
    fingerprint: String,
    config_digest: String,
    engine_version: String,
    python_version: String,
    exit_code: Option<i32>,
    error_message: Option<String>,
    #[serde(with = "serde_ts")]
    created_at: OffsetDateTime,
    #[serde(with = "serde_ts::option")]
    started_at: Option<OffsetDateTime>,
    #[serde(with = "serde_ts::option")]
    completed_at: Option<OffsetDateTime>,
    links: Links,
}

#[derive(Debug, Serialize)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBuild {
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    options: BuildOptions,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildOptions {
    #[serde(default)]
    force: bool,
}

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
        .query_opt(
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
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM builds WHERE id = $1 AND ($2::uuid IS NULL OR workspace_id = $2)"
            ),
            &[&id, &who.workspace()],
        )
        .await?
        .ok_or(ApiError::NotFound("build"))?;
    Ok(BuildResource::from(&row))
}

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

//! `POST /configs/{id}/runs` (and its alias `/configurations/{id}/runs`).
//!
//! The run and its `run.queued` event are committed in one transaction before
//! anything is published; only then is the job handed to the dispatcher,
//! which publishes it in the background: no request waits for the broker. If
//! the broker is down the run is still accepted, and the redispatcher offers
//! it again once the broker is back.

use super::resource::{COLUMNS, RunResource};
use crate::auth::Principal;
use crate::error::{ApiError, FieldError};
use crate::routes::streams::{Format, follow};
use crate::routes::{authed, created, json, json_body, parse_json};
use crate::state::AppState;
use ade_common::db::Cached as _;
use ade_common::events::{EventKind, NewEvent, Source, StreamRef};
use ade_common::ids::Digest;
use ade_common::lifecycle::builds::{Reason, Resolved, Target, resolve};
use ade_common::lifecycle::queue::Job;
use ade_common::lifecycle::runs::{NewRun, create as create_run};
use ade_common::runs::RunOptions;
use bytes::Bytes;
use deadpool_postgres::Transaction;
use serde::Deserialize;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::http::StatusCode;
use warp::reply::Response;

/// A run request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRun {
    /// Answer with the run's live event stream instead of the run.
    #[serde(default)]
    stream: bool,
    /// What to run; `document_ids` is required.
    #[serde(default, deserialize_with = "crate::routes::object")]
    #[schema(required = true)]
    options: RunOptions,
}

/// Both spellings of the create path.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let path = warp::path!("configs" / Uuid / "runs")
        .or(warp::path!("configurations" / Uuid / "runs"))
        .unify();
    path.and(warp::post())
        .and(authed(state))
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(warp::header::headers_cloned())
        .and(json_body())
        .then(create)
        .map(warp::Reply::into_response)
        .boxed()
}

/// Create a run.
///
/// Queues a run of the configuration's current content over the documents.
/// With `"stream": true` the reply is the run's live event stream (SSE with
/// `Accept: text/event-stream`, NDJSON otherwise). An `Idempotency-Key`
/// makes a retry safe: the same key and body answer 200 with the same run.
#[utoipa::path(post, path = "/api/v1/configs/{configuration_id}/runs", operation_id = "createRun",
    params(("configuration_id" = Uuid, Path, description = "A configuration id."),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
            description = "1 to 255 printable ASCII characters; the same key and body give the same run.")),
    request_body = CreateRun,
    responses(
        (status = 201, description = "The queued run.", body = RunResource,
            headers(("Location" = String, description = "`/api/v1/runs/{id}`"))),
        (status = 200, description = "The run an earlier request with this `Idempotency-Key` made, \
            or (`\"stream\": true`) the run's live event stream.", content(
            (RunResource = "application/json"),
            (String = "text/event-stream"),
            (String = "application/x-ndjson"),
        )),
    ),
    extensions(("x-problems" = json!({
        "404": ["configuration_not_found", "document_not_found"],
        "409": ["environment_not_ready", "idempotency_key_reused", "conflict"],
        "422": ["invalid_options", "safe_mode_enabled"],
        "429": ["run_queue_full"],
    }))))]
pub(super) async fn create(
    config_id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
    key: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = who?;
    let req: CreateRun = parse_json(&body)?;
    check_options(&req.options)?;
    if state.settings.safe_mode {
        return Err(ApiError::SafeMode);
    }
    let key = key.map(checked_key).transpose()?;
    let digest = Digest::sha256(&serde_json::to_vec(&req.options).expect("options serialize"));
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let target = target(&tx, &who, config_id).await?;
    if let Some(key) = &key
        && let Some(existing) = find_by_key(&tx, config_id, key, &digest).await?
    {
        if req.stream {
            return Ok(follow(
                state,
                StreamRef::Run(existing.id()),
                0,
                Format::from_headers(&headers),
            ));
        }
        return Ok(json(StatusCode::OK, &existing));
    }
    check_preconditions(&tx, &state, &target, &req.options).await?;
    let build = choose_build(&tx, &state, &target, req.options.force_rebuild).await?;
    let run_id = ade_common::ids::new_id();
    let options = serde_json::to_value(&req.options).expect("options serialize");
    let queued = serde_json::json!({ "options": options });
    let mut events = vec![NewEvent::new(EventKind::RunQueued, Source::Api, queued)];
    if let Resolved::Created { id, created } = &build {
        // The build's own stream has its build.created; the run's stream shows it too.
        let event = NewEvent::new(EventKind::BuildCreated, Source::Api, created.clone());
        events.push(event.with_build(*id));
    }
    let run = NewRun {
        id: run_id,
        workspace_id: target.workspace_id,
        configuration_id: config_id,
        build_id: build.id(),
        options: &options,
        idempotency_key: key.as_deref(),
        request_digest: digest.as_str(),
    };
    let (row, written) = create_run(&tx, &run, &events, COLUMNS).await?;
    tx.commit().await?;
    drop(db);
    state.events.publish(written);
    state.dispatcher.offer(Job::created(StreamRef::Run(run_id)));
    if req.stream {
        let mut res = follow(
            state,
            StreamRef::Run(run_id),
            0,
            Format::from_headers(&headers),
        );
        res.headers_mut().insert(
            "location",
            format!("/api/v1/runs/{run_id}")
                .parse()
                .expect("ids make valid headers"),
        );
        return Ok(res);
    }
    Ok(created(
        format!("/api/v1/runs/{run_id}"),
        &RunResource::from(&row),
    ))
}

fn check_options(options: &RunOptions) -> Result<(), ApiError> {
    options.check().map_err(|errors| ApiError::Invalid {
        code: "invalid_options",
        detail: errors
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; "),
        errors: errors
            .into_iter()
            .map(|(field, message)| FieldError { field, message })
            .collect(),
    })
}

/// An `Idempotency-Key`: 1 to 255 printable ASCII characters.
fn checked_key(key: String) -> Result<String, ApiError> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::field(
            "invalid_request",
            "Idempotency-Key",
            "must be 1 to 255 printable ASCII characters",
        ));
    }
    Ok(key)
}

/// The configuration as a build target, if `who` may see it (else 404).
async fn target(
    tx: &Transaction<'_>,
    who: &Principal,
    config_id: Uuid,
) -> Result<Target, ApiError> {
    let config = tx
        .cached_query_opt(
            "SELECT workspace_id, content_digest FROM configurations WHERE id = $1",
            &[&config_id],
        )
        .await?
        .filter(|row| who.sees(row.get(0)))
        .ok_or(ApiError::NotFound("configuration"))?;
    Ok(Target {
        workspace_id: config.get(0),
        configuration_id: config_id,
        config_digest: config.get(1),
    })
}

/// Checks the documents (held against deletion until commit) and the queue.
async fn check_preconditions(
    tx: &Transaction<'_>,
    state: &AppState,
    target: &Target,
    options: &RunOptions,
) -> Result<(), ApiError> {
    let found = tx
        .cached_query(
            "SELECT id FROM documents WHERE workspace_id = $1 AND id = ANY($2) FOR SHARE",
            &[&target.workspace_id, &options.document_ids],
        )
        .await?;
    if found.len() != options.document_ids.len() {
        return Err(ApiError::NotFound("document"));
    }
    if state
        .admission
        .is_full(tx, state.settings.max_queued_runs)
        .await?
    {
        return Err(ApiError::QueueFull);
    }
    Ok(())
}

/// The build the run will use: ready, in progress, or newly queued. A failed
/// build of the same content fails fast (409) unless the run forces a rebuild.
async fn choose_build(
    tx: &Transaction<'_>,
    state: &AppState,
    target: &Target,
    force: bool,
) -> Result<Resolved, ApiError> {
    let reason = if force {
        Reason::ForceRebuild
    } else {
        Reason::Missing
    };
    match resolve(tx, target, &state.identity, force, false, reason).await? {
        Resolved::Failed { error, .. } => Err(ApiError::Conflict {
            code: "environment_not_ready",
            detail: format!(
                "the build for this configuration failed ({error}); fix it, or run with force_rebuild"
            ),
        }),
        resolved => Ok(resolved),
    }
}

/// The run created earlier with this key, if the request is the same; 409 if not.
async fn find_by_key(
    tx: &Transaction<'_>,
    config_id: Uuid,
    key: &str,
    digest: &Digest,
) -> Result<Option<RunResource>, ApiError> {
    let row = tx
        .cached_query_opt(
            &format!("SELECT {COLUMNS}, request_digest FROM runs WHERE configuration_id = $1 AND idempotency_key = $2"),
            &[&config_id, &key],
        )
        .await?;
    match row {
        None => Ok(None),
        Some(row) if row.get::<_, Option<&str>>("request_digest") == Some(digest.as_str()) => {
            Ok(Some(RunResource::from(&row)))
        }
        Some(_) => Err(ApiError::Conflict {
            code: "idempotency_key_reused",
            detail: "this Idempotency-Key was used with a different request".into(),
        }),
    }
}

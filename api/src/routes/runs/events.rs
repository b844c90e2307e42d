//! `/runs/{id}/events` (pages) and `/runs/{id}/logfile` (everything, NDJSON).

use crate::auth::Principal;
use crate::error::ApiError;
use crate::routes::authed;
use crate::routes::event_pages::{EventsPage, EventsQuery, events};
use crate::state::AppState;
use ade_common::events::{Envelope, MAX_PAGE, StreamRef};
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::reply::Response;

/// The events page and the log file.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let page = warp::path!("runs" / Uuid / "events")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(warp::query::<EventsQuery>())
        .and(warp::header::headers_cloned())
        .then(page);
    let logfile = warp::path!("runs" / Uuid / "logfile")
        .and(warp::get())
        .and(authed(state))
        .then(logfile);
    page.or(logfile)
        .unify()
        .map(warp::Reply::into_response)
        .boxed()
}

/// Read a run's events.
///
/// A page of stored events after `after_sequence`, or with `stream=true`
/// the live stream: everything after `after_sequence` (or `Last-Event-ID`),
/// then new events as they happen, ending after `run.completed`.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/events", operation_id = "getRunEvents",
    params(("run_id" = Uuid, Path, description = "A run id."), EventsQuery,
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
    extensions(("x-problems" = json!({"404": ["run_not_found"]}))))]
pub(super) async fn page(
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
    q: EventsQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::find(&state, &who?, id).await?;
    events(state, StreamRef::Run(id), q, &headers).await
}

/// Download a run's log file.
///
/// Every stored event as NDJSON, streamed a page at a time.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/logfile", operation_id = "getRunLogfile",
    params(("run_id" = Uuid, Path, description = "A run id.")),
    responses((status = 200, description = "One `Event` per line.", content_type = "application/x-ndjson", body = String,
        headers(("Content-Disposition" = String, description = "`attachment; filename=\"run-<id>-events.ndjson\"`")))),
    extensions(("x-problems" = json!({"404": ["run_not_found"]}))))]
pub(super) async fn logfile(
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    super::find(&state, &who?, id).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut after = 0;
        loop {
            let page = match state.db().await {
                Ok(db) => ade_common::events::page(&db, StreamRef::Run(id), after, MAX_PAGE)
                    .await
                    .map_err(std::io::Error::other),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let page = match page {
                Ok(page) if page.is_empty() => return,
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(run.id = %id, error = %e, "log file stream failed");
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            after = page.last().map_or(after, |e| e.sequence);
            if tx.send(Ok(ndjson(&page))).await.is_err() {
                return;
            }
        }
    });
    let body = warp::reply::stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut res = warp::Reply::into_response(body);
    let headers = res.headers_mut();
    headers.insert(
        "content-type",
        "application/x-ndjson".parse().expect("valid header"),
    );
    let disposition = format!("attachment; filename=\"run-{id}-events.ndjson\"");
    headers.insert(
        "content-disposition",
        disposition.parse().expect("ids make valid headers"),
    );
    Ok(res)
}

/// Events as newline-delimited JSON.
pub fn ndjson(events: &[Envelope]) -> bytes::Bytes {
    let mut out = Vec::new();
    for e in events {
        serde_json::to_writer(&mut out, e).expect("an envelope always serializes");
        out.push(b'\n');
    }
    out.into()
}

//! `/runs/{id}/events` (pages) and `/runs/{id}/logfile` (everything, NDJSON).

use crate::error::ApiError;
use crate::routes::streams::{Followed, Format, follow, resume_point};
use crate::routes::{json, with};
use crate::state::AppState;
use ade_common::events::{Envelope, MAX_PAGE, run_events_page};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::http::StatusCode;
use warp::reply::Response;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after_sequence: Option<i64>,
    limit: Option<i64>,
    stream: Option<bool>,
}

#[derive(Serialize)]
struct EventsPage {
    items: Vec<Envelope>,
    next_after_sequence: i64,
}

/// The events page and the log file.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let page = warp::path!("runs" / Uuid / "events")
        .and(warp::get())
        .and(with(state.clone()))
        .and(warp::query::<EventsQuery>())
        .and(warp::header::headers_cloned())
        .then(page);
    let logfile = warp::path!("runs" / Uuid / "logfile")
        .and(warp::get())
        .and(with(state))
        .then(logfile);
    page.or(logfile)
        .unify()
        .map(warp::Reply::into_response)
        .boxed()
}

async fn page(
    id: Uuid,
    state: AppState,
    q: EventsQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if q.stream == Some(true) {
        let after = resume_point(q.after_sequence, &headers)?;
        super::find(&state, id).await?;
        return Ok(follow(
            state,
            Followed::Run(id),
            after,
            Format::from_headers(&headers),
        ));
    }
    let (after, limit) = page_bounds(q.after_sequence, q.limit)?;
    super::find(&state, id).await?;
    let items = run_events_page(&state.db().await?, id, after, limit).await?;
    let next_after_sequence = items.last().map_or(after, |e| e.sequence);
    Ok(json(
        StatusCode::OK,
        &EventsPage {
            items,
            next_after_sequence,
        },
    ))
}

/// Checks `after_sequence` (default 0) and `limit` (default 100, at most 1000).
pub fn page_bounds(
    after_sequence: Option<i64>,
    limit: Option<i64>,
) -> Result<(i64, i64), ApiError> {
    let after = after_sequence.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::field(
            "invalid_query",
            "after_sequence",
            "must be 0 or more",
        ));
    }
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::field(
            "invalid_query",
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok((after, limit))
}

/// Streams every event as NDJSON, a page at a time, so a long log never sits in memory.
async fn logfile(id: Uuid, state: AppState) -> Result<Response, ApiError> {
    super::find(&state, id).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut after = 0;
        loop {
            let page = match state.db().await {
                Ok(db) => run_events_page(&db, id, after, MAX_PAGE)
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

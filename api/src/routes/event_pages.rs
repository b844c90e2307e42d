//! `GET …/events` of runs and builds: a page of stored events, or (with
//! `stream=true`) the live stream of [`super::streams`].

use super::streams::{Format, follow, page, resume_point};
use crate::error::ApiError;
use crate::state::AppState;
use ade_common::events::{Envelope, MAX_PAGE, StreamRef};
use warp::http::HeaderMap;
use warp::reply::Response;

/// The query of `GET …/events`: a page, or `stream=true`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events after this sequence (default 0).
    #[param(minimum = 0)]
    after_sequence: Option<i64>,
    /// Page size, 1..=1000 (default 100); ignored with `stream=true`.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
    /// Answer with the live stream instead of a page.
    stream: Option<bool>,
}

/// A page of events.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct EventsPage {
    /// In sequence order.
    items: Vec<Envelope>,
    /// Pass back as `after_sequence` for the next page (unchanged when empty).
    #[schema(minimum = 0)]
    next_after_sequence: i64,
}

/// Answers `GET …/events` of a run or build that exists: a page of events,
/// or with `stream=true` the live stream.
pub async fn events(
    state: AppState,
    followed: StreamRef,
    q: EventsQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if q.stream == Some(true) {
        let after = resume_point(q.after_sequence, headers)?;
        return Ok(follow(
            state,
            followed,
            after,
            Format::from_headers(headers),
        ));
    }
    let (after, limit) = page_bounds(q.after_sequence, q.limit)?;
    let items = page(&state, followed, after, limit).await?;
    let next_after_sequence = items.last().map_or(after, |e| e.sequence);
    Ok(super::json(
        warp::http::StatusCode::OK,
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

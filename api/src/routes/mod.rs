//! The route tree. One module per resource; each exposes `routes(state)`.
//! [`table::ROUTES`] lists every route with who may call it.
//!
//! Handlers return `Result<Response, ApiError>` and render errors themselves;
//! warp rejections are left for routing, and [`crate::error::recover`] turns
//! the ones that escape (unknown path, bad method, oversized body) into
//! problem+json.

pub mod builds;
pub mod configurations;
pub mod documents;
pub mod event_pages;
pub mod health;
pub mod keys;
pub mod multipart;
pub mod operations;
pub mod pages;
pub mod runs;
pub mod streams;
pub mod table;
pub mod workspaces;

use crate::error::ApiError;
use crate::state::AppState;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

/// Largest JSON request body.
pub const MAX_JSON_BYTES: u64 = 1024 * 1024;

/// Every route, with rejections recovered into problem+json.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let api = warp::path("api").and(warp::path("v1"));
    let v1 = workspaces::routes(state.clone())
        .or(configurations::routes(state.clone()))
        .unify()
        .or(documents::routes(state.clone()))
        .unify()
        .or(runs::routes(state.clone()))
        .unify()
        .or(builds::routes(state.clone()))
        .unify()
        .or(operations::routes(state.clone()))
        .unify()
        .or(keys::routes(state.clone()))
        .unify()
        .or(openapi(&state.settings))
        .unify();
    let tree = health::routes(state.clone())
        .or(operations::metrics_route(state))
        .unify()
        .or(pages::routes())
        .unify()
        .or(api.and(v1))
        .unify()
        .recover(crate::error::recover)
        .unify();
    warp::path::full()
        .and(tree)
        .map(with_allow)
        .with(warp::trace::request())
        .map(Reply::into_response)
        .boxed()
}

/// A 405 lists the methods the path has (`Allow`, as RFC 9110 requires).
fn with_allow(path: warp::path::FullPath, mut res: Response) -> Response {
    if res.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = table::allowed_methods(path.as_str()).join(", ");
        if let Ok(allow) = allow.parse() {
            res.headers_mut().insert("allow", allow);
        }
    }
    res
}

/// `GET /api/v1/openapi.json`: the document, generated once at start.
fn openapi(settings: &crate::settings::ApiSettings) -> BoxedFilter<(Response,)> {
    let doc = Bytes::from(crate::openapi::to_json(settings));
    warp::path!("openapi.json")
        .and(warp::get())
        .map(move || openapi_json(doc.clone()))
        .boxed()
}

/// Get this OpenAPI document.
///
/// Served without a key.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "getOpenApi",
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Object)))]
fn openapi_json(doc: Bytes) -> Response {
    let mut res = Response::new(doc.into());
    res.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("valid header"),
    );
    res
}

/// The OpenAPI part of this module (the document's own route).
#[derive(utoipa::OpenApi)]
#[openapi(paths(openapi_json))]
pub struct Api;

/// The shared state, for `.and(with(state))`.
pub fn with(
    state: AppState,
) -> impl Filter<Extract = (AppState,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// The shared state and the caller (`Err` when the key is missing or
/// refused: the handler answers it), for `.and(authed(state))`.
pub fn authed(
    state: AppState,
) -> impl Filter<
    Extract = (AppState, Result<crate::auth::Principal, ApiError>),
    Error = std::convert::Infallible,
> + Clone {
    with(state.clone()).and(crate::auth::principal(state))
}

/// A bounded raw body, for handlers that parse JSON themselves.
pub fn json_body() -> impl Filter<Extract = (Bytes,), Error = warp::Rejection> + Clone {
    warp::body::content_length_limit(MAX_JSON_BYTES).and(warp::body::bytes())
}

/// Parses a JSON body; an empty body (or only JSON whitespace) reads as
/// `{}`. Errors are 422 `invalid_request`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // JSON's whitespace, not `is_ascii_whitespace` (which has form feed).
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let body = if body.iter().all(blank) {
        b"{}".as_slice()
    } else {
        body
    };
    // serde also reads a struct from an array (`["name"]`): only objects here.
    if body.iter().find(|b| !blank(b)) != Some(&b'{') {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// For `#[serde(deserialize_with = "object")]`: a field that must be a JSON
/// object (serde would also read the struct from an array).
pub fn object<'de, D: serde::Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    use serde::Deserialize as _;
    use serde::de::Error as _;
    match serde_json::Value::deserialize(d)? {
        value @ serde_json::Value::Object(_) => T::deserialize(value).map_err(D::Error::custom),
        _ => Err(D::Error::custom("must be an object")),
    }
}

/// A JSON reply with a status.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

/// A 201 JSON reply with a `Location` header.
pub fn created<T: Serialize>(location: String, value: &T) -> Response {
    let mut res = json(StatusCode::CREATED, value);
    res.headers_mut().insert(
        "location",
        location.parse().expect("ids make valid headers"),
    );
    res
}

/// A page of items with the cursor of the next page.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `limit` and `cursor` query parameters of list endpoints.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<uuid::Uuid>,
}

/// A list that is not paged.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    /// Every item.
    pub items: Vec<T>,
}

impl PageQuery {
    /// The page size, checked.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.unwrap_or(50) {
            l @ 1..=200 => Ok(l),
            _ => Err(ApiError::field(
                "invalid_query",
                "limit",
                "limit must be between 1 and 200",
            )),
        }
    }
}

/// Builds a page from `limit + 1` fetched rows (the extra one says "more").
pub fn page<T>(mut items: Vec<T>, limit: i64, id: impl Fn(&T) -> uuid::Uuid) -> Page<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|i| id(i).to_string())
    } else {
        None
    };
    Page { items, next_cursor }
}

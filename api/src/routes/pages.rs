//! Pages for people: `GET /` (recent runs of the key's workspace) and
//! `GET /runs/{run_id}` (one run, live), plus the assets they load.
//!
//! The pages are static shells embedded in the binary: they hold no data and
//! need no key. Their JavaScript takes the key from the URL fragment or a
//! form, keeps it in `sessionStorage`, and calls `/api/v1` with it as a
//! Bearer token. Every page response carries a strict Content-Security-Policy
//! (scripts, styles and connections from this origin only; no inline code),
//! so text from runs can never execute even if a rendering bug slipped in.

use crate::error::ApiError;
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Reply};

/// The Content-Security-Policy of every page and asset.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// An embedded file: its URL name, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// Everything under `/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../assets/app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../../assets/icon.svg"),
    },
    Asset {
        name: "key.js",
        content_type: JS,
        body: include_str!("../../assets/key.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_str!("../../assets/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: JS,
        body: include_str!("../../assets/dom.js"),
    },
    Asset {
        name: "stream.js",
        content_type: JS,
        body: include_str!("../../assets/stream.js"),
    },
    Asset {
        name: "list.js",
        content_type: JS,
        body: include_str!("../../assets/list.js"),
    },
    Asset {
        name: "run.js",
        content_type: JS,
        body: include_str!("../../assets/run.js"),
    },
];

const LIST_PAGE: &str = include_str!("../../assets/index.html");
const RUN_PAGE: &str = include_str!("../../assets/run.html");
const HTML: &str = "text/html; charset=utf-8";

/// `/`, `/runs/{run_id}` and `/assets/{name}`.
pub fn routes() -> BoxedFilter<(Response,)> {
    let list = warp::path::end()
        .and(warp::get())
        .map(|| page(HTML, LIST_PAGE));
    let run = warp::path!("runs" / Uuid)
        .and(warp::get())
        .map(|_: Uuid| page(HTML, RUN_PAGE));
    let asset = warp::path!("assets" / String)
        .and(warp::get())
        .map(|name: String| asset(&name).unwrap_or_else(|e| e.into_response()));
    list.or(run).unify().or(asset).unify().boxed()
}

fn asset(name: &str) -> Result<Response, ApiError> {
    let found = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or(ApiError::NotFound("resource"))?;
    Ok(page(found.content_type, found.body))
}

/// A page or asset with the headers every one of them carries.
fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut res = Response::new(body.into());
    let headers = res.headers_mut();
    let set = |value: &'static str| HeaderValue::from_static(value);
    headers.insert("content-type", set(content_type));
    headers.insert("content-security-policy", set(CONTENT_SECURITY_POLICY));
    headers.insert("x-content-type-options", set("nosniff"));
    headers.insert("referrer-policy", set("no-referrer"));
    headers.insert("x-frame-options", set("DENY"));
    // The binary is the version: a new deploy must not be masked by a stale cache.
    headers.insert("cache-control", set("no-cache"));
    res
}

//! The OpenAPI 3.1 document, generated from the code.
//!
//! Each route module documents its handlers with `#[utoipa::path]` and the
//! types they read and write with `ToSchema`, and gathers them in its own
//! `Api`. [`document`] merges those, then adds what follows from the one
//! list of routes ([`crate::routes::table::ROUTES`]) and the settings:
//! security and tags per route, the error responses ([`problems`]) and the
//! limits. It is built once at start and served at `GET /api/v1/openapi.json`.
//!
//! The pages for people (`/`, `/runs/{run_id}`, `/assets/{name}`) are HTML,
//! not API, and are left out.

pub mod problems;
pub mod schemas;

use crate::package::{MAX_ARCHIVE_BYTES, MAX_ENTRIES, MAX_EXPANDED_BYTES, MAX_PATH_LEN};
use crate::routes::table::{Access, ROUTES, Route};
use crate::routes::{self, MAX_JSON_BYTES};
use crate::settings::ApiSettings;
use serde_json::{Value, json};
use utoipa::OpenApi as _;

/// The route groups left out of the document.
pub const UNDOCUMENTED_GROUPS: &[&str] = &["pages"];

/// The document for an API running with `settings`.
pub fn document(settings: &ApiSettings) -> Value {
    let mut api = routes::workspaces::Api::openapi();
    for part in [
        routes::configurations::Api::openapi(),
        routes::documents::Api::openapi(),
        routes::runs::Api::openapi(),
        routes::builds::Api::openapi(),
        routes::operations::Api::openapi(),
        routes::keys::Api::openapi(),
        routes::health::Api::openapi(),
        routes::Api::openapi(),
    ] {
        api.merge(part);
    }
    let mut doc = serde_json::to_value(&api).expect("the document serializes");
    doc["info"] = info(settings);
    for (name, schema) in problems::schemas() {
        doc["components"]["schemas"][name] = schema;
    }
    doc["components"]["securitySchemes"] = json!({"bearerAuth": {
        "type": "http", "scheme": "bearer", "bearerFormat": "ade_<48 hex digits>",
        "description": "An API key from `ade-api keys create` or `POST /api/v1/keys`. \
            Routes that need an admin key list the role `admin`.",
    }});
    alias(
        &mut doc,
        "/api/v1/configs/{configuration_id}/runs",
        "/api/v1/configurations/{configuration_id}/runs",
    );
    for route in ROUTES
        .iter()
        .filter(|r| !UNDOCUMENTED_GROUPS.contains(&r.group))
    {
        if let Some(operation) = operation_mut(&mut doc, route) {
            complete(operation, route, settings);
        }
    }
    doc
}

/// The document as served.
pub fn to_json(settings: &ApiSettings) -> String {
    serde_json::to_string_pretty(&document(settings)).expect("the document serializes")
}

/// The operation of `route`, if documented.
pub fn operation_mut<'a>(doc: &'a mut Value, route: &Route) -> Option<&'a mut Value> {
    doc["paths"]
        .get_mut(route.path)?
        .get_mut(route.method.to_ascii_lowercase())
}

/// Security, tag, error responses and limits of one operation.
fn complete(operation: &mut Value, route: &Route, settings: &ApiSettings) {
    let security = match route.access {
        Access::Open => json!([]),
        Access::AdminUnlessPublic if settings.metrics_public => json!([]),
        Access::Key => json!([{"bearerAuth": []}]),
        Access::Admin | Access::AdminUnlessPublic => json!([{"bearerAuth": ["admin"]}]),
    };
    operation["security"] = security;
    operation["tags"] = json!([route.group]);
    let params = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut);
    for param in params.into_iter().flatten() {
        not_null(&mut param["schema"]);
    }
    problems::apply(operation, route, settings.metrics_public);
    if let Some(body) = operation.get_mut("requestBody") {
        limit_body(body, settings);
    }
}

/// Notes the size limits on a request body. An optional body (an `Option`
/// in the annotation) may be absent, but is never JSON `null`.
fn limit_body(body: &mut Value, settings: &ApiSettings) {
    if let Some(schema) = body.pointer_mut("/content/application~1json/schema")
        && let Some(choices) = schema["oneOf"].as_array()
        && let [some, none] = choices.as_slice()
        && none == &json!({"type": "null"})
    {
        *schema = some.clone();
    }
    let content = &body["content"];
    let mut limits = Vec::new();
    if content.get("application/json").is_some() {
        limits.push(format!(
            "A JSON body is at most {MAX_JSON_BYTES} bytes and needs `Content-Length`; unknown fields are refused."
        ));
    }
    let form = &content["multipart/form-data"]["schema"];
    let form_fields = form["properties"].as_object().cloned().unwrap_or_default();
    let form_ref = form["$ref"].as_str().unwrap_or_default();
    if form_fields.contains_key("file") || form_ref.ends_with("/DocumentForm") {
        limits.push(format!(
            "The `file` part is at most {} bytes (`ADE_MAX_UPLOAD_BYTES`).",
            settings.max_upload_bytes
        ));
    }
    if form_fields.contains_key("package")
        || form_ref.ends_with("/PackageForm")
        || form_ref.ends_with("/ConfigurationForm")
    {
        limits.push(format!(
            "The `package` (a `.zip` or `.tar.gz` of an `ade_config` package) is at most \
             {MAX_ARCHIVE_BYTES} bytes, with at most {MAX_ENTRIES} entries (directories \
             included), {MAX_EXPANDED_BYTES} bytes expanded and paths of at most \
             {MAX_PATH_LEN} characters; links, traversal, duplicate and non-UTF-8 names are refused."
        ));
    }
    let before = body["description"].as_str().unwrap_or_default().to_owned();
    body["description"] = Value::String(
        std::iter::once(before)
            .chain(limits)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n"),
    );
}

/// A parameter is absent or a string, never `null` (an `Option` in Rust).
fn not_null(schema: &mut Value) {
    if let Some(types) = schema["type"].as_array() {
        let types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        schema["type"] = match types.as_slice() {
            [one] => one.clone(),
            _ => Value::Array(types),
        };
    }
}

/// Documents `alias` as the same operation as `path` (one handler serves both).
fn alias(doc: &mut Value, path: &str, alias: &str) {
    let mut item = doc["paths"][path].clone();
    for operation in item
        .as_object_mut()
        .into_iter()
        .flat_map(|o| o.values_mut())
    {
        if let Some(id) = operation["operationId"].as_str() {
            operation["operationId"] = Value::String(format!("{id}Alias"));
            operation["summary"] = Value::String(format!(
                "{} (alias of `{path}`)",
                operation["summary"].as_str().unwrap_or_default()
            ));
        }
    }
    doc["paths"][alias] = item;
}

/// Title, version and the conventions every operation shares.
fn info(settings: &ApiSettings) -> Value {
    let description = format!(
        "HTTP API of the ADE runs fleet: workspaces, configurations, documents, \
builds, runs with their events (paged or live), log file and outputs, keys and \
fleet operations. Generated from the code; `docs/api.md` is the prose reference.\n\n\
* **Keys.** Every `/api/v1` route but this document needs `Authorization: Bearer <key>` \
(401 `unauthorized` otherwise). A workspace key sees only its workspace: another \
workspace's ids answer 404, never 403. Routes whose security lists the role `admin` \
need an admin key (403 `admin_required`). `/health/*` is open; `/metrics` needs an admin \
key unless `ADE_METRICS_PUBLIC=true` (here: {metrics_public}).\n\
* **Limits.** JSON bodies: at most {MAX_JSON_BYTES} bytes, with `Content-Length`. \
Document uploads: at most {upload} bytes. Packages: at most {MAX_ARCHIVE_BYTES} bytes, \
{MAX_ENTRIES} entries, {MAX_EXPANDED_BYTES} bytes expanded. Pages: `limit` 1..200 \
(events: 1..{MAX_PAGE}). Each key may make {rate} requests per second on average (429 \
`rate_limited` with `Retry-After` beyond). Problem details echo at most \
{MAX_PROBLEM_TEXT} characters of input.\n\
* **Errors** are `application/problem+json` (`Problem`); match on `code`. An unknown \
path answers 404 `resource_not_found`, a known path with another method 405 \
`method_not_allowed`.\n\
* **Ids** are UUIDv7 strings; timestamps are RFC 3339 in UTC with milliseconds and `Z`.\n\
* **Live streams.** `stream=true` on event routes (and `\"stream\": true` on run and \
build creation) answers with the events replayed then tailed: SSE with `Accept: \
text/event-stream` (`id: <sequence>`, `event: <type>`, `data: <Event>`), NDJSON \
otherwise; resume with `after_sequence` or `Last-Event-ID`.\n\n\
Health (`/health/*`) and `/metrics` are at the root; the pages for people (`/`, \
`/runs/{{run_id}}`, `/assets/{{name}}`) are HTML and not described here.",
        metrics_public = settings.metrics_public,
        upload = settings.max_upload_bytes,
        rate = settings.rate_limit_per_second,
        MAX_PROBLEM_TEXT = crate::error::MAX_PROBLEM_TEXT,
        MAX_PAGE = ade_common::events::MAX_PAGE,
    );
    json!({
        "title": "ADE Runs API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": description,
        "license": {"name": "MIT", "identifier": "MIT"},
    })
}

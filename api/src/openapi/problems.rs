//! The error responses of every operation, and the `Problem` schema.
//!
//! A handler's `#[utoipa::path]` declares the codes only it answers, in an
//! `x-problems` extension (`{"409": ["run_already_terminal"]}`). The codes
//! that follow from a route's access and shape are added here, once:
//! - a key is checked → 401 `unauthorized`, 429 `rate_limited`; an admin
//!   key → 403 `admin_required`;
//! - every route behind a key reads PostgreSQL → 503 `service_unavailable`,
//!   and may fail → 500 `internal_error`;
//! - a UUID path parameter that is not a UUID → 404 `resource_not_found`;
//! - query parameters → 422 `invalid_query`; header parameters → 422 `invalid_request`;
//! - a JSON body → 413 `payload_too_large`, 422 `invalid_request`;
//! - a multipart body → 413, 422 `invalid_multipart`, `invalid_request`, and
//!   415 `unsupported_media_type` unless the route reads JSON too.
//!
//! Each status becomes one response whose schema narrows `code` to exactly
//! the codes of that operation, so a client (or a fuzzer) can hold the API
//! to them.

use crate::error::{CODES, MAX_FIELD_ERRORS, MAX_PROBLEM_TEXT, code_entry};
use crate::routes::table::{Access, Route};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The extension in which a handler lists its own codes by status.
pub const EXTENSION: &str = "x-problems";

/// The `Problem` and `FieldError` schemas.
pub fn schemas() -> [(&'static str, Value); 2] {
    let text = MAX_PROBLEM_TEXT + 1;
    let table: String = CODES
        .iter()
        .map(|c| format!("\n| `{}` | {} | {} |", c.code, c.status, c.meaning))
        .collect();
    let problem = json!({
        "type": "object",
        "description": format!(
            "An error (RFC 9457 problem details), served as `application/problem+json`. \
             `detail` and the `errors` texts echo at most {MAX_PROBLEM_TEXT} characters.\n\n\
             | code | status | meaning |\n|---|---|---|{table}"
        ),
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri", "maxLength": 200,
                     "description": "`https://ade.dev/problems/<code>`"},
            "title": {"type": "string", "maxLength": 100, "description": "The status' reason phrase."},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "maxLength": text, "description": "What went wrong, for people."},
            "code": {"type": "string", "enum": CODES.iter().map(|c| c.code).collect::<Vec<_>>(),
                     "description": "Stable: match on this, not on `detail`."},
            "errors": {"type": "array", "maxItems": MAX_FIELD_ERRORS,
                       "items": {"$ref": "#/components/schemas/FieldError"},
                       "description": "On some 422s: one entry per invalid field."},
        },
        "additionalProperties": false,
    });
    let field = json!({
        "type": "object",
        "description": "One invalid field of a 422.",
        "required": ["field", "message"],
        "properties": {
            "field": {"type": "string", "maxLength": text, "description": "JSON path, parameter or form field."},
            "message": {"type": "string", "maxLength": text},
        },
        "additionalProperties": false,
    });
    [("Problem", problem), ("FieldError", field)]
}

/// Replaces `operation`'s `x-problems` with one problem response per status.
pub fn apply(operation: &mut Value, route: &Route, metrics_public: bool) {
    let mut codes: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let mut add = |code: &str| {
        let entry = code_entry(code).unwrap_or_else(|| panic!("{code} is not in error::CODES"));
        let listed = codes.entry(entry.status).or_default();
        if !listed.iter().any(|c| c == code) {
            listed.push(code.to_owned());
        }
    };
    for code in implied(operation, route, metrics_public) {
        add(code);
    }
    let declared = operation
        .as_object_mut()
        .and_then(|o| o.remove(EXTENSION))
        .unwrap_or_default();
    for (status, list) in declared.as_object().into_iter().flatten() {
        for code in list.as_array().into_iter().flatten() {
            let code = code.as_str().expect("codes are strings");
            let entry = code_entry(code).unwrap_or_else(|| panic!("{code} is not in error::CODES"));
            assert_eq!(
                status,
                &entry.status.to_string(),
                "{code} is listed under the wrong status"
            );
            add(code);
        }
    }
    let responses = operation["responses"]
        .as_object_mut()
        .expect("every operation has responses");
    for (status, codes) in codes {
        responses.insert(status.to_string(), response(status, &codes));
    }
}

/// The codes that follow from the route's access and the operation's shape.
fn implied(operation: &Value, route: &Route, metrics_public: bool) -> Vec<&'static str> {
    let mut codes = Vec::new();
    let keyed = match route.access {
        Access::Open => false,
        Access::AdminUnlessPublic => !metrics_public,
        Access::Key | Access::Admin => true,
    };
    if keyed {
        codes.extend(["unauthorized", "rate_limited"]);
    }
    if route.access == Access::Admin || (route.access == Access::AdminUnlessPublic && keyed) {
        codes.push("admin_required");
    }
    if route.access != Access::Open {
        codes.extend(["service_unavailable", "internal_error"]);
    }
    let params = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let is_in = |place: &str| params.iter().any(|p| p["in"] == place);
    if params
        .iter()
        .any(|p| p["in"] == "path" && p["schema"]["format"] == "uuid")
    {
        codes.push("resource_not_found");
    }
    if is_in("query") {
        codes.push("invalid_query");
    }
    if is_in("header") {
        codes.push("invalid_request");
    }
    let body = &operation["requestBody"]["content"];
    if body.get("application/json").is_some() {
        codes.extend(["payload_too_large", "invalid_request"]);
    }
    if body.get("multipart/form-data").is_some() {
        codes.extend(["payload_too_large", "invalid_multipart", "invalid_request"]);
        if body.get("application/json").is_none() {
            // A route that reads JSON too takes any other body as JSON.
            codes.push("unsupported_media_type");
        }
    }
    codes
}

/// One problem response for `status` with exactly `codes`.
fn response(status: u16, codes: &[String]) -> Value {
    let description = codes
        .iter()
        .map(|code| {
            let entry = code_entry(code).expect("checked when collected");
            format!("`{code}`: {}.", entry.meaning)
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut headers = serde_json::Map::new();
    if status == 401 {
        headers.insert(
            "WWW-Authenticate".into(),
            json!({"description": "`Bearer`", "schema": {"type": "string", "enum": ["Bearer"]}}),
        );
    }
    if status == 429 || status == 503 {
        headers.insert(
            "Retry-After".into(),
            json!({"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}}),
        );
    }
    let schema = json!({"allOf": [
        {"$ref": "#/components/schemas/Problem"},
        {"properties": {"status": {"enum": [status]}, "code": {"enum": codes}}},
    ]});
    let mut response = json!({
        "description": description,
        "content": {"application/problem+json": {"schema": schema}},
    });
    if !headers.is_empty() {
        response["headers"] = Value::Object(headers);
    }
    response
}

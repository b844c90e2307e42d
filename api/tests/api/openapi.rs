//! The OpenAPI document: served without a key, it describes exactly the
//! routes of `routes::table::ROUTES` (but the pages), documents every error
//! code the code can return, holds together (every `$ref` resolves, every
//! path parameter is declared), and follows the settings it runs with.
//! `scripts/fuzz` validates it fully and holds the API to it; the last tests
//! here pin the answers it found that the document did not describe.

use crate::helpers::{Options, TestApp, ok_json, repo_root};
use ade_api::error::CODES;
use ade_api::openapi::UNDOCUMENTED_GROUPS;
use ade_api::routes::table::{Access, ROUTES};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

async fn served_document(app: &TestApp) -> Value {
    let res = reqwest::get(app.url("/api/v1/openapi.json")).await.unwrap();
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    ok_json(res, StatusCode::OK).await
}

/// `(METHOD, path)` → operation, for every operation of the document.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let mut found = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                METHODS.contains(&method.as_str()),
                "{method} {path} is not an operation"
            );
            found.insert((method.to_uppercase(), path.clone()), operation);
        }
    }
    found
}

#[tokio::test]
async fn the_document_has_every_route_of_the_table_and_nothing_else() {
    let app = TestApp::with(Options::default()).await;
    let doc = served_document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let operations = operations(&doc);
    let documented: BTreeSet<(String, String)> = operations.keys().cloned().collect();
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|r| !UNDOCUMENTED_GROUPS.contains(&r.group))
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert!(table.len() >= 30, "the table has the API: {}", table.len());
    let missing: Vec<_> = table.difference(&documented).collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    let extra: Vec<_> = documented.difference(&table).collect();
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
    for route in ROUTES
        .iter()
        .filter(|r| !UNDOCUMENTED_GROUPS.contains(&r.group))
    {
        let operation = operations[&(route.method.to_owned(), route.path.to_owned())];
        let what = format!("{} {}", route.method, route.path);
        let security = &operation["security"];
        match route.access {
            Access::Open => assert_eq!(security, &serde_json::json!([]), "{what}"),
            Access::Key => assert_eq!(security, &serde_json::json!([{"bearerAuth": []}]), "{what}"),
            Access::Admin | Access::AdminUnlessPublic => {
                assert_eq!(
                    security,
                    &serde_json::json!([{"bearerAuth": ["admin"]}]),
                    "{what}"
                )
            }
        }
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{what} has a success response"
        );
        if route.access != Access::Open {
            assert!(responses.contains_key("401"), "{what} documents 401");
        }
    }
    app.finish().await;
}

/// `code` → statuses it is documented under, over every operation.
fn documented_codes(doc: &Value) -> BTreeMap<String, BTreeSet<u16>> {
    let mut codes: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for ((method, path), operation) in operations(doc) {
        for (status, response) in operation["responses"].as_object().unwrap() {
            let Some(problem) = response["content"].get("application/problem+json") else {
                continue;
            };
            let narrowed = &problem["schema"]["allOf"][1]["properties"];
            assert_eq!(
                narrowed["status"]["enum"][0].to_string(),
                *status,
                "{method} {path}"
            );
            let listed = narrowed["code"]["enum"].as_array().unwrap();
            assert!(!listed.is_empty(), "{method} {path} {status}");
            for code in listed {
                let code = code.as_str().unwrap().to_owned();
                codes
                    .entry(code)
                    .or_default()
                    .insert(status.parse().unwrap());
            }
        }
    }
    codes
}

#[tokio::test]
async fn every_error_code_is_documented_under_its_status() {
    let app = TestApp::with(Options::default()).await;
    let doc = served_document(&app).await;
    let documented = documented_codes(&doc);
    for code in CODES {
        if code.code == "method_not_allowed" {
            // Answers a method no operation has; it is in `Problem` and the description.
            continue;
        }
        let statuses = documented
            .get(code.code)
            .unwrap_or_else(|| panic!("{} is not documented on any operation", code.code));
        assert_eq!(statuses, &BTreeSet::from([code.status]), "{}", code.code);
    }
    let all: Vec<&str> = CODES.iter().map(|c| c.code).collect();
    let in_problem: Vec<&str> =
        doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
    assert_eq!(in_problem, all);
    for code in documented.keys() {
        assert!(
            all.contains(&code.as_str()),
            "{code} is documented but not in error::CODES"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn the_reference_lists_every_error_code() {
    let reference = std::fs::read_to_string(repo_root().join("docs/api.md")).unwrap();
    for code in CODES {
        let row = format!("| `{}` | {} |", code.code, code.status);
        assert!(reference.contains(&row), "docs/api.md has no row {row}");
    }
}

/// Every `"$ref"` in `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target);
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_holds_together() {
    let app = TestApp::with(Options::default()).await;
    let doc = served_document(&app).await;
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(targets.len() > 50, "the document uses components");
    for target in targets {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
    let mut ids = BTreeSet::new();
    for ((method, path), operation) in operations(&doc) {
        let what = format!("{method} {path}");
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what} has no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{what} has a summary"
        );
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{what}");
                p["name"].as_str().unwrap()
            })
            .collect();
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, in_path, "{what} declares its path parameters");
        for (status, response) in operation["responses"].as_object().unwrap() {
            let response = match response["$ref"].as_str() {
                Some(target) => doc.pointer(target.strip_prefix('#').unwrap()).unwrap(),
                None => response,
            };
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{what} {status}"
            );
        }
    }
    app.finish().await;
}

#[tokio::test]
async fn the_document_follows_the_settings_it_runs_with() {
    let app = TestApp::with(Options {
        tune_api: Some(|s| {
            s.max_upload_bytes = 12_345_678;
            s.metrics_public = true;
        }),
        ..Default::default()
    })
    .await;
    let doc = served_document(&app).await;
    let upload = &doc["paths"]["/api/v1/workspaces/{workspace_id}/documents"]["post"];
    let description = upload["requestBody"]["description"].as_str().unwrap();
    assert!(description.contains("12345678 bytes"), "{description}");
    let metrics = &doc["paths"]["/metrics"]["get"];
    assert_eq!(metrics["security"], serde_json::json!([]));
    let statuses: Vec<&String> = metrics["responses"].as_object().unwrap().keys().collect();
    assert!(
        !statuses.iter().any(|s| *s == "401" || *s == "403"),
        "{statuses:?}"
    );
    let page = &doc["paths"]["/api/v1/runs/{run_id}/events"]["get"]["parameters"];
    let limit = page
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["maximum"], ade_common::events::MAX_PAGE);
    app.finish().await;
}

// Found by scripts/fuzz: answers the document did not describe.

#[tokio::test]
async fn a_multipart_route_sent_another_body_answers_415() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let config = app.create_template_configuration(ws).await;
    let documents = format!("/api/v1/workspaces/{ws}/documents");
    let package = format!(
        "/api/v1/workspaces/{ws}/configurations/{}/package",
        config["id"].as_str().unwrap()
    );
    let client = crate::helpers::client_with(&app.key);
    for (method, path, content_type) in [
        // No Content-Type used to answer 405 (from the sibling GET route).
        (reqwest::Method::POST, &documents, None),
        (reqwest::Method::POST, &documents, Some("application/json")),
        (reqwest::Method::PUT, &package, Some("text/plain")),
        (reqwest::Method::PUT, &package, Some("multipart/form-data")),
    ] {
        let mut req = client.request(method.clone(), app.url(path)).body("{}");
        if let Some(content_type) = content_type {
            req = req.header("content-type", content_type);
        }
        let res = req.send().await.unwrap();
        let what = format!("{method} {path} {content_type:?}");
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{what}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "unsupported_media_type", "{what}");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_405_lists_the_methods_of_the_path() {
    let app = TestApp::with(Options::default()).await;
    let client = crate::helpers::client_with(&app.key);
    let run = format!("/api/v1/runs/{}", uuid::Uuid::now_v7());
    for (method, path, allow) in [
        ("TRACE", run.as_str(), "DELETE, GET"),
        ("PATCH", "/api/v1/workspaces", "GET, POST"),
        ("POST", "/health/live", "GET"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(
            res.headers()["allow"].to_str().unwrap(),
            allow,
            "{method} {path}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn run_metadata_with_a_nul_is_refused_not_a_500() {
    let app = TestApp::with(Options::default()).await;
    let options = serde_json::json!({
        "document_ids": [uuid::Uuid::now_v7()],
        "metadata": {"k": "a\u{0}b"},
    });
    let res = app
        .create_run(
            &uuid::Uuid::now_v7().to_string(),
            &serde_json::json!({"options": options}),
        )
        .await;
    crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_options").await;
    app.finish().await;
}

#[tokio::test]
async fn a_body_of_a_form_feed_is_not_an_empty_body() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let config = app.create_template_configuration(ws).await;
    let path = format!(
        "/api/v1/workspaces/{ws}/configurations/{}/builds",
        config["id"].as_str().unwrap()
    );
    // Not JSON (its whitespace is space, tab, CR and LF); it used to read as `{}`.
    let res = app.post_raw(&path, "application/json", b"\x0c").await;
    crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    app.finish().await;
}

#[tokio::test]
async fn a_chunked_json_body_answers_422_not_405() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let client = crate::helpers::client_with(&app.key);
    for path in [
        "/api/v1/workspaces".to_owned(),
        format!(
            "/api/v1/workspaces/{}/configurations",
            ws["id"].as_str().unwrap()
        ),
    ] {
        // A streamed body goes without `Content-Length`; the sibling GET
        // route's 405 used to win over the missing length.
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(
            br#"{"name": "x", "source": {"type": "template"}}"#.to_vec(),
        )]);
        let res = client
            .post(app.url(&path))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
            .await;
    }
    app.finish().await;
}

#[tokio::test]
async fn bodies_and_their_objects_are_never_read_from_arrays() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let config = app.create_template_configuration(ws).await;
    let config = config["id"].as_str().unwrap();
    // serde reads a struct from an array too; these used to be accepted.
    for (path, body) in [
        ("/api/v1/workspaces".to_owned(), json!(["x"])),
        (
            format!("/api/v1/workspaces/{ws}/configurations"),
            json!(["x", {"type": "template"}]),
        ),
        (
            format!("/api/v1/workspaces/{ws}/configurations"),
            json!({"name": "x", "source": ["template"]}),
        ),
        (
            format!("/api/v1/workspaces/{ws}/configurations/{config}/builds"),
            json!({"options": []}),
        ),
        (
            format!("/api/v1/workspaces/{ws}/configurations/{config}/builds"),
            json!([false]),
        ),
    ] {
        let res = app.post_json(&path, &body).await;
        crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
            .await;
    }
    app.finish().await;
}

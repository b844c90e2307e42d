//! Keys and scope: every route, generated from the route table, refuses a
//! missing key and hides another workspace's ids; admin routes need an
//! admin key; keys are made, listed and revoked; each key has a rate limit.

use crate::configurations::config_package;
use crate::helpers::{Options, TestApp, assert_problem, client_with, make_key, ok_json, repo_root};
use ade_api::keys::Scope;
use ade_api::routes::table::{Access, ROUTES, Route};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// One workspace with one of everything, and a key of its own.
struct Tenant {
    key: String,
    ids: Vec<(&'static str, String)>,
}

impl Tenant {
    async fn new(app: &TestApp) -> Self {
        let (config, doc) = app.sample_setup().await;
        let run = app
            .run_to_end(&config, json!({"document_ids": [doc]}))
            .await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let run_id = run["id"].as_str().unwrap().to_owned();
        let outputs = ok_json(
            app.get(&format!("/api/v1/runs/{run_id}/outputs")).await,
            StatusCode::OK,
        )
        .await;
        let name = outputs["files"][0]["name"].as_str().unwrap().to_owned();
        let workspace = run["workspace_id"].as_str().unwrap().to_owned();
        let key = make_key(&app.db_url, Scope::Workspace(workspace.parse().unwrap())).await;
        let ids = vec![
            ("workspace_id", workspace),
            ("configuration_id", config),
            ("document_id", doc),
            ("run_id", run_id),
            ("build_id", run["build_id"].as_str().unwrap().to_owned()),
            ("name", name),
            ("key_id", uuid::Uuid::now_v7().to_string()),
        ];
        Self { key, ids }
    }

    /// The route's path with this tenant's ids.
    fn path(&self, route: &Route) -> String {
        let mut path = route.path.to_owned();
        for (name, id) in &self.ids {
            path = path.replace(&format!("{{{name}}}"), id);
        }
        assert!(!path.contains('{'), "no id for {}", route.path);
        path
    }

    fn id(&self, name: &str) -> &str {
        &self.ids.iter().find(|(n, _)| *n == name).unwrap().1
    }
}

/// A request for `route` that would succeed for its own tenant.
fn request(
    client: &reqwest::Client,
    base: &str,
    route: &Route,
    tenant: &Tenant,
) -> reqwest::RequestBuilder {
    let method = Method::from_bytes(route.method.as_bytes()).unwrap();
    let req = client.request(method, format!("{base}{}", tenant.path(route)));
    let multipart = |field: &'static str, bytes: Vec<u8>, name: &'static str| {
        reqwest::multipart::Form::new().text("name", "matrix").part(
            field,
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        )
    };
    match (route.method, route.path.rsplit('/').next().unwrap()) {
        ("POST", "workspaces") => req.json(&json!({"name": "matrix"})),
        ("POST", "configurations") => {
            req.json(&json!({"name": "matrix", "source": {"type": "template"}}))
        }
        ("PUT", "package") => req.multipart(multipart(
            "package",
            config_package("FIELDS = []\n"),
            "c.zip",
        )),
        ("POST", "documents") => {
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(b"a,b\n1,2\n".to_vec()).file_name("d.csv"),
            );
            req.multipart(form)
        }
        ("POST", "runs") => req.json(
            &json!({"options": {"document_ids": [tenant.id("document_id")], "dry_run": true}}),
        ),
        ("POST", "keys") => {
            req.json(&json!({"name": "matrix", "workspace_id": tenant.id("workspace_id")}))
        }
        ("POST", _) => req.json(&json!({})),
        _ => req,
    }
}

#[tokio::test]
async fn every_route_refuses_no_key_and_hides_other_workspaces() {
    let app = TestApp::spawn().await;
    let (a, b) = (Tenant::new(&app).await, Tenant::new(&app).await);
    let (anonymous, a_key) = (reqwest::Client::new(), client_with(&a.key));
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.access != Access::Open) {
        let what = format!("{} {}", route.method, route.path);
        let res = request(&anonymous, &app.base, route, &b)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{what}"
        );
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let res = request(&a_key, &app.base, route, &b).send().await.unwrap();
        if route.access == Access::Key && !route.path.contains('{') {
            // Nothing of B's to name (a workspace key's listing is checked apart).
            assert!(res.status().is_success(), "{what}: {}", res.status());
        } else if route.access == Access::Key {
            // Answered by the route's own handler, exactly as for an id that does not exist.
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{what}");
            let problem: Value = res.json().await.unwrap();
            let code = problem["code"].as_str().unwrap();
            assert!(
                code.ends_with("_not_found") && code != "resource_not_found",
                "{what}: {problem}"
            );
        } else {
            assert_problem(res, StatusCode::FORBIDDEN, "admin_required").await;
        }
        checked += 1;
    }
    assert!(checked >= 30, "the table covers the API: {checked}");
    // A's key works on A's own ids: the requests above were well-formed.
    for route in ROUTES
        .iter()
        .filter(|r| r.access == Access::Key && r.method == "GET")
    {
        let res = request(&a_key, &app.base, route, &a).send().await.unwrap();
        assert!(
            res.status().is_success(),
            "{} {}: {}",
            route.method,
            route.path,
            res.status()
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn every_served_route_is_in_the_route_table() {
    let table: BTreeSet<String> = ROUTES
        .iter()
        .map(|r| {
            let path = r.path.strip_prefix("/api/v1").unwrap_or(r.path);
            let shape: Vec<&str> = path
                .split('/')
                .map(|s| if s.starts_with('{') { "{}" } else { s })
                .collect();
            format!("{} {}", r.method, shape.join("/"))
        })
        .collect();
    let served = served_routes(&repo_root().join("api/src/routes"));
    assert!(served.len() >= 35, "found the routes: {served:?}");
    let missing: Vec<&String> = served.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "served but not in routes::table::ROUTES: {missing:?}"
    );
    let stale: Vec<&String> = table.difference(&served).collect();
    assert!(stale.is_empty(), "in the table but not served: {stale:?}");
}

/// `METHOD /path/{}` for each `warp::path!(…)` (or `path::end()`) in the
/// sources, with the method filter that follows it.
fn served_routes(dir: &std::path::Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(served_routes(&path));
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = source.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let shape = if let Some(at) = line.find("warp::path!(") {
                let inner = &line[at + 12..];
                let inner = &inner[..inner.find(')').unwrap()];
                let segments: Vec<String> = inner
                    .split('/')
                    .map(|s| s.trim())
                    .map(|s| {
                        if s.starts_with('"') {
                            s.trim_matches('"').to_owned()
                        } else {
                            "{}".into()
                        }
                    })
                    .collect();
                format!("/{}", segments.join("/"))
            } else if line.contains("warp::path::end()") {
                "/".to_owned()
            } else {
                continue;
            };
            let method = lines[i..(i + 6).min(lines.len())].iter().find_map(|l| {
                ["get", "post", "put", "delete"]
                    .into_iter()
                    .find(|m| l.contains(&format!("warp::{m}()")))
            });
            if let Some(method) = method {
                found.insert(format!("{} {shape}", method.to_uppercase()));
            }
        }
    }
    found
}

#[tokio::test]
async fn a_workspace_key_lists_only_its_workspace_and_cannot_administer() {
    let app = TestApp::with(Options::default()).await;
    let mine = app.create_workspace().await;
    app.create_workspace().await;
    let ws: uuid::Uuid = mine["id"].as_str().unwrap().parse().unwrap();
    let key = client_with(&make_key(&app.db_url, Scope::Workspace(ws)).await);
    let listed = ok_json(
        key.get(app.url("/api/v1/workspaces")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let ids: Vec<&Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["id"])
        .collect();
    assert_eq!(ids, vec![&mine["id"]]);
    let everything = ok_json(app.get("/api/v1/workspaces").await, StatusCode::OK).await;
    assert_eq!(
        everything["items"].as_array().unwrap().len(),
        2,
        "an admin sees all"
    );
    for path in [
        "/api/v1/workers",
        "/api/v1/queue",
        "/api/v1/keys",
        "/metrics",
    ] {
        let res = key.get(app.url(path)).send().await.unwrap();
        assert_problem(res, StatusCode::FORBIDDEN, "admin_required").await;
    }
    let res = key
        .post(app.url("/api/v1/workspaces"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::FORBIDDEN, "admin_required").await;
    app.finish().await;
}

#[tokio::test]
async fn admins_make_list_and_revoke_keys_and_a_revoked_key_is_refused() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let made = ok_json(
        app.post_json(
            "/api/v1/keys",
            &json!({"name": "ci", "workspace_id": ws["id"]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let key = made["key"].as_str().unwrap();
    assert!(key.starts_with("ade_") && key.len() == 52, "{key}");
    assert_eq!(made["scope"], "workspace");
    let listed = ok_json(app.get("/api/v1/keys").await, StatusCode::OK).await;
    let record = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == made["id"])
        .unwrap()
        .clone();
    assert!(
        record.get("key").is_none(),
        "a listing never shows the key: {record}"
    );
    assert_eq!(record["prefix"], &key[..12]);
    let db = ade_common::db::connect(&app.db_url).await.unwrap();
    let stored: Vec<u8> = db
        .query_one(
            "SELECT hash FROM api_keys WHERE id = $1",
            &[&made["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        ade_api::keys::hash(key).to_vec(),
        "only the hash is stored"
    );
    let client = client_with(key);
    let path = format!("/api/v1/workspaces/{}", ws["id"].as_str().unwrap());
    ok_json(
        client.get(app.url(&path)).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let revoked = ok_json(
        client_with(&app.key)
            .delete(app.url(&format!("/api/v1/keys/{}", made["id"].as_str().unwrap())))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(revoked["revoked_at"].is_string());
    let res = client.get(app.url(&path)).send().await.unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    app.finish().await;
}

#[tokio::test]
async fn keys_are_made_listed_and_revoked_from_the_command_line() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(repo_root().join("target/debug/ade-api"))
            .args(args)
            .env("ADE_DATABASE_URL", &app.db_url)
            .env("ADE_ENGINE_DIR", repo_root().join("engine"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("run `cargo build --bins` first (scripts/test does)");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let admin = cli(&["keys", "create", "--admin", "--name", "ops"]);
    let admin = admin.trim();
    assert!(admin.starts_with("ade_"));
    let listed = ok_json(
        client_with(admin)
            .get(app.url("/api/v1/keys"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "ops" && k["scope"] == "admin")
    );
    let scoped: Value = serde_json::from_str(&cli(&[
        "keys",
        "create",
        "--workspace",
        ws["id"].as_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(scoped["workspace_id"], ws["id"]);
    let lines = cli(&["keys", "list"]);
    assert!(lines.lines().count() >= 3, "{lines}");
    cli(&["keys", "revoke", scoped["id"].as_str().unwrap()]);
    let res = client_with(scoped["key"].as_str().unwrap())
        .get(app.url("/api/v1/workspaces"))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    app.finish().await;
}

#[tokio::test]
async fn each_key_has_a_rate_limit() {
    let app = TestApp::with(Options {
        tune_api: Some(|s| s.rate_limit_per_second = 1),
        ..Default::default()
    })
    .await;
    // A burst of twice the rate, then 429 with a Retry-After.
    let mut limited = None;
    for _ in 0..5 {
        let res = app.get("/api/v1/workspaces").await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(res);
            break;
        }
    }
    let res = limited.expect("the limit was reached");
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another key has its own budget.
    let other = client_with(&make_key(&app.db_url, Scope::Admin).await);
    ok_json(
        other
            .get(app.url("/api/v1/workspaces"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn metrics_can_be_made_public() {
    let app = TestApp::with(Options {
        tune_api: Some(|s| s.metrics_public = true),
        ..Default::default()
    })
    .await;
    let res = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.finish().await;
}

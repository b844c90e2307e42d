use crate::helpers::{Options, TestApp, assert_problem, ok_json};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn workspaces_are_created_listed_and_fetched() {
    let app = TestApp::with(Options::default()).await;
    let a = app.create_workspace().await;
    let b = app.create_workspace().await;
    assert_eq!(a["name"], "test");
    let fetched = ok_json(
        app.get(&format!("/api/v1/workspaces/{}", a["id"].as_str().unwrap()))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(fetched, a);
    let page = ok_json(app.get("/api/v1/workspaces?limit=1").await, StatusCode::OK).await;
    assert_eq!(page["items"][0]["id"], b["id"], "newest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = ok_json(
        app.get(&format!("/api/v1/workspaces?limit=1&cursor={cursor}"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(next["items"][0]["id"], a["id"]);
    app.finish().await;
}

#[tokio::test]
async fn bad_workspace_requests_get_problems() {
    let app = TestApp::with(Options::default()).await;
    let unknown = uuid::Uuid::now_v7();
    assert_problem(
        app.get(&format!("/api/v1/workspaces/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    )
    .await;
    assert_problem(
        app.post_json("/api/v1/workspaces", &json!({"name": ""}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    let extra = app
        .post_json("/api/v1/workspaces", &json!({"name": "x", "colour": "red"}))
        .await;
    let body = assert_problem(extra, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert!(
        body["detail"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    assert_problem(
        app.post_raw("/api/v1/workspaces", "application/json", b"{not json")
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    assert_problem(
        app.get("/api/v1/nowhere").await,
        StatusCode::NOT_FOUND,
        "resource_not_found",
    )
    .await;
    assert_problem(
        app.get("/api/v1/workspaces?limit=5000").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_query",
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn health_reports_dependencies() {
    let app = TestApp::with(Options::default()).await;
    ok_json(app.get("/health/live").await, StatusCode::OK).await;
    let ready = ok_json(app.get("/health/ready").await, StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["dependencies"]["database"], "up");
    assert_eq!(ready["dependencies"]["broker"], "up");
    app.finish().await;
}

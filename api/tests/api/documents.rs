use crate::helpers::{Options, TestApp, assert_problem, ok_json};
use reqwest::StatusCode;

#[tokio::test]
async fn documents_upload_and_download_intact() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let bytes: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let doc = app
        .upload_document(ws, "../../etc/passwd", bytes.clone())
        .await;
    assert_eq!(doc["byte_size"], bytes.len() as u64);
    assert_eq!(
        doc["name"], "passwd",
        "only the last path component is kept, as a label"
    );
    assert_eq!(doc["sha256"], ade_common::ids::Digest::sha256(&bytes).hex());
    let id = doc["id"].as_str().unwrap();
    let meta = ok_json(
        app.get(&format!("/api/v1/workspaces/{ws}/documents/{id}"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(meta, doc);
    let download = app
        .get(&format!("/api/v1/workspaces/{ws}/documents/{id}/download"))
        .await;
    assert_eq!(download.status(), StatusCode::OK);
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());
    app.finish().await;
}

#[tokio::test]
async fn bad_document_requests_get_problems() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let unknown = uuid::Uuid::now_v7();
    assert_problem(
        app.get(&format!("/api/v1/workspaces/{ws}/documents/{unknown}"))
            .await,
        StatusCode::NOT_FOUND,
        "document_not_found",
    )
    .await;
    assert_problem(
        app.upload_document_raw(&unknown.to_string(), "a.csv", b"a".to_vec())
            .await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    )
    .await;
    let form = reqwest::multipart::Form::new().text("other", "x");
    let res = crate::helpers::client()
        .post(app.url(&format!("/api/v1/workspaces/{ws}/documents")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    app.finish().await;
}

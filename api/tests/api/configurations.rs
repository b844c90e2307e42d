use crate::helpers::{Options, TestApp, assert_problem, ok_json};
use reqwest::StatusCode;
use std::io::Write as _;

/// A zip of `(path, contents)` entries.
pub fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Files of the starter template (shipped inside the engine package).
pub const TEMPLATE_FILES: &[&str] = &[
    "pyproject.toml",
    "README.md",
    "src/ade_config/__init__.py",
    "src/ade_config/columns.py",
    "src/ade_config/hooks.py",
    "src/ade_config/rows.py",
    "src/ade_config/validators.py",
];

/// The starter template's directory.
pub fn template_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/src/ade_engine/templates/config")
}

/// One file of the starter template.
pub fn template_file(path: &str) -> String {
    std::fs::read_to_string(template_dir().join(path)).unwrap()
}

/// The template's `columns.py`, where tests append code that runs when the rules are imported.
pub fn template_columns() -> String {
    template_file("src/ade_config/columns.py")
}

/// The template's files (under a root folder, as people zip them) with `columns.py` replaced.
pub fn config_package(columns_py: &str) -> Vec<u8> {
    let files: Vec<(String, String)> = TEMPLATE_FILES
        .iter()
        .map(|path| {
            let body = if *path == "src/ade_config/columns.py" {
                columns_py.to_owned()
            } else {
                template_file(path)
            };
            (format!("my-config/{path}"), body)
        })
        .collect();
    let entries: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_str()))
        .collect();
    zip_of(&entries)
}

#[tokio::test]
async fn configurations_come_from_the_template_or_an_upload() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let template = app.create_template_configuration(ws).await;
    assert!(
        template["content_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(template["active_build_id"], serde_json::Value::Null);

    let uploaded = ok_json(
        app.upload_configuration(ws, config_package(&template_columns()))
            .await,
        StatusCode::CREATED,
    )
    .await;
    // Same files, other archive layout: the canonical digest matches (README.md aside).
    assert_ne!(uploaded["id"], template["id"]);
    assert_eq!(uploaded["name"], "uploaded");

    let list = ok_json(
        app.get(&format!("/api/v1/workspaces/{ws}/configurations"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    let id = uploaded["id"].as_str().unwrap();
    let form = reqwest::multipart::Form::new().part(
        "package",
        reqwest::multipart::Part::bytes(config_package("FIELDS = []\n")).file_name("c.zip"),
    );
    let url = app.url(&format!(
        "/api/v1/workspaces/{ws}/configurations/{id}/package"
    ));
    let replaced = ok_json(
        reqwest::Client::new()
            .put(url)
            .multipart(form)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_ne!(replaced["content_digest"], uploaded["content_digest"]);
    let fetched = ok_json(
        app.get(&format!("/api/v1/workspaces/{ws}/configurations/{id}"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(fetched["content_digest"], replaced["content_digest"]);
    app.finish().await;
}

#[tokio::test]
async fn unsafe_or_invalid_packages_are_refused() {
    let app = TestApp::with(Options::default()).await;
    let ws = app.create_workspace().await;
    let ws = ws["id"].as_str().unwrap();
    let traversal = zip_of(&[
        ("pyproject.toml", ""),
        ("src/ade_config/__init__.py", ""),
        ("../escape.py", ""),
    ]);
    assert_problem(
        app.upload_configuration(ws, traversal).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_package",
    )
    .await;
    let not_a_package = zip_of(&[("hello.txt", "hi")]);
    assert_problem(
        app.upload_configuration(ws, not_a_package).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_package",
    )
    .await;
    assert_problem(
        app.upload_configuration(ws, b"plain text".to_vec()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_package",
    )
    .await;
    let unknown = uuid::Uuid::now_v7();
    assert_problem(
        app.get(&format!("/api/v1/workspaces/{ws}/configurations/{unknown}"))
            .await,
        StatusCode::NOT_FOUND,
        "configuration_not_found",
    )
    .await;
    let body = serde_json::json!({"name": "x", "source": {"type": "git"}});
    assert_problem(
        app.post_json(&format!("/api/v1/workspaces/{ws}/configurations"), &body)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    app.finish().await;
}

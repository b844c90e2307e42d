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

/// Where the starter template's files are.
pub fn template_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/src/ade_engine/templates/config")
}

/// Every file of the starter template: `(relative path, contents)`.
pub fn template_files() -> Vec<(String, String)> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "__pycache__" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(&template_dir(), &template_dir(), &mut files);
    files.sort();
    files
}

/// The template's files with some replaced or added, zipped in a top folder.
pub fn package_of(changes: &[(&str, &str)]) -> Vec<u8> {
    let mut files = template_files();
    for (path, contents) in changes {
        files.retain(|(p, _)| p != path);
        files.push(((*path).to_owned(), (*contents).to_owned()));
    }
    let entries: Vec<(String, &str)> = files
        .iter()
        .map(|(p, c)| (format!("my-config/{p}"), c.as_str()))
        .collect();
    let borrowed: Vec<(&str, &str)> = entries.iter().map(|(p, c)| (p.as_str(), *c)).collect();
    zip_of(&borrowed)
}

/// One file of the starter template.
pub fn template_file(path: &str) -> String {
    std::fs::read_to_string(template_dir().join(path)).unwrap()
}

/// The template's `columns.py`, where tests append code that runs when the rules are imported.
pub fn template_columns() -> String {
    template_file("src/ade_config/columns.py")
}

/// The template's files with `columns.py` replaced.
pub fn config_package(columns_py: &str) -> Vec<u8> {
    package_of(&[("src/ade_config/columns.py", columns_py)])
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
        crate::helpers::client()
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

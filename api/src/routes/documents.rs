//! `/workspaces/{id}/documents`: uploaded input files.
//!
//! The bytes live under `ADE_DATA_DIR/documents/<workspace>/<document>`; the
//! uploaded file name is metadata only and never touches the filesystem.

use super::multipart::{bad_multipart, save_part};
use super::workspaces;
use super::{Page, PageQuery, authed, created, json, page};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use ade_common::time_fmt::serde_ts;
use futures_util::TryStreamExt as _;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;
use warp::Filter;
use warp::Reply as _;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::multipart::FormData;
use warp::reply::Response;

const COLUMNS: &str = "id, workspace_id, name, content_type, byte_size, sha256, created_at";

/// A document as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Document {
    id: Uuid,
    workspace_id: Uuid,
    /// The uploaded file name (its last path component, at most 255 characters).
    #[schema(min_length = 1, max_length = 255)]
    name: String,
    /// The declared part type, or one guessed from the name.
    content_type: String,
    #[schema(minimum = 0)]
    byte_size: i64,
    /// Hex SHA-256 of the bytes.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
    #[serde(with = "serde_ts")]
    created_at: OffsetDateTime,
}

impl From<&Row> for Document {
    fn from(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            workspace_id: row.get("workspace_id"),
            name: row.get("name"),
            content_type: row.get("content_type"),
            byte_size: row.get("byte_size"),
            sha256: row.get("sha256"),
            created_at: row.get("created_at"),
        }
    }
}

/// The multipart form of a document upload (read part by part by the handler).
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes the form for the OpenAPI document only
pub(crate) struct DocumentForm {
    /// The file; its file name becomes the document's name.
    #[schema(schema_with = crate::openapi::schemas::binary)]
    file: Vec<u8>,
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(upload, list, get, delete, download),
    components(responses(super::runs::outputs::FileDownload))
)]
pub struct Api;

/// Upload, list, metadata, download, delete.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let limit = state.settings.max_upload_bytes;
    let upload = warp::path!("workspaces" / Uuid / "documents")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(warp::multipart::form().max_length(limit + 64 * 1024))
        .then(upload);
    let list = warp::path!("workspaces" / Uuid / "documents")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(warp::query::<PageQuery>())
        .then(list);
    let get = warp::path!("workspaces" / Uuid / "documents" / Uuid)
        .and(warp::get())
        .and(authed(state.clone()))
        .then(get);
    let delete = warp::path!("workspaces" / Uuid / "documents" / Uuid)
        .and(warp::delete())
        .and(authed(state.clone()))
        .then(delete);
    let download = warp::path!("workspaces" / Uuid / "documents" / Uuid / "download")
        .and(warp::get())
        .and(authed(state))
        .then(download);
    upload
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(delete)
        .unify()
        .or(download)
        .unify()
        .map(warp::Reply::into_response)
        .boxed()
}

/// Upload a document.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/documents", operation_id = "uploadDocument",
    params(("workspace_id" = Uuid, Path, description = "A workspace id.")),
    request_body(content((DocumentForm = "multipart/form-data"))),
    responses((status = 201, description = "The new document.", body = Document,
        headers(("Location" = String, description = "The document's URL.")))),
    extensions(("x-problems" = json!({"404": ["workspace_not_found"]}))))]
async fn upload(
    ws: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
    mut form: FormData,
) -> Result<Response, ApiError> {
    workspaces::find(&state, &who?, ws).await?;
    let tmp_dir = state.data_dir.uploads_tmp();
    tokio::fs::create_dir_all(&tmp_dir).await?;
    let id = ade_common::ids::new_id();
    let tmp = tmp_dir.join(format!("{id}.upload"));
    let mut saved = None;
    while let Some(part) = form.try_next().await.map_err(bad_multipart)? {
        if part.name() != "file" {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ApiError::field(
                "invalid_request",
                part.name(),
                "unknown form field",
            ));
        }
        let name = display_name(part.filename());
        let content_type = content_type_of(&name, part.content_type());
        let (size, digest) = save_part(part, &tmp, state.settings.max_upload_bytes).await?;
        saved = Some((name, content_type, size, digest));
    }
    let (name, content_type, size, digest) =
        saved.ok_or_else(|| ApiError::field("invalid_request", "file", "file is required"))?;
    // The bytes are in place before the row exists: a crash in between leaves
    // an unreferenced file, never a document without content.
    let path = state.data_dir.document(ws, id);
    tokio::fs::create_dir_all(path.parent().expect("documents have a parent folder")).await?;
    tokio::fs::rename(&tmp, &path).await?;
    let row = state
        .db()
        .await?
        .query_one(
            &format!(
                "INSERT INTO documents (id, workspace_id, name, content_type, byte_size, sha256)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &ws,
                &name,
                &content_type,
                &(size as i64),
                &digest.hex(),
            ],
        )
        .await?;
    Ok(created(
        format!("/api/v1/workspaces/{ws}/documents/{id}"),
        &Document::from(&row),
    ))
}

/// List a workspace's documents, newest first.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/documents", operation_id = "listDocuments",
    params(("workspace_id" = Uuid, Path, description = "A workspace id."), PageQuery),
    responses((status = 200, description = "A page of documents.", body = Page<Document>)),
    extensions(("x-problems" = json!({"404": ["workspace_not_found"]}))))]
async fn list(
    ws: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
    q: PageQuery,
) -> Result<Response, ApiError> {
    workspaces::find(&state, &who?, ws).await?;
    let limit = q.limit()?;
    let rows = state
        .db()
        .await?
        .query(
            &format!(
                "SELECT {COLUMNS} FROM documents WHERE workspace_id = $1 AND id < $2
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&ws, &q.cursor.unwrap_or(Uuid::max()), &(limit + 1)],
        )
        .await?;
    let items = rows.iter().map(Document::from).collect();
    Ok(json(
        StatusCode::OK,
        &page(items, limit, |d: &Document| d.id),
    ))
}

/// Get a document's metadata.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/documents/{document_id}", operation_id = "getDocument",
    params(("workspace_id" = Uuid, Path, description = "A workspace id."),
        ("document_id" = Uuid, Path, description = "A document id.")),
    responses((status = 200, description = "The document.", body = Document)),
    extensions(("x-problems" = json!({"404": ["workspace_not_found", "document_not_found"]}))))]
async fn get(
    ws: Uuid,
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let row = find(&state, &who?, ws, id).await?;
    Ok(json(StatusCode::OK, &Document::from(&row)))
}

/// Delete a document.
///
/// Refused while a queued or running run uses it.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace_id}/documents/{document_id}", operation_id = "deleteDocument",
    params(("workspace_id" = Uuid, Path, description = "A workspace id."),
        ("document_id" = Uuid, Path, description = "A document id.")),
    responses((status = 204, description = "Deleted, with its bytes.")),
    extensions(("x-problems" = json!({"404": ["workspace_not_found", "document_not_found"], "409": ["document_in_use"]}))))]
async fn delete(
    ws: Uuid,
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    workspaces::find(&state, &who?, ws).await?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    // Locked: a run being created with it waits (it reads the row FOR SHARE).
    tx.query_opt(
        "SELECT 1 FROM documents WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
        &[&ws, &id],
    )
    .await?
    .ok_or(ApiError::NotFound("document"))?;
    if ade_common::lifecycle::queue::document_in_use(&tx, id).await? {
        return Err(ApiError::Conflict {
            code: "document_in_use",
            detail: "a queued or running run uses this document; cancel it or wait for it to end"
                .into(),
        });
    }
    tx.execute("DELETE FROM documents WHERE id = $1", &[&id])
        .await?;
    tx.commit().await?;
    match tokio::fs::remove_file(state.data_dir.document(ws, id)).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(document.id = %id, error = %e, "the document's bytes could not be removed");
        }
        _ => {}
    }
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// Download a document's bytes.
///
/// As an attachment, with a content type from a fixed table of extensions.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/documents/{document_id}/download", operation_id = "downloadDocument",
    params(("workspace_id" = Uuid, Path, description = "A workspace id."),
        ("document_id" = Uuid, Path, description = "A document id.")),
    responses((status = 200, response = super::runs::outputs::FileDownload)),
    extensions(("x-problems" = json!({"404": ["workspace_not_found", "document_not_found", "file_not_found"]}))))]
async fn download(
    ws: Uuid,
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let row = find(&state, &who?, ws, id).await?;
    let doc = Document::from(&row);
    // Served with a type from the fixed table, never the one the uploader declared.
    super::runs::outputs::file_response(
        &state.data_dir.document(ws, id),
        ade_common::storage::content_type_for(&doc.name),
        &doc.name,
    )
    .await
}

async fn find(state: &AppState, who: &Principal, ws: Uuid, id: Uuid) -> Result<Row, ApiError> {
    workspaces::find(state, who, ws).await?;
    state
        .db()
        .await?
        .query_opt(
            &format!("SELECT {COLUMNS} FROM documents WHERE workspace_id = $1 AND id = $2"),
            &[&ws, &id],
        )
        .await?
        .ok_or(ApiError::NotFound("document"))
}

/// The last path component of the client's file name, printable, bounded.
fn display_name(filename: Option<&str>) -> String {
    let base = filename
        .unwrap_or("upload")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("upload");
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if clean.trim().is_empty() {
        "upload".into()
    } else {
        clean
    }
}

/// The declared content type, or one guessed from a few known extensions.
fn content_type_of(name: &str, declared: Option<&str>) -> String {
    let guessed = match name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
    {
        Some(ext) if ext == "csv" => "text/csv",
        Some(ext) if ext == "tsv" => "text/tab-separated-values",
        Some(ext) if ext == "txt" => "text/plain",
        Some(ext) if ext == "xlsx" => {
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        }
        _ => "application/octet-stream",
    };
    match declared {
        Some(d) if d != "application/octet-stream" && is_sane_mime(d) => d.to_owned(),
        _ => guessed.to_owned(),
    }
}

/// A `type/subtype` of printable ASCII, short enough for a header.
fn is_sane_mime(s: &str) -> bool {
    s.len() <= 255
        && s.split_once('/')
            .is_some_and(|(t, st)| !t.is_empty() && !st.is_empty())
        && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

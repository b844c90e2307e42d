//! `/runs/{id}/outputs`: the files a run's completing attempt wrote.
//!
//! The list is what the worker recorded in the completing transaction (only
//! regular files); a download serves only a listed name, from that
//! attempt's folder, opened without following links and refused unless it
//! is a regular file (a FIFO or device planted later is never read).

use crate::auth::Principal;
use crate::error::ApiError;
use crate::routes::{authed, json};
use crate::state::AppState;
use ade_common::runs::OutputFile;
use ade_common::storage::content_type_for;
use serde::Serialize;
use std::path::Path;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// An output file and where to download it.
#[derive(Serialize, utoipa::ToSchema)]
struct Listed {
    #[serde(flatten)]
    file: OutputFile,
    /// `/api/v1/runs/{run_id}/outputs/{name}`, the name percent-encoded.
    download_url: String,
}

/// A run's outputs, sorted by name; empty until it completes with some.
#[derive(Serialize, utoipa::ToSchema)]
struct Outputs {
    files: Vec<Listed>,
}

/// A stored file served as an attachment: a document's bytes or an output.
pub struct FileDownload;

impl<'s> utoipa::ToResponse<'s> for FileDownload {
    fn response() -> (
        &'s str,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    ) {
        use ade_common::storage::{CONTENT_TYPES, DEFAULT_CONTENT_TYPE};
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, ResponseBuilder};
        let binary = crate::openapi::schemas::binary();
        let mut response = ResponseBuilder::new().description(
            "The file, as an attachment, with a content type from a fixed table of extensions.",
        );
        let types = CONTENT_TYPES
            .iter()
            .map(|(_, t)| *t)
            .chain([DEFAULT_CONTENT_TYPE]);
        for content_type in types {
            response = response.content(
                content_type,
                ContentBuilder::new().schema(Some(binary.clone())).build(),
            );
        }
        let header = |description: &str| {
            HeaderBuilder::new()
                .schema(Some(crate::openapi::schemas::from(
                    serde_json::json!({"type": "string"}),
                )))
                .description(Some(description))
                .build()
        };
        let response = response
            .header(
                "Content-Disposition",
                header("`attachment; filename=\"…\"; filename*=UTF-8''…`"),
            )
            .header("X-Content-Type-Options", header("`nosniff`"))
            .build();
        ("FileDownload", response.into())
    }
}

/// List and download.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let list = warp::path!("runs" / Uuid / "outputs")
        .and(warp::get())
        .and(authed(state.clone()))
        .then(list);
    let download = warp::path!("runs" / Uuid / "outputs" / String)
        .and(warp::get())
        .and(authed(state))
        .then(download);
    list.or(download)
        .unify()
        .map(warp::Reply::into_response)
        .boxed()
}

/// The run's recorded outputs and the attempt that wrote them; 404 if the
/// run does not exist or `who` may not see it.
async fn recorded(
    state: &AppState,
    who: &Principal,
    id: Uuid,
) -> Result<(Option<i32>, Vec<OutputFile>), ApiError> {
    let row = state
        .db()
        .await?
        .query_opt(
            "SELECT output_attempt, outputs FROM runs
             WHERE id = $1 AND ($2::uuid IS NULL OR workspace_id = $2)",
            &[&id, &who.workspace()],
        )
        .await?
        .ok_or(ApiError::NotFound("run"))?;
    let files = serde_json::from_value(row.get(1)).unwrap_or_default();
    Ok((row.get(0), files))
}

/// List a run's outputs.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/outputs", operation_id = "listRunOutputs",
    params(("run_id" = Uuid, Path, description = "A run id.")),
    responses((status = 200, description = "The run's output files.", body = Outputs)),
    extensions(("x-problems" = json!({"404": ["run_not_found"]}))))]
pub(super) async fn list(
    id: Uuid,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let (_, files) = recorded(&state, &who?, id).await?;
    let files = files
        .into_iter()
        .map(|file| Listed {
            download_url: format!("/api/v1/runs/{id}/outputs/{}", encode_segment(&file.name)),
            file,
        })
        .collect();
    Ok(json(StatusCode::OK, &Outputs { files }))
}

/// Download one output file.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/outputs/{name}", operation_id = "downloadRunOutput",
    params(("run_id" = Uuid, Path, description = "A run id."),
        ("name" = String, Path, description = "An output name, percent-encoded as in `download_url`.")),
    responses((status = 200, response = FileDownload)),
    extensions(("x-problems" = json!({"404": ["run_not_found", "output_not_found", "file_not_found"]}))))]
pub(super) async fn download(
    id: Uuid,
    name: String,
    state: AppState,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let who = who?;
    let name = percent_decode(&name).ok_or(ApiError::NotFound("output"))?;
    let (attempt, files) = recorded(&state, &who, id).await?;
    let (Some(attempt), Some(file)) = (attempt, files.iter().find(|f| f.name == name)) else {
        return Err(ApiError::NotFound("output"));
    };
    let path = state.data_dir.attempt_outputs(id, attempt).join(&file.name);
    file_response(&path, content_type_for(&file.name), &file.name).await
}

/// Streams a stored file as an attachment named `download_name`; 404
/// `file_not_found` if it is absent or not a regular file.
pub async fn file_response(
    path: &Path,
    content_type: &str,
    download_name: &str,
) -> Result<Response, ApiError> {
    let (file, len) = open_regular(path).await?;
    let body = warp::reply::stream(tokio_util::io::ReaderStream::new(file));
    let mut res = warp::Reply::into_response(body);
    let headers = res.headers_mut();
    headers.insert(
        "content-type",
        content_type
            .parse()
            .unwrap_or_else(|_| "application/octet-stream".parse().expect("valid")),
    );
    headers.insert("content-length", len.into());
    headers.insert("x-content-type-options", "nosniff".parse().expect("valid"));
    let ascii: String = download_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        encode_segment(download_name)
    );
    headers.insert(
        "content-disposition",
        disposition
            .parse()
            .expect("escaped names make valid headers"),
    );
    Ok(res)
}

/// Opens `path` without following a final link and without blocking on a
/// FIFO, and refuses anything but a regular file.
async fn open_regular(path: &Path) -> Result<(tokio::fs::File, u64), ApiError> {
    let opened = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .await;
    let file = match opened {
        Ok(file) => file,
        Err(e)
            if matches!(e.kind(), std::io::ErrorKind::NotFound)
                || e.raw_os_error() == Some(libc::ELOOP) =>
        {
            return Err(ApiError::NotFound("file"));
        }
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata().await?;
    if !meta.file_type().is_file() {
        return Err(ApiError::NotFound("file"));
    }
    Ok((file, meta.len()))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

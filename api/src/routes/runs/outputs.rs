//! `/runs/{id}/outputs`: the files a run wrote, listed and downloaded.

use crate::error::ApiError;
use crate::routes::{json, with};
use crate::state::AppState;
use ade_common::storage::is_safe_file_name;
use serde::Serialize;
use std::path::Path;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

#[derive(Serialize)]
struct OutputFile {
    name: String,
    content_type: &'static str,
    byte_size: u64,
    download_url: String,
}

#[derive(Serialize)]
struct Outputs {
    files: Vec<OutputFile>,
}

/// List and download.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let list = warp::path!("runs" / Uuid / "outputs")
        .and(warp::get())
        .and(with(state.clone()))
        .then(list);
    let download = warp::path!("runs" / Uuid / "outputs" / String)
        .and(warp::get())
        .and(with(state))
        .then(download);
    list.or(download)
        .unify()
        .map(warp::Reply::into_response)
        .boxed()
}

async fn list(id: Uuid, state: AppState) -> Result<Response, ApiError> {
    super::find(&state, id).await?;
    let mut files = Vec::new();
    let dir = state.data_dir.run_outputs(id);
    let mut entries = match tokio::fs::read_dir(&dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(json(StatusCode::OK, &Outputs { files }));
        }
        Err(e) => return Err(e.into()),
    };
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata().await?;
        if !meta.is_file() || !is_safe_file_name(&name) {
            continue;
        }
        files.push(OutputFile {
            download_url: format!("/api/v1/runs/{id}/outputs/{}", encode_segment(&name)),
            content_type: content_type_for(&name),
            byte_size: meta.len(),
            name,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(json(StatusCode::OK, &Outputs { files }))
}

async fn download(id: Uuid, name: String, state: AppState) -> Result<Response, ApiError> {
    let name = percent_decode(&name).ok_or(ApiError::NotFound("output"))?;
    super::find(&state, id).await?;
    if !is_safe_file_name(&name) {
        return Err(ApiError::NotFound("output"));
    }
    let path = state.data_dir.run_outputs(id).join(&name);
    file_response(&path, content_type_for(&name), &name).await
}

/// Streams a file as an attachment named `download_name`; 404 `file_not_found` if absent.
pub async fn file_response(
    path: &Path,
    content_type: &str,
    download_name: &str,
) -> Result<Response, ApiError> {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound("file"));
        }
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata().await?.len();
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

fn content_type_for(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("ndjson") => "application/x-ndjson",
        Some("txt" | "log") => "text/plain",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
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

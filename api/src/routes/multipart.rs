//! Reading multipart parts under size limits.

use crate::error::ApiError;
use ade_common::ids::Digest;
use bytes::Buf;
use futures_util::StreamExt as _;
use sha2::Digest as _;
use std::path::Path;
use tokio::io::AsyncWriteExt as _;
use warp::multipart::Part;

/// Reads a whole part into memory, refusing more than `limit` bytes.
pub async fn read_part(part: Part, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut data = Vec::new();
    let mut stream = part.stream();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(bad_multipart)?;
        if data.len() + chunk.remaining() > limit {
            return Err(ApiError::TooLarge(format!(
                "the part is limited to {limit} bytes"
            )));
        }
        data.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    Ok(data)
}

/// Reads a part as UTF-8 text.
pub async fn read_text(part: Part, limit: usize) -> Result<String, ApiError> {
    let name = part.name().to_owned();
    String::from_utf8(read_part(part, limit).await?)
        .map_err(|_| ApiError::field("invalid_request", name, "must be UTF-8 text"))
}

/// Streams a part into `path`, hashing it; refuses more than `limit` bytes.
/// The file is removed again on any error.
pub async fn save_part(part: Part, path: &Path, limit: u64) -> Result<(u64, Digest), ApiError> {
    let result = write_part(part, path, limit).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

async fn write_part(part: Part, path: &Path, limit: u64) -> Result<(u64, Digest), ApiError> {
    let mut file = tokio::fs::File::create(path).await?;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut stream = part.stream();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(bad_multipart)?;
        let bytes = chunk.copy_to_bytes(chunk.remaining());
        size += bytes.len() as u64;
        if size > limit {
            return Err(ApiError::TooLarge(format!(
                "uploads are limited to {limit} bytes"
            )));
        }
        hasher.update(&bytes);
        file.write_all(&bytes).await?;
    }
    file.sync_all().await?;
    Ok((size, Digest::from_hasher(hasher)))
}

/// A multipart stream that could not be read (malformed, or over the form limit).
pub fn bad_multipart(e: warp::Error) -> ApiError {
    ApiError::Invalid {
        code: "invalid_multipart",
        detail: format!("invalid multipart body: {e}"),
        errors: vec![],
    }
}

//! Publishing an attempt's outputs: only regular files, never through links.
//!
//! The engine (user code) controls what lands in its output folder. At
//! completion the worker lists it with `symlink_metadata`, so a symlink,
//! FIFO, device or folder is never followed or served: it is skipped and
//! reported on the run's console. What is listed is recorded on the run in
//! the completing transaction; the API serves exactly those files.

use crate::events::EventSink;
use ade_common::runs::OutputFile;
use ade_common::storage::{content_type_for, is_safe_file_name};
use std::path::Path;

/// The regular files of `dir`, sorted by name; anything else is reported.
pub async fn collect(dir: &Path, events: &EventSink) -> Vec<OutputFile> {
    let mut files = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return files;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = tokio::fs::symlink_metadata(entry.path()).await;
        match meta {
            Ok(meta) if meta.file_type().is_file() && is_safe_file_name(&name) => {
                files.push(OutputFile {
                    content_type: content_type_for(&name).to_owned(),
                    byte_size: meta.len(),
                    name,
                });
            }
            _ => {
                let shown: String = name.chars().take(100).collect();
                let message = format!(
                    "output {shown:?} is not a regular file with a plain name; it is not published"
                );
                events.console("run", "stderr", message, None).await;
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

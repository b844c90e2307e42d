//! Publishing an attempt's outputs: only regular files, never through links.
//!
//! The engine (user code) controls what lands in its output folder. At
//! completion, when the sandbox and everything in it are gone, the worker
//! lists the folder with `symlink_metadata`, so a symlink, FIFO, device,
//! socket or folder is never followed or served: it is skipped and reported
//! on the run's console. So is a file with more than one link (a hard link
//! to something else the engine could see) or a name that is not plain. The
//! files kept are taken back from the sandbox user, and their total size is
//! capped by `ADE_MAX_OUTPUT_BYTES` (over it, the run fails with
//! `output_limit`). What is listed is recorded on the run in the completing
//! transaction; the API serves exactly those files.

use crate::events::EventSink;
use crate::limits::Limits;
use crate::sandbox::Host;
use ade_common::runs::{Failure, OutputFile};
use ade_common::storage::{content_type_for, is_safe_file_name};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// The regular files of `dir`, sorted by name, taken back from the sandbox
/// user; anything else is reported. `Err` when they are too large together.
pub async fn publish(
    host: &Host,
    dir: &Path,
    limits: &Limits,
    events: &EventSink,
) -> Result<Vec<OutputFile>, Failure> {
    let files = collect(dir, events).await;
    let total: u64 = files.iter().map(|f| f.byte_size).sum();
    if total > limits.file_size_bytes {
        let shown = format!(
            "the outputs total {total} bytes, more than ADE_MAX_OUTPUT_BYTES ({})",
            limits.file_size_bytes
        );
        events.console("run", "stderr", shown, None).await;
        return Err(limits.output_limit());
    }
    if let Err(e) = host.reclaim(dir).await {
        tracing::warn!(error = %e, "could not take the outputs back from the sandbox user");
    }
    for file in &files {
        // Readable by the API whatever mode the engine chose; checked to be
        // a regular file above, and nothing that could swap it runs any more.
        use std::os::unix::fs::PermissionsExt as _;
        let perms = std::fs::Permissions::from_mode(0o644);
        let _ = tokio::fs::set_permissions(dir.join(&file.name), perms).await;
    }
    Ok(files)
}

/// The regular files of `dir`, sorted by name; anything else is reported.
async fn collect(dir: &Path, events: &EventSink) -> Vec<OutputFile> {
    let mut files = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return files;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = tokio::fs::symlink_metadata(entry.path()).await;
        match meta
            .as_ref()
            .map_err(|_| "unreadable")
            .and_then(|m| check(m, &name))
        {
            Ok(()) => {
                let meta = meta.expect("checked");
                files.push(OutputFile {
                    content_type: content_type_for(&name).to_owned(),
                    byte_size: meta.len(),
                    name,
                });
            }
            Err(what) => {
                let shown: String = name.chars().take(100).collect();
                let message = format!("output {shown:?} is {what}; it is not published");
                events.console("run", "stderr", message, None).await;
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// Why an entry is not an output, if it is not one.
fn check(meta: &Metadata, name: &str) -> Result<(), &'static str> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        Err("a symbolic link")
    } else if kind.is_dir() {
        Err("a folder")
    } else if !kind.is_file() {
        Err("not a regular file (a FIFO, socket or device)")
    } else if meta.nlink() > 1 {
        Err("a hard link to another file")
    } else if !is_safe_file_name(name) {
        Err("not a plain file name")
    } else {
        Ok(())
    }
}

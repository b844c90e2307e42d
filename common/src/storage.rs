//! Paths under `ADE_DATA_DIR`. Every path is built from validated UUIDs or
//! fixed names; no user text ever becomes part of a path.

use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The shared data directory.
#[derive(Debug, Clone)]
pub struct DataDir(PathBuf);

impl DataDir {
    /// Wraps a data directory (made absolute so subprocesses see the same path).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Self(root)
    }

    /// The root itself.
    pub fn root(&self) -> &Path {
        &self.0
    }

    /// Where an uploaded document's bytes live.
    pub fn document(&self, workspace_id: Uuid, document_id: Uuid) -> PathBuf {
        self.0
            .join("documents")
            .join(workspace_id.to_string())
            .join(document_id.to_string())
    }

    /// Scratch space for uploads in progress (same filesystem, so renames are atomic).
    pub fn uploads_tmp(&self) -> PathBuf {
        self.0.join("tmp")
    }

    /// Everything a run keeps.
    pub fn run(&self, run_id: Uuid) -> PathBuf {
        self.0.join("runs").join(run_id.to_string())
    }

    /// Everything one attempt of a run writes (its outputs, its working folder).
    pub fn attempt(&self, run_id: Uuid, attempt: i32) -> PathBuf {
        self.run(run_id).join("attempts").join(attempt.to_string())
    }

    /// One attempt's output files; the completing attempt's become the run's.
    pub fn attempt_outputs(&self, run_id: Uuid, attempt: i32) -> PathBuf {
        self.attempt(run_id, attempt).join("outputs")
    }

    /// Where a build's configuration wheel is shared with other hosts.
    pub fn build_wheels(&self, build_id: Uuid) -> PathBuf {
        self.0
            .join("builds")
            .join(build_id.to_string())
            .join("wheels")
    }
}

/// File extensions and the content type served for them; anything else is
/// `application/octet-stream`.
pub const CONTENT_TYPES: &[(&[&str], &str)] = &[
    (&["csv"], "text/csv"),
    (&["tsv"], "text/tab-separated-values"),
    (&["json"], "application/json"),
    (&["ndjson"], "application/x-ndjson"),
    (&["txt", "log"], "text/plain"),
    (
        &["xlsx"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
];

/// The type of a file whose extension is not in [`CONTENT_TYPES`].
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The content type served for a file name, from [`CONTENT_TYPES`].
pub fn content_type_for(name: &str) -> &'static str {
    let Some((_, ext)) = name.rsplit_once('.') else {
        return DEFAULT_CONTENT_TYPE;
    };
    let ext = ext.to_ascii_lowercase();
    CONTENT_TYPES
        .iter()
        .find(|(exts, _)| exts.contains(&ext.as_str()))
        .map_or(DEFAULT_CONTENT_TYPE, |(_, content_type)| content_type)
}

/// True for a plain file name: no separators, no `.`/`..`, printable, bounded.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| !c.is_control() && c != '/' && c != '\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_checked() {
        assert!(is_safe_file_name("members.normalized.csv"));
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a\\b", "a\nb"] {
            assert!(!is_safe_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn content_types_come_from_the_table() {
        assert_eq!(content_type_for("members.normalized.CSV"), "text/csv");
        assert_eq!(content_type_for("run.log"), "text/plain");
        assert_eq!(content_type_for("archive.tar.gz"), DEFAULT_CONTENT_TYPE);
        assert_eq!(content_type_for("no-extension"), DEFAULT_CONTENT_TYPE);
    }
}

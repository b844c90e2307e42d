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

    /// A run's output files.
    pub fn run_outputs(&self, run_id: Uuid) -> PathBuf {
        self.run(run_id).join("outputs")
    }
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
}

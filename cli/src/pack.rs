//! Packing a configuration package folder into the .tar.gz the API accepts.
//!
//! The archive is made in memory, under the API's own limits (checked again
//! here so a user learns which file is the problem before uploading).
//! Version-control folders, caches, virtualenvs and bytecode are left out;
//! symbolic links and special files are refused, because the API refuses
//! them too.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest archive the API accepts, compressed (`api/src/package.rs`).
pub const MAX_ARCHIVE_BYTES: usize = 5 * 1024 * 1024;
/// Most files a package may hold.
pub const MAX_ENTRIES: usize = 500;
/// Largest total size of the files.
pub const MAX_EXPANDED_BYTES: u64 = 20 * 1024 * 1024;
/// Longest path inside a package.
pub const MAX_PATH_LEN: usize = 200;

/// Folder names that never belong in a package.
const SKIPPED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
];

/// Why a folder cannot be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The path is not a folder.
    #[error("{0} is not a folder")]
    NotADir(PathBuf),
    /// No `pyproject.toml` at the top.
    #[error(
        "{0} has no pyproject.toml: a configuration package folder holds pyproject.toml and src/ade_config/__init__.py (start from `ade configs create --template`)"
    )]
    NoPyproject(PathBuf),
    /// No `ade_config` package.
    #[error("{0} has no ade_config package: expected src/ade_config/__init__.py")]
    NoConfigPackage(PathBuf),
    /// A symbolic link.
    #[error(
        "{0} is a symbolic link: packages hold only regular files and folders (copy the file in instead)"
    )]
    Symlink(PathBuf),
    /// A socket, fifo or device.
    #[error("{0} is not a regular file or folder")]
    Special(PathBuf),
    /// A name that is not UTF-8.
    #[error("{0}: file names in a package must be UTF-8")]
    NotUtf8(PathBuf),
    /// A path too long for the API.
    #[error("{0}: paths inside a package are limited to {MAX_PATH_LEN} characters")]
    PathTooLong(String),
    /// Too many files.
    #[error("the folder has more than {MAX_ENTRIES} files (the API's limit for a package)")]
    TooManyFiles,
    /// Too many bytes.
    #[error(
        "the files add up to more than 20 MiB (the API's limit for a package); the last one counted was {0}"
    )]
    TooLarge(String),
    /// The compressed archive is too large.
    #[error(
        "the archive is {} compressed; the API accepts at most 5.0 MiB",
        crate::output::bytes(*.0 as u64)
    )]
    ArchiveTooLarge(usize),
    /// A read failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// What was being read.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// A packed folder.
#[derive(Debug)]
pub struct Packed {
    /// The .tar.gz bytes.
    pub archive: Vec<u8>,
    /// Files in it.
    pub files: usize,
    /// Their total size.
    pub expanded: u64,
    /// What was left out (paths relative to the folder).
    pub skipped: Vec<String>,
}

/// Packs `dir` (a folder holding `pyproject.toml`) into a .tar.gz.
pub fn pack_dir(dir: &Path) -> Result<Packed, PackError> {
    let meta = std::fs::metadata(dir).map_err(|e| io(dir, e))?;
    if !meta.is_dir() {
        return Err(PackError::NotADir(dir.to_owned()));
    }
    let mut walk = Walk::default();
    walk.dir(dir, "")?;
    walk.files.sort();
    check_shape(dir, &walk.files)?;
    let archive = archive(dir, &walk.files)?;
    if archive.len() > MAX_ARCHIVE_BYTES {
        return Err(PackError::ArchiveTooLarge(archive.len()));
    }
    Ok(Packed {
        archive,
        files: walk.files.len(),
        expanded: walk.bytes,
        skipped: walk.skipped,
    })
}

/// The files found so far, within the limits.
#[derive(Default)]
struct Walk {
    files: Vec<String>,
    bytes: u64,
    skipped: Vec<String>,
}

impl Walk {
    /// Adds the files under `dir`, whose path in the package is `prefix`.
    fn dir(&mut self, dir: &Path, prefix: &str) -> Result<(), PackError> {
        let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io(dir, e))?;
            let path = entry.path();
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| PackError::NotUtf8(path.clone()))?;
            let rel = format!("{prefix}{name}");
            let kind = entry.file_type().map_err(|e| io(&path, e))?;
            if kind.is_symlink() {
                return Err(PackError::Symlink(path));
            } else if kind.is_dir() {
                if is_skipped_dir(&path, &name) {
                    self.skipped.push(format!("{rel}/"));
                } else {
                    self.dir(&path, &format!("{rel}/"))?;
                }
            } else if !kind.is_file() {
                return Err(PackError::Special(path));
            } else if is_skipped_file(&name) {
                self.skipped.push(rel);
            } else {
                self.file(&path, rel)?;
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, rel: String) -> Result<(), PackError> {
        if rel.chars().count() > MAX_PATH_LEN {
            return Err(PackError::PathTooLong(rel));
        }
        if self.files.len() == MAX_ENTRIES {
            return Err(PackError::TooManyFiles);
        }
        let size = std::fs::metadata(path).map_err(|e| io(path, e))?.len();
        self.bytes += size;
        if self.bytes > MAX_EXPANDED_BYTES {
            return Err(PackError::TooLarge(rel));
        }
        self.files.push(rel);
        Ok(())
    }
}

fn is_skipped_dir(path: &Path, name: &str) -> bool {
    SKIPPED_DIRS.contains(&name) || name.ends_with(".egg-info") || path.join("pyvenv.cfg").exists()
}

fn is_skipped_file(name: &str) -> bool {
    name == ".DS_Store" || name.ends_with(".pyc") || name.ends_with(".pyo")
}

/// The API's own shape check, done before uploading.
fn check_shape(dir: &Path, files: &[String]) -> Result<(), PackError> {
    let has = |p: &str| files.iter().any(|f| f == p);
    if !has("pyproject.toml") {
        return Err(PackError::NoPyproject(dir.to_owned()));
    }
    if !has("src/ade_config/__init__.py") && !has("ade_config/__init__.py") {
        return Err(PackError::NoConfigPackage(dir.to_owned()));
    }
    Ok(())
}

/// A gzip'd tar of `files` (paths under `dir`), regular files only.
fn archive(dir: &Path, files: &[String]) -> Result<Vec<u8>, PackError> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for rel in files {
        let path = dir.join(rel);
        let data = read_capped(&path)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, rel, data.as_slice())
            .map_err(|e| io(&path, e))?;
    }
    let gz = tar.into_inner().map_err(|e| io(dir, e))?;
    gz.finish().map_err(|e| io(dir, e))
}

/// Reads a file, refusing one that grew past the package limit since it was listed.
fn read_capped(path: &Path) -> Result<Vec<u8>, PackError> {
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut data = Vec::new();
    file.take(MAX_EXPANDED_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| io(path, e))?;
    if data.len() as u64 > MAX_EXPANDED_BYTES {
        return Err(PackError::TooLarge(path.display().to_string()));
    }
    Ok(data)
}

fn io(path: &Path, source: std::io::Error) -> PackError {
    PackError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;

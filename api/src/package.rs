//! Configuration packages: reading uploads safely, and one canonical form.
//!
//! An upload (.zip or .tar.gz) is read entirely in memory under limits on its
//! size, entry count (folders included), expanded size and path shape;
//! symlinks, absolute paths, `..`, duplicate and non-UTF-8 names are
//! refused. A tar.gz is decompressed through a cap *before* the tar reader
//! sees it, so metadata the reader buffers whole (PAX and GNU long-name
//! headers) can never be larger than the cap. What passes is re-packed canonically (sorted entries,
//! fixed mode and mtime), so the same files always give the same
//! `content_digest`, whatever archive format or tool produced them.

use ade_common::ids::Digest;
use std::collections::BTreeMap;
use std::io::{Cursor, Read};

/// Largest accepted archive, compressed.
pub const MAX_ARCHIVE_BYTES: usize = 5 * 1024 * 1024;
/// Most files a package may hold.
pub const MAX_ENTRIES: usize = 500;
/// Largest total size of the files once expanded.
pub const MAX_EXPANDED_BYTES: u64 = 20 * 1024 * 1024;
/// Longest path inside a package.
pub const MAX_PATH_LEN: usize = 200;
/// Decompressed bytes a tar.gz may have in all (contents plus headers).
const MAX_TAR_BYTES: u64 = MAX_EXPANDED_BYTES + (MAX_ENTRIES as u64 + 16) * 2048;

/// Why an upload is not a usable package; each maps to a 422 or 413.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Neither a zip nor a gzip'd tar.
    #[error("the package must be a .zip or .tar.gz archive")]
    UnknownFormat,
    /// The archive is damaged or not what it claims.
    #[error("the archive could not be read: {0}")]
    Corrupt(String),
    /// An entry escapes the package or is not a regular file.
    #[error("unsafe archive entry {0:?}: {1}")]
    UnsafeEntry(String, &'static str),
    /// A limit was exceeded.
    #[error("the package is too large: {0}")]
    TooLarge(String),
    /// The files do not form a configuration package.
    #[error("not a configuration package: {0}")]
    NotAPackage(&'static str),
}

/// A validated package in canonical form.
pub struct CanonicalPackage {
    /// Gzip'd canonical tar, as stored.
    pub archive: Vec<u8>,
    /// SHA-256 of the canonical (uncompressed) tar.
    pub digest: Digest,
}

/// Reads an uploaded archive and returns its canonical form.
pub fn from_upload(bytes: &[u8]) -> Result<CanonicalPackage, PackageError> {
    if bytes.len() > MAX_ARCHIVE_BYTES {
        return Err(PackageError::TooLarge(format!(
            "archives are limited to {MAX_ARCHIVE_BYTES} bytes"
        )));
    }
    let files = match bytes {
        [b'P', b'K', 3, 4, ..] => read_zip(bytes)?,
        [0x1f, 0x8b, ..] => read_tar_gz(bytes)?,
        _ => return Err(PackageError::UnknownFormat),
    };
    canonical(strip_root(files)?)
}

/// The starter template, built into the binary from the engine package
/// (`engine/src/ade_engine/templates/config`, also written by `python -m ade_engine config init`).
pub fn template() -> CanonicalPackage {
    macro_rules! file {
        ($path:literal) => {
            (
                $path.to_owned(),
                include_bytes!(concat!(
                    "../../engine/src/ade_engine/templates/config/",
                    $path
                ))
                .to_vec(),
            )
        };
    }
    let files = BTreeMap::from([
        file!("README.md"),
        file!("pyproject.toml"),
        file!("src/ade_config/__init__.py"),
        file!("src/ade_config/columns.py"),
        file!("src/ade_config/hooks.py"),
        file!("src/ade_config/rows.py"),
        file!("src/ade_config/validators.py"),
    ]);
    canonical(files).expect("the built-in template is a valid package")
}

/// Unpacks a canonical archive into `(path, contents)` pairs.
pub fn files_of(archive: &[u8]) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        files.insert(path, data);
    }
    Ok(files)
}

/// Running totals that enforce the limits while an archive is read.
#[derive(Default)]
struct Budget {
    entries: usize,
    bytes: u64,
}

impl Budget {
    /// Counts one entry of any kind (folders too).
    fn count(&mut self) -> Result<(), PackageError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(PackageError::TooLarge(format!(
                "at most {MAX_ENTRIES} entries, folders included"
            )));
        }
        Ok(())
    }

    fn admit(&mut self, declared_size: u64) -> Result<u64, PackageError> {
        let left = MAX_EXPANDED_BYTES - self.bytes;
        if declared_size > left {
            return Err(too_large_expanded());
        }
        Ok(left)
    }

    fn read(&mut self, reader: impl Read, left: u64) -> Result<Vec<u8>, PackageError> {
        let mut data = Vec::new();
        // Read one byte past the budget to notice sizes that lie.
        reader
            .take(left + 1)
            .read_to_end(&mut data)
            .map_err(|e| PackageError::Corrupt(e.to_string()))?;
        if data.len() as u64 > left {
            return Err(too_large_expanded());
        }
        self.bytes += data.len() as u64;
        Ok(data)
    }
}

fn too_large_expanded() -> PackageError {
    PackageError::TooLarge(format!("at most {MAX_EXPANDED_BYTES} bytes once expanded"))
}

fn read_zip(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, PackageError> {
    let corrupt = |e: zip::result::ZipError| PackageError::Corrupt(e.to_string());
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(corrupt)?;
    let mut budget = Budget::default();
    let mut files = BTreeMap::new();
    for i in 0..zip.len() {
        budget.count()?;
        let file = zip.by_index(i).map_err(corrupt)?;
        let name = file.name().map_err(corrupt)?.into_owned();
        if file.is_dir() || is_ignored(&name) {
            continue;
        }
        if file.is_symlink() {
            return Err(PackageError::UnsafeEntry(
                shown(&name),
                "symlinks are not allowed",
            ));
        }
        let path = checked_path(&name)?;
        let left = budget.admit(file.size())?;
        let data = budget.read(file, left)?;
        insert_once(&mut files, path, data)?;
    }
    Ok(files)
}

fn read_tar_gz(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, PackageError> {
    let corrupt = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::FileTooLarge => too_large_expanded(),
        _ => PackageError::Corrupt(e.to_string()),
    };
    let capped = Capped {
        inner: flate2::read::GzDecoder::new(bytes),
        left: MAX_TAR_BYTES,
    };
    let mut tar = tar::Archive::new(capped);
    let mut budget = Budget::default();
    let mut files = BTreeMap::new();
    for entry in tar.entries().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        budget.count()?;
        let name = match std::str::from_utf8(&entry.path_bytes()) {
            Ok(name) => name.to_owned(),
            Err(_) => {
                let lossy = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                return Err(PackageError::UnsafeEntry(
                    shown(&lossy),
                    "names must be UTF-8",
                ));
            }
        };
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            // pax/GNU metadata entries are consumed by the tar reader itself.
            _ => {
                return Err(PackageError::UnsafeEntry(
                    shown(&name),
                    "only regular files and folders are allowed",
                ));
            }
        }
        if is_ignored(&name) {
            continue;
        }
        let path = checked_path(&name)?;
        let left = budget.admit(entry.header().size().unwrap_or(0))?;
        let data = budget.read(entry, left)?;
        insert_once(&mut files, path, data)?;
    }
    Ok(files)
}

/// Adds a file, refusing a second entry of the same path.
fn insert_once(
    files: &mut BTreeMap<String, Vec<u8>>,
    path: String,
    data: Vec<u8>,
) -> Result<(), PackageError> {
    if files.contains_key(&path) {
        return Err(PackageError::UnsafeEntry(
            shown(&path),
            "the name appears twice",
        ));
    }
    files.insert(path, data);
    Ok(())
}

/// At most 100 characters of a name from the archive, for messages.
fn shown(name: &str) -> String {
    name.chars().take(100).collect()
}

/// A reader that fails once more than `left` bytes were read from it.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "the archive expands beyond its limit",
            )
        })?;
        Ok(n)
    }
}

/// Entries that archivers add on their own and that never matter.
fn is_ignored(name: &str) -> bool {
    name.starts_with("__MACOSX/")
        || name.ends_with(".DS_Store")
        || name.split('/').any(|c| c == "__pycache__")
}

/// A relative path of plain components, or an error naming the entry.
fn checked_path(name: &str) -> Result<String, PackageError> {
    let unsafe_entry = |why| Err(PackageError::UnsafeEntry(shown(name), why));
    let trimmed = name.strip_prefix("./").unwrap_or(name);
    if trimmed.len() > MAX_PATH_LEN {
        return unsafe_entry("path too long");
    }
    if trimmed.starts_with('/') || trimmed.contains('\\') || trimmed.contains(':') {
        return unsafe_entry("absolute or non-portable path");
    }
    let components: Vec<&str> = trimmed.split('/').filter(|c| !c.is_empty()).collect();
    if components.is_empty() {
        return unsafe_entry("empty path");
    }
    if components
        .iter()
        .any(|c| *c == ".." || *c == "." || c.chars().any(char::is_control))
    {
        return unsafe_entry("path escapes the package");
    }
    Ok(components.join("/"))
}

/// Moves the package root to `pyproject.toml`'s folder (archives often wrap
/// everything in one top-level folder) and checks the package's shape.
fn strip_root(files: BTreeMap<String, Vec<u8>>) -> Result<BTreeMap<String, Vec<u8>>, PackageError> {
    let files = if files.contains_key("pyproject.toml") {
        files
    } else {
        let top = files
            .keys()
            .next()
            .and_then(|p| p.split_once('/'))
            .map(|(top, _)| format!("{top}/"));
        let top = top.filter(|t| files.keys().all(|p| p.starts_with(t.as_str())));
        let top = top.ok_or(PackageError::NotAPackage(
            "no pyproject.toml at the package root",
        ))?;
        files
            .into_iter()
            .map(|(p, d)| (p[top.len()..].to_owned(), d))
            .collect()
    };
    if !files.contains_key("pyproject.toml") {
        return Err(PackageError::NotAPackage(
            "no pyproject.toml at the package root",
        ));
    }
    if !files.contains_key("src/ade_config/__init__.py")
        && !files.contains_key("ade_config/__init__.py")
    {
        return Err(PackageError::NotAPackage(
            "no ade_config package (src/ade_config/__init__.py)",
        ));
    }
    Ok(files)
}

fn canonical(files: BTreeMap<String, Vec<u8>>) -> Result<CanonicalPackage, PackageError> {
    let io = |e: std::io::Error| PackageError::Corrupt(e.to_string());
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, data.as_slice())
            .map_err(io)?;
    }
    let tar = tar.into_inner().map_err(io)?;
    let digest = Digest::sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).map_err(io)?;
    Ok(CanonicalPackage {
        archive: gz.finish().map_err(io)?,
        digest,
    })
}

#[cfg(test)]
mod tests;

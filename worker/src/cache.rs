//! Locks of the venv cache, and the collector that keeps it within limits.
//!
//! Two lock files per build live in `ADE_VENVS_DIR/.locks`, outside the venv
//! folders so deleting a venv never deletes a lock someone holds:
//! - `<build>.lock`, held exclusively by whoever builds the venv;
//! - `<build>.inuse`, held shared by every run using the venv (its mtime is
//!   the last use).
//!
//! The collector removes a build's folder only while it holds both
//! exclusively without waiting, so it never removes a venv being built or
//! used. `flock` locks die with their process, so a crash never leaves a
//! venv locked.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Which lock of a build.
#[derive(Debug, Clone, Copy)]
pub enum Lock {
    /// Held exclusively while building.
    Build,
    /// Held shared while a run uses the venv.
    InUse,
}

fn lock_path(root: &Path, build_id: Uuid, lock: Lock) -> PathBuf {
    let ext = match lock {
        Lock::Build => "lock",
        Lock::InUse => "inuse",
    };
    root.join(".locks").join(format!("{build_id}.{ext}"))
}

/// Takes a lock file with `flock`: waits if `wait`, else returns `None` when taken.
pub fn flock(path: &Path, exclusive: bool, wait: bool) -> std::io::Result<Option<File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let mut op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    if !wait {
        op |= libc::LOCK_NB;
    }
    // SAFETY: flock on a descriptor we own; released when the file closes.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), op) } != 0 {
        let err = std::io::Error::last_os_error();
        return if err.kind() == std::io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(err)
        };
    }
    Ok(Some(file))
}

/// Waits for the build lock of `build_id`, polling so that `cancel` can end the wait.
pub async fn lock_build(
    root: &Path,
    build_id: Uuid,
    cancel: &CancellationToken,
) -> std::io::Result<File> {
    let path = lock_path(root, build_id, Lock::Build);
    loop {
        let attempt = path.clone();
        let taken = tokio::task::spawn_blocking(move || flock(&attempt, true, false))
            .await
            .map_err(std::io::Error::other)??;
        if let Some(file) = taken {
            return Ok(file);
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled while waiting for another build")),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Marks the venv of `build_id` in use until the returned file is dropped.
pub async fn hold(root: &Path, build_id: Uuid) -> std::io::Result<File> {
    let path = lock_path(root, build_id, Lock::InUse);
    tokio::task::spawn_blocking(move || {
        let file = flock(&path, false, true)?.expect("a waiting flock returns a file");
        file.set_modified(SystemTime::now())?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Limits the collector keeps the cache within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total size of all build folders.
    pub max_bytes: u64,
    /// Longest a venv may stay unused.
    pub max_age: Duration,
}

/// What one collection did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Build folders removed.
    pub removed: usize,
    /// Bytes of build folders left.
    pub bytes_left: u64,
}

struct Entry {
    dir: PathBuf,
    build_id: Uuid,
    bytes: u64,
    last_used: SystemTime,
}

/// Removes unused venvs older than `max_age`, then the least recently used
/// until the cache fits `max_bytes`. Runs on a blocking thread.
pub async fn collect(root: PathBuf, limits: Limits) -> std::io::Result<Collected> {
    tokio::task::spawn_blocking(move || collect_blocking(&root, limits))
        .await
        .map_err(std::io::Error::other)?
}

fn collect_blocking(root: &Path, limits: Limits) -> std::io::Result<Collected> {
    let mut entries = scan(root)?;
    entries.sort_by_key(|e| e.last_used);
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let stale = now.duration_since(entry.last_used).unwrap_or_default() > limits.max_age;
        if !stale && total <= limits.max_bytes {
            continue;
        }
        if remove_if_unused(root, &entry)? {
            removed += 1;
            total -= entry.bytes;
        }
    }
    Ok(Collected {
        removed,
        bytes_left: total,
    })
}

/// Removes a build folder if nobody builds or uses it right now.
fn remove_if_unused(root: &Path, entry: &Entry) -> std::io::Result<bool> {
    let Some(_build) = flock(&lock_path(root, entry.build_id, Lock::Build), true, false)? else {
        return Ok(false);
    };
    let Some(_in_use) = flock(&lock_path(root, entry.build_id, Lock::InUse), true, false)? else {
        return Ok(false);
    };
    std::fs::remove_dir_all(&entry.dir)?;
    tracing::info!(build.id = %entry.build_id, bytes = entry.bytes, "removed an unused venv");
    Ok(true)
}

/// Every `<workspace>/<configuration>/<build>` folder under `root`.
fn scan(root: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for ws in uuid_dirs(root)? {
        for cfg in uuid_dirs(&ws)? {
            for dir in uuid_dirs(&cfg)? {
                let build_id: Uuid = dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse().ok())
                    .expect("uuid_dirs yields uuids");
                let in_use = std::fs::metadata(lock_path(root, build_id, Lock::InUse))
                    .and_then(|m| m.modified());
                let last_used =
                    in_use.or_else(|_| std::fs::metadata(&dir).and_then(|m| m.modified()))?;
                entries.push(Entry {
                    bytes: dir_size(&dir),
                    dir,
                    build_id,
                    last_used,
                });
            }
        }
    }
    Ok(entries)
}

/// Subfolders whose names are UUIDs (skips `.locks`, `.engine` and strays).
fn uuid_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let is_uuid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.parse::<Uuid>().is_ok());
        if is_uuid && entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Bytes of all files below `dir` (symlinks not followed); unreadable parts count as 0.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_build(root: &Path, bytes: usize) -> (Uuid, PathBuf) {
        let id = Uuid::now_v7();
        let dir = root
            .join(Uuid::now_v7().to_string())
            .join(Uuid::now_v7().to_string())
            .join(id.to_string());
        std::fs::create_dir_all(dir.join(".venv")).unwrap();
        std::fs::write(dir.join(".venv/blob"), vec![0u8; bytes]).unwrap();
        (id, dir)
    }

    fn temp_root() -> PathBuf {
        let root = std::env::temp_dir().join(format!("ade-cache-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    #[tokio::test]
    async fn the_collector_spares_venvs_in_use_or_being_built() {
        let root = temp_root();
        let (used, used_dir) = fake_build(&root, 1000);
        let (building, building_dir) = fake_build(&root, 1000);
        let (_idle, idle_dir) = fake_build(&root, 1000);
        let _hold = hold(&root, used).await.unwrap();
        let _builder = lock_build(&root, building, &CancellationToken::new())
            .await
            .unwrap();
        let limits = Limits {
            max_bytes: 0,
            max_age: Duration::from_secs(3600),
        };
        let collected = collect(root.clone(), limits).await.unwrap();
        assert_eq!(collected.removed, 1);
        assert!(used_dir.exists() && building_dir.exists() && !idle_dir.exists());
        assert_eq!(collected.bytes_left, 2000);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn the_collector_keeps_recent_venvs_within_the_size_limit() {
        let root = temp_root();
        let (old, old_dir) = fake_build(&root, 1000);
        drop(hold(&root, old).await.unwrap());
        let old_time = SystemTime::now() - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(lock_path(&root, old, Lock::InUse))
            .unwrap()
            .set_modified(old_time)
            .unwrap();
        let (new, new_dir) = fake_build(&root, 1000);
        drop(hold(&root, new).await.unwrap());
        // Under the size limit and younger than the age limit: nothing goes.
        let roomy = Limits {
            max_bytes: 10_000,
            max_age: Duration::from_secs(3600),
        };
        assert_eq!(collect(root.clone(), roomy).await.unwrap().removed, 0);
        // Over the size limit: the least recently used goes first.
        let tight = Limits {
            max_bytes: 1500,
            max_age: Duration::from_secs(3600),
        };
        assert_eq!(
            collect(root.clone(), tight).await.unwrap(),
            Collected {
                removed: 1,
                bytes_left: 1000
            }
        );
        assert!(!old_dir.exists() && new_dir.exists());
        // Older than the age limit: removed whatever the size.
        let strict_age = Limits {
            max_bytes: u64::MAX,
            max_age: Duration::ZERO,
        };
        assert_eq!(collect(root.clone(), strict_age).await.unwrap().removed, 1);
        std::fs::remove_dir_all(root).unwrap();
    }
}

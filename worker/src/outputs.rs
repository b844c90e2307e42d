//! Publishing a finished run's outputs: the regular files of its area's
//! `outputs/` folder, read through the area's descriptor, copied into the
//! attempt's outputs folder on shared storage.
//!
//! Called only once every process of the run is gone, so nothing changes
//! under it; even so nothing is trusted. Each entry is looked at without
//! following it and opened beneath the folder with `RESOLVE_NO_SYMLINKS`;
//! a symlink, FIFO, device, socket or folder is skipped and reported on the
//! run's console, as is a file with more than one link or a name that is
//! not plain. The engine's files are never changed (no chmod, no chown):
//! the worker reads them and writes its own copies. Their total is capped
//! by `ADE_MAX_OUTPUT_BYTES` (over it, the run fails with `output_limit`).
//! What is listed is recorded on the run in the completing transaction;
//! the API serves exactly those files.

use crate::area::{BENEATH, RunArea};
use crate::events::EventSink;
use ade_common::runs::{Failure, OutputFile};
use ade_common::storage::{content_type_for, is_safe_file_name};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::path::{Path, PathBuf};

/// What collecting found: the files kept, and why others were not.
#[derive(Debug, Default)]
struct Found {
    files: Vec<(OutputFile, std::fs::File)>,
    skipped: Vec<String>,
}

/// Copies the outputs of `area` into `dest` (the attempt's folder).
/// `Err` when they are too large together or could not be stored.
pub async fn publish(
    area: RunArea,
    dest: PathBuf,
    max_total: u64,
    events: &EventSink,
) -> Result<Vec<OutputFile>, Failure> {
    let found = tokio::task::spawn_blocking(move || find(&area))
        .await
        .map_err(|e| stored_failure("the outputs", &std::io::Error::other(e)))?
        .map_err(|e| stored_failure("the outputs", &e))?;
    for note in &found.skipped {
        events.console("run", "stderr", note.clone(), None).await;
    }
    let total: u64 = found.files.iter().map(|(f, _)| f.byte_size).sum();
    if total > max_total {
        let shown = format!(
            "the outputs total {total} bytes, more than ADE_MAX_OUTPUT_BYTES ({max_total})"
        );
        events.console("run", "stderr", shown, None).await;
        return Err(crate::limits::output_limit(max_total));
    }
    tokio::task::spawn_blocking(move || store(found.files, &dest))
        .await
        .map_err(|e| stored_failure("the outputs", &std::io::Error::other(e)))?
}

/// The regular files of the area's `outputs/`, sorted by name, opened.
fn find(area: &RunArea) -> std::io::Result<Found> {
    let dir = match area.outputs() {
        Ok(dir) => dir,
        // An engine that removed or replaced its folder published nothing.
        Err(e) => {
            let note = format!("the output folder could not be read ({e}); nothing is published");
            return Ok(Found {
                files: Vec::new(),
                skipped: vec![note],
            });
        }
    };
    let mut found = Found::default();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        match open_output(&dir, &name) {
            Ok(file) => found.files.push(file),
            Err(what) => {
                let shown: String = name.chars().take(100).collect();
                found
                    .skipped
                    .push(format!("output {shown:?} is {what}; it is not published"));
            }
        }
    }
    found.files.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(found)
}

/// Opens one entry if it is a plain, regular, singly linked file.
fn open_output(dir: &OwnedFd, name: &str) -> Result<(OutputFile, std::fs::File), &'static str> {
    if !is_safe_file_name(name) {
        return Err("not a plain file name");
    }
    let seen =
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|_| "unreadable")?;
    check(&seen)?;
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd =
        rustix::fs::openat2(dir, name, flags, Mode::empty(), BENEATH).map_err(|_| "unreadable")?;
    let opened = rustix::fs::fstat(&fd).map_err(|_| "unreadable")?;
    check(&opened)?;
    if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino) {
        return Err("replaced while it was read");
    }
    let file = OutputFile {
        content_type: content_type_for(name).to_owned(),
        byte_size: opened.st_size as u64,
        name: name.to_owned(),
    };
    Ok((file, std::fs::File::from(fd)))
}

/// Why an entry is not an output, if it is not one.
fn check(stat: &rustix::fs::Stat) -> Result<(), &'static str> {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile if stat.st_nlink > 1 => Err("a hard link to another file"),
        FileType::RegularFile => Ok(()),
        FileType::Symlink => Err("a symbolic link"),
        FileType::Directory => Err("a folder"),
        _ => Err("not a regular file (a FIFO, socket or device)"),
    }
}

/// Writes each file into `dest`, as the worker's own file.
fn store(files: Vec<(OutputFile, std::fs::File)>, dest: &Path) -> Result<Vec<OutputFile>, Failure> {
    std::fs::create_dir_all(dest).map_err(|e| stored_failure("the outputs", &e))?;
    let mut stored = Vec::with_capacity(files.len());
    for (file, mut source) in files {
        let mut copy = || -> std::io::Result<()> {
            let mut target = std::fs::File::create(dest.join(&file.name))?;
            std::io::copy(&mut (&mut source).take(file.byte_size), &mut target)?;
            target.sync_all()
        };
        copy().map_err(|e| stored_failure(&format!("the output {}", file.name), &e))?;
        stored.push(file);
    }
    Ok(stored)
}

use std::io::Read as _;

fn stored_failure(what: &str, e: &std::io::Error) -> Failure {
    let message = format!("{what} could not be stored: {e}");
    Failure::new("run", "environment_unavailable", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host-folder area with `outputs/` as the engine might leave it.
    fn area_with(setup: impl FnOnce(&Path)) -> (PathBuf, RunArea) {
        let root = std::env::temp_dir().join(format!("ade-outputs-{}", uuid::Uuid::now_v7()));
        let area = RunArea::host_folder(&root).unwrap();
        setup(&root.join("outputs"));
        (root, area)
    }

    #[test]
    fn only_plain_regular_files_are_found() {
        let secret = std::env::temp_dir().join(format!("ade-secret-{}", uuid::Uuid::now_v7()));
        std::fs::write(&secret, "secret").unwrap();
        let (root, area) = area_with(|out| {
            std::fs::write(out.join("b.csv"), "b\n").unwrap();
            std::fs::write(out.join("a.csv"), "a\n").unwrap();
            std::os::unix::fs::symlink(&secret, out.join("link.csv")).unwrap();
            std::fs::create_dir(out.join("folder")).unwrap();
            std::fs::write(out.join("twice.csv"), "x").unwrap();
            std::fs::hard_link(out.join("twice.csv"), out.join("again.csv")).unwrap();
        });
        let found = find(&area).unwrap();
        let names: Vec<&str> = found.files.iter().map(|(f, _)| f.name.as_str()).collect();
        assert_eq!(names, ["a.csv", "b.csv"]);
        assert_eq!(found.skipped.len(), 4, "{:?}", found.skipped);
        let dest = root.join("stored");
        let stored = store(found.files, &dest).unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(std::fs::read_to_string(dest.join("a.csv")).unwrap(), "a\n");
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_file(&secret).unwrap();
    }

    #[test]
    fn a_folder_swapped_for_a_link_publishes_nothing_of_the_target() {
        let (root, area) = area_with(|out| {
            let parent = out.parent().unwrap();
            std::fs::rename(out, parent.join("outputs.x")).unwrap();
            std::os::unix::fs::symlink("/etc", out).unwrap();
        });
        let found = find(&area).unwrap();
        assert!(found.files.is_empty());
        assert!(
            found.skipped[0].contains("could not be read"),
            "{:?}",
            found.skipped
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

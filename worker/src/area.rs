//! A run's writable area: the size-capped tmpfs its engine works in
//! (`/run/ade/run`: `work/`, its working folder and home, and `outputs/`),
//! held by the worker through a directory descriptor.
//!
//! The sandbox mounts the area (bubblewrap for a spawned run, the run's own
//! PID 1 for a forked one) and hands its descriptor to the worker before
//! any configuration code runs. From then on the worker reaches the area
//! only through that descriptor: it measures how full it is while the run
//! works, and after every process of the run is gone it reads the outputs
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`. A folder renamed
//! away, a link planted in its place, a FIFO or a hard link: nothing in the
//! area can make the worker touch a file outside it. The descriptor also
//! keeps the tmpfs alive after its mount namespace is gone.
//!
//! The area holds at most `ADE_MAX_OUTPUT_BYTES` plus [`SLACK_BYTES`]: a
//! write past that fails with `ENOSPC`, and the worker stops a run whose
//! area holds more than `ADE_MAX_OUTPUT_BYTES` (`output_limit`). Its pages
//! live in memory and count toward the run's memory bound. Nothing of a
//! run is ever on the host's disk but what the worker copies out.
//!
//! With `ADE_ENGINE_SANDBOX=off` there is no tmpfs: the area is a host
//! folder the worker made and opened itself, and its size is not bounded.

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::io;
use std::path::Path;

/// Room in the area beyond `ADE_MAX_OUTPUT_BYTES`, for working files.
pub const SLACK_BYTES: u64 = 32 * 1024 * 1024;
/// Where the area is inside a sandbox.
pub const INSIDE: &str = "/run/ade/run";
/// The engine's working folder (and `HOME`) inside.
pub const WORK: &str = "/run/ade/run/work";
/// The engine's `--output-dir` inside.
pub const OUTPUTS: &str = "/run/ade/run/outputs";

/// How an open below the area resolves: never through a link, never out of
/// it, never onto another mount.
pub(crate) const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// The capacity of a run's area for `max_output` bytes of outputs.
pub fn capacity(max_output: u64) -> u64 {
    max_output.saturating_add(SLACK_BYTES)
}

/// A run's area, as the worker holds it.
#[derive(Debug)]
pub struct RunArea {
    dir: OwnedFd,
    /// `Some` for a tmpfs of this many bytes; `None` for a host folder.
    capacity: Option<u64>,
}

impl RunArea {
    /// Takes the descriptor a sandbox handed over, if it is what was asked
    /// for: the root of a tmpfs of `capacity` bytes.
    pub fn adopt(dir: OwnedFd, capacity: u64) -> io::Result<Self> {
        let fs = rustix::fs::fstatfs(&dir)?;
        let total = fs.f_blocks * fs.f_bsize as u64;
        let pages = capacity.div_ceil(4096) * 4096;
        let tmpfs = fs.f_type == libc::TMPFS_MAGIC;
        if !tmpfs || total != pages {
            return Err(io::Error::other(format!(
                "the sandbox handed over something else than its area (type {:#x}, {total} bytes)",
                fs.f_type
            )));
        }
        Ok(Self {
            dir,
            capacity: Some(capacity),
        })
    }

    /// A host folder as the area (`ADE_ENGINE_SANDBOX=off`), made empty
    /// with `work/` and `outputs/` in it.
    pub fn host_folder(path: &Path) -> io::Result<Self> {
        let _ = std::fs::remove_dir_all(path);
        std::fs::create_dir_all(path.join("work"))?;
        std::fs::create_dir_all(path.join("outputs"))?;
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let dir = rustix::fs::open(path, flags, Mode::empty())?;
        Ok(Self {
            dir,
            capacity: None,
        })
    }

    /// Bytes the area holds now (`None` for a host folder).
    pub fn used_bytes(&self) -> Option<u64> {
        self.capacity?;
        let fs = rustix::fs::fstatvfs(&self.dir).ok()?;
        Some((fs.f_blocks - fs.f_bfree) * fs.f_frsize)
    }

    /// The area's `outputs/` folder, opened beneath the area.
    pub fn outputs(&self) -> io::Result<OwnedFd> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        Ok(rustix::fs::openat2(
            &self.dir,
            "outputs",
            flags,
            Mode::empty(),
            BENEATH,
        )?)
    }
}

/// Where a run's area comes from, until the sandbox has handed it over.
#[derive(Debug)]
pub enum Handover {
    /// The sandbox's init sends it over this socket; `theirs` is the end
    /// the child gets (kept until it is spawned).
    Socket {
        /// Our end.
        ours: OwnedFd,
        /// The child's end, dropped once it is spawned.
        theirs: Option<OwnedFd>,
        /// The size asked for.
        capacity: u64,
    },
    /// A host folder the worker opened itself (`ADE_ENGINE_SANDBOX=off`).
    Ready(RunArea),
}

impl Handover {
    /// A socket pair for a sandbox that will hand over an area of `capacity` bytes.
    pub fn socket(capacity: u64) -> io::Result<Self> {
        let (ours, theirs) = crate::fdpass::seqpacket_pair()?;
        Ok(Self::Socket {
            ours,
            theirs: Some(crate::process::high(theirs)?),
            capacity,
        })
    }

    /// The descriptor the child must get (see [`crate::sandbox::HANDOVER_FD`]).
    pub fn child_end(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd as _;
        match self {
            Self::Socket { theirs, .. } => theirs.as_ref().map(|t| t.as_raw_fd()),
            Self::Ready(_) => None,
        }
    }

    /// The area, once the spawned sandbox has handed it over (within `patience`).
    pub async fn receive(self, patience: std::time::Duration) -> io::Result<RunArea> {
        let (ours, capacity) = match self {
            Self::Ready(area) => return Ok(area),
            // Our copy of the child's end goes, so a sandbox that dies
            // before handing over reads as a hang-up.
            Self::Socket { ours, capacity, .. } => (ours, capacity),
        };
        let socket = crate::fdpass::register(ours)?;
        let mut buf = [0u8; 64];
        let received = tokio::time::timeout(patience, crate::fdpass::recv(&socket, &mut buf))
            .await
            .map_err(|_| io::Error::other("the sandbox did not hand over its area in time"))??;
        match received.fds.into_iter().next() {
            Some(dir) if &buf[..received.len] == b"{\"op\":\"area\"}" => {
                RunArea::adopt(dir, capacity)
            }
            _ => Err(io::Error::other(
                "the sandbox ended before it handed over its area",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_folder_is_no_tmpfs_of_the_asked_size() {
        let root = std::env::temp_dir().join(format!("ade-area-{}", uuid::Uuid::now_v7()));
        let area = RunArea::host_folder(&root).unwrap();
        assert_eq!(area.used_bytes(), None);
        let dir = rustix::fs::open(&root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty());
        let refused = RunArea::adopt(dir.unwrap(), capacity(1 << 20)).unwrap_err();
        assert!(refused.to_string().contains("something else"), "{refused}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn outputs_are_not_reached_through_a_link() {
        let root = std::env::temp_dir().join(format!("ade-area-{}", uuid::Uuid::now_v7()));
        let area = RunArea::host_folder(&root).unwrap();
        std::fs::rename(root.join("outputs"), root.join("outputs.x")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("outputs")).unwrap();
        let err = area.outputs().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

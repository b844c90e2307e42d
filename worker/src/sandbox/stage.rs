//! Making bind sources reachable for the sandbox user, and becoming it.
//!
//! bwrap, running as the sandbox user, opens every bind source by path. A
//! source under a folder that user cannot search (`/root`, mode 0700) is
//! out of its reach even though the source itself is world-readable. The
//! child that will execute bwrap is still root, so it enters a mount
//! namespace of its own (private: nothing propagates to the host), covers
//! the highest unreachable folder with a small tmpfs, recreates the path
//! down to each source there, and binds the source back in place from a
//! descriptor it opened just before (a bind's source must be in the
//! caller's mount namespace, so the worker's own descriptors would not
//! do). bwrap then finds every source at its own
//! path; the host's permissions and mounts are untouched, and the rest of
//! the covered folder stays hidden.
//!
//! Everything is prepared before `fork`; in the child only system calls on
//! prepared strings are made (async-signal-safe).

use super::Ids;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// What the child does before it drops privileges; empty when every
/// source is reachable.
#[derive(Debug, Default)]
pub(super) struct Plan {
    covers: Vec<CString>,
    dirs: Vec<CString>,
    files: Vec<CString>,
    binds: Vec<Bind>,
}

/// One source to bind back at its own path.
#[derive(Debug)]
struct Bind {
    path: CString,
    /// Its descriptor in the child, and `/proc/self/fd/<n>` (NUL-terminated):
    /// room made before fork, filled in after.
    fd: libc::c_int,
    proc: [u8; 32],
}

impl Plan {
    /// A plan for `sources` (resolved paths) to be reachable by `ids`.
    pub(super) fn for_sources<'a>(
        sources: impl Iterator<Item = &'a Path>,
        ids: Ids,
    ) -> io::Result<Self> {
        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
        for source in sources {
            if let Some(cover) = unreachable_ancestor(source, ids)? {
                staged.push((cover, source.to_owned()));
            }
        }
        let mut plan = Self::default();
        let mut covers: Vec<PathBuf> = staged.iter().map(|(c, _)| c.clone()).collect();
        covers.sort();
        covers.dedup();
        // A cover inside another is part of the outer one's tmpfs.
        let outer: Vec<PathBuf> = covers
            .iter()
            .filter(|c| !covers.iter().any(|o| o != *c && c.starts_with(o)))
            .cloned()
            .collect();
        for cover in &outer {
            plan.covers.push(cstring(cover)?);
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (_, source) in &staged {
            let cover = outer
                .iter()
                .find(|c| source.starts_with(c))
                .expect("covered");
            let mut dir = source.parent().expect("below its cover").to_owned();
            while dir.starts_with(cover) && dir != *cover {
                dirs.push(dir.clone());
                dir = dir.parent().expect("below its cover").to_owned();
            }
            if std::fs::metadata(source)?.is_dir() {
                dirs.push(source.clone());
            } else {
                plan.files.push(cstring(source)?);
            }
            plan.binds.push(Bind {
                path: cstring(source)?,
                fd: -1,
                proc: [0; 32],
            });
        }
        // Parents before children.
        dirs.sort_by_key(|d| d.components().count());
        dirs.dedup();
        for dir in dirs {
            plan.dirs.push(cstring(&dir)?);
        }
        Ok(plan)
    }

    /// In the child: enter a private mount namespace and stage the sources.
    pub(super) fn enter(&mut self) -> io::Result<()> {
        if self.covers.is_empty() {
            return Ok(());
        }
        // SAFETY: plain system calls on NUL-terminated strings prepared
        // before fork; the only writes are into room made before fork.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            let flags = libc::MS_REC | libc::MS_PRIVATE;
            check(libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            ))?;
            for bind in &mut self.binds {
                bind.fd = libc::open(bind.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                check(bind.fd)?;
                proc_fd_path(bind.fd, &mut bind.proc);
            }
            for cover in &self.covers {
                let flags = libc::MS_NOSUID | libc::MS_NODEV;
                let opts = c"mode=0755,size=1m";
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    cover.as_ptr(),
                    c"tmpfs".as_ptr(),
                    flags,
                    opts.as_ptr().cast(),
                ))?;
            }
            for dir in &self.dirs {
                if libc::mkdir(dir.as_ptr(), 0o755) != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return Err(io::Error::last_os_error());
                }
            }
            for file in &self.files {
                let fd = libc::open(
                    file.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                check(fd)?;
                libc::close(fd);
            }
            for bind in &self.binds {
                let flags = libc::MS_BIND | libc::MS_REC;
                let source = bind.proc.as_ptr().cast();
                check(libc::mount(
                    source,
                    bind.path.as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ))?;
                libc::close(bind.fd);
            }
        }
        Ok(())
    }
}

/// Writes `/proc/self/fd/<fd>` and a NUL into `out`, without allocating.
fn proc_fd_path(fd: libc::c_int, out: &mut [u8; 32]) {
    let prefix = b"/proc/self/fd/";
    out[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (fd.max(0) as u32, 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        out[prefix.len() + i] = digits[len - 1 - i];
    }
    out[prefix.len() + len] = 0;
}

/// In the child: become `ids` for good (no supplementary groups).
pub(super) fn drop_privileges(ids: Ids) -> io::Result<()> {
    // SAFETY: plain system calls with integer arguments.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(ids.gid, ids.gid, ids.gid))?;
        check(libc::setresuid(ids.uid, ids.uid, ids.uid))?;
    }
    Ok(())
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The highest ancestor of `path` that `ids` may not search, if any.
pub(super) fn unreachable_ancestor(path: &Path, ids: Ids) -> io::Result<Option<PathBuf>> {
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        let meta = std::fs::metadata(dir)?;
        if !may_search(meta.mode(), meta.uid(), meta.gid(), ids) {
            return Ok(Some(dir.to_owned()));
        }
    }
    Ok(None)
}

/// The execute bit that applies to `ids` (owner, group or others).
pub(super) fn may_search(mode: u32, uid: u32, gid: u32, ids: Ids) -> bool {
    let bit = if uid == ids.uid {
        0o100
    } else if gid == ids.gid {
        0o010
    } else {
        0o001
    };
    mode & bit != 0
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn descriptor_paths_are_written_in_place() {
        let mut out = [0xffu8; 32];
        super::proc_fd_path(1047, &mut out);
        let end = out.iter().position(|b| *b == 0).unwrap();
        assert_eq!(&out[..end], b"/proc/self/fd/1047");
        super::proc_fd_path(0, &mut out);
        assert_eq!(&out[..16], b"/proc/self/fd/0\0");
    }
}

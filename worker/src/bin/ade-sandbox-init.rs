//! `ade-sandbox-init`: the first program in every bubblewrap sandbox of the
//! worker, run before any configuration code.
//!
//! ```text
//! ade-sandbox-init [--nproc N] [--keep FD]... [--handover FD DIR] -- PROGRAM [ARG]...
//! ```
//!
//! 1. `--handover FD DIR`: opens `DIR` (the run's size-capped tmpfs, which
//!    bubblewrap mounted) and sends its descriptor over the socket `FD` to
//!    the worker, which then reads the run's outputs and usage through it
//!    after the sandbox is gone, never by a path the sandbox could change.
//! 2. Sets `RLIMIT_NPROC` to `N`: the kernel counts processes per user *per
//!    user namespace*, so the limit must be set inside the sandbox.
//! 3. Closes every descriptor but 0, 1, 2 and the `--keep` ones, so nothing
//!    the worker inherited by accident reaches the program.
//! 4. Executes `PROGRAM`.
//!
//! It is small on purpose (std and rustix only): it starts on every run.

use rustix::fd::{AsFd as _, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, exit};

/// What the command line asks for.
struct Plan {
    nproc: Option<u64>,
    keep: Vec<i32>,
    handover: Option<(i32, OsString)>,
    program: Vec<OsString>,
}

fn main() {
    let plan = match parse(std::env::args_os().skip(1).collect()) {
        Ok(plan) => plan,
        Err(why) => fail(&why, 2),
    };
    if let Some((fd, dir)) = &plan.handover
        && let Err(e) = hand_over(*fd, dir)
    {
        let shown = dir.to_string_lossy();
        fail(&format!("could not hand over {shown}: {e}"), 126);
    }
    if let Some(n) = plan.nproc {
        let limit = rustix::process::Rlimit {
            current: Some(n),
            maximum: Some(n),
        };
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nproc, limit) {
            fail(&format!("could not limit processes: {e}"), 126);
        }
    }
    close_all_but(&plan.keep);
    let (program, args) = plan.program.split_first().expect("parse checked");
    let err = Command::new(program).args(args).exec();
    fail(
        &format!("could not run {}: {err}", program.to_string_lossy()),
        127,
    );
}

fn parse(args: Vec<OsString>) -> Result<Plan, String> {
    let mut plan = Plan {
        nproc: None,
        keep: Vec::new(),
        handover: None,
        program: Vec::new(),
    };
    let mut args = args.into_iter();
    let number = |v: Option<OsString>, what: &str| -> Result<u64, String> {
        v.and_then(|v| v.into_string().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{what} needs a number"))
    };
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--nproc") => plan.nproc = Some(number(args.next(), "--nproc")?),
            Some("--keep") => plan.keep.push(number(args.next(), "--keep")? as i32),
            Some("--handover") => {
                let fd = number(args.next(), "--handover")? as i32;
                let dir = args.next().ok_or("--handover needs a folder")?;
                plan.handover = Some((fd, dir));
            }
            Some("--") => {
                plan.program = args.collect();
                break;
            }
            _ => return Err(format!("unexpected argument {}", arg.to_string_lossy())),
        }
    }
    if plan.program.is_empty() {
        return Err("no program after --".into());
    }
    Ok(plan)
}

/// Sends the descriptor of `dir` over the socket `fd`, then closes the socket.
fn hand_over(fd: i32, dir: &OsString) -> std::io::Result<()> {
    // SAFETY: the worker gave us this descriptor for exactly this; nothing
    // else in this process owns it.
    let socket = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let area = rustix::fs::open(dir.as_os_str(), flags, Mode::empty())?;
    let fds = [area.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let message = [std::io::IoSlice::new(b"{\"op\":\"area\"}")];
    rustix::net::sendmsg(&socket, &message, &mut control, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// Closes every descriptor from 3 up except `keep`.
fn close_all_but(keep: &[i32]) {
    let mut keep: Vec<u32> = keep.iter().map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for fd in keep.into_iter().filter(|&fd| fd >= 3) {
        if fd > from {
            close_range(from, fd - 1);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range(2) only closes descriptors; none is in use by
    // anything in this single-threaded process but what we close on purpose.
    unsafe {
        libc::close_range(first, last, 0);
    }
}

fn fail(why: &str, code: i32) -> ! {
    eprintln!("ade-sandbox-init: {why}");
    exit(code)
}

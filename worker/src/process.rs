//! Guarded subprocesses: own process group, bounded output, deadline, cancel.
//!
//! The child is started in a new process group so that a timeout or cancel
//! can kill it together with everything it spawned (`kill(-pgid)`). stdout,
//! stderr and, for the engine, an events pipe on fd 3 are read concurrently
//! and delivered as bounded lines in arrival order per stream. After the
//! child exits the group is killed too, so no grandchild outlives the run.

use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest line kept; the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// The file descriptor number the engine writes structured events to.
pub const EVENTS_FD: i32 = 3;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The child's stdout.
    Stdout,
    /// The child's stderr.
    Stderr,
    /// The events pipe (`ADE_EVENTS_FD`).
    Events,
}

/// Why a guarded process did not exit on its own.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program does not exist.
    #[error("program not found: {0}")]
    NotFound(String),
    /// The deadline passed; the process group was killed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Cancelled; the process group was killed.
    #[error("cancelled")]
    Cancelled,
    /// It went past a bound of the whole run; it was killed.
    #[error("it went past its {0:?} bound")]
    Breach(Breach),
    /// Spawning or waiting failed.
    #[error("process i/o failed: {0}")]
    Io(#[from] io::Error),
}

/// A bound of a whole run that the worker watches while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// Its processes together needed more memory than allowed (the
    /// kernel killed one of them in its cgroup).
    Memory,
    /// Its area holds more than `ADE_MAX_OUTPUT_BYTES`.
    Output,
}

/// Limits of one guarded run.
pub struct Guard {
    /// Deadline from spawn.
    pub timeout: Duration,
    /// Kills the process group when cancelled.
    pub cancel: CancellationToken,
    /// Open an events pipe on fd 3.
    pub events_pipe: bool,
}

/// Runs `cmd` under `guard`, passing every output line to `on_line`.
/// Returns the exit code (128 + signal for a signalled child).
pub async fn run<F, Fut>(cmd: Command, guard: Guard, on_line: F) -> Result<i32, ProcessError>
where
    F: FnMut(Channel, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let (child, outputs) = spawn(cmd, guard.events_pipe)?;
    supervise(child, outputs, guard, std::future::pending(), on_line).await
}

/// Starts `cmd` in a process group of its own (killed with the worker),
/// with its stdout, stderr and, if asked, an events pipe on fd 3 to read.
pub fn spawn(
    mut cmd: Command,
    events_pipe: bool,
) -> Result<(Spawned, Vec<(Channel, Output)>), ProcessError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.process_group(0).kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe. If the worker dies (even by SIGKILL),
    // the kernel kills the child too instead of leaving an orphan running.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let pipe = if events_pipe {
        Some(events_pipe_for(&mut cmd)?)
    } else {
        None
    };
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ProcessError::NotFound(program),
        _ => ProcessError::Io(e),
    })?;
    let pgid = child.id().expect("a just-spawned child has a pid") as i32;
    let mut outputs: Vec<(Channel, Output)> = vec![
        (
            Channel::Stdout,
            Box::new(child.stdout.take().expect("piped")),
        ),
        (
            Channel::Stderr,
            Box::new(child.stderr.take().expect("piped")),
        ),
    ];
    if let Some((reader, writer)) = pipe {
        drop(writer);
        let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(reader)?;
        outputs.push((Channel::Events, Box::new(receiver)));
    }
    Ok((Spawned { child, pgid }, outputs))
}

/// One output stream of a supervised process.
pub type Output = Box<dyn AsyncRead + Unpin + Send>;

/// A started process that the supervisor waits for and kills.
pub trait Supervised {
    /// Its exit code (128 + signal for a signalled process).
    fn wait(&mut self) -> impl Future<Output = io::Result<i32>> + Send;
    /// Kills it together with everything it started.
    fn kill(&mut self);
}

/// A child spawned by [`spawn`], leading its own process group.
pub struct Spawned {
    child: tokio::process::Child,
    pgid: i32,
}

impl Supervised for Spawned {
    async fn wait(&mut self) -> io::Result<i32> {
        self.child.wait().await.map(exit_code)
    }

    fn kill(&mut self) {
        kill_group(self.pgid);
    }
}

/// Reads a started process's outputs line by line into `on_line`, under
/// `guard`'s deadline and cancel and the run's bounds (`breach` resolves
/// when one is passed); kills it when it exits or is stopped.
pub async fn supervise<C, B, F, Fut>(
    mut child: C,
    outputs: Vec<(Channel, Output)>,
    guard: Guard,
    breach: B,
    mut on_line: F,
) -> Result<i32, ProcessError>
where
    C: Supervised,
    B: Future<Output = Breach>,
    F: FnMut(Channel, String) -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::pin!(breach);
    let (tx, mut rx) = mpsc::channel(256);
    let mut readers = tokio::task::JoinSet::new();
    for (channel, output) in outputs {
        readers.spawn(read_lines(output, channel, tx.clone()));
    }
    drop(tx);

    let deadline = tokio::time::sleep(guard.timeout);
    tokio::pin!(deadline);
    let mut lines_open = true;
    let outcome = loop {
        tokio::select! {
            // A full event sink slows delivery down, but never holds off a
            // cancel or the deadline: those are polled beside it.
            line = rx.recv(), if lines_open => match line {
                Some((channel, line)) => tokio::select! {
                    _ = on_line(channel, line) => {}
                    _ = &mut deadline => break Err(ProcessError::Timeout(guard.timeout)),
                    _ = guard.cancel.cancelled() => break Err(ProcessError::Cancelled),
                    passed = &mut breach => break Err(ProcessError::Breach(passed)),
                },
                None => lines_open = false,
            },
            status = child.wait() => break status.map_err(ProcessError::from),
            _ = &mut deadline => break Err(ProcessError::Timeout(guard.timeout)),
            _ = guard.cancel.cancelled() => break Err(ProcessError::Cancelled),
            passed = &mut breach => break Err(ProcessError::Breach(passed)),
        }
    };
    child.kill();
    let _ = child.wait().await;
    // Pipes close once every process holding them is gone; a process that
    // escaped the group could hold them open, so draining is bounded.
    let drain = async {
        while let Some((channel, line)) = rx.recv().await {
            on_line(channel, line).await;
        }
    };
    // After a stop, what is left unread is dropped rather than waited for.
    let drain_for = if outcome.is_ok() {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(200)
    };
    if tokio::time::timeout(drain_for, drain).await.is_err() {
        readers.abort_all();
    }
    outcome
}

/// A pipe whose write end the child sees as fd 3.
fn events_pipe_for(cmd: &mut Command) -> io::Result<(OwnedFd, OwnedFd)> {
    let (reader, writer) = io::pipe()?;
    let (reader, writer) = (OwnedFd::from(reader), high(OwnedFd::from(writer))?);
    let fd = writer.as_raw_fd();
    // SAFETY: `place_fd` makes only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || place_fd(fd, EVENTS_FD));
    }
    Ok((reader, writer))
}

/// `fd` moved to a number no [`place_fd`] target uses (a child's fds 3–9).
pub fn high(fd: OwnedFd) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 64)?)
}

/// In a child between fork and exec: makes `fd` available as `target`
/// across exec. Async-signal-safe (dup2, fcntl). Callers keep their
/// sources out of the way of other targets (Rust opens them high).
pub fn place_fd(fd: std::os::fd::RawFd, target: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: dup2/fcntl on descriptors that exist in the child.
    unsafe {
        if fd == target {
            // dup2 onto itself keeps close-on-exec; clear it instead.
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
        } else if libc::dup2(fd, target) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What a process that failed at once wrote (its last lines, read for a
/// short while): for the message of a start that went wrong.
pub async fn first_lines(outputs: &mut [(Channel, Output)]) -> String {
    let mut text = Vec::new();
    for (channel, output) in outputs.iter_mut() {
        if *channel == Channel::Events {
            continue;
        }
        let mut read = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_millis(300), output.read_to_end(&mut read)).await;
        text.extend(read);
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Kills a whole process group; a group that is already gone is fine.
pub fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals the group; no memory is touched.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Splits a stream into lines of at most [`MAX_LINE_BYTES`] (lossy UTF-8).
async fn read_lines(
    mut reader: impl AsyncRead + Unpin,
    channel: Channel,
    tx: mpsc::Sender<(Channel, String)>,
) {
    let mut buf = vec![0u8; 8192];
    let mut line = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_owned();
                if tx.send((channel, text)).await.is_err() {
                    return;
                }
                line.clear();
            } else if line.len() < MAX_LINE_BYTES {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        let _ = tx
            .send((channel, String::from_utf8_lossy(&line).into_owned()))
            .await;
    }
}

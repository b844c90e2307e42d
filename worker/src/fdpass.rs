//! Messages with file descriptors over `SOCK_SEQPACKET` sockets: the
//! worker's links to a warm engine, to each forked run, and to the init of
//! a spawned sandbox (its area). One `sendmsg`/`recvmsg` per message, so
//! message boundaries hold; descriptors ride along as `SCM_RIGHTS`, and on
//! a socket with `SO_PASSCRED` the kernel adds the sender's pid, translated
//! into the worker's PID namespace (a sandbox cannot lie about it).

use rustix::fd::{AsFd as _, BorrowedFd, OwnedFd};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use std::io;
use std::mem::MaybeUninit;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Most descriptors one message carries.
pub const MAX_FDS: usize = 64;

/// A connected pair: ours (non-blocking, for tokio) and the peer's end.
/// Both are close-on-exec; the peer's is passed on explicitly.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::io::ioctl_fionbio(&ours, true)?;
    Ok((ours, theirs))
}

/// Asks the kernel to add the sender's credentials to what `socket` receives.
pub fn pass_credentials(socket: &OwnedFd) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_passcred(socket, true)?)
}

/// Registers a descriptor of ours (a socket end, a pidfd) with the runtime.
pub fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd keeps its descriptor open and unchanged for as long
    // as it lives, which is the AsyncFd's lifetime.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Sends one message with `fds` attached.
pub async fn send(
    socket: &AsyncFd<OwnedFd>,
    message: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS, "too many descriptors for one message");
    socket
        .async_io(Interest::WRITABLE, |fd| {
            let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() {
                control.push(SendAncillaryMessage::ScmRights(fds));
            }
            let iov = [io::IoSlice::new(message)];
            let sent = rustix::net::sendmsg(fd, &iov, &mut control, SendFlags::NOSIGNAL)?;
            if sent != message.len() {
                return Err(io::Error::other("a message was cut short"));
            }
            Ok(())
        })
        .await
}

/// One message received: its length in the buffer, the descriptors that
/// came with it, and the sender's pid when the socket passes credentials.
#[derive(Debug, Default)]
pub struct Message {
    /// Bytes of the message (0: the peer hung up).
    pub len: usize,
    /// Descriptors sent along (close-on-exec).
    pub fds: Vec<OwnedFd>,
    /// The sending process, in the worker's PID namespace.
    pub pid: Option<i32>,
}

/// Receives one message into `buf`.
pub async fn recv(socket: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<Message> {
    socket
        .async_io(Interest::READABLE, |fd| recv_now(fd.as_fd(), buf))
        .await
}

fn recv_now(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Message> {
    let mut space =
        vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS), ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let got = rustix::net::recvmsg(fd, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut message = Message {
        len: got.bytes,
        ..Message::default()
    };
    for part in control.drain() {
        match part {
            RecvAncillaryMessage::ScmRights(fds) => message.fds.extend(fds),
            RecvAncillaryMessage::ScmCredentials(cred) => {
                message.pid = Some(cred.pid.as_raw_nonzero().get());
            }
            _ => {}
        }
    }
    Ok(message)
}

/// A pipe whose read end is ours (for tokio) and write end is for the peer.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (reader, writer) = io::pipe()?;
    Ok((OwnedFd::from(reader), OwnedFd::from(writer)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    #[tokio::test]
    async fn a_message_its_descriptors_and_its_senders_pid_arrive_together() {
        let (ours, theirs) = seqpacket_pair().unwrap();
        pass_credentials(&ours).unwrap();
        let ours = register(ours).unwrap();
        let (reader, writer) = pipe().unwrap();
        // The peer sends from a blocking socket, as a sandboxed process would.
        let iov = [io::IoSlice::new(b"hello")];
        let fds = [writer.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(&theirs, &iov, &mut control, SendFlags::empty()).unwrap();
        drop(writer);
        let mut buf = [0u8; 16];
        let mut got = recv(&ours, &mut buf).await.unwrap();
        assert_eq!(&buf[..got.len], b"hello");
        assert_eq!(got.pid, Some(std::process::id() as i32));
        std::fs::File::from(got.fds.pop().unwrap())
            .write_all(b"through")
            .unwrap();
        let mut out = String::new();
        std::fs::File::from(reader)
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "through");
        drop(theirs);
        assert_eq!(
            recv(&ours, &mut buf).await.unwrap().len,
            0,
            "a hang-up reads as empty"
        );
    }
}

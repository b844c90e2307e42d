//! Messages with file descriptors over a `SOCK_SEQPACKET` socket (the
//! worker's link to a warm engine): one `sendmsg`/`recvmsg` per message, so
//! message boundaries hold, and descriptors ride along as `SCM_RIGHTS`.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Most descriptors one message carries.
pub const MAX_FDS: usize = 64;

/// A connected `SOCK_SEQPACKET` pair: ours (non-blocking) and the peer's end.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds` on success.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_nonblocking(ours.as_raw_fd())?;
    Ok((ours, theirs))
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Registers our end of a pair with the runtime.
pub fn register(socket: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd keeps its descriptor open and unchanged for as long
    // as it lives, which is the AsyncFd's lifetime.
    unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)
}

/// Sends one message with `fds` attached.
pub async fn send(socket: &AsyncFd<OwnedFd>, message: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS, "too many descriptors for one message");
    socket
        .async_io(Interest::WRITABLE, |fd| {
            send_now(fd.as_raw_fd(), message, fds)
        })
        .await
}

fn send_now(fd: RawFd, message: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: message.as_ptr() as *mut libc::c_void,
        iov_len: message.len(),
    };
    let payload = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u8; if fds.is_empty() { 0 } else { space }];
    // SAFETY: zeroed msghdr is a valid empty header; every pointer we set
    // points into `iov`/`control`, which outlive the sendmsg call.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = control.len() as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr() as *const u8,
                libc::CMSG_DATA(cmsg),
                payload as usize,
            );
        }
        let sent = libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL);
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != message.len() {
            return Err(io::Error::other("a message was cut short"));
        }
    }
    Ok(())
}

/// Receives one message (descriptors sent along, if any, are closed);
/// an empty message means the peer hung up.
pub async fn recv(socket: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    socket
        .async_io(Interest::READABLE, |fd| {
            // SAFETY: recv into a buffer we own, of its length.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_CMSG_CLOEXEC,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })
        .await
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
    async fn a_message_and_its_descriptors_arrive_together() {
        let (ours, theirs) = seqpacket_pair().unwrap();
        let ours = register(ours).unwrap();
        set_nonblocking(theirs.as_raw_fd()).unwrap();
        let theirs = register(theirs).unwrap();
        let (reader, writer) = pipe().unwrap();
        send(&ours, b"hello", &[writer.as_raw_fd()]).await.unwrap();
        drop(writer);
        // The peer side: receive with the descriptor and write through it.
        let fd = theirs.get_ref().as_raw_fd();
        let mut buf = [0u8; 16];
        let mut control = vec![0u8; 64];
        let received = theirs
            .async_io(Interest::READABLE, |_| {
                // SAFETY: a recvmsg into buffers we own; the fd comes back as SCM_RIGHTS.
                unsafe {
                    let mut iov = libc::iovec {
                        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                        iov_len: buf.len(),
                    };
                    let mut msg: libc::msghdr = std::mem::zeroed();
                    msg.msg_iov = &mut iov;
                    msg.msg_iovlen = 1;
                    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
                    msg.msg_controllen = control.len() as _;
                    let n = libc::recvmsg(fd, &mut msg, 0);
                    if n < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let cmsg = libc::CMSG_FIRSTHDR(&msg);
                    let mut passed: RawFd = -1;
                    std::ptr::copy_nonoverlapping(
                        libc::CMSG_DATA(cmsg),
                        &mut passed as *mut RawFd as *mut u8,
                        4,
                    );
                    Ok((n as usize, OwnedFd::from_raw_fd(passed)))
                }
            })
            .await
            .unwrap();
        assert_eq!(&buf[..received.0], b"hello");
        std::fs::File::from(received.1)
            .write_all(b"through")
            .unwrap();
        let mut out = String::new();
        std::fs::File::from(reader)
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "through");
        drop(theirs);
        let mut buf = [0u8; 4];
        assert_eq!(
            recv(&ours, &mut buf).await.unwrap(),
            0,
            "a hang-up reads as empty"
        );
    }
}

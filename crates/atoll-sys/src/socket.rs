//! sendmsg/recvmsg with one fd in SCM_RIGHTS, on rustix's ancillary buffers: a received fd comes
//! back as an `OwnedFd` (the kernel has just installed it for this call alone), so no code here
//! needs `unsafe`. Kept in one place because the protocol, the console socket, the seccomp
//! listener and the guard all pass fds the same way.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Room for the control data of up to this many fds: a peer that sends more gets the extras
/// closed (or truncated by the kernel, MSG_CTRUNC), never leaked into our table.
const MAX_FDS: usize = 8;

/// sendmsg(2) `data` with `fd` (if any) attached as SCM_RIGHTS. MSG_NOSIGNAL: a dead peer is EPIPE.
pub fn send_with_fd(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<usize> {
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::from(Errno::NOBUFS));
    }
    rustix::net::sendmsg(
        sock,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(io::Error::from)
}

/// recvmsg(2) into `buf`, taking ownership of every fd received (close-on-exec); returns the byte
/// count and the first fd (extra fds are closed). 0 bytes means the peer closed.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let n = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg.bytes,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut first = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for fd in fds {
                // Dropping the others closes them.
                first.get_or_insert(fd);
            }
        }
    }
    Ok((n, first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream;

    #[test]
    fn an_fd_crosses_a_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(
            send_with_fd(a.as_fd(), b"hi", Some(file.as_fd())).unwrap(),
            2
        );
        let mut buf = [0u8; 8];
        let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        let got = std::fs::File::from(fd.expect("the fd came in SCM_RIGHTS"));
        assert_eq!(
            got.metadata().unwrap().ino(),
            file.metadata().unwrap().ino()
        );
        let flags = rustix::io::fcntl_getfd(&got).unwrap();
        assert!(
            flags.contains(rustix::io::FdFlags::CLOEXEC),
            "received fd is CLOEXEC"
        );

        assert_eq!(send_with_fd(a.as_fd(), b"no fd", None).unwrap(), 5);
        let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!((n, fd.is_none()), (5, true));

        drop(a);
        assert_eq!(recv_with_fd(b.as_fd(), &mut buf).unwrap().0, 0, "EOF");
    }

    #[test]
    fn a_dead_peer_is_epipe_not_sigpipe() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let e = send_with_fd(a.as_fd(), b"x", None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    }
}

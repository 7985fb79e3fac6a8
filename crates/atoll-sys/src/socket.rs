//! sendmsg/recvmsg with one fd in SCM_RIGHTS, returning an `OwnedFd`: the ownership of a received fd
//! can only be established here, where the kernel has just installed it.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

const SPACE: usize = 64; // CMSG_SPACE for a handful of ints, rounded up

#[repr(C, align(8))]
struct CmsgBuf([u8; SPACE]);

/// sendmsg(2) `data` with `fd` (if any) attached as SCM_RIGHTS. MSG_NOSIGNAL: a dead peer is EPIPE.
pub fn send_with_fd(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cbuf = CmsgBuf([0; SPACE]);
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic; the buffer is SPACE bytes, larger than
        // CMSG_SPACE(sizeof(int)), aligned for cmsghdr, and lives until sendmsg returns.
        unsafe {
            msg.msg_control = cbuf.0.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd.as_raw_fd());
        }
    }
    // SAFETY: `msg` points at `iov` and `cbuf`, both alive for the call; `data` outlives it; the
    // borrowed fds stay open for the duration of the borrow.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// recvmsg(2) into `buf`, taking ownership of every fd received (close-on-exec); returns the byte
/// count and the first fd (extra fds are closed). 0 bytes means the peer closed.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf([0; SPACE]);
    // SAFETY: as above, a zeroed msghdr is valid; we then point it at live buffers.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = SPACE;
    let n = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `cbuf`, alive and exclusively ours for
        // the call; the kernel writes at most the lengths we gave it.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break n as usize;
    };
    let mut first = None;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of well-formed cmsgs; we only
    // walk them with the CMSG_* macros. Each SCM_RIGHTS int is a fd the kernel just installed in our
    // table for this call alone, so taking ownership of it (once) is sound.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                for i in 0..count {
                    let fd = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                    if first.is_none() {
                        first = Some(fd);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, first))
}

//! Netlink socket options (SOL_NETLINK) that rustix does not wrap: NETLINK_CAP_ACK and
//! NETLINK_EXT_ACK, which make the kernel's ACKs small and its NACKs carry a message.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `NETLINK_EXT_ACK` (linux/netlink.h): NACKs carry NLMSGERR_ATTR_MSG, the kernel's reason text.
pub const NETLINK_EXT_ACK: i32 = 11;
/// `NETLINK_CAP_ACK` (linux/netlink.h): an ACK/NACK echoes only the request header, not its payload.
pub const NETLINK_CAP_ACK: i32 = 10;

/// setsockopt(2) `SOL_NETLINK`/`opt` to the boolean `on`.
pub fn setsockopt_netlink_bool(sock: BorrowedFd<'_>, opt: i32, on: bool) -> io::Result<()> {
    let val: libc::c_int = on.into();
    // SAFETY: `sock` is a borrowed, open fd for the duration of the call; `val` is a c_int on our
    // stack that outlives the call, and the length passed is exactly its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_NETLINK,
            opt,
            (&val as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

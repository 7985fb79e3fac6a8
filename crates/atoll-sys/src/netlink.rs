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

/// `ip link set lo up` in the calling thread's network namespace, as one RTM_NEWLINK on a
/// NETLINK_ROUTE socket: lo is always ifindex 1 (LOOPBACK_IFINDEX) and `ifi_change` = IFF_UP
/// touches that flag only. Four syscalls and no allocation, for the container's init, which
/// brings up lo in a netns it made (runc does the same); atoll-net's typed netlink socket is
/// for everything else. The message is built by hand (rtnetlink(7)): nlmsghdr, then ifinfomsg.
pub fn set_loopback_up() -> io::Result<()> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
    const NLMSG_HDRLEN: usize = 16;
    const LEN: usize = NLMSG_HDRLEN + 16;
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        rustix::net::SocketFlags::CLOEXEC,
        None, // NETLINK_ROUTE
    )?;
    let mut msg = [0u8; LEN];
    msg[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
                                                     // ifinfomsg: family AF_UNSPEC, pad, type 0 (bytes 16..20), then index, flags, change.
    msg[20..24].copy_from_slice(&1i32.to_ne_bytes());
    let up = libc::IFF_UP as u32;
    msg[24..28].copy_from_slice(&up.to_ne_bytes());
    msg[28..32].copy_from_slice(&up.to_ne_bytes());
    rustix::net::send(&sock, &msg, SendFlags::empty())?;
    // rtnetlink handles the request inside send(); the ACK (an NLMSG_ERROR whose error is 0, or
    // -errno) is already queued.
    let mut ack = [0u8; 64];
    let (n, _) = rustix::net::recv(&sock, &mut ack, RecvFlags::empty())?;
    if n < NLMSG_HDRLEN + 4 || u16::from_ne_bytes([ack[4], ack[5]]) != libc::NLMSG_ERROR as u16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "RTM_NEWLINK lo: the kernel's answer is not an ACK",
        ));
    }
    let err = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
    if err != 0 {
        return Err(io::Error::from_raw_os_error(-err));
    }
    Ok(())
}

//! The nsfs ioctls (ioctl_ns(2)) and constants: what the guard needs to look at a namespace fd it
//! took from another process's fd table (rustix's pidfd_open/pidfd_getfd), without trusting that
//! process. rustix has no wrapper for these ioctls.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// PIDFD_THREAD (Linux 6.9, = O_EXCL): a pidfd for one thread rather than a thread-group leader.
/// rustix's PidfdFlags does not name it yet; pass it with `PidfdFlags::from_bits_retain`.
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

// include/uapi/linux/nsfs.h: NSIO is 0xb7; all four are _IO(NSIO, n) = (0xb7 << 8) | n.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
const NS_GET_PARENT: libc::c_ulong = 0xb702;
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// fstatfs(2) f_type of a namespace file (NSFS_MAGIC, include/uapi/linux/magic.h).
pub const NSFS_MAGIC: u64 = 0x6e73_6673;

/// An ioctl that returns a new fd (NS_GET_USERNS, NS_GET_PARENT).
fn ns_fd_ioctl(ns: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<OwnedFd> {
    // SAFETY: these requests take no argument; the kernel returns a new O_CLOEXEC fd for a
    // namespace, installed for this call only, so we are its owner.
    let ret = unsafe { libc::ioctl(ns.as_raw_fd(), request) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// ioctl(NS_GET_USERNS): the user namespace that owns namespace `ns` (for a user namespace:
/// its parent). EPERM when that owner is outside the caller's user namespace.
pub fn ns_get_userns(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    ns_fd_ioctl(ns, NS_GET_USERNS)
}

/// ioctl(NS_GET_PARENT): the parent of a hierarchical (user or pid) namespace. EPERM at the
/// top of what the caller can see; EINVAL for a non-hierarchical type.
pub fn ns_get_parent(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    ns_fd_ioctl(ns, NS_GET_PARENT)
}

/// ioctl(NS_GET_NSTYPE): the CLONE_NEW* flag of the namespace `ns` refers to.
pub fn ns_get_nstype(ns: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: no argument; the return value is the type, no fd is created.
    let ret = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_NSTYPE) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// ioctl(NS_GET_OWNER_UID): the uid (in the caller's user namespace) of the creator of the
/// user namespace `ns`. EINVAL if `ns` is not a user namespace.
pub fn ns_get_owner_uid(ns: BorrowedFd<'_>) -> io::Result<u32> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: the kernel writes one uid_t through the pointer, which points at our local.
    let ret = unsafe {
        libc::ioctl(
            ns.as_raw_fd(),
            NS_GET_OWNER_UID,
            &mut uid as *mut libc::uid_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn open(p: &str) -> std::fs::File {
        std::fs::File::open(p).unwrap()
    }

    #[test]
    fn nstype_of_our_own_namespaces() {
        let net = open("/proc/self/ns/net");
        assert_eq!(ns_get_nstype(net.as_fd()).unwrap(), libc::CLONE_NEWNET);
        let user = open("/proc/self/ns/user");
        assert_eq!(ns_get_nstype(user.as_fd()).unwrap(), libc::CLONE_NEWUSER);
        let mnt = open("/proc/self/ns/mnt");
        assert_eq!(ns_get_nstype(mnt.as_fd()).unwrap(), libc::CLONE_NEWNS);
    }

    #[test]
    fn owner_of_a_namespace_is_a_user_namespace() {
        use std::os::unix::fs::MetadataExt;
        let net = open("/proc/self/ns/net");
        let owner = std::fs::File::from(ns_get_userns(net.as_fd()).unwrap());
        assert_eq!(ns_get_nstype(owner.as_fd()).unwrap(), libc::CLONE_NEWUSER);
        let ours = open("/proc/self/ns/user").metadata().unwrap();
        let got = owner.metadata().unwrap();
        assert_eq!((got.dev(), got.ino()), (ours.dev(), ours.ino()));
        assert!(ns_get_owner_uid(owner.as_fd()).is_ok());
        assert!(ns_get_owner_uid(net.as_fd()).is_err(), "not a user ns");
        assert!(
            ns_get_parent(net.as_fd()).is_err(),
            "net is not hierarchical"
        );
    }

    #[test]
    fn ioctls_on_a_plain_file_fail() {
        let f = open("/dev/null");
        assert!(ns_get_nstype(f.as_fd()).is_err());
        assert!(ns_get_userns(f.as_fd()).is_err());
    }
}

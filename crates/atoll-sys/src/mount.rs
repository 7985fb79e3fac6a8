//! mount_setattr(2): change flags, propagation and the id mapping of a detached or attached mount
//! tree by fd. rustix does not wrap it yet.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub const MOUNT_ATTR__ATIME: u64 = 0x0000_0070;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// The attributes to set and clear, and an optional propagation type (MS_PRIVATE, MS_SLAVE,
/// MS_SHARED, MS_UNBINDABLE) and user namespace for MOUNT_ATTR_IDMAP.
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr<'a> {
    pub set: u64,
    pub clr: u64,
    pub propagation: u64,
    pub userns: Option<BorrowedFd<'a>>,
}

#[repr(C)]
struct RawMountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(dfd, "", AT_EMPTY_PATH [| AT_RECURSIVE], attr): applies to the mount that `dfd`
/// refers to (an open_tree/fsmount fd or an O_PATH fd of a mount point).
pub fn mount_setattr(dfd: BorrowedFd<'_>, recursive: bool, attr: &MountAttr<'_>) -> io::Result<()> {
    let raw = RawMountAttr {
        attr_set: attr.set,
        attr_clr: attr.clr,
        propagation: attr.propagation,
        userns_fd: attr.userns.map(|fd| fd.as_raw_fd() as u64).unwrap_or(0),
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the path is a static empty C string, `raw` lives on our stack for the whole call and
    // its size is passed with it; `dfd` (and the userns fd) are borrowed, so they stay open.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dfd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &raw as *const RawMountAttr,
            std::mem::size_of::<RawMountAttr>(),
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

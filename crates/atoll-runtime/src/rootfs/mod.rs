//! The container's file view. The spec becomes a [`MountPlan`] first (plain data, built without
//! a syscall, unit-tested without root); the init then carries it out against a [`Rootfs`]:
//! mounts in config order (apply), device nodes, and after the createContainer hooks the masked
//! and read-only paths. Every path is resolved inside the rootfs by the kernel (openat2
//! RESOLVE_IN_ROOT, or pathrs where openat2 is missing) and every mount is attached by fd.
//!
//! Parts: options (option strings → attributes), plan (spec → ops and device nodes), resolve
//! (paths in the rootfs), apply (mounts), prepared (detached bind mounts and their attributes,
//! also the parent's), devices (/dev), mask (masked and read-only paths), error (MountError).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use pathrs::Root;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{mount_change, move_mount, MountPropagationFlags, MoveMountFlags};

mod apply;
mod devices;
mod error;
mod mask;
mod options;
mod plan;
mod prepared;
mod resolve;

pub use apply::MountCtx;
pub use error::MountError;
pub use options::{parse_options, Options};
pub use plan::{
    all_devices, configured_access, Device, DevicePlan, Idmap, IdmapUserns, MountKind, MountOp,
    MountPlan,
};
pub use prepared::{prepare_for_init, PreparedMounts, UsernsFor};

/// With linux.rootfsPropagation shared, "/" is made rshared (not rslave) so that the container's
/// copies of the host's mounts stay in the host's peer groups and a mount made under an rshared
/// bind reaches the host. pivot_root(2) refuses a new root whose parent mount is shared (EINVAL),
/// so the mount holding the rootfs is made private instead, as runc does; the rootfs bind made
/// from it next is then private too.
pub fn make_rootfs_parent_private(rootfs: &Path) -> Result<(), MountError> {
    let fail = |call| {
        move |errno| MountError::RootfsParent {
            path: rootfs.to_path_buf(),
            call,
            errno,
        }
    };
    let real = std::fs::canonicalize(rootfs).map_err(|e| fail("realpath")(error::io_errno(&e)))?;
    for dir in real.ancestors() {
        match mount_change(dir, MountPropagationFlags::PRIVATE) {
            Ok(()) => return Ok(()),
            // mount(2) EINVAL for a propagation change: not a mount point; the mount holding
            // it is further up.
            Err(Errno::INVAL) => continue,
            Err(errno) => return Err(fail("mount MS_PRIVATE")(errno)),
        }
    }
    Err(fail("mount MS_PRIVATE (no mount point above it)")(
        Errno::INVAL,
    ))
}

/// The rootfs, opened as a pathrs root: every path below is resolved with RESOLVE_IN_ROOT.
pub struct Rootfs {
    pub root: Root,
    /// The host's /dev/null, opened (and checked to be 1:3) before anything in the image is
    /// touched: masks bind this inode, never the image's /dev/null (CVE-2025-31133).
    dev_null: OwnedFd,
}

impl Rootfs {
    pub fn open(path: &Path) -> Result<Rootfs, MountError> {
        let root = Root::open(path).map_err(|cause| MountError::OpenRootfs {
            path: path.to_path_buf(),
            cause,
        })?;
        let fail = |call| move |errno| MountError::HostDevNull { call, errno };
        let dev_null = rustix::fs::open(
            "/dev/null",
            OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(fail("open"))?;
        let st = rustix::fs::fstat(&dev_null).map_err(fail("fstat"))?;
        let is_chr = FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice;
        if !is_chr || rustix::fs::major(st.st_rdev) != 1 || rustix::fs::minor(st.st_rdev) != 3 {
            return Err(MountError::HostDevNullNotNull);
        }
        Ok(Rootfs { root, dev_null })
    }

    /// Attach the detached mount `mnt` at `target` (both fds).
    fn attach(&self, mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> rustix::io::Result<()> {
        move_mount(
            mnt,
            "",
            target,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
    }
}

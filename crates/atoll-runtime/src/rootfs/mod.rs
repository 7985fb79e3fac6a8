//! The container's file view. Mount options are parsed into plain data first (unit-tested without
//! root); `apply` then mounts each one *by fd*: the target is resolved inside the rootfs with
//! openat2(RESOLVE_IN_ROOT) (pathrs) and the new mount is attached with move_mount(2) onto that fd,
//! so a symlink planted in the image can never send a mount outside the rootfs (CVE-2021-30465).

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use std::path::{Path, PathBuf};

use atoll_sys::mount::{self as sysm, MountAttr};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use pathrs::flags::OpenFlags;
use pathrs::{InodeType, Root};
use rustix::fs::{Mode, RawMode};
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    open_tree, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;

use crate::error::{errno, Result, RuntimeError};

mod apply;
mod devices;
mod mask;
mod options;
mod prepared;
mod resolve;

pub use devices::{all_devices, default_devices};
pub use options::{parse_options, Options};
pub use prepared::bind_mount_fd;

/// The rootfs, opened as a pathrs root: every path below is resolved with RESOLVE_IN_ROOT.
pub struct Rootfs {
    pub root: Root,
    pub path: PathBuf,
    /// The host's /dev/null, opened (and checked to be 1:3) before anything in the image is
    /// touched: masks bind this inode, never the image's /dev/null (CVE-2025-31133).
    dev_null: OwnedFd,
}

pub(super) fn pathrs_err(op: String) -> impl FnOnce(pathrs::error::Error) -> RuntimeError {
    move |e| RuntimeError::Sys {
        op,
        source: std::io::Error::other(e.to_string()),
    }
}

impl Rootfs {
    pub fn open(path: &Path) -> Result<Rootfs> {
        let root =
            Root::open(path).map_err(pathrs_err(format!("open rootfs {}", path.display())))?;
        let dev_null = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(errno("open host /dev/null"))?;
        let st = rustix::fs::fstat(&dev_null).map_err(errno("fstat host /dev/null"))?;
        let is_chr = rustix::fs::FileType::from_raw_mode(st.st_mode)
            == rustix::fs::FileType::CharacterDevice;
        if !is_chr || rustix::fs::major(st.st_rdev) != 1 || rustix::fs::minor(st.st_rdev) != 3 {
            return Err(RuntimeError::Other(
                "host /dev/null is not the character device 1:3".into(),
            ));
        }
        Ok(Rootfs {
            root,
            path: path.to_path_buf(),
            dev_null,
        })
    }

    /// Look `path` up inside the rootfs: an O_PATH fd, or None if it does not exist (ENOENT, or
    /// ENOTDIR: a component on the way is not a directory).
    ///
    /// This is the resolution pathrs itself uses on kernels with openat2: one openat2 with
    /// RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, so the kernel keeps every component, `..` and
    /// symlink inside the root. It is called directly where a miss is expected (masked and
    /// read-only paths, mount points still to be made) because pathrs builds every error by
    /// reading the root's path back through /proc: eight more syscalls per miss, about 70 per
    /// container. EAGAIN (a rename or mount raced the walk) is retried; a kernel without
    /// openat2 falls back to pathrs' own resolver.

    /// Attach the detached mount `mnt` at `target` (both fds).
    pub(super) fn attach(
        &self,
        mnt: BorrowedFd<'_>,
        target: BorrowedFd<'_>,
        what: &str,
    ) -> Result<()> {
        move_mount(
            mnt,
            "",
            target,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(errno(format!("move_mount {what}")))
    }

    /// Open a path in the rootfs for reading or writing (used for /dev/pts/ptmx).
    pub fn open_in(&self, p: &str, flags: OpenFlags) -> Result<std::fs::File> {
        let h = self
            .root
            .resolve(p)
            .map_err(pathrs_err(format!("resolve {p} in the rootfs")))?;
        h.reopen(flags)
            .map_err(pathrs_err(format!("open {p} in the rootfs")))
    }
}

pub(super) fn is_eperm(e: &RuntimeError) -> bool {
    matches!(e, RuntimeError::Sys { source, .. } if source.raw_os_error() == Some(libc::EPERM))
}

/// What `Rootfs::mount` needs beyond the mount itself.
pub struct MountCtx<'a> {
    pub bundle: &'a Path,
    pub cgroup_hierarchies: &'a [atoll_cgroups::Hierarchy],
    pub cgroupns: bool,
    /// The container's user namespace (for idmap mounts without their own mappings).
    pub userns: Option<BorrowedFd<'a>>,
    pub make_userns: &'a dyn Fn(&Mount) -> Result<OwnedFd>,
    /// Ask the parent for a ready idmapped bind mount of config mount `i` (user namespaces).
    pub from_parent: Option<&'a dyn Fn(usize) -> Result<OwnedFd>>,
}

impl MountCtx<'_> {
    pub(super) fn idmap_userns(&self, m: &Mount) -> Result<OwnedFd> {
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return (self.make_userns)(m);
        }
        match self.userns {
            Some(fd) => fd.try_clone_to_owned().map_err(|e| RuntimeError::Sys {
                op: "dup userns fd".into(),
                source: e,
            }),
            None => Err(RuntimeError::Field {
                field: format!("mounts ({})", m.destination().display()),
                msg: "idmap needs uidMappings/gidMappings on the mount or a user namespace".into(),
            }),
        }
    }
}

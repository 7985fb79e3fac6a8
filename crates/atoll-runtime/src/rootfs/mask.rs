//! linux.maskedPaths and linux.readonlyPaths: hide what the container must not read, freeze what
//! it must not write. A path the image lacks is skipped (runtime-spec); one that cannot be
//! resolved is an error naming it, never a path left visible.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use atoll_sys::mount::{self as sysm, MountAttr};
use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, open_tree, FsMountFlags, FsOpenFlags,
    MountAttrFlags, OpenTreeFlags,
};

use super::error::io_errno;
use super::{MountError, Rootfs};

impl Rootfs {
    /// Bind the host's /dev/null inode over files, an empty read-only tmpfs over directories.
    pub fn mask(&self, paths: &[String]) -> Result<(), MountError> {
        for p in paths {
            let fail = |call| {
                move |errno| MountError::Mask {
                    path: p.clone(),
                    call,
                    errno,
                }
            };
            let Some(target) = self.lookup_listed(p, fail)? else {
                continue;
            };
            let st = rustix::fs::fstat(&target).map_err(fail("fstat"))?;
            let mnt = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let fs =
                    fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(fail("fsopen tmpfs"))?;
                fsconfig_set_string(&fs, "size", "0").map_err(fail("fsconfig size=0"))?;
                fsconfig_create(&fs).map_err(fail("fsconfig create"))?;
                fsmount(
                    &fs,
                    FsMountFlags::FSMOUNT_CLOEXEC,
                    MountAttrFlags::MOUNT_ATTR_RDONLY,
                )
                .map_err(fail("fsmount tmpfs"))?
            } else {
                open_tree(
                    &self.dev_null,
                    "",
                    OpenTreeFlags::OPEN_TREE_CLONE
                        | OpenTreeFlags::OPEN_TREE_CLOEXEC
                        | OpenTreeFlags::AT_EMPTY_PATH,
                )
                .map_err(fail("open_tree the host's /dev/null"))?
            };
            self.attach(mnt.as_fd(), target.as_fd())
                .map_err(fail("move_mount"))?;
        }
        Ok(())
    }

    /// Clone the mount at each path and set it read-only (recursively), nosuid, nodev, noexec.
    pub fn readonly(&self, paths: &[String]) -> Result<(), MountError> {
        for p in paths {
            let fail = |call| {
                move |errno| MountError::Readonly {
                    path: p.clone(),
                    call,
                    errno,
                }
            };
            let Some(target) = self.lookup_listed(p, fail)? else {
                continue;
            };
            let mnt = open_tree(
                &target,
                "",
                OpenTreeFlags::OPEN_TREE_CLONE
                    | OpenTreeFlags::OPEN_TREE_CLOEXEC
                    | OpenTreeFlags::AT_EMPTY_PATH
                    | OpenTreeFlags::AT_RECURSIVE,
            )
            .map_err(fail("open_tree"))?;
            let ro = MountAttr {
                set: sysm::MOUNT_ATTR_RDONLY
                    | sysm::MOUNT_ATTR_NOSUID
                    | sysm::MOUNT_ATTR_NODEV
                    | sysm::MOUNT_ATTR_NOEXEC,
                ..Default::default()
            };
            sysm::mount_setattr(mnt.as_fd(), true, &ro)
                .map_err(|e| fail("mount_setattr")(io_errno(&e)))?;
            self.attach(mnt.as_fd(), target.as_fd())
                .map_err(fail("move_mount"))?;
        }
        Ok(())
    }

    /// Resolve one maskedPaths/readonlyPaths entry: None when the image lacks it (runtime-spec
    /// skips it); a path that cannot be resolved is that list's error (`fail`), naming it.
    fn lookup_listed<F>(
        &self,
        p: &str,
        fail: impl Fn(&'static str) -> F,
    ) -> Result<Option<OwnedFd>, MountError>
    where
        F: FnOnce(Errno) -> MountError,
    {
        match self.lookup(Path::new(p), true) {
            Err(MountError::InRootfs { call, errno, .. }) => Err(fail(call)(errno)),
            other => other,
        }
    }
}

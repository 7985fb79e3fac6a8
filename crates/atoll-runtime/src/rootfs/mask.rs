//! Masks.

use super::*;

impl Rootfs {
    /// directories. A path that does not exist is skipped (runtime-spec).
    pub fn mask(&self, paths: &[String]) -> Result<()> {
        for p in paths {
            // A path the image lacks is skipped (runtime-spec); any other error is one: a path
            // the config asks to hide must not stay visible quietly.
            let Some(target) = self.lookup(Path::new(p), true)? else {
                continue;
            };
            let st = rustix::fs::fstat(&target).map_err(errno(format!("fstat masked path {p}")))?;
            let mnt = if rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::Directory
            {
                let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)
                    .map_err(errno(format!("fsopen tmpfs to mask {p}")))?;
                fsconfig_set_string(&fs, "size", "0").map_err(errno("fsconfig size=0"))?;
                fsconfig_create(&fs).map_err(errno(format!("fsconfig create to mask {p}")))?;
                fsmount(
                    &fs,
                    FsMountFlags::FSMOUNT_CLOEXEC,
                    MountAttrFlags::MOUNT_ATTR_RDONLY,
                )
                .map_err(errno(format!("fsmount tmpfs to mask {p}")))?
            } else {
                open_tree(
                    &self.dev_null,
                    "",
                    OpenTreeFlags::OPEN_TREE_CLONE
                        | OpenTreeFlags::OPEN_TREE_CLOEXEC
                        | OpenTreeFlags::AT_EMPTY_PATH,
                )
                .map_err(errno(format!("open_tree /dev/null to mask {p}")))?
            };
            self.attach(mnt.as_fd(), target.as_fd(), &format!("mask {p}"))?;
        }
        Ok(())
    }

    /// readonlyPaths: clone the mount at each path and set it read-only (recursively).
    pub fn readonly(&self, paths: &[String]) -> Result<()> {
        for p in paths {
            // A path the image lacks is skipped (runtime-spec); any other error is one: a path
            // the config asks to hide must not stay visible quietly.
            let Some(target) = self.lookup(Path::new(p), true)? else {
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
            .map_err(errno(format!("open_tree readonly path {p}")))?;
            sysm::mount_setattr(
                mnt.as_fd(),
                true,
                &MountAttr {
                    set: sysm::MOUNT_ATTR_RDONLY
                        | sysm::MOUNT_ATTR_NOSUID
                        | sysm::MOUNT_ATTR_NODEV
                        | sysm::MOUNT_ATTR_NOEXEC,
                    ..Default::default()
                },
            )
            .map_err(|e| RuntimeError::Sys {
                op: format!("mount_setattr ro on {p}"),
                source: e,
            })?;
            self.attach(mnt.as_fd(), target.as_fd(), &format!("readonly {p}"))?;
        }
        Ok(())
    }
}

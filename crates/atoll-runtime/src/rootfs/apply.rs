//! Carrying out the plan's mounts, each *by fd*: the target is resolved inside the rootfs
//! (openat2 RESOLVE_IN_ROOT) and the new, detached mount is attached onto that fd with
//! move_mount(2), so a symlink planted in the image can never send a mount outside the rootfs
//! (CVE-2021-30465). Nothing here talks to the parent: what it makes arrives beforehand.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use atoll_cgroups::Hierarchy;
use atoll_sys::mount::{self as sysm, MountAttr};
use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, open_tree,
    FsMountFlags, FsOpenFlags, MountAttrFlags, OpenTreeFlags,
};

use super::error::io_errno;
use super::plan::{MountKind, MountOp};
use super::prepared::{bind_source, detached_bind, set_attrs, PreparedMounts, UsernsFor};
use super::{MountError, Rootfs};
use crate::error::Result;

/// What applying the mounts needs beyond the plan.
pub struct MountCtx<'a> {
    pub bundle: &'a Path,
    pub cgroup_hierarchies: &'a [Hierarchy],
    pub cgroupns: bool,
    pub userns: UsernsFor<'a>,
    /// In a user namespace: asks the parent (NeedMount) for an O_PATH fd of config mount i's
    /// bind source when the init may not reach it.
    pub source_from_parent: Option<&'a dyn Fn(usize) -> Result<OwnedFd>>,
}

impl Rootfs {
    /// Mount `ops` in order. `prepared` holds the mounts the parent made (FromParent).
    pub fn apply(
        &self,
        ops: &[MountOp<'_>],
        prepared: &mut PreparedMounts,
        ctx: &MountCtx<'_>,
    ) -> Result<()> {
        for op in ops {
            self.apply_one(op, prepared, ctx)?;
            tracing::debug!(dest = ?op.dest, "init: mounted");
        }
        Ok(())
    }

    fn apply_one(
        &self,
        op: &MountOp<'_>,
        prepared: &mut PreparedMounts,
        ctx: &MountCtx<'_>,
    ) -> Result<()> {
        let (mnt, target) = match op.kind {
            MountKind::Cgroup => return self.mount_cgroup(op, ctx),
            MountKind::Bind { source } | MountKind::FromParent { source } => {
                let (mnt, is_dir) = match op.kind {
                    MountKind::FromParent { .. } => {
                        let mnt = prepared.take(op.index)?;
                        let st =
                            rustix::fs::fstat(&mnt).map_err(|errno| op.failed("fstat", errno))?;
                        (
                            mnt,
                            FileType::from_raw_mode(st.st_mode) == FileType::Directory,
                        )
                    }
                    _ => {
                        let from_parent = ctx.source_from_parent;
                        let (src, is_dir) = bind_source(ctx.bundle, op.index, source, from_parent)?;
                        (detached_bind(&src, op, &ctx.userns)?, is_dir)
                    }
                };
                (mnt, self.target(op.dest, !is_dir)?)
            }
            MountKind::Fs | MountKind::Proc | MountKind::Sysfs => {
                let target = self.target(op.dest, false)?;
                let mnt = match self.fs_mount(op, target.as_fd()) {
                    Ok(mnt) => mnt,
                    // sysfs belongs to the network namespace: without a new one (or inside a user
                    // namespace that does not own it) the kernel refuses; bind the host's, as runc
                    // does.
                    Err(e) if op.kind == MountKind::Sysfs && e.errno() == Some(Errno::PERM) => {
                        open_tree(
                            rustix::fs::CWD,
                            "/sys",
                            OpenTreeFlags::OPEN_TREE_CLONE
                                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                                | OpenTreeFlags::AT_RECURSIVE,
                        )
                        .map_err(|errno| op.failed("open_tree the host's /sys", errno))?
                    }
                    Err(e) => return Err(e.into()),
                };
                set_attrs(mnt.as_fd(), op, &ctx.userns)?;
                (mnt, target)
            }
        };
        self.attach(mnt.as_fd(), target.as_fd())
            .map_err(|errno| op.failed("move_mount", errno))?;
        if op.kind == MountKind::Proc {
            check_procfs(self.reopen(op.dest)?.as_fd(), op.dest)?;
        }
        if let Some((propagation, recursive)) = op.opts.propagation {
            let top = self.reopen(op.dest)?;
            let attr = MountAttr {
                propagation,
                ..Default::default()
            };
            sysm::mount_setattr(top.as_fd(), recursive, &attr)
                .map_err(|e| op.failed("mount_setattr propagation", io_errno(&e)))?;
        }
        Ok(())
    }

    /// A new instance of the op's filesystem: fsopen, its options through fsconfig, fsmount.
    /// `target` is the directory it goes on.
    fn fs_mount(&self, op: &MountOp<'_>, target: BorrowedFd<'_>) -> Result<OwnedFd, MountError> {
        let fs = fsopen(op.fstype, FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(|errno| op.failed("fsopen", errno))?;
        if let Some(src) = op.mount.source() {
            // "source" is informational for most virtual filesystems; ignore refusals.
            let _ignored_source_is_informational =
                fsconfig_set_string(&fs, "source", src.as_os_str());
        }
        for &(k, v) in &op.opts.data {
            match v {
                Some(v) => fsconfig_set_string(&fs, k, v),
                None => fsconfig_set_flag(&fs, k),
            }
            .map_err(|errno| {
                let kv = v.map_or_else(|| k.to_string(), |v| format!("{k}={v}"));
                op.failed(format!("fsconfig {kv}"), errno)
            })?;
        }
        if op.fstype == "tmpfs" && !op.opts.data.iter().any(|&(k, _)| k == "mode") {
            // A tmpfs root is 1777 by default; runc gives it the mode of the directory it covers
            // (the image's, or 0755 where the runtime made it), and images rely on that.
            let st = rustix::fs::fstat(target).map_err(|errno| op.failed("fstat", errno))?;
            let mode = format!("{:o}", st.st_mode & 0o7777);
            fsconfig_set_string(&fs, "mode", mode.as_str())
                .map_err(|errno| op.failed(format!("fsconfig mode={mode}"), errno))?;
        }
        for &f in &op.opts.sb_flags {
            fsconfig_set_flag(&fs, f).map_err(|errno| op.failed(format!("fsconfig {f}"), errno))?;
        }
        fsconfig_create(&fs).map_err(|errno| op.failed("fsconfig create", errno))?;
        let attrs = MountAttrFlags::from_bits_retain(op.opts.attr_set as u32);
        fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
            .map_err(|errno| op.failed("fsmount", errno))
    }

    /// cgroup and cgroup2 mounts show the container its own cgroup, however the host is set up.
    fn mount_cgroup(&self, op: &MountOp<'_>, ctx: &MountCtx<'_>) -> Result<()> {
        let fail = |call: &'static str| move |errno| op.failed(call, errno);
        let target = self.target(op.dest, false)?;
        let hier = ctx.cgroup_hierarchies;
        let attrs = op.opts.attr_set;
        // Pure cgroup v2 with a cgroup namespace: a real cgroup2 mount rooted at our cgroup.
        if hier.len() == 1 && hier[0].fs_type == "cgroup2" && ctx.cgroupns {
            let fs =
                fsopen("cgroup2", FsOpenFlags::FSOPEN_CLOEXEC).map_err(fail("fsopen cgroup2"))?;
            fsconfig_create(&fs).map_err(fail("fsconfig create"))?;
            let flags = MountAttrFlags::from_bits_retain(attrs as u32);
            let mnt =
                fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, flags).map_err(fail("fsmount"))?;
            self.attach(mnt.as_fd(), target.as_fd())
                .map_err(fail("move_mount"))?;
            return Ok(());
        }
        if hier.len() == 1 && hier[0].fs_type == "cgroup2" {
            return self.bind_dir(&hier[0].dir, target.as_fd(), op);
        }
        // v1 or hybrid: a tmpfs with one bind of this container's directory per hierarchy, which
        // is what runc shows a container too (cgroup v1 cannot be mounted in a user namespace).
        // The tmpfs is made read-only only once the binds are in.
        let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(fail("fsopen tmpfs"))?;
        fsconfig_set_string(&fs, "mode", "755").map_err(fail("fsconfig mode=755"))?;
        fsconfig_create(&fs).map_err(fail("fsconfig create"))?;
        let ro = attrs & sysm::MOUNT_ATTR_RDONLY;
        let flags = MountAttrFlags::from_bits_retain((attrs & !ro) as u32);
        let tmp =
            fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, flags).map_err(fail("fsmount tmpfs"))?;
        self.attach(tmp.as_fd(), target.as_fd())
            .map_err(fail("move_mount tmpfs"))?;
        for h in hier {
            let name = h.mount_point.file_name().unwrap_or(OsStr::new("unified"));
            let t = self.target(&op.dest.join(name), false)?;
            self.bind_dir(&h.dir, t.as_fd(), op)?;
        }
        if ro != 0 {
            let top = self.reopen(op.dest)?;
            let attr = MountAttr {
                set: ro,
                ..Default::default()
            };
            sysm::mount_setattr(top.as_fd(), false, &attr)
                .map_err(|e| op.failed("mount_setattr ro", io_errno(&e)))?;
        }
        Ok(())
    }

    /// Bind the host directory `src` (a cgroup) onto `target` with the op's attributes.
    fn bind_dir(&self, src: &Path, target: BorrowedFd<'_>, op: &MountOp<'_>) -> Result<()> {
        let mnt = open_tree(
            rustix::fs::CWD,
            src,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .map_err(|errno| op.failed(format!("open_tree {src:?}"), errno))?;
        if op.opts.attr_set != 0 {
            let attr = MountAttr {
                set: op.opts.attr_set,
                clr: op.opts.attr_clr,
                ..Default::default()
            };
            sysm::mount_setattr(mnt.as_fd(), false, &attr)
                .map_err(|e| op.failed("mount_setattr", io_errno(&e)))?;
        }
        self.attach(mnt.as_fd(), target)
            .map_err(|errno| op.failed("move_mount", errno))?;
        Ok(())
    }
}

/// After mounting "proc" check by fstatfs that procfs is what landed there.
fn check_procfs(target: BorrowedFd<'_>, dest: &Path) -> Result<(), MountError> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    let st = rustix::fs::fstatfs(target).map_err(|errno| MountError::InRootfs {
        call: "fstatfs",
        path: dest.to_path_buf(),
        errno,
    })?;
    if st.f_type as i64 != PROC_SUPER_MAGIC {
        return Err(MountError::NotProcfs {
            dest: dest.to_path_buf(),
            f_type: st.f_type as i64,
        });
    }
    Ok(())
}

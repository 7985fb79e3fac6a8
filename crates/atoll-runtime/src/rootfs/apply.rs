//! Mounting one config entry by fd.

use super::prepared::bind_source;
use super::*;

impl Rootfs {
    /// Mount one config entry. `userns` is the container's user namespace fd for idmap mounts.
    pub fn mount(&self, i: usize, m: &Mount, ctx: &MountCtx<'_>) -> Result<()> {
        let typ = m.typ().as_deref().unwrap_or("");
        let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
        let dest = m.destination();
        let what = format!("mounts[{i}] ({typ} on {})", dest.display());
        if typ == "cgroup" || typ == "cgroup2" {
            return self.mount_cgroup(m, &opts, ctx, &what);
        }
        let mnt = if opts.bind || typ == "bind" {
            let src = bind_source(ctx.bundle, i, m)?;
            let target = self.target(dest, !src.1)?;
            let wants_idmap = opts.idmap.is_some() || m.uid_mappings().is_some();
            let mnt = match ctx.from_parent {
                // In a user namespace only the parent (root in the host's user namespace) may
                // turn on idmapping: it makes the whole detached mount and hands us the fd.
                Some(parent) if wants_idmap => parent(i)?,
                _ => bind_mount_fd(ctx.bundle, i, m, &|m| ctx.idmap_userns(m))?,
            };
            self.attach(mnt.as_fd(), target.as_fd(), &what)?;
            target
        } else {
            let target = self.target(dest, false)?;
            let mnt = match self.fs_mount(typ, m, &opts, &what) {
                Ok(mnt) => mnt,
                // sysfs belongs to the network namespace: without a new one (or inside a user
                // namespace that does not own it) the kernel refuses; bind the host's, as runc does.
                Err(e) if typ == "sysfs" && is_eperm(&e) => open_tree(
                    rustix::fs::CWD,
                    "/sys",
                    OpenTreeFlags::OPEN_TREE_CLONE
                        | OpenTreeFlags::OPEN_TREE_CLOEXEC
                        | OpenTreeFlags::AT_RECURSIVE,
                )
                .map_err(errno(format!("open_tree /sys for {what}")))?,
                Err(e) => return Err(e),
            };
            set_attrs(mnt.as_fd(), &opts, m, &|m| ctx.idmap_userns(m), &what)?;
            self.attach(mnt.as_fd(), target.as_fd(), &what)?;
            if typ == "proc" {
                check_procfs(self.reopen_mountpoint(dest)?.as_fd(), dest)?;
            }
            target
        };
        if let Some((prop, rec)) = opts.propagation {
            let h = self.reopen_mountpoint(dest)?;
            sysm::mount_setattr(
                h.as_fd(),
                rec,
                &MountAttr {
                    propagation: prop,
                    ..Default::default()
                },
            )
            .map_err(|e| RuntimeError::Sys {
                op: format!("mount_setattr propagation for {what}"),
                source: e,
            })?;
        }
        drop(mnt);
        Ok(())
    }

    fn fs_mount(&self, typ: &str, m: &Mount, opts: &Options, what: &str) -> Result<OwnedFd> {
        if typ.is_empty() {
            return Err(RuntimeError::Other(format!(
                "{what}: no type and not a bind mount"
            )));
        }
        let fs = fsopen(typ, FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(errno(format!("fsopen {typ:?} for {what}")))?;
        if let Some(src) = m.source() {
            // "source" is informational for most virtual filesystems; ignore refusals.
            let _ignored_source_is_informational =
                fsconfig_set_string(&fs, "source", src.as_os_str());
        }
        for (k, v) in &opts.data {
            let r = match v {
                Some(v) => fsconfig_set_string(&fs, k.as_str(), v.as_str()),
                None => fsconfig_set_flag(&fs, k.as_str()),
            };
            r.map_err(errno(format!(
                "fsconfig {k}{} for {what}",
                v.as_ref().map(|v| format!("={v}")).unwrap_or_default()
            )))?;
        }
        for f in &opts.sb_flags {
            fsconfig_set_flag(&fs, f.as_str())
                .map_err(errno(format!("fsconfig {f} for {what}")))?;
        }
        fsconfig_create(&fs).map_err(errno(format!("fsconfig create for {what}")))?;
        let attrs = MountAttrFlags::from_bits_retain(opts.attr_set as u32);
        fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(errno(format!("fsmount {what}")))
    }

    fn mount_cgroup(
        &self,
        m: &Mount,
        opts: &Options,
        ctx: &MountCtx<'_>,
        what: &str,
    ) -> Result<()> {
        let dest = m.destination();
        let target = self.target(dest, false)?;
        let hier = ctx.cgroup_hierarchies;
        // Pure cgroup v2 with a cgroup namespace: a real cgroup2 mount rooted at our cgroup.
        if hier.len() == 1 && hier[0].fs_type == "cgroup2" && ctx.cgroupns {
            let fs = fsopen("cgroup2", FsOpenFlags::FSOPEN_CLOEXEC)
                .map_err(errno(format!("fsopen cgroup2 for {what}")))?;
            fsconfig_create(&fs).map_err(errno(format!("fsconfig create for {what}")))?;
            let mnt = fsmount(
                &fs,
                FsMountFlags::FSMOUNT_CLOEXEC,
                MountAttrFlags::from_bits_retain(opts.attr_set as u32),
            )
            .map_err(errno(format!("fsmount {what}")))?;
            return self.attach(mnt.as_fd(), target.as_fd(), what);
        }
        if hier.len() == 1 && hier[0].fs_type == "cgroup2" {
            return self.bind_dir(&hier[0].dir, target.as_fd(), opts, what);
        }
        // v1 or hybrid: a tmpfs with one bind of this container's directory per hierarchy, which
        // is what runc shows a container too (cgroup v1 cannot be mounted in a user namespace).
        let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(errno(format!("fsopen tmpfs for {what}")))?;
        fsconfig_set_string(&fs, "mode", "755")
            .map_err(errno(format!("fsconfig mode for {what}")))?;
        fsconfig_create(&fs).map_err(errno(format!("fsconfig create for {what}")))?;
        let ro = opts.attr_set & sysm::MOUNT_ATTR_RDONLY;
        let tmp = fsmount(
            &fs,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::from_bits_retain((opts.attr_set & !ro) as u32),
        )
        .map_err(errno(format!("fsmount {what}")))?;
        self.attach(tmp.as_fd(), target.as_fd(), what)?;
        for h in hier {
            let name = h
                .mount_point
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| OsStr::new("unified").to_os_string());
            let sub = dest.join(&name);
            let t = self.target(&sub, false)?;
            self.bind_dir(&h.dir, t.as_fd(), opts, what)?;
        }
        if ro != 0 {
            let top = self.reopen_mountpoint(dest)?;
            sysm::mount_setattr(
                top.as_fd(),
                false,
                &MountAttr {
                    set: ro,
                    ..Default::default()
                },
            )
            .map_err(|e| RuntimeError::Sys {
                op: format!("mount_setattr ro for {what}"),
                source: e,
            })?;
        }
        Ok(())
    }

    fn bind_dir(
        &self,
        src: &Path,
        target: BorrowedFd<'_>,
        opts: &Options,
        what: &str,
    ) -> Result<()> {
        let mnt = open_tree(
            rustix::fs::CWD,
            src,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .map_err(errno(format!("open_tree {} for {what}", src.display())))?;
        if opts.attr_set != 0 {
            sysm::mount_setattr(
                mnt.as_fd(),
                false,
                &MountAttr {
                    set: opts.attr_set,
                    clr: opts.attr_clr,
                    ..Default::default()
                },
            )
            .map_err(|e| RuntimeError::Sys {
                op: format!("mount_setattr for {what}"),
                source: e,
            })?;
        }
        self.attach(mnt.as_fd(), target, what)
    }
}

pub(super) fn set_attrs(
    mnt: BorrowedFd<'_>,
    opts: &Options,
    m: &Mount,
    idmap_userns: &dyn Fn(&Mount) -> Result<OwnedFd>,
    what: &str,
) -> Result<()> {
    let fail = |e: std::io::Error| RuntimeError::Sys {
        op: format!("mount_setattr for {what}"),
        source: e,
    };
    if opts.rattr_set | opts.rattr_clr != 0 {
        sysm::mount_setattr(
            mnt,
            true,
            &MountAttr {
                set: opts.rattr_set,
                clr: opts.rattr_clr,
                ..Default::default()
            },
        )
        .map_err(fail)?;
    }
    if opts.attr_set | opts.attr_clr != 0 {
        sysm::mount_setattr(
            mnt,
            false,
            &MountAttr {
                set: opts.attr_set,
                clr: opts.attr_clr,
                ..Default::default()
            },
        )
        .map_err(fail)?;
    }
    let wants_idmap = opts.idmap.is_some() || m.uid_mappings().is_some();
    if wants_idmap {
        let recursive = opts.idmap.unwrap_or(false);
        let userns = idmap_userns(m)?;
        sysm::mount_setattr(
            mnt,
            recursive,
            &MountAttr {
                set: sysm::MOUNT_ATTR_IDMAP,
                userns: Some(userns.as_fd()),
                ..Default::default()
            },
        )
        .map_err(|e| RuntimeError::Sys {
            op: format!("mount_setattr MOUNT_ATTR_IDMAP for {what}"),
            source: e,
        })?;
    }
    Ok(())
}

/// After mounting "proc" check by fstatfs that procfs is what landed there.
fn check_procfs(target: BorrowedFd<'_>, dest: &Path) -> Result<()> {
    let st = rustix::fs::fstatfs(target).map_err(errno(format!("fstatfs {}", dest.display())))?;
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    if st.f_type as i64 != PROC_SUPER_MAGIC {
        return Err(RuntimeError::Other(format!(
            "{} is not procfs after mounting proc there (f_type {:#x})",
            dest.display(),
            st.f_type
        )));
    }
    Ok(())
}

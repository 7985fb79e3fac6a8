//! The container's file view. Mount options are parsed into plain data first (unit-tested without
//! root); `apply` then mounts each one *by fd*: the target is resolved inside the rootfs with
//! openat2(RESOLVE_IN_ROOT) (pathrs) and the new mount is attached with move_mount(2) onto that fd,
//! so a symlink planted in the image can never send a mount outside the rootfs (CVE-2021-30465).

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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

/// One config mount's options, sorted into what the kernel wants where.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Options {
    pub bind: bool,
    pub recursive_bind: bool,
    /// MOUNT_ATTR_* bits to set and clear on the new mount.
    pub attr_set: u64,
    pub attr_clr: u64,
    /// Same, applied recursively ("rro", "rnosuid", ...: mount_setattr with AT_RECURSIVE).
    pub rattr_set: u64,
    pub rattr_clr: u64,
    /// MS_PRIVATE/MS_SLAVE/MS_SHARED/MS_UNBINDABLE and whether recursive.
    pub propagation: Option<(u64, bool)>,
    /// Superblock flags fsconfig understands ("sync", "dirsync", "lazytime", "mand").
    pub sb_flags: Vec<String>,
    /// Filesystem data: key or key=value, passed to fsconfig.
    pub data: Vec<(String, Option<String>)>,
    pub idmap: Option<bool>, // Some(recursive)
}

pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options::default();
    for opt in opts {
        let (set, clr): (u64, u64) = match opt.as_str() {
            "ro" => (sysm::MOUNT_ATTR_RDONLY, 0),
            "rw" => (0, sysm::MOUNT_ATTR_RDONLY),
            "nosuid" => (sysm::MOUNT_ATTR_NOSUID, 0),
            "suid" => (0, sysm::MOUNT_ATTR_NOSUID),
            "nodev" => (sysm::MOUNT_ATTR_NODEV, 0),
            "dev" => (0, sysm::MOUNT_ATTR_NODEV),
            "noexec" => (sysm::MOUNT_ATTR_NOEXEC, 0),
            "exec" => (0, sysm::MOUNT_ATTR_NOEXEC),
            "noatime" => (sysm::MOUNT_ATTR_NOATIME, sysm::MOUNT_ATTR__ATIME),
            "relatime" => (sysm::MOUNT_ATTR_RELATIME, sysm::MOUNT_ATTR__ATIME),
            "strictatime" => (sysm::MOUNT_ATTR_STRICTATIME, sysm::MOUNT_ATTR__ATIME),
            "nodiratime" => (sysm::MOUNT_ATTR_NODIRATIME, 0),
            "diratime" => (0, sysm::MOUNT_ATTR_NODIRATIME),
            "nosymfollow" => (sysm::MOUNT_ATTR_NOSYMFOLLOW, 0),
            "symfollow" => (0, sysm::MOUNT_ATTR_NOSYMFOLLOW),
            "atime" | "norelatime" | "nostrictatime" | "async" | "nomand" | "defaults" => (0, 0),
            _ => {
                parse_other(&mut o, opt);
                continue;
            }
        };
        o.attr_set = (o.attr_set & !clr) | set;
        o.attr_clr = (o.attr_clr & !set) | clr;
        if opt == "noatime" || opt == "relatime" || opt == "strictatime" {
            o.attr_clr |= sysm::MOUNT_ATTR__ATIME;
        }
    }
    o
}

fn parse_other(o: &mut Options, opt: &str) {
    let prop = |p: u64| Some((p, false));
    let rprop = |p: u64| Some((p, true));
    match opt {
        "bind" => o.bind = true,
        "rbind" => {
            o.bind = true;
            o.recursive_bind = true
        }
        "private" => o.propagation = prop(libc::MS_PRIVATE),
        "rprivate" => o.propagation = rprop(libc::MS_PRIVATE),
        "shared" => o.propagation = prop(libc::MS_SHARED),
        "rshared" => o.propagation = rprop(libc::MS_SHARED),
        "slave" => o.propagation = prop(libc::MS_SLAVE),
        "rslave" => o.propagation = rprop(libc::MS_SLAVE),
        "unbindable" => o.propagation = prop(libc::MS_UNBINDABLE),
        "runbindable" => o.propagation = rprop(libc::MS_UNBINDABLE),
        "idmap" => o.idmap = Some(false),
        "ridmap" => o.idmap = Some(true),
        "sync" | "dirsync" | "lazytime" | "mand" => o.sb_flags.push(opt.to_string()),
        "tmpcopyup" | "remount" | "nolazytime" => {}
        _ => {
            // Recursive attribute options from runtime-spec 1.1: "rro", "rnosuid", ...
            if let Some(base) = opt.strip_prefix('r') {
                let one = parse_options(&[base.to_string()]);
                if (one.attr_set | one.attr_clr) != 0 && one.data.is_empty() {
                    o.rattr_set |= one.attr_set;
                    o.rattr_clr |= one.attr_clr;
                    return;
                }
            }
            match opt.split_once('=') {
                Some((k, v)) => o.data.push((k.to_string(), Some(v.to_string()))),
                None => o.data.push((opt.to_string(), None)),
            }
        }
    }
}

/// The rootfs, opened as a pathrs root: every path below is resolved with RESOLVE_IN_ROOT.
pub struct Rootfs {
    pub root: Root,
    pub path: PathBuf,
    /// The host's /dev/null, opened (and checked to be 1:3) before anything in the image is
    /// touched: masks bind this inode, never the image's /dev/null (CVE-2025-31133).
    dev_null: OwnedFd,
}

fn pathrs_err(op: String) -> impl FnOnce(pathrs::error::Error) -> RuntimeError {
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
    fn lookup(&self, path: &Path, follow: bool) -> Result<Option<OwnedFd>> {
        let mut flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC;
        if !follow {
            flags |= rustix::fs::OFlags::NOFOLLOW;
        }
        let resolve = rustix::fs::ResolveFlags::IN_ROOT | rustix::fs::ResolveFlags::NO_MAGICLINKS;
        for _ in 0..16 {
            match rustix::fs::openat2(&self.root, path, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(Some(fd)),
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
                Err(rustix::io::Errno::AGAIN) => continue,
                Err(rustix::io::Errno::NOSYS) => break,
                Err(e) => {
                    return Err(errno(format!("openat2 {} in the rootfs", path.display()))(
                        e,
                    ))
                }
            }
        }
        let found = if follow {
            self.root.resolve(path)
        } else {
            self.root.resolve_nofollow(path)
        };
        match found {
            Ok(h) => Ok(Some(h.into())),
            Err(e)
                if matches!(
                    e.kind(),
                    pathrs::error::ErrorKind::OsError(Some(libc::ENOENT | libc::ENOTDIR))
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(pathrs_err(format!(
                "resolve {} in the rootfs",
                path.display()
            ))(e)),
        }
    }

    /// Make the missing last component of `dest` (a directory, or an empty file when `file` is
    /// set) when its parent exists, the usual case for a mount point. The parent is looked up
    /// in the root; the name has no slash and is not `..`, so mkdirat/openat2 relative to the
    /// parent's fd cannot leave it, and RESOLVE_NO_SYMLINKS refuses a symlink that appears in
    /// its place. None when this does not apply (a deeper path to make, the name already
    /// there): the caller then takes pathrs' mkdir_all/create path.
    fn make_last(&self, dest: &Path, file: bool) -> Result<Option<OwnedFd>> {
        use rustix::fs::{OFlags, ResolveFlags};
        let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Ok(None);
        };
        let Some(dir) = self.lookup(parent, true)? else {
            return Ok(None);
        };
        let beneath = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV;
        let made = if file {
            rustix::fs::openat2(
                &dir,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
                beneath,
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755))
        };
        match made {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => return Ok(None),
            Err(e) => {
                let what = if file { "create" } else { "mkdir" };
                return Err(errno(format!("{what} {} in the rootfs", dest.display()))(e));
            }
        }
        let flags = OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        rustix::fs::openat2(&dir, name, flags, Mode::empty(), beneath)
            .map(Some)
            .map_err(errno(format!("open {} in the rootfs", dest.display())))
    }

    /// Resolve `dest` inside the rootfs, creating it (as a directory, or an empty file when
    /// `file` is set) if it is missing. Returns an O_PATH fd to mount onto.
    pub fn target(&self, dest: &Path, file: bool) -> Result<OwnedFd> {
        let shown = dest.display().to_string();
        if let Some(fd) = self.lookup(dest, true)? {
            return Ok(fd);
        }
        if let Some(fd) = self.make_last(dest, file)? {
            return Ok(fd);
        }
        if file {
            let parent = dest.parent().unwrap_or(Path::new("/"));
            self.root
                .mkdir_all(parent, &Permissions::from_mode(0o755))
                .map_err(pathrs_err(format!(
                    "mkdir {} in the rootfs",
                    parent.display()
                )))?;
            match self
                .root
                .create(dest, &InodeType::File(Permissions::from_mode(0o644)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == pathrs::error::ErrorKind::OsError(Some(libc::EEXIST)) => {}
                Err(e) => return Err(pathrs_err(format!("create {shown} in the rootfs"))(e)),
            }
            let h = self
                .root
                .resolve(dest)
                .map_err(pathrs_err(format!("resolve {shown} in the rootfs")))?;
            Ok(h.into())
        } else {
            let h = self
                .root
                .mkdir_all(dest, &Permissions::from_mode(0o755))
                .map_err(pathrs_err(format!("mkdir {shown} in the rootfs")))?;
            Ok(h.into())
        }
    }

    /// Attach the detached mount `mnt` at `target` (both fds).
    fn attach(&self, mnt: BorrowedFd<'_>, target: BorrowedFd<'_>, what: &str) -> Result<()> {
        move_mount(
            mnt,
            "",
            target,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(errno(format!("move_mount {what}")))
    }

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

    fn reopen_mountpoint(&self, dest: &Path) -> Result<OwnedFd> {
        let h = self.root.resolve(dest).map_err(pathrs_err(format!(
            "resolve {} in the rootfs",
            dest.display()
        )))?;
        Ok(h.into())
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

    /// Create the default devices and `linux.devices`. Outside a user namespace: mknod. Inside one
    /// (mknod is refused there): bind the host's node onto an empty file, as runc does.
    pub fn devices(&self, devices: &[LinuxDevice], in_userns: bool) -> Result<()> {
        for d in devices {
            let path = d.path();
            if in_userns {
                let target = self.target(path, true)?;
                let mnt = open_tree(
                    rustix::fs::CWD,
                    path,
                    OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
                )
                .map_err(errno(format!(
                    "open_tree host {} to bind a device",
                    path.display()
                )))?;
                self.attach(
                    mnt.as_fd(),
                    target.as_fd(),
                    &format!("device {}", path.display()),
                )?;
                continue;
            }
            let parent = path.parent().unwrap_or(Path::new("/dev"));
            let dirfd = match self.lookup(parent, true)? {
                Some(fd) => fd,
                None => self
                    .root
                    .mkdir_all(parent, &Permissions::from_mode(0o755))
                    .map_err(pathrs_err(format!(
                        "mkdir {} in the rootfs",
                        parent.display()
                    )))?
                    .into(),
            };
            let name = path.file_name().ok_or_else(|| {
                crate::error::field(
                    "linux.devices[].path",
                    format!("{} has no file name", path.display()),
                )
            })?;
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => rustix::fs::FileType::CharacterDevice,
                LinuxDeviceType::B => rustix::fs::FileType::BlockDevice,
                LinuxDeviceType::P => rustix::fs::FileType::Fifo,
                LinuxDeviceType::A => {
                    return Err(crate::error::field(
                        "linux.devices[].type",
                        format!("{}: type \"a\" is for cgroup rules only", path.display()),
                    ))
                }
            };
            let mode = Mode::from_raw_mode(d.file_mode().unwrap_or(0o666) as RawMode);
            let dev = rustix::fs::makedev(d.major() as u32, d.minor() as u32);
            match rustix::fs::mknodat(&dirfd, name, kind, mode, dev) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(errno(format!("mknod {} in the rootfs", path.display()))(e)),
            }
            let node = rustix::fs::openat(
                &dirfd,
                name,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno(format!("open {} in the rootfs", path.display())))?;
            // The name may have been in the image already (EEXIST above), as runc allows; but
            // never as a symlink, which chmod would follow out of the rootfs.
            let st =
                rustix::fs::fstat(&node).map_err(errno(format!("fstat {}", path.display())))?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink {
                return Err(crate::error::field(
                    "linux.devices[].path",
                    format!("{} is a symlink in the rootfs", path.display()),
                ));
            }
            // fchmod does not work on O_PATH fds: chmod the name through the dir fd (the check
            // above ruled a symlink out; nothing inside the container runs yet to swap it).
            rustix::fs::chmodat(&dirfd, name, mode, rustix::fs::AtFlags::empty())
                .map_err(errno(format!("chmod {}", path.display())))?;
            let uid = d.uid().map(rustix::fs::Uid::from_raw);
            let gid = d.gid().map(rustix::fs::Gid::from_raw);
            if uid.is_some() || gid.is_some() {
                rustix::fs::chownat(&node, "", uid, gid, rustix::fs::AtFlags::EMPTY_PATH)
                    .map_err(errno(format!("chown {}", path.display())))?;
            }
        }
        Ok(())
    }

    /// The standard /dev symlinks (runtime-spec "Default Devices" and runc's extras).
    pub fn dev_symlinks(&self) -> Result<()> {
        let links = [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
        ];
        for (link, to) in links {
            if link == "/dev/ptmx" && self.root.resolve("/dev/pts/ptmx").is_err() {
                continue;
            }
            match self
                .root
                .create(link, &InodeType::Symlink(PathBuf::from(to)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == pathrs::error::ErrorKind::OsError(Some(libc::EEXIST)) => {}
                Err(e) if e.kind() == pathrs::error::ErrorKind::OsError(Some(libc::ENOENT)) => {}
                Err(e) => {
                    return Err(pathrs_err(format!("symlink {link} -> {to} in the rootfs"))(
                        e,
                    ))
                }
            }
        }
        Ok(())
    }

    /// maskedPaths: bind the host /dev/null inode over files, an empty read-only tmpfs over
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

    /// Bind the terminal's slave over /dev/console (runtime-spec: "/dev/console" when terminal).
    pub fn console(&self, slave: BorrowedFd<'_>) -> Result<()> {
        // Never follow a /dev/console the image planted as a symlink: it would aim the bind at
        // whatever it names inside the rootfs, /proc/sys/... included (CVE-2025-52565).
        if let Ok(h) = self.root.resolve_nofollow("/dev/console") {
            let fd: OwnedFd = h.into();
            let st = rustix::fs::fstat(&fd).map_err(errno("fstat /dev/console"))?;
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            if !matches!(
                kind,
                rustix::fs::FileType::RegularFile | rustix::fs::FileType::CharacterDevice
            ) {
                return Err(RuntimeError::Other(format!(
                    "refusing to mount the console on /dev/console: the rootfs has a {kind:?} there"
                )));
            }
        }
        let target = self.target(Path::new("/dev/console"), true)?;
        let mnt = open_tree(
            slave,
            "",
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_EMPTY_PATH,
        )
        .map_err(errno("open_tree pty slave for /dev/console"))?;
        self.attach(mnt.as_fd(), target.as_fd(), "/dev/console")
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

/// A bind mount's source (relative ones against the bundle) and whether it is a directory.
fn bind_source(bundle: &Path, i: usize, m: &Mount) -> Result<(PathBuf, bool)> {
    let src = m.source().as_ref().ok_or_else(|| {
        crate::error::field(format!("mounts[{i}].source"), "missing for a bind mount")
    })?;
    let src = if src.is_absolute() {
        src.clone()
    } else {
        bundle.join(src)
    };
    let md = std::fs::metadata(&src).map_err(|e| {
        crate::error::field(
            format!("mounts[{i}].source"),
            format!("{}: {e}", src.display()),
        )
    })?;
    Ok((src, md.is_dir()))
}

/// The detached bind mount for config mount `i`, with every attribute (read-only, nosuid, ...,
/// idmap) already set: open_tree(OPEN_TREE_CLONE) plus mount_setattr. Called by init, or by the
/// parent for idmapped mounts of a container with its own user namespace.
pub fn bind_mount_fd(
    bundle: &Path,
    i: usize,
    m: &Mount,
    idmap_userns: &dyn Fn(&Mount) -> Result<OwnedFd>,
) -> Result<OwnedFd> {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let what = format!("mounts[{i}] (bind on {})", m.destination().display());
    let (src, _) = bind_source(bundle, i, m)?;
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if opts.recursive_bind {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let mnt = open_tree(rustix::fs::CWD, &src, flags)
        .map_err(errno(format!("open_tree {} for {what}", src.display())))?;
    set_attrs(mnt.as_fd(), &opts, m, idmap_userns, &what)?;
    Ok(mnt)
}

fn set_attrs(
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

fn is_eperm(e: &RuntimeError) -> bool {
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
    fn idmap_userns(&self, m: &Mount) -> Result<OwnedFd> {
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

/// The devices every container gets (runtime-spec "Default Devices").
pub fn default_devices() -> Vec<LinuxDevice> {
    let dev = |p: &str, major: i64, minor: i64| {
        oci_spec::runtime::LinuxDeviceBuilder::default()
            .path(p)
            .typ(LinuxDeviceType::C)
            .major(major)
            .minor(minor)
            .file_mode(0o666u32)
            .uid(0u32)
            .gid(0u32)
            .build()
            .expect("static device")
    };
    vec![
        dev("/dev/null", 1, 3),
        dev("/dev/zero", 1, 5),
        dev("/dev/full", 1, 7),
        dev("/dev/random", 1, 8),
        dev("/dev/urandom", 1, 9),
        dev("/dev/tty", 5, 0),
    ]
}

/// Every device the container gets: the defaults, then linux.devices (which may override them).
pub fn all_devices(spec: &Spec) -> Vec<LinuxDevice> {
    let mut devs = default_devices();
    if let Some(extra) = spec.linux().as_ref().and_then(|l| l.devices().as_ref()) {
        for d in extra {
            devs.retain(|x| x.path() != d.path());
            devs.push(d.clone());
        }
    }
    devs
}

/// Is this path's device node a real char device (for tests and checks)?
pub fn is_char_device(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false)
}

pub fn inode(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_sorted() {
        let o = parse_options(&s(&[
            "nosuid",
            "strictatime",
            "mode=755",
            "size=65536k",
            "ro",
        ]));
        assert_eq!(
            o.attr_set,
            sysm::MOUNT_ATTR_NOSUID | sysm::MOUNT_ATTR_STRICTATIME | sysm::MOUNT_ATTR_RDONLY
        );
        assert_eq!(
            o.data,
            vec![
                ("mode".into(), Some("755".into())),
                ("size".into(), Some("65536k".into()))
            ]
        );
        assert!(!o.bind);
    }

    #[test]
    fn later_option_wins() {
        let o = parse_options(&s(&["ro", "rw"]));
        assert_eq!(o.attr_set & sysm::MOUNT_ATTR_RDONLY, 0);
        assert_ne!(o.attr_clr & sysm::MOUNT_ATTR_RDONLY, 0);
    }

    #[test]
    fn recursive_and_bind() {
        let o = parse_options(&s(&["rbind", "rro", "rprivate", "newinstance", "ridmap"]));
        assert!(o.bind && o.recursive_bind);
        assert_eq!(o.rattr_set, sysm::MOUNT_ATTR_RDONLY);
        assert_eq!(o.propagation, Some((libc::MS_PRIVATE, true)));
        assert_eq!(o.data, vec![("newinstance".into(), None)]);
        assert_eq!(o.idmap, Some(true));
    }
}

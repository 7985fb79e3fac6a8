//! Devices.

use super::*;

impl Rootfs {
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

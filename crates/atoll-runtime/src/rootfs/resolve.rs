//! Paths inside the rootfs: looked up with openat2(RESOLVE_IN_ROOT), made where missing.

use super::*;

impl Rootfs {
    /// ENOTDIR: a component on the way is not a directory).
    ///
    /// This is the resolution pathrs itself uses on kernels with openat2: one openat2 with
    /// RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, so the kernel keeps every component, `..` and
    /// symlink inside the root. It is called directly where a miss is expected (masked and
    /// read-only paths, mount points still to be made) because pathrs builds every error by
    /// reading the root's path back through /proc: eight more syscalls per miss, about 70 per
    /// container. EAGAIN (a rename or mount raced the walk) is retried; a kernel without
    /// openat2 falls back to pathrs' own resolver.
    pub(super) fn lookup(&self, path: &Path, follow: bool) -> Result<Option<OwnedFd>> {
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
    pub(super) fn make_last(&self, dest: &Path, file: bool) -> Result<Option<OwnedFd>> {
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

    pub(super) fn reopen_mountpoint(&self, dest: &Path) -> Result<OwnedFd> {
        let h = self.root.resolve(dest).map_err(pathrs_err(format!(
            "resolve {} in the rootfs",
            dest.display()
        )))?;
        Ok(h.into())
    }
}

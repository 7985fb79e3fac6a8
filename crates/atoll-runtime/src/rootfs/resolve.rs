//! Paths inside the rootfs: looked up with openat2(RESOLVE_IN_ROOT), made where missing. Every
//! fd returned is an O_PATH fd that a mount is attached to, so the path is resolved once, by the
//! kernel, inside the root.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fs::Permissions;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use pathrs::InodeType;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::error::pathrs_errno;
use super::{MountError, Rootfs};

type Result<T> = std::result::Result<T, MountError>;

impl Rootfs {
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
    pub(super) fn lookup(&self, path: &Path, follow: bool) -> Result<Option<OwnedFd>> {
        let mut flags = OFlags::PATH | OFlags::CLOEXEC;
        if !follow {
            flags |= OFlags::NOFOLLOW;
        }
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        for _ in 0..16 {
            match rustix::fs::openat2(&self.root, path, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(Some(fd)),
                Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS) => break,
                Err(errno) => return Err(in_rootfs("openat2", path, errno)),
            }
        }
        let found = if follow {
            self.root.resolve(path)
        } else {
            self.root.resolve_nofollow(path)
        };
        match found {
            Ok(h) => Ok(Some(h.into())),
            Err(e) if matches!(pathrs_errno(&e), Some(Errno::NOENT | Errno::NOTDIR)) => Ok(None),
            Err(e) => Err(pathrs("resolve", path, e)),
        }
    }

    /// Make the missing last component of `dest` (a directory, or an empty file when `file` is
    /// set) when its parent exists, the usual case for a mount point. The parent is looked up
    /// in the root; the name has no slash and is not `..`, so mkdirat/openat2 relative to the
    /// parent's fd cannot leave it, and RESOLVE_NO_SYMLINKS refuses a symlink that appears in
    /// its place. None when this does not apply (a deeper path to make, the name already
    /// there): the caller then takes pathrs' mkdir_all/create path.
    fn make_last(&self, dest: &Path, file: bool) -> Result<Option<OwnedFd>> {
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
            Err(Errno::EXIST) => return Ok(None),
            Err(errno) => {
                return Err(in_rootfs(
                    if file { "create" } else { "mkdir" },
                    dest,
                    errno,
                ))
            }
        }
        let flags = OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        rustix::fs::openat2(&dir, name, flags, Mode::empty(), beneath)
            .map(Some)
            .map_err(|errno| in_rootfs("openat2", dest, errno))
    }

    /// Resolve `dest` inside the rootfs, creating it (as a directory, or an empty file when
    /// `file` is set) if it is missing. Returns an O_PATH fd to mount onto.
    ///
    /// A destination that is (or goes through) a dangling symlink is made where the symlink
    /// points, inside the root, as runc does: the new path is only a name, looked up and made
    /// again in the root, so `..` and absolute targets stay inside it.
    pub(super) fn target(&self, dest: &Path, file: bool) -> Result<OwnedFd> {
        let mut dest = Cow::Borrowed(dest);
        let mut links = 0;
        loop {
            if let Some(fd) = self.lookup(&dest, true)? {
                return Ok(fd);
            }
            if let Some(fd) = self.make_last(&dest, file)? {
                return Ok(fd);
            }
            let Some(next) = self.follow_dangling(&dest)? else {
                break;
            };
            // path_resolution(7): at most 40 symlinks in one lookup.
            links += 1;
            if links > 40 {
                return Err(in_rootfs("follow symlinks", &dest, Errno::LOOP));
            }
            dest = Cow::Owned(next);
        }
        let dest = dest.as_ref();
        if !file {
            return self.make_dirs(dest);
        }
        self.make_dirs(dest.parent().unwrap_or(Path::new("/")))?;
        match self
            .root
            .create(dest, &InodeType::File(Permissions::from_mode(0o644)))
        {
            Ok(()) => {}
            Err(e) if pathrs_errno(&e) == Some(Errno::EXIST) => {}
            Err(e) => return Err(pathrs("create", dest, e)),
        }
        self.reopen(dest)
    }

    /// `dest` does not resolve: if that is because one of its components is a symlink whose
    /// target is missing, `dest` with that component replaced by the symlink's target (an
    /// absolute one counts from the root, a relative one from the symlink's directory). None
    /// when the first missing component is not a symlink: there is only something to make.
    fn follow_dangling(&self, dest: &Path) -> Result<Option<PathBuf>> {
        let mut prefix = PathBuf::from("/");
        let mut rest = dest.components();
        while let Some(c) = rest.next() {
            if matches!(c, Component::RootDir | Component::CurDir) {
                continue;
            }
            prefix.push(c);
            if self.lookup(&prefix, true)?.is_some() {
                continue;
            }
            let Component::Normal(_) = c else {
                return Ok(None);
            };
            let Some(link) = self.lookup(&prefix, false)? else {
                return Ok(None);
            };
            let target = match rustix::fs::readlinkat(&link, "", Vec::new()) {
                Ok(t) => PathBuf::from(OsString::from_vec(t.into_bytes())),
                // EINVAL: not a symlink, only missing.
                Err(Errno::INVAL | Errno::NOENT) => return Ok(None),
                Err(errno) => return Err(in_rootfs("readlinkat", &prefix, errno)),
            };
            let mut next = match prefix.parent() {
                Some(dir) if target.is_relative() => dir.join(target),
                _ => Path::new("/").join(target),
            };
            next.extend(rest);
            return Ok(Some(next));
        }
        Ok(None)
    }

    /// process.cwd: made (a directory, 0755 as runc makes it) if the image lacks it, inside the
    /// root like any mount point.
    pub fn make_cwd(&self, cwd: &Path) -> Result<()> {
        self.target(cwd, false).map(drop)
    }

    /// mkdir -p inside the rootfs (pathrs keeps every component inside the root).
    pub(super) fn make_dirs(&self, dir: &Path) -> Result<OwnedFd> {
        self.root
            .mkdir_all(dir, &Permissions::from_mode(0o755))
            .map(Into::into)
            .map_err(|e| pathrs("mkdir", dir, e))
    }

    /// Resolve `dest` again: after a mount was attached there, the new fd names the mount's root
    /// rather than the directory under it.
    pub(super) fn reopen(&self, dest: &Path) -> Result<OwnedFd> {
        self.root
            .resolve(dest)
            .map(Into::into)
            .map_err(|e| pathrs("resolve", dest, e))
    }
}

fn in_rootfs(call: &'static str, path: &Path, errno: Errno) -> MountError {
    MountError::InRootfs {
        call,
        path: path.to_path_buf(),
        errno,
    }
}

pub(super) fn pathrs(call: &'static str, path: &Path, cause: pathrs::error::Error) -> MountError {
    MountError::Pathrs {
        call,
        path: path.to_path_buf(),
        cause,
    }
}

//! One layer tar into one directory, in the form overlayfs reads as a lower layer: OCI
//! whiteouts (`.wh.NAME`, `.wh..wh..opq`) become overlay whiteouts (a 0/0 character device) and
//! opaque directories (`trusted.overlay.opaque=y`), as overlayfs(5) "whiteouts and opaque
//! directories" describes. Nothing is ever written outside the directory: every parent is
//! opened one component at a time with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a
//! `..` component or a symlink on the way is refused (not followed), and an absolute path is
//! refused by name before any call.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as fs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps};
use rustix::io::Errno;

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?}: {why}: refused, nothing written outside the layer")]
    Unsafe { entry: String, why: &'static str },
    #[error("layer entry {entry:?}: {op}: {errno}")]
    Sys {
        entry: String,
        op: &'static str,
        errno: Errno,
    },
    #[error("reading the layer tar: {0}")]
    Tar(#[source] std::io::Error),
}

/// What one layer held, for the store's sizes.
#[derive(Debug, Default)]
pub struct Unpacked {
    pub bytes: u64,
    pub entries: u64,
    /// Device nodes are not created: an island's /dev is atoll's own tmpfs.
    pub skipped_devices: u64,
}

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";

/// Unpack the tar `input` into the directory `dir` (empty, made by the caller).
pub fn unpack(input: impl Read, dir: &Path) -> Result<Unpacked, UnpackError> {
    let root = fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| UnpackError::Sys {
        entry: dir.display().to_string(),
        op: "open the layer directory",
        errno,
    })?;
    let mut archive = tar::Archive::new(input);
    let mut done = Unpacked::default();
    let mut cache: Option<(Vec<String>, OwnedFd)> = None;
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        let mut entry = entry.map_err(UnpackError::Tar)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let parts = components(&raw)?;
        let Some((name, parents)) = parts.split_last() else {
            continue; // "./": the layer's root itself
        };
        let e = Entry { path: &raw };
        let parent = match &cache {
            Some((p, fd)) if p.as_slice() == parents => fd.as_fd(),
            _ => {
                let fd = e.open_dir(root.as_fd(), parents)?;
                cache = Some((parents.to_vec(), fd));
                cache.as_ref().expect("just set").1.as_fd()
            }
        };
        let h = entry.header().clone();
        let mode = Mode::from_raw_mode(h.mode().map_err(UnpackError::Tar)? & 0o7777);
        let owner = (
            h.uid().map_err(UnpackError::Tar)? as u32,
            h.gid().map_err(UnpackError::Tar)? as u32,
        );
        let mtime = h.mtime().map_err(UnpackError::Tar)? as i64;
        done.entries += 1;
        if name == OPAQUE {
            e.sys("set trusted.overlay.opaque", set_opaque(parent))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            check_name(hidden, &raw)?;
            e.remove(parent, hidden)?;
            let dev = fs::makedev(0, 0);
            e.sys(
                "mknodat a whiteout",
                fs::mknodat(
                    parent,
                    hidden,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    dev,
                ),
            )?;
            continue;
        }
        let kind = h.entry_type();
        if kind.is_dir() {
            match fs::mkdirat(parent, name.as_str(), mode) {
                Ok(()) => {}
                Err(Errno::EXIST) if is_dir_at(parent, name) => {}
                Err(Errno::EXIST) => {
                    e.remove(parent, name)?;
                    e.sys("mkdirat", fs::mkdirat(parent, name.as_str(), mode))?;
                }
                Err(errno) => return Err(e.err("mkdirat", errno)),
            }
            let fd = e.open_dir(parent, std::slice::from_ref(name))?;
            e.sys("fchownat", chown(&fd, "", owner, AtFlags::EMPTY_PATH))?;
            e.sys("fchmod", fs::chmod(proc_path(&fd).as_str(), mode))?;
            continue;
        }
        e.remove(parent, name)?;
        if kind.is_file() {
            let f = fs::openat(
                parent,
                name.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|errno| e.err("openat O_CREAT|O_EXCL|O_NOFOLLOW", errno))?;
            let mut file = std::fs::File::from(f);
            done.bytes += std::io::copy(&mut entry, &mut file).map_err(UnpackError::Tar)?;
            e.sys("fchown", chown(&file, "", owner, AtFlags::EMPTY_PATH))?;
            // After chown: chown(2) clears set-user-ID and set-group-ID bits.
            e.sys("fchmod", fs::fchmod(&file, mode))?;
            let t = Timestamps {
                last_access: ts(mtime),
                last_modification: ts(mtime),
            };
            e.sys("futimens", fs::futimens(&file, &t))?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .ok_or(UnpackError::Unsafe {
                    entry: raw.clone(),
                    why: "a symlink without a target",
                })?
                .into_owned();
            // The target is stored, never resolved here: it is read inside the island, whose
            // root is the image's.
            e.sys(
                "symlinkat",
                fs::symlinkat(target.as_slice(), parent, name.as_str()),
            )?;
            e.sys(
                "fchownat AT_SYMLINK_NOFOLLOW",
                chown(parent, name, owner, AtFlags::SYMLINK_NOFOLLOW),
            )?;
        } else if kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .ok_or(UnpackError::Unsafe {
                    entry: raw.clone(),
                    why: "a hard link without a target",
                })?
                .into_owned();
            let tparts = components(&String::from_utf8_lossy(&target))?;
            let Some((tname, tparents)) = tparts.split_last() else {
                return Err(UnpackError::Unsafe {
                    entry: raw.clone(),
                    why: "a hard link to the layer's root",
                });
            };
            let tdir = e.open_dir(root.as_fd(), tparents)?;
            // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself (link(2)).
            e.sys(
                "linkat",
                fs::linkat(
                    &tdir,
                    tname.as_str(),
                    parent,
                    name.as_str(),
                    AtFlags::empty(),
                ),
            )?;
        } else if kind == tar::EntryType::Fifo {
            e.sys(
                "mknodat a fifo",
                fs::mknodat(parent, name.as_str(), FileType::Fifo, mode, 0),
            )?;
            e.sys("fchownat", chown(parent, name, owner, AtFlags::empty()))?;
        } else if kind == tar::EntryType::Char || kind == tar::EntryType::Block {
            done.skipped_devices += 1;
        }
        // Other types (PAX headers, GNU long names) are metadata the tar crate has applied.
    }
    Ok(done)
}

/// The path's components, or a refusal: absolute paths and `..` never name a place in the layer.
fn components(raw: &str) -> Result<Vec<String>, UnpackError> {
    if raw.starts_with('/') {
        return Err(UnpackError::Unsafe {
            entry: raw.into(),
            why: "an absolute path",
        });
    }
    let mut out = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(UnpackError::Unsafe {
                    entry: raw.into(),
                    why: "a '..' component",
                })
            }
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

fn check_name(name: &str, raw: &str) -> Result<(), UnpackError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(UnpackError::Unsafe {
            entry: raw.into(),
            why: "a whiteout of no single name",
        });
    }
    Ok(())
}

struct Entry<'a> {
    path: &'a str,
}

impl Entry<'_> {
    fn err(&self, op: &'static str, errno: Errno) -> UnpackError {
        UnpackError::Sys {
            entry: self.path.into(),
            op,
            errno,
        }
    }

    fn sys<T>(&self, op: &'static str, r: rustix::io::Result<T>) -> Result<T, UnpackError> {
        r.map_err(|errno| self.err(op, errno))
    }

    /// The directory `parts` below `from`, made (0755, root's) where missing: tars may omit
    /// parents. RESOLVE_NO_SYMLINKS answers ELOOP for a symlink on the way (openat2(2)).
    fn open_dir(&self, from: BorrowedFd<'_>, parts: &[String]) -> Result<OwnedFd, UnpackError> {
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut cur = fs::openat2(from, ".", flags, Mode::empty(), how)
            .map_err(|e| self.err("openat2 .", e))?;
        for p in parts {
            let next = match fs::openat2(&cur, p.as_str(), flags, Mode::empty(), how) {
                Err(Errno::NOENT) => {
                    match fs::mkdirat(&cur, p.as_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.err("mkdirat a parent", e)),
                    }
                    fs::openat2(&cur, p.as_str(), flags, Mode::empty(), how)
                }
                r => r,
            };
            cur = match next {
                Ok(fd) => fd,
                Err(Errno::LOOP) => {
                    return Err(UnpackError::Unsafe {
                        entry: self.path.into(),
                        why: "a symlink among its parents",
                    })
                }
                Err(Errno::NOTDIR) => {
                    return Err(UnpackError::Unsafe {
                        entry: self.path.into(),
                        why: "a parent that is not a directory",
                    })
                }
                Err(Errno::XDEV) => {
                    return Err(UnpackError::Unsafe {
                        entry: self.path.into(),
                        why: "a path leaving the layer",
                    })
                }
                Err(e) => return Err(self.err("openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS", e)),
            };
        }
        Ok(cur)
    }

    /// Whatever `name` is in `dir`, gone (a later entry of a tar replaces an earlier one).
    fn remove(&self, dir: BorrowedFd<'_>, name: &str) -> Result<(), UnpackError> {
        match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err("fstatat", e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                let d = self.open_dir(dir, &[name.to_string()])?;
                let d = fs::openat(&d, ".", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                    .map_err(|e| self.err("open a directory to replace", e))?;
                remove_children(d.as_fd())
                    .map_err(|e| self.err("empty a replaced directory", e))?;
                self.sys(
                    "unlinkat AT_REMOVEDIR",
                    fs::unlinkat(dir, name, AtFlags::REMOVEDIR),
                )
            }
            Ok(_) => self.sys("unlinkat", fs::unlinkat(dir, name, AtFlags::empty())),
        }
    }
}

/// Every entry below `dir`, removed without following a symlink.
fn remove_children(dir: BorrowedFd<'_>) -> rustix::io::Result<()> {
    let mut names = Vec::new();
    for e in fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push((
                e.file_name().to_owned(),
                e.file_type() == FileType::Directory,
            ));
        }
    }
    for (n, is_dir) in names {
        if is_dir {
            let sub = fs::openat(
                dir,
                n.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            remove_children(sub.as_fd())?;
            fs::unlinkat(dir, n.as_c_str(), AtFlags::REMOVEDIR)?;
        } else {
            fs::unlinkat(dir, n.as_c_str(), AtFlags::empty())?;
        }
    }
    Ok(())
}

fn is_dir_at(dir: BorrowedFd<'_>, name: &str) -> bool {
    fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

fn chown<Fd: AsFd>(
    dir: Fd,
    name: &str,
    (uid, gid): (u32, u32),
    flags: AtFlags,
) -> rustix::io::Result<()> {
    fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        flags,
    )
}

/// An O_PATH fd cannot be fchmod'ed (EBADF); its /proc/self/fd link can be chmod'ed, and names
/// the very inode the fd holds.
fn proc_path(fd: &OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn set_opaque(dir: BorrowedFd<'_>) -> rustix::io::Result<()> {
    let p = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir));
    fs::setxattr(
        p.as_str(),
        "trusted.overlay.opaque",
        b"y",
        fs::XattrFlags::empty(),
    )
}

fn ts(secs: i64) -> rustix::fs::Timespec {
    rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            // set_path refuses '..'; a hostile tar is written raw.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn dotdot_and_absolute_paths_and_symlinked_parents_are_refused() {
        let d = std::env::temp_dir().join(format!("img-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for (n, tar) in [
            tar_of(&[("../escape", tar::EntryType::Regular, "")]),
            tar_of(&[("/abs", tar::EntryType::Regular, "")]),
            tar_of(&[
                ("evil", tar::EntryType::Symlink, "/"),
                ("evil/x", tar::EntryType::Regular, ""),
            ]),
        ]
        .into_iter()
        .enumerate()
        {
            let layer = d.join(n.to_string());
            std::fs::create_dir_all(&layer).unwrap();
            let e = unpack(tar.as_slice(), &layer).unwrap_err();
            assert!(matches!(e, UnpackError::Unsafe { .. }), "{e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}

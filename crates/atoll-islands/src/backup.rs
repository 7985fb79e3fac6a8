//! `atoll backup`: copy an island's data from the host side, straight from the underlying
//! filesystem, without entering any of its namespaces.
//!
//! The tree belongs to the tenant, who may plant symlinks (`secret -> /etc/shadow`) or swap
//! files while the copy runs. So the walk never resolves a path: each entry is opened by name,
//! relative to its parent's fd, with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_XDEV); a symlink is copied as a symlink (never followed) and reported; a regular
//! file is reopened for reading only after checking it is the same inode the O_PATH open saw.

use std::ffi::OsStr;
use std::fs::{DirBuilder, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use crate::error::{io, IslandsError, Result};

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Symlinks copied as links, not followed: (path in the backup, its target).
    pub symlinks: Vec<(PathBuf, PathBuf)>,
    /// Entries that are neither files, dirs nor symlinks (fifos, sockets, devices): skipped.
    pub skipped: Vec<PathBuf>,
}

fn how() -> ResolveFlags {
    ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV
}

fn errno(op: String) -> impl FnOnce(rustix::io::Errno) -> IslandsError {
    move |e| IslandsError::Io {
        op,
        source: e.into(),
    }
}

/// Who owns the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owners {
    /// Root, as the host made it (modes kept without set-id bits): a backup no tenant uid can
    /// change. `atoll backup`'s default.
    Root,
    /// Each entry's uid, gid and whole mode (set-id bits too), as `cp -a` or root's `tar -x` keep
    /// them: a copy an island can run on again (`atoll backup --keep-owners`, island archives).
    /// Each directory gets its owner only after everything in it is copied, the top one last, so
    /// no tenant uid can reach into the copy while it is being made.
    Keep,
}

/// Copy the tree at `src` (a host path root owns, e.g. an island's data dir) into `dest`, which
/// must not exist yet and must not lie inside `src`.
pub fn copy_tree(src: &Path, dest: &Path, owners: Owners) -> Result<Report> {
    let src_real = src
        .canonicalize()
        .map_err(io(format!("resolve {}", src.display())))?;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dest_parent = parent
        .canonicalize()
        .map_err(io(format!("resolve {}", parent.display())))?;
    if dest_parent.starts_with(&src_real) {
        return Err(IslandsError::Other(format!(
            "backup destination {} lies inside the island's data {}",
            dest.display(),
            src_real.display()
        )));
    }
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(IslandsError::Other(format!(
            "backup destination {} already exists: give a new path",
            dest.display()
        )));
    }
    let root = rustix::fs::open(
        &src_real,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(format!("open {}", src_real.display())))?;
    DirBuilder::new()
        .mode(0o700)
        .create(dest)
        .map_err(io(format!("mkdir {}", dest.display())))?;
    let mut report = Report::default();
    copy_dir(root.as_fd(), dest, Path::new(""), owners, &mut report)?;
    if owners == Owners::Keep {
        let st = rustix::fs::fstat(&root).map_err(errno(format!("stat {}", src_real.display())))?;
        give(dest, &st)?;
    }
    Ok(report)
}

/// `Owners::Keep`: the entry at `at` (made by this copy, in a directory no tenant can reach yet)
/// gets the owner and then the mode `st` has (chown clears set-id bits, so the mode comes after).
fn give(at: &Path, st: &rustix::fs::Stat) -> Result<()> {
    std::os::unix::fs::lchown(at, Some(st.st_uid), Some(st.st_gid)).map_err(io(format!(
        "chown {} to {}:{}",
        at.display(),
        st.st_uid,
        st.st_gid
    )))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(at, std::fs::Permissions::from_mode(st.st_mode & 0o7777))
            .map_err(io(format!(
                "chmod {:o} {}",
                st.st_mode & 0o7777,
                at.display()
            )))?;
    }
    Ok(())
}

fn copy_dir(
    dir: BorrowedFd<'_>,
    dest: &Path,
    rel: &Path,
    owners: Owners,
    report: &mut Report,
) -> Result<()> {
    report.dirs += 1;
    let entries =
        rustix::fs::Dir::read_from(dir).map_err(errno(format!("read dir {}", rel.display())))?;
    for entry in entries {
        let entry = entry.map_err(errno(format!("read dir {}", rel.display())))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let rel = rel.join(name);
        let at = dest.join(name);
        let handle = rustix::fs::openat2(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            how(),
        )
        .map_err(errno(format!("open {}", rel.display())))?;
        let st = rustix::fs::fstat(&handle).map_err(errno(format!("stat {}", rel.display())))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let sub = reopen(dir, name, &st, OFlags::DIRECTORY, &rel)?;
                DirBuilder::new()
                    .mode(st.st_mode & 0o777)
                    .create(&at)
                    .map_err(io(format!("mkdir {}", at.display())))?;
                copy_dir(sub.as_fd(), &at, &rel, owners, report)?;
                if owners == Owners::Keep {
                    give(&at, &st)?;
                }
            }
            FileType::RegularFile => {
                let f = reopen(dir, name, &st, OFlags::NOCTTY | OFlags::NONBLOCK, &rel)?;
                let mut from = std::fs::File::from(f);
                let mut to = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(st.st_mode & 0o777)
                    .open(&at)
                    .map_err(io(format!("create {}", at.display())))?;
                report.bytes += std::io::copy(&mut from, &mut to)
                    .map_err(io(format!("copy {}", rel.display())))?;
                report.files += 1;
                if owners == Owners::Keep {
                    give(&at, &st)?;
                }
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(errno(format!("readlink {}", rel.display())))?;
                let target = PathBuf::from(OsStr::from_bytes(target.to_bytes()));
                std::os::unix::fs::symlink(&target, &at)
                    .map_err(io(format!("symlink {}", at.display())))?;
                if owners == Owners::Keep {
                    give(&at, &st)?;
                }
                report.symlinks.push((rel, target));
            }
            _ => report.skipped.push(rel),
        }
    }
    Ok(())
}

/// Open `name` for real, and check it is still the inode the O_PATH open saw (the tenant may
/// have swapped it in between).
fn reopen(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    seen: &rustix::fs::Stat,
    extra: OFlags,
    rel: &Path,
) -> Result<OwnedFd> {
    let fd = rustix::fs::openat2(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | extra,
        Mode::empty(),
        how(),
    )
    .map_err(errno(format!("open {}", rel.display())))?;
    let st = rustix::fs::fstat(&fd).map_err(errno(format!("stat {}", rel.display())))?;
    if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) {
        return Err(IslandsError::Other(format!(
            "{} changed while it was being copied; run the backup again (or with --freeze)",
            rel.display()
        )));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_copied_as_links_and_never_followed() {
        let base = std::env::temp_dir().join(format!("atoll-backup-test-{}", std::process::id()));
        let src = base.join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.txt"), b"hello").unwrap();
        std::fs::write(src.join("sub/b.txt"), b"world!").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("secret")).unwrap();
        std::os::unix::fs::symlink("/etc", src.join("sub/etcdir")).unwrap();
        let dest = base.join("out");
        let r = copy_tree(&src, &dest, Owners::Root).unwrap();
        assert_eq!((r.files, r.dirs, r.bytes), (2, 2, 11));
        assert_eq!(std::fs::read(dest.join("sub/b.txt")).unwrap(), b"world!");
        let meta = std::fs::symlink_metadata(dest.join("secret")).unwrap();
        assert!(meta.file_type().is_symlink(), "the link stays a link");
        assert_eq!(r.symlinks.len(), 2);
        let etc = std::fs::symlink_metadata(dest.join("sub/etcdir")).unwrap();
        assert!(
            etc.file_type().is_symlink(),
            "a linked dir is not walked into"
        );
        // Refusals: an existing destination, and one inside the source.
        assert!(copy_tree(&src, &dest, Owners::Root)
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        let inside = copy_tree(&src, &src.join("sub/x"), Owners::Root)
            .unwrap_err()
            .to_string();
        assert!(inside.contains("inside the island's data"), "{inside}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Needs root (chown to other uids).
    #[test]
    fn keep_owners_copies_owner_and_whole_mode_and_root_copies_stay_roots() {
        use atoll_testkit::gate;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !gate::gate("keep_owners", gate::missing_root()) {
            return;
        }
        let base = std::env::temp_dir().join(format!("atoll-backup-keep-{}", std::process::id()));
        let src = base.join("src");
        std::fs::create_dir_all(src.join("pg")).unwrap();
        std::fs::write(src.join("pg/PG_VERSION"), b"15").unwrap();
        std::os::unix::fs::symlink("PG_VERSION", src.join("pg/link")).unwrap();
        for (p, mode) in [("", 0o700), ("pg", 0o2750), ("pg/PG_VERSION", 0o640)] {
            let at = src.join(p);
            std::os::unix::fs::lchown(&at, Some(201000), Some(201001)).unwrap();
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::lchown(src.join("pg/link"), Some(201000), Some(201001)).unwrap();
        let owner = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777)
        };
        let kept = base.join("kept");
        copy_tree(&src, &kept, Owners::Keep).unwrap();
        assert_eq!(owner(&kept), (201000, 201001, 0o700));
        assert_eq!(owner(&kept.join("pg")), (201000, 201001, 0o2750));
        assert_eq!(owner(&kept.join("pg/PG_VERSION")), (201000, 201001, 0o640));
        assert_eq!(owner(&kept.join("pg/link")).0, 201000, "a link's own owner");
        let roots = base.join("roots");
        copy_tree(&src, &roots, Owners::Root).unwrap();
        assert_eq!(owner(&roots.join("pg/PG_VERSION")).0, 0);
        assert_eq!(owner(&roots.join("pg")).2 & 0o7000, 0, "no set-id bits");
        std::fs::remove_dir_all(&base).unwrap();
    }
}

//! An island's own writable places besides its data dir: `tmpfs` mounts (private, emptied on
//! every start) and `writable` dirs kept on the host in `<data_root>/.writable/<island>/<path>`
//! (kept across `down`/`up`, like the data dir), each owned by the island's user.

use std::fs::Permissions;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pathrs::flags::{OpenFlags, ResolverFlags};
use serde_json::{json, Value};

use crate::error::{IslandsError, Result};
use crate::plan::IslandPlan;

/// Where the island's writable dirs live on the host, beside its data dir (island names never
/// start with '.', so no island's data dir is ever called this).
pub fn root(island: &IslandPlan) -> PathBuf {
    island
        .data_dir
        .parent()
        .unwrap_or(Path::new("/"))
        .join(".writable")
        .join(&island.spec.name)
}

/// The host dir of writable path `at` (a normal absolute path inside the island).
pub fn host_dir(island: &IslandPlan, at: &str) -> PathBuf {
    root(island).join(at.trim_start_matches('/'))
}

/// Make each writable dir (mode 0700, owned by the island user's host uid and gid) and the
/// root-owned dirs above it. Every path is resolved inside the data root (pathrs: openat2
/// RESOLVE_IN_ROOT, and no symlinks at all), and every dir above a writable dir must be
/// root's and writable by root only: a dir the tenant owns (a writable dir of an earlier file
/// that now holds a new one) could have its entries swapped for symlinks between this check and
/// the runtime's bind, so it is refused, before anything is made.
pub fn make(island: &IslandPlan) -> Result<()> {
    if island.spec.writable.is_empty() {
        return Ok(());
    }
    let base = island.data_dir.parent().unwrap_or(Path::new("/"));
    let fail = |at: &str, what: String| IslandsError::Island {
        island: island.spec.name.clone(),
        msg: format!("writable {at}: {what}"),
    };
    let data_root = pathrs::Root::open(base)
        .map_err(|e| fail("", format!("open {}: {}", base.display(), why(&e))))?
        .with_resolver_flags(ResolverFlags::NO_SYMLINKS);
    let (uid, gid) = crate::share::host_ids(island);
    for at in &island.spec.writable {
        let rel = Path::new(".writable")
            .join(&island.spec.name)
            .join(at.trim_start_matches('/'));
        let shown = base.join(&rel);
        // Top down, before anything is made: the first dir that is not root's is named.
        let mut above: Vec<&Path> = rel
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        above.reverse();
        for p in above {
            root_owned(&data_root, base, p).map_err(|m| fail(at, m))?;
        }
        let dir = data_root
            .mkdir_all(&rel, &Permissions::from_mode(0o755))
            .map_err(|e| fail(at, format!("mkdir {}: {}", shown.display(), why(&e))))?;
        let f = dir
            .reopen(OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY)
            .map_err(|e| fail(at, format!("open {}: {}", shown.display(), why(&e))))?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
            .map_err(|e| fail(at, format!("chown {} to {uid}:{gid}: {e}", shown.display())))?;
        f.set_permissions(Permissions::from_mode(0o700))
            .map_err(|e| fail(at, format!("chmod 0700 {}: {e}", shown.display())))?;
    }
    Ok(())
}

/// Whether `rel` (below the data root) is missing, or a dir that root owns and only root may
/// write: then the tenant cannot change what is in it.
fn root_owned(data_root: &pathrs::Root, base: &Path, rel: &Path) -> Result<(), String> {
    let shown = base.join(rel);
    let h = match data_root.resolve(rel) {
        Ok(h) => h,
        Err(e) if matches!(e.kind(), pathrs::error::ErrorKind::OsError(Some(n)) if n == rustix::io::Errno::NOENT.raw_os_error()) => {
            return Ok(())
        }
        Err(e) => return Err(format!("open {}: {}", shown.display(), why(&e))),
    };
    let st = rustix::fs::fstat(h.as_fd()).map_err(|e| format!("fstat {}: {e}", shown.display()))?;
    if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
        return Err(format!(
            "{} (above it) belongs to uid {} with mode {:o}, not to root: it was a writable dir of the island; move it away on the host or choose another path",
            shown.display(),
            st.st_uid,
            st.st_mode & 0o7777
        ));
    }
    Ok(())
}

/// A pathrs error with its errno spelled out (its own text names only the step).
fn why(e: &pathrs::error::Error) -> String {
    match e.kind() {
        pathrs::error::ErrorKind::OsError(Some(n)) => {
            format!("{e}: {}", std::io::Error::from_raw_os_error(n))
        }
        _ => e.to_string(),
    }
}

/// The config mounts: each tmpfs (mounted by the island's init inside its user namespace, so
/// `uid=`/`gid=` are ids inside; tmpfs(5)) and each writable dir, read-write like the data dir.
pub fn mounts(island: &IslandPlan) -> Vec<Value> {
    let (uid, gid) = (island.spec.uid, island.spec.gid);
    let tmpfs = island.spec.tmpfs.iter().map(|at| {
        json!({"destination": at, "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=0755", "size=65536k",
                           format!("uid={uid}"), format!("gid={gid}")]})
    });
    let writable = island.spec.writable.iter().map(|at| {
        json!({"destination": at, "type": "bind", "source": host_dir(island, at),
               "options": ["bind", "rw", "nosuid", "nodev"]})
    });
    tmpfs.chain(writable).collect()
}

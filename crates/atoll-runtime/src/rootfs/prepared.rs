//! Detached bind mounts.

use super::apply::set_attrs;
use super::*;

/// A bind mount's source (relative ones against the bundle) and whether it is a directory.
pub(super) fn bind_source(bundle: &Path, i: usize, m: &Mount) -> Result<(PathBuf, bool)> {
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

//! Bind mounts made detached (open_tree(OPEN_TREE_CLONE) plus mount_setattr) before they are
//! attached: by the init for its own, and by the parent for the idmapped ones of a container in a
//! user namespace, which the init fetches ([`PreparedMounts`]) before it applies the plan.

use std::borrow::Cow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use atoll_sys::mount::{self as sysm, MountAttr};
use oci_spec::runtime::Mount;
use rustix::mount::{open_tree, OpenTreeFlags};

use super::error::{io_errno, Named};
use super::plan::{mount_op, IdmapUserns, MountKind, MountOp, MountPlan};
use super::MountError;
use crate::error::{field, Result};

/// Where MOUNT_ATTR_IDMAP's user namespace comes from.
pub struct UsernsFor<'a> {
    /// Makes one carrying a mount's own uidMappings/gidMappings.
    pub mount: &'a dyn Fn(&Mount) -> Result<OwnedFd>,
    /// Opens the container's.
    pub container: &'a dyn Fn() -> Result<OwnedFd>,
}

/// A bind mount's source (a relative one against the bundle) and whether it is a directory.
pub(super) fn bind_source<'s>(
    bundle: &Path,
    index: usize,
    source: &'s Path,
) -> Result<(Cow<'s, Path>, bool)> {
    let src = if source.is_absolute() {
        Cow::Borrowed(source)
    } else {
        Cow::Owned(bundle.join(source))
    };
    let md = std::fs::metadata(&src).map_err(|e| {
        let errno = Named(io_errno(&e));
        field(
            format!("mounts[{index}].source"),
            format!("{src:?}: {errno}"),
        )
    })?;
    Ok((src, md.is_dir()))
}

/// The detached bind mount of `src` for `op`, with every attribute (read-only, nosuid, ...,
/// idmap) already set.
pub(super) fn detached_bind(
    src: &Path,
    op: &MountOp<'_>,
    userns: &UsernsFor<'_>,
) -> Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if op.opts.recursive_bind {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let mnt = open_tree(rustix::fs::CWD, src, flags)
        .map_err(|errno| op.failed(format!("open_tree {src:?}"), errno))?;
    set_attrs(mnt.as_fd(), op, userns)?;
    Ok(mnt)
}

/// Set the op's mount attributes on the detached mount `mnt`: the recursive ones first, then
/// those of its top, then the idmapping (mount_setattr(2) takes one user namespace per call).
pub(super) fn set_attrs(
    mnt: BorrowedFd<'_>,
    op: &MountOp<'_>,
    userns: &UsernsFor<'_>,
) -> Result<()> {
    let o = &op.opts;
    let fail = |e: std::io::Error| op.failed("mount_setattr", io_errno(&e));
    if o.rattr_set | o.rattr_clr != 0 {
        let attr = MountAttr {
            set: o.rattr_set,
            clr: o.rattr_clr,
            ..Default::default()
        };
        sysm::mount_setattr(mnt, true, &attr).map_err(fail)?;
    }
    if o.attr_set | o.attr_clr != 0 {
        let attr = MountAttr {
            set: o.attr_set,
            clr: o.attr_clr,
            ..Default::default()
        };
        sysm::mount_setattr(mnt, false, &attr).map_err(fail)?;
    }
    if let Some(idmap) = op.idmap {
        let ns = match idmap.userns {
            IdmapUserns::Mount => (userns.mount)(op.mount)?,
            IdmapUserns::Container => (userns.container)()?,
        };
        let attr = MountAttr {
            set: sysm::MOUNT_ATTR_IDMAP,
            userns: Some(ns.as_fd()),
            ..Default::default()
        };
        sysm::mount_setattr(mnt, idmap.recursive, &attr)
            .map_err(|e| op.failed("mount_setattr MOUNT_ATTR_IDMAP", io_errno(&e)))?;
    }
    Ok(())
}

/// The parent's answer to NeedMount(`index`): the idmapped bind mount of config mount `index`
/// for a container in a user namespace. `userns` gives the mapping's user namespace. Anything
/// the plan would not have the parent make is refused.
pub fn prepare_for_init(
    bundle: &Path,
    mounts: &[Mount],
    index: usize,
    userns: &UsernsFor<'_>,
) -> Result<OwnedFd> {
    let m = mounts
        .get(index)
        .ok_or_else(|| field(format!("mounts[{index}]"), "no such mount"))?;
    let op = mount_op(index, m, true)?;
    let MountKind::FromParent { source } = op.kind else {
        return Err(field(
            format!("mounts[{index}]"),
            "not an idmapped bind mount: the init makes it itself",
        ));
    };
    let (src, _) = bind_source(bundle, index, source)?;
    detached_bind(&src, &op, userns)
}

/// The mounts the parent made for the init, by config index.
#[derive(Debug, Default)]
pub struct PreparedMounts {
    fds: Vec<(usize, OwnedFd)>,
}

impl PreparedMounts {
    /// Ask for each mount the plan has the parent make (`ask`: NeedMount, then its answer), all
    /// before the plan is applied.
    pub fn fetch(
        plan: &MountPlan<'_>,
        mut ask: impl FnMut(usize) -> Result<OwnedFd>,
    ) -> Result<PreparedMounts> {
        let mut fds = Vec::new();
        for index in plan.from_parent() {
            fds.push((index, ask(index)?));
        }
        Ok(PreparedMounts { fds })
    }

    pub(super) fn take(&mut self, index: usize) -> Result<OwnedFd, MountError> {
        let at = self
            .fds
            .iter()
            .position(|(i, _)| *i == index)
            .ok_or(MountError::NotPrepared { index })?;
        Ok(self.fds.swap_remove(at).1)
    }
}

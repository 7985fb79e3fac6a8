//! Bind mounts made detached (open_tree(OPEN_TREE_CLONE) plus mount_setattr) before they are
//! attached: by the init for its own, and by the parent for the idmapped ones of a container in a
//! user namespace, which the init fetches ([`PreparedMounts`]) before it applies the plan.

use std::borrow::Cow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use atoll_sys::mount::{self as sysm, MountAttr};
use oci_spec::runtime::Mount;
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
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

/// A bind mount's source path: a relative one is against the bundle.
fn source_path<'s>(bundle: &Path, source: &'s Path) -> Cow<'s, Path> {
    if source.is_absolute() {
        Cow::Borrowed(source)
    } else {
        Cow::Owned(bundle.join(source))
    }
}

/// Where a bind mount's source is: its path, or (a container in a user namespace whose root may
/// not reach it) an O_PATH fd the parent opened for us.
pub(super) enum BindSource<'s> {
    Path(Cow<'s, Path>),
    Fd(OwnedFd),
}

/// A bind mount's source and whether it is a directory. `from_parent`: where the path is
/// refused (EACCES: a directory on the way the container's root may not search), ask the
/// parent, root in the host's user namespace, to open it (NeedMount); None outside a user
/// namespace, where nothing would answer differently.
pub(super) fn bind_source<'s>(
    bundle: &Path,
    index: usize,
    source: &'s Path,
    from_parent: Option<&dyn Fn(usize) -> Result<OwnedFd>>,
) -> Result<(BindSource<'s>, bool)> {
    let src = source_path(bundle, source);
    let refused = |errno: Errno| {
        field(
            format!("mounts[{index}].source"),
            format!("{src:?}: {}", Named(errno)),
        )
    };
    match std::fs::metadata(&src) {
        Ok(md) => Ok((BindSource::Path(src), md.is_dir())),
        Err(e) => match (io_errno(&e), from_parent) {
            (Errno::ACCESS, Some(ask)) => {
                let fd = ask(index)?;
                let st = rustix::fs::fstat(&fd).map_err(refused)?;
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                Ok((BindSource::Fd(fd), is_dir))
            }
            (errno, _) => Err(refused(errno)),
        },
    }
}

/// The detached bind mount of `src` for `op`, with every attribute (read-only, nosuid, ...,
/// idmap) already set.
pub(super) fn detached_bind(
    src: &BindSource<'_>,
    op: &MountOp<'_>,
    userns: &UsernsFor<'_>,
) -> Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if op.opts.recursive_bind {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let mnt = match src {
        BindSource::Path(p) => open_tree(rustix::fs::CWD, p.as_ref(), flags)
            .map_err(|errno| op.failed(format!("open_tree {p:?}"), errno))?,
        BindSource::Fd(fd) => open_tree(fd, "", flags | OpenTreeFlags::AT_EMPTY_PATH)
            .map_err(|errno| op.failed("open_tree (the source the parent opened)", errno))?,
    };
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
        sysm::mount_setattr(mnt, idmap.recursive, &attr).map_err(|e| {
            let errno = io_errno(&e);
            op.failed(idmap_refused(mnt, errno), errno)
        })?;
    }
    Ok(())
}

/// The failed call, and where the kernel said EINVAL for a filesystem that takes no idmap
/// (no FS_ALLOW_IDMAP in its type, or SB_I_NOIDMAP: NFS, CIFS, FUSE whose server did not opt
/// in; mount_setattr(2)), which filesystem it is: the errno alone reads as a bad argument.
#[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures
fn idmap_refused(mnt: BorrowedFd<'_>, errno: Errno) -> Cow<'static, str> {
    let call = "mount_setattr MOUNT_ATTR_IDMAP";
    match (errno, rustix::fs::fstatfs(mnt)) {
        (Errno::INVAL, Ok(st)) => Cow::Owned(format!(
            "{call} (the source's filesystem, f_type {:#x}, may not take idmapped mounts)",
            st.f_type as u64 & 0xffff_ffff
        )),
        _ => Cow::Borrowed(call),
    }
}

/// The parent's answer to NeedMount(`index`) from the init `init_pid` of a container in a user
/// namespace: for an idmapped bind mount, the mount itself (`userns` gives the mapping's user
/// namespace); for a plain bind mount, whose source the init was refused, an O_PATH fd of the
/// source that the init clones with open_tree. Anything else is refused.
pub fn prepare_for_init(
    bundle: &Path,
    mounts: &[Mount],
    index: usize,
    init_pid: i32,
    userns: &UsernsFor<'_>,
) -> Result<OwnedFd> {
    let m = mounts
        .get(index)
        .ok_or_else(|| field(format!("mounts[{index}]"), "no such mount"))?;
    let op = mount_op(index, m, true)?;
    match op.kind {
        MountKind::FromParent { source } => {
            let (src, _) = bind_source(bundle, index, source, None)?;
            detached_bind(&src, &op, userns)
        }
        MountKind::Bind { source } => open_in_init_ns(&source_path(bundle, source), init_pid)
            .map_err(|errno| {
                op.failed(format!("open {source:?} for the init"), errno)
                    .into()
            }),
        _ => Err(field(format!("mounts[{index}]"), "not a bind mount")),
    }
}

/// `source` opened O_PATH in the init's mount namespace, through its root: open_tree(2) clones
/// only a mount of the caller's own namespace (EINVAL otherwise), so the fd must name the init's
/// copy of the host's mount, not ours. RESOLVE_IN_ROOT keeps absolute symlinks on the way in
/// that root (the host's tree, before pivot_root). As root here, the directories on the way
/// need not be searchable by the container's root, and the fd carries no such check onwards.
fn open_in_init_ns(source: &Path, init_pid: i32) -> rustix::io::Result<OwnedFd> {
    let root = rustix::fs::open(
        format!("/proc/{init_pid}/root").as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::openat2(
        &root,
        source,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
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

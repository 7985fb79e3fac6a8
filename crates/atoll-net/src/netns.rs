//! Network namespaces pinned by a bind mount (what `ip netns add` does), and `enter` to run code
//! with the calling thread inside one. Namespaces are created by the host's user namespace, so an
//! island's tenant never holds CAP_NET_ADMIN over its own network.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use atoll_sys::nsfs::NSFS_MAGIC;
use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MoveMountFlags, OpenTreeFlags, UnmountFlags};
use rustix::thread::LinkNameSpaceType;

use crate::error::NetError;
use crate::netlink::Socket;

/// A network namespace pinned by a bind mount at `path`.
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    fd: OwnedFd,
}

impl Netns {
    /// Create a new network namespace pinned at `path` (parent directories are created), with `lo`
    /// up. The namespace is made by a short-lived thread, so the caller's threads never change
    /// namespace. Fails with `NetnsExists` if a namespace is already mounted at `path`; a plain
    /// file left there by a crash is reused.
    pub fn create(path: &Path) -> Result<Netns, NetError> {
        prepare_mountpoint(path)?;
        let owned = path.to_owned();
        let fd = std::thread::spawn(move || unshare_netns(&owned))
            .join()
            .expect("the netns creation thread does not panic")?;
        mount_at(&fd, path)?;
        Ok(Netns {
            path: path.to_owned(),
            fd,
        })
    }

    /// Pin an existing network namespace, such as a container's `/proc/<pid>/ns/net` (made in
    /// the container's own user namespace so that capabilities like CAP_NET_BIND_SERVICE held
    /// there apply to it), at `path`, and set its `lo` up. The host keeps full control of it:
    /// the host's user namespace is an ancestor of the container's.
    pub fn pin(ns_file: &Path, path: &Path) -> Result<Netns, NetError> {
        let src = rustix::fs::open(ns_file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|errno| netns_err("open netns", ns_file, errno))?;
        let f_type = nsfs_type(&src, ns_file)?;
        if f_type as u64 != NSFS_MAGIC {
            return Err(NetError::NotNetns {
                path: ns_file.to_owned(),
                f_type,
            });
        }
        prepare_mountpoint(path)?;
        mount_at(&src, path)?;
        let ns = Netns {
            path: path.to_owned(),
            fd: src,
        };
        let label = format!("{path:?}");
        ns.enter(|| -> Result<(), NetError> {
            Socket::open(&label)?.execute(&[crate::netlink::Request::loopback_up()])?;
            Ok(())
        })??;
        Ok(ns)
    }

    /// Open the namespace pinned at `path`; fails unless it is a network namespace.
    pub fn open(path: &Path) -> Result<Netns, NetError> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|errno| netns_err("open netns", path, errno))?;
        let f_type = nsfs_type(&fd, path)?;
        if f_type as u64 != NSFS_MAGIC {
            return Err(NetError::NotNetns {
                path: path.to_owned(),
                f_type,
            });
        }
        // The nsfs check above accepts any namespace type; setns with a type (in `enter`) refuses
        // the wrong one with EINVAL, which is reported with this path.
        Ok(Netns {
            path: path.to_owned(),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Run `f` with the calling thread switched into this namespace, and switch back after, also
    /// when `f` returns an error. Only the calling thread moves (setns(2) acts per thread).
    ///
    /// Panics if the thread cannot be switched back: a thread left in an island's namespace
    /// would run later host operations inside it, and no caller can recover from that.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> Result<T, NetError> {
        let home = current_netns()?;
        rustix::thread::move_into_link_name_space(
            self.fd.as_fd(),
            Some(LinkNameSpaceType::Network),
        )
        .map_err(|errno| NetError::Setns {
            target: format!("{:?}", self.path),
            errno,
        })?;
        let out = f();
        if let Err(errno) = rustix::thread::move_into_link_name_space(
            home.as_fd(),
            Some(LinkNameSpaceType::Network),
        ) {
            panic!(
                "setns back to the original netns after entering {:?}: {errno}",
                self.path
            );
        }
        Ok(out)
    }
}

/// Unmount (MNT_DETACH) and unlink the namespace pinned at `path`; Ok if `path` is absent. The
/// namespace itself dies when its last user (process, socket, fd) is gone.
pub fn remove(path: &Path) -> Result<(), NetError> {
    match rustix::mount::unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
        // EINVAL: not a mount point (a file left by a crash between create and mount).
        Ok(()) | Err(Errno::INVAL) => {}
        Err(Errno::NOENT) => return Ok(()),
        Err(errno) => return Err(netns_err("umount netns", path, errno)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetError::NetnsFile {
            op: "unlink netns file",
            path: path.to_owned(),
            source,
        }),
    }
}

/// The calling thread's current network namespace, to return to after `enter`.
fn current_netns() -> Result<OwnedFd, NetError> {
    // One private procfs for the process: `subset=pid` (only pid dirs), kept for reuse.
    static PROC: OnceLock<ProcfsHandle> = OnceLock::new();
    let proc = match PROC.get() {
        Some(p) => p,
        None => {
            let p = ProcfsHandle::new().map_err(|e| NetError::NetnsFile {
                op: "open a private procfs for",
                path: "/proc/thread-self/ns/net".into(),
                source: std::io::Error::other(e),
            })?;
            PROC.get_or_init(|| p)
        }
    };
    let file = proc
        .open_follow(
            ProcfsBase::ProcThreadSelf,
            "ns/net",
            OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
        )
        .map_err(|e| NetError::NetnsFile {
            op: "open",
            path: "/proc/thread-self/ns/net".into(),
            source: std::io::Error::other(e),
        })?;
    Ok(file.into())
}

/// Pin the namespace behind `ns` by binding it onto `path` (a prepared mount-point file): the
/// mount API's clone of an nsfs file, attached by fd.
fn mount_at(ns: &OwnedFd, path: &Path) -> Result<(), NetError> {
    let tree = rustix::mount::open_tree(
        ns,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|errno| netns_err("open_tree the netns to pin at", path, errno))?;
    rustix::mount::move_mount(
        &tree,
        "",
        rustix::fs::CWD,
        path,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|errno| netns_err("move_mount netns onto", path, errno))
}

/// Create the parent directory and an empty mount-point file (mode 0, like `ip netns add`);
/// refuse if a namespace is already mounted there.
fn prepare_mountpoint(path: &Path) -> Result<(), NetError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| NetError::NetnsFile {
            op: "create directory for netns",
            path: parent.to_owned(),
            source,
        })?;
    }
    match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(_) => Ok(()),
        Err(Errno::EXIST) => {
            let fd = rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
            )
            .map_err(|errno| netns_err("open existing netns file", path, errno))?;
            if nsfs_type(&fd, path)? as u64 == NSFS_MAGIC {
                return Err(NetError::NetnsExists {
                    path: path.to_owned(),
                });
            }
            Ok(())
        }
        Err(errno) => Err(netns_err("create netns file", path, errno)),
    }
}

/// Body of the creating thread: unshare(CLONE_NEWNET) moves only this thread, which then pins
/// the namespace by fd and sets `lo` up before it exits.
fn unshare_netns(path: &Path) -> Result<OwnedFd, NetError> {
    atoll_sys::namespace::unshare(rustix::thread::UnshareFlags::NEWNET).map_err(|e| {
        let errno = Errno::from_io_error(&e).unwrap_or(Errno::IO);
        netns_err("unshare(CLONE_NEWNET) for", path, errno)
    })?;
    let fd = current_netns()?;
    let label = format!("{path:?}");
    let mut sock = Socket::open(&label)?;
    sock.execute(&[crate::netlink::Request::loopback_up()])?;
    Ok(fd)
}

fn nsfs_type(fd: &OwnedFd, path: &Path) -> Result<i64, NetError> {
    let st = rustix::fs::fstatfs(fd).map_err(|errno| netns_err("fstatfs", path, errno))?;
    Ok(st.f_type as i64)
}

fn netns_err(op: &'static str, path: &Path, errno: Errno) -> NetError {
    NetError::Netns {
        op,
        path: path.to_owned(),
        errno,
    }
}

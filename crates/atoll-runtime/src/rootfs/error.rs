//! What can go wrong building the container's file view. Each variant names the syscall and what
//! it acted on and keeps the errno typed ([`MountError::errno`]), so callers can tell ENOENT from
//! EACCES. The errno is printed in the message and not returned as `source()`: the init's error
//! reaches the parent as its message alone, and a printer that walks the chain prints it once.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use rustix::io::Errno;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A step of config mount `index` (fsopen, fsconfig, fsmount, open_tree, mount_setattr,
    /// move_mount).
    #[error("mounts[{index}] ({fstype:?} on {dest:?}): {call}: {}", Named(*.errno))]
    Mount {
        index: usize,
        fstype: String,
        dest: PathBuf,
        call: Cow<'static, str>,
        errno: Errno,
    },
    /// A syscall on a path inside the rootfs (openat2, mkdir, create).
    #[error("{call} {path:?} in the rootfs: {}", Named(*.errno))]
    InRootfs {
        call: &'static str,
        path: PathBuf,
        errno: Errno,
    },
    /// pathrs' own resolver (kernels without openat2, or making a whole path) refused. Its
    /// message carries the errno; [`MountError::errno`] reads it back.
    #[error("{call} {path:?} in the rootfs: {cause}")]
    Pathrs {
        call: &'static str,
        path: PathBuf,
        cause: pathrs::error::Error,
    },
    #[error("open rootfs {path:?}: {cause}")]
    OpenRootfs {
        path: PathBuf,
        cause: pathrs::error::Error,
    },
    #[error("maskedPaths {path:?}: {call}: {}", Named(*.errno))]
    Mask {
        path: String,
        call: &'static str,
        errno: Errno,
    },
    #[error("readonlyPaths {path:?}: {call}: {}", Named(*.errno))]
    Readonly {
        path: String,
        call: &'static str,
        errno: Errno,
    },
    #[error("device {path:?}: {call}: {}", Named(*.errno))]
    Device {
        path: PathBuf,
        call: &'static str,
        errno: Errno,
    },
    /// chmod/chown would follow it out of the rootfs.
    #[error("device {path:?} is a symlink in the rootfs")]
    DeviceIsSymlink { path: PathBuf },
    #[error("/dev/console: {call}: {}", Named(*.errno))]
    Console { call: &'static str, errno: Errno },
    #[error("refusing to mount the console on /dev/console: the rootfs has a {kind} there")]
    ConsoleNotAFile { kind: &'static str },
    #[error("host /dev/null: {call}: {}", Named(*.errno))]
    HostDevNull { call: &'static str, errno: Errno },
    #[error("host /dev/null is not the character device 1:3")]
    HostDevNullNotNull,
    #[error("{dest:?} is not procfs after mounting proc there (f_type {f_type:#x})")]
    NotProcfs { dest: PathBuf, f_type: i64 },
    /// The parent did not send the mount it makes for config mount `index`.
    #[error("mounts[{index}]: no mount from the parent: {why}")]
    FromParent { index: usize, why: String },
    /// The parent's answers did not hold the mount the plan has it make.
    #[error("mounts[{index}]: no mount from the parent for it")]
    NotPrepared { index: usize },
    /// Making the mount that holds the rootfs private (rootfsPropagation shared).
    #[error("rootfs {path:?}: make the mount holding it private: {call}: {}", Named(*.errno))]
    RootfsParent {
        path: PathBuf,
        call: &'static str,
        errno: Errno,
    },
}

impl MountError {
    /// The errno the kernel answered, when a syscall failed.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            MountError::Mount { errno, .. }
            | MountError::InRootfs { errno, .. }
            | MountError::Mask { errno, .. }
            | MountError::Readonly { errno, .. }
            | MountError::Device { errno, .. }
            | MountError::Console { errno, .. }
            | MountError::HostDevNull { errno, .. }
            | MountError::RootfsParent { errno, .. } => Some(*errno),
            MountError::Pathrs { cause, .. } | MountError::OpenRootfs { cause, .. } => {
                pathrs_errno(cause)
            }
            MountError::DeviceIsSymlink { .. }
            | MountError::ConsoleNotAFile { .. }
            | MountError::HostDevNullNotNull
            | MountError::NotProcfs { .. }
            | MountError::FromParent { .. }
            | MountError::NotPrepared { .. } => None,
        }
    }
}

/// The errno inside a pathrs error, if the kernel refused.
pub(super) fn pathrs_errno(e: &pathrs::error::Error) -> Option<Errno> {
    match e.kind() {
        pathrs::error::ErrorKind::OsError(Some(n)) => Some(Errno::from_raw_os_error(n)),
        _ => None,
    }
}

/// The errno of an io::Error from atoll-sys (always an OS error there; EIO if not).
pub(super) fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_io_error(e).unwrap_or(Errno::IO)
}

/// An errno as its name and text, `EPERM (Operation not permitted)`: the name is what man pages
/// and strace show, the text what a user reads.
pub(super) struct Named(pub(super) Errno);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = nix::errno::Errno::from_raw(self.0.raw_os_error());
        write!(f, "{e:?} ({})", e.desc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_mount_and_the_errno_once() {
        let e = MountError::Mount {
            index: 2,
            fstype: "proc".into(),
            dest: "/proc".into(),
            call: "fsmount".into(),
            errno: Errno::PERM,
        };
        assert_eq!(
            e.to_string(),
            "mounts[2] (\"proc\" on \"/proc\"): fsmount: EPERM (Operation not permitted)"
        );
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.errno(), Some(Errno::PERM));
    }
}

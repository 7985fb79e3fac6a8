//! One error type for every cgroup operation: each variant names the operation, the file and the
//! value involved, and keeps the errno typed.
//! A cause is printed once: a wrapped error is the variant's #[source] and the message does not
//! repeat it; an errno kept as a plain field is shown by name in the message and is no source.

use std::fmt;
use std::path::PathBuf;

/// An errno that prints as its symbolic name ("EBUSY"), which is what people grep man pages for.
/// Written here because std and rustix print only the strerror text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub(crate) fn of(err: &std::io::Error) -> Errno {
        Errno(err.raw_os_error().unwrap_or(libc::EIO))
    }

    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ESRCH => "ESRCH",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::E2BIG => "E2BIG",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::ENOSPC => "ENOSPC",
            libc::EROFS => "EROFS",
            libc::ERANGE => "ERANGE",
            libc::ENOSYS => "ENOSYS",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::ENOTSUP_KERNEL => "ENOTSUPP",
            _ => return None,
        })
    }
}

mod libc {
    pub use ::libc::*;
    /// The kernel-internal ENOTSUPP (524) leaks out of some cgroup v1 files.
    pub const ENOTSUP_KERNEL: i32 = 524;
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", std::io::Error::from_raw_os_error(self.0)),
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Errno {}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("read {path:?}: {errno}")]
    Read { path: PathBuf, errno: Errno },
    #[error("write {value:?} to {path:?}: {errno}")]
    Write {
        path: PathBuf,
        value: String,
        errno: Errno,
    },
    #[error("mkdir {path:?}: {errno}")]
    Mkdir { path: PathBuf, errno: Errno },
    #[error("rmdir {path:?}: {errno}")]
    Rmdir { path: PathBuf, errno: Errno },
    #[error("open {path:?}: {errno}")]
    Open { path: PathBuf, errno: Errno },
    #[error("parse {path:?}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("{field}: no cgroup v1 hierarchy is mounted for controller {controller:?}")]
    NotMounted {
        field: &'static str,
        controller: &'static str,
    },
    #[error("{field} is not supported: {why}")]
    Unsupported { field: &'static str, why: String },
    #[error("invalid {field} {value:?}: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("cgroups path {path:?}: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("{op} {path:?}: still {state:?} after {waited_ms} ms")]
    Timeout {
        op: &'static str,
        path: PathBuf,
        state: String,
        waited_ms: u64,
    },
    #[error("bpf {op} on {path:?}: {detail}")]
    Bpf {
        op: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("memory limit {limit} is below current usage {usage} of {path:?} (checkBeforeUpdate)")]
    BelowUsage {
        path: PathBuf,
        limit: i64,
        usage: u64,
    },
    #[error("no cgroup filesystem found in /proc/self/mountinfo")]
    NoCgroupfs,
    #[error("{}", join(.0))]
    Many(Vec<CgroupError>),
}

fn join(errors: &[CgroupError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl CgroupError {
    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            CgroupError::Read { errno, .. }
            | CgroupError::Write { errno, .. }
            | CgroupError::Mkdir { errno, .. }
            | CgroupError::Rmdir { errno, .. }
            | CgroupError::Open { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

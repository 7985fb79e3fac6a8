//! One error type for the container lifecycle. Every variant names what failed and where: the file
//! and field for bad input, the syscall and its operands for kernel refusals.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("config.json: {field}: {msg}")]
    Field { field: String, msg: String },
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: io::Error,
    },
    /// The kernel refused what a config field asked for: the field, the operation, the errno.
    #[error("config.json: {field}: {op}")]
    FieldSys {
        field: String,
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container \"{0}\" already exists")]
    Exists(String),
    #[error("invalid container id {0:?}: use 1-1024 characters from [A-Za-z0-9_+.-], not starting with '.'")]
    BadId(String),
    #[error("container \"{id}\" is {status}: {wanted}")]
    BadState {
        id: String,
        status: &'static str,
        wanted: &'static str,
    },
    #[error("container init: {0}")]
    Init(String),
    /// The init ended without a message: how it ended, as far as the kernel tells, and the OOM
    /// kills its memory cgroup counted (memory.events or memory.oom_control, "oom_kill").
    #[error("container init (pid {pid}) {death}{}", oom_note(*oom_kills))]
    InitDied {
        pid: i32,
        death: InitDeath,
        oom_kills: u64,
    },
    /// The other end of the init sync socket closed while we waited for `awaiting`.
    #[error("init sync: the other side exited while we waited for {awaiting}")]
    PeerGone { awaiting: String },
    /// A message arrived out of the protocol's order (protocol::SEQUENCE).
    #[error("init sync: expected {expected}, got {got}")]
    Protocol { expected: String, got: String },
    #[error("{kind} hook #{index} ({path}): {msg}")]
    Hook {
        kind: &'static str,
        index: usize,
        path: PathBuf,
        msg: String,
    },
    #[error("state file {path}: {msg}")]
    State { path: PathBuf, msg: String },
    #[error(transparent)]
    Cgroup(#[from] atoll_cgroups::CgroupError),
    #[error(transparent)]
    Seccomp(#[from] atoll_seccomp::SeccompError),
    #[error("{0}")]
    Other(String),
}

/// How an init that left no message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitDeath {
    /// exit(2) with this status.
    Exited(i32),
    /// Killed by this signal.
    Killed(String),
    /// Not our child (the two-stage path) or not gone yet: nothing more to tell.
    Unknown,
}

impl std::fmt::Display for InitDeath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitDeath::Exited(code) => write!(f, "exited with status {code} before it was ready"),
            InitDeath::Killed(signal) => write!(f, "was killed by {signal} before it was ready"),
            InitDeath::Unknown => write!(f, "exited before it was ready"),
        }
    }
}

fn oom_note(oom_kills: u64) -> String {
    match oom_kills {
        0 => String::new(),
        n => format!(
            ": the container's memory cgroup counted {n} OOM kill(s), \
             is linux.resources.memory.limit too low?"
        ),
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Wrap an `io::Error` from syscall `op` (which should name the operands) into [`RuntimeError::Sys`].
pub(crate) fn sys(op: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let op = op.into();
    move |source| RuntimeError::Sys { op, source }
}

/// Same for rustix/nix errno values.
pub(crate) fn errno(op: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> RuntimeError {
    let op = op.into();
    move |e| RuntimeError::Sys {
        op,
        source: io::Error::from_raw_os_error(e.raw_os_error()),
    }
}

pub(crate) fn nix_errno(op: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> RuntimeError {
    let op = op.into();
    move |e| RuntimeError::Sys {
        op,
        source: io::Error::from_raw_os_error(e as i32),
    }
}

/// A pathrs error (a path inside the rootfs, a procfs file) as an io::Error that keeps its errno,
/// so that callers can tell ENOENT from EACCES; pathrs's own failures (a safety violation, bad
/// input) carry the errno pathrs gives them (EXDEV, EINVAL) or none.
pub(crate) fn pathrs_io(e: pathrs::error::Error) -> io::Error {
    match e.kind() {
        pathrs::error::ErrorKind::OsError(Some(n)) => io::Error::from_raw_os_error(n),
        pathrs::error::ErrorKind::SafetyViolation => {
            io::Error::new(io::ErrorKind::PermissionDenied, e.to_string())
        }
        _ => io::Error::other(e.to_string()),
    }
}

/// Wrap a pathrs error from operation `op` into [`RuntimeError::Sys`], errno kept.
pub(crate) fn pathrs(op: impl Into<String>) -> impl FnOnce(pathrs::error::Error) -> RuntimeError {
    let op = op.into();
    move |e| RuntimeError::Sys {
        op,
        source: pathrs_io(e),
    }
}

impl RuntimeError {
    /// The errno behind this error, where a syscall refused: for the exit-code mapping and for
    /// callers that act on ENOENT differently from EACCES.
    pub fn errno(&self) -> Option<i32> {
        match self {
            RuntimeError::Sys { source, .. } | RuntimeError::FieldSys { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}

pub(crate) fn field(field: impl Into<String>, msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Field {
        field: field.into(),
        msg: msg.into(),
    }
}

//! The one error type of the guard: each variant names the step and what it worked on.
//! A cause is printed once: a wrapped error is the variant's #[source] and the message does not
//! repeat it; an errno kept as a plain field is shown by name in the message and is no source.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A listenerMetadata / annotation value we cannot read; `field` names where it came from.
    #[error("{field}: {msg}")]
    Policy { field: String, msg: String },
    /// A file or socket step (bind, open the alert log, read /proc/<pid>/ns/...).
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A syscall without a path (epoll, accept, pidfd_open ...).
    #[error("{op}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// A registration message that does not follow the runtime-spec "Container Process State".
    #[error("seccomp agent message: {0}")]
    Protocol(String),
}

impl GuardError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| GuardError::Io { op, path, source }
    }
    pub(crate) fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let op = op.into();
        move |source| GuardError::Sys { op, source }
    }
}

impl From<atoll_seccomp::PolicyError> for GuardError {
    fn from(e: atoll_seccomp::PolicyError) -> Self {
        GuardError::Policy {
            field: e.field,
            msg: e.msg,
        }
    }
}

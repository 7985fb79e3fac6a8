//! The one error type of this crate: each variant names the step and what it worked on.
//! A cause is printed once: a wrapped error is the variant's #[source] and the message does not
//! repeat it; an errno kept as a plain field is shown by name in the message and is no source.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile asks for something we cannot or must not build; `field` is the path below
    /// `linux.seccomp` (e.g. `syscalls[3].action`).
    #[error("linux.seccomp.{field}: {msg}")]
    Profile { field: String, msg: String },
    /// libseccomp refused a step while building the filter.
    #[error("linux.seccomp.{field}: libseccomp {op}")]
    Libseccomp {
        field: String,
        op: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// Getting the program out of libseccomp (memfd, export, read back).
    #[error("export the seccomp program: {op}")]
    Export {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// seccomp(2) refused the program. EACCES: neither no_new_privs nor CAP_SYS_ADMIN;
    /// EINVAL: a flag or action this kernel does not know.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER, flags {flags:#x})")]
    Install {
        flags: u32,
        #[source]
        source: std::io::Error,
    },
    /// Handing the notify fd to the seccomp agent at `listenerPath`.
    #[error("seccomp listener {path}: {op}")]
    Listener {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl SeccompError {
    pub(crate) fn profile(field: impl Into<String>, msg: impl Into<String>) -> Self {
        SeccompError::Profile {
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// The errno behind an install or listener failure, for callers that branch on it.
    pub fn errno(&self) -> Option<i32> {
        match self {
            SeccompError::Install { source, .. }
            | SeccompError::Listener { source, .. }
            | SeccompError::Export { source, .. } => source.raw_os_error(),
            SeccompError::Profile { .. } | SeccompError::Libseccomp { .. } => None,
        }
    }
}

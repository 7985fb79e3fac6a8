//! One error type for the container lifecycle. Every variant names what failed and where: the file
//! and field for bad input, the syscall and its operands for kernel refusals.
//!
//! A cause is printed once: a variant that wraps a cause returns it from `source()` (#[source])
//! and its message does not repeat it. Whoever prints the error walks the chain: the binary with
//! anyhow's `{:#}`, library code that must turn an error into one line (the init's report over
//! the sync socket, a teardown's list) with [`report`].

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
    /// An AppArmor profile or SELinux label that cannot be applied; `what` names its origin
    /// (a config.json field or an `exec` flag).
    #[error("{what}: {msg}")]
    Lsm { what: String, msg: String },
    #[error("config.json: {field}: {msg}")]
    Field { field: String, msg: String },
    /// A syscall the kernel refused; `op` names the call and its operands.
    #[error("{op}")]
    Sys {
        op: String,
        #[source]
        source: io::Error,
    },
    /// A path operation inside a container's root, done through pathrs (which keeps the errno:
    /// see [`RuntimeError::errno`]).
    #[error("{op}")]
    InRoot {
        op: String,
        #[source]
        source: pathrs::error::Error,
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
    #[error("{kind} hook #{index} ({path})")]
    Hook {
        kind: &'static str,
        index: usize,
        path: PathBuf,
        #[source]
        source: crate::hooks::HookError,
    },
    /// state.json that does not parse (or a state that does not serialise).
    #[error("state file {path}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] atoll_cgroups::CgroupError),
    #[error(transparent)]
    Seccomp(#[from] atoll_seccomp::SeccompError),
    #[error(transparent)]
    Mount(#[from] crate::rootfs::MountError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl RuntimeError {
    /// The errno at the bottom of this error, for callers that branch on it (ENOENT is not
    /// EACCES) and for the exit status. None for bad input and for causes without one.
    pub fn errno(&self) -> Option<i32> {
        errno_of(self)
    }
}

/// The first errno found walking `e`'s source chain: io::Error (rustix and nix errnos are carried
/// as one), pathrs's OsError, the errno fields of the cgroups and seccomp errors.
pub fn errno_of(e: &(dyn StdError + 'static)) -> Option<i32> {
    let mut next = Some(e);
    while let Some(e) = next {
        let found = if let Some(io) = e.downcast_ref::<io::Error>() {
            io.raw_os_error()
        } else if let Some(p) = e.downcast_ref::<pathrs::error::Error>() {
            match p.kind() {
                pathrs::error::ErrorKind::OsError(n) => n,
                _ => None,
            }
        } else if let Some(RuntimeError::Cgroup(c)) = e.downcast_ref::<RuntimeError>() {
            c.errno().map(|n| n.0)
        } else if let Some(RuntimeError::Seccomp(s)) = e.downcast_ref::<RuntimeError>() {
            s.errno()
        } else if let Some(c) = e.downcast_ref::<atoll_cgroups::CgroupError>() {
            c.errno().map(|n| n.0)
        } else {
            None
        };
        if found.is_some() {
            return found;
        }
        next = e.source();
    }
    None
}

/// `e` and its causes on one line, "outer: cause: root cause", as anyhow's `{:#}` prints them.
/// A cause whose text its wrapper already ends with is skipped: some foreign error types
/// (libseccomp's) print their cause and also return it from `source()`.
pub fn report(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut prev = out.clone();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !prev.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        prev = text;
        next = cause.source();
    }
    out
}

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

/// Wrap a pathrs error from `op` (naming the path inside the root) into [`RuntimeError::InRoot`].
pub(crate) fn in_root(op: impl Into<String>) -> impl FnOnce(pathrs::error::Error) -> RuntimeError {
    let op = op.into();
    move |source| RuntimeError::InRoot { op, source }
}

pub(crate) fn field(field: impl Into<String>, msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Field {
        field: field.into(),
        msg: msg.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every link of the chain says something its cause does not: no message repeats the text
    /// of its source (that is what printed "...: ENOENT: ENOENT").
    fn assert_each_cause_once(e: &(dyn StdError + 'static)) {
        let mut cur = e;
        while let Some(cause) = cur.source() {
            let (outer, inner) = (cur.to_string(), cause.to_string());
            assert!(
                !outer.contains(&inner),
                "{outer:?} repeats its source {inner:?}"
            );
            cur = cause;
        }
        let line = report(e);
        assert!(line.matches("(os error").count() <= 1, "{line}");
    }

    fn hook_error(path: &std::path::Path) -> RuntimeError {
        let hook: oci_spec::runtime::Hook =
            serde_json::from_value(serde_json::json!({ "path": path })).unwrap();
        crate::hooks::run_all("createRuntime", &[hook], "{}").unwrap_err()
    }

    #[test]
    fn causes_print_once() {
        let enoent = std::fs::File::open("/nonexistent/atoll-test").unwrap_err();
        let values = [
            sys("open /nonexistent/atoll-test")(enoent),
            errno("flock /x")(rustix::io::Errno::BADF),
            in_root("open /dev/pts/ptmx")(
                pathrs::Root::open("/nonexistent/atoll-test").unwrap_err(),
            ),
            RuntimeError::State {
                path: "/x/state.json".into(),
                source: serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err(),
            },
            hook_error(std::path::Path::new("/nonexistent/atoll-hook")),
            RuntimeError::Cgroup(atoll_cgroups::CgroupError::Write {
                path: "/sys/fs/cgroup/x/pids.max".into(),
                value: "7".into(),
                errno: atoll_cgroups::Errno(libc::EBUSY),
            }),
            RuntimeError::Seccomp(atoll_seccomp::SeccompError::Install {
                flags: 0,
                source: io::Error::from_raw_os_error(libc::EACCES),
            }),
        ];
        for e in &values {
            assert_each_cause_once(e);
        }
        assert_eq!(
            report(&values[0]),
            "open /nonexistent/atoll-test: No such file or directory (os error 2)"
        );
        assert_eq!(
            report(&values[5]),
            "write \"7\" to \"/sys/fs/cgroup/x/pids.max\": EBUSY"
        );
        let guard = atoll_guard::GuardError::Sys {
            op: "epoll_wait".into(),
            source: io::Error::from_raw_os_error(libc::EINTR),
        };
        assert_each_cause_once(&guard);
    }

    /// A foreign error that prints its cause and also returns it (libseccomp's does) still
    /// gives one line with the cause once.
    #[test]
    fn report_skips_a_cause_its_wrapper_printed() {
        #[derive(Debug, thiserror::Error)]
        #[error("load: {0}")]
        struct Both(#[source] io::Error);
        let e = Both(io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(report(&e), "load: No such file or directory (os error 2)");
    }

    /// The errno survives wrapping, so callers (and an exit status) can tell ENOENT from EACCES.
    #[test]
    fn errno_tells_enoent_from_eacces() {
        let dir = std::env::temp_dir().join(format!("atoll-errno-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_exec = dir.join("hook");
        std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
        let missing = hook_error(&dir.join("missing"));
        // execve of a file without an x bit is EACCES even for root (execve(2)).
        let denied = hook_error(&not_exec);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(missing.errno(), Some(libc::ENOENT), "{}", report(&missing));
        assert_eq!(denied.errno(), Some(libc::EACCES), "{}", report(&denied));

        let pathrs = in_root("open /x")(pathrs::Root::open("/nonexistent/atoll-test").unwrap_err());
        assert_eq!(pathrs.errno(), Some(libc::ENOENT), "{}", report(&pathrs));
        let cg = RuntimeError::Cgroup(atoll_cgroups::CgroupError::Open {
            path: "/x".into(),
            errno: atoll_cgroups::Errno(libc::EACCES),
        });
        assert_eq!(cg.errno(), Some(libc::EACCES));
        assert_eq!(field("process.args", "empty").errno(), None);
    }
}

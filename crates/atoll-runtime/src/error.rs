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
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookFailed),
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
    /// A signal name or number that is not a signal (kill's argument, runc's spellings).
    #[error("unknown signal {0:?}")]
    UnknownSignal(String),
    /// A verb that works on the container's cgroup (pause, update, stats) on one without.
    #[error("container \"{0}\" has no cgroup")]
    NoCgroup(String),
    /// Another command held the container's lock for longer than `delete` waits.
    #[error("container \"{id}\": {path:?} is still locked by another command after {secs}s")]
    Locked {
        id: String,
        path: PathBuf,
        secs: u64,
    },
    /// SIGKILL was sent but the init did not exit within `secs` seconds.
    #[error("init {pid} did not exit within {secs}s of SIGKILL")]
    NotKilled { pid: i32, secs: u64 },
    /// `delete` went on past each failure; these are the steps that failed, one line each.
    #[error("delete {id}: {}", failures.join("; "))]
    DeleteIncomplete { id: String, failures: Vec<String> },
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
        crate::hooks::run_all("createRuntime", &[hook], "{}")
            .unwrap_err()
            .into()
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

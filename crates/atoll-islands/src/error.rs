//! Errors: a bad file names its line and field; a failed step names what it touched.
//! A cause is printed once: a wrapped error is the variant's #[source] and the message does not
//! repeat it; an errno kept as a plain field is shown by name in the message and is no source.

use std::path::PathBuf;

/// An islands file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error, PartialEq)]
pub struct FileError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is the whole file.
    pub line: usize,
    pub col: usize,
    pub field: String,
    pub msg: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.msg)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IslandsError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{op}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}")]
    Net {
        op: String,
        #[source]
        source: atoll_net::NetError,
    },
    #[error("island {island}")]
    Runtime {
        island: String,
        #[source]
        source: atoll_runtime::RuntimeError,
    },
    #[error("island {island}")]
    Checkpoint {
        island: String,
        #[source]
        source: atoll_runtime::checkpoint::CheckpointError,
    },
    #[error("island {island}: {msg}")]
    Island { island: String, msg: String },
    #[error("{0}")]
    Other(String),
    /// Teardown keeps going and reports every step that failed.
    #[error("teardown left {} problem(s):\n  {}", .0.len(), .0.join("\n  "))]
    Teardown(Vec<String>),
}

pub type Result<T, E = IslandsError> = std::result::Result<T, E>;

pub fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> IslandsError {
    let op = op.into();
    move |source| IslandsError::Io { op, source }
}

pub fn net(op: impl Into<String>) -> impl FnOnce(atoll_net::NetError) -> IslandsError {
    let op = op.into();
    move |source| IslandsError::Net { op, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_runtime::error::report;

    /// No message repeats its source's text; the one-line report has each errno once.
    #[test]
    fn causes_print_once() {
        let eacces = || std::io::Error::from_raw_os_error(libc_eacces());
        let values = [
            io("mkdir /run/atoll/islands/p")(eacces()),
            net("pin the netns of web")(atoll_net::NetError::NetnsFile {
                op: "unlink netns file",
                path: "/run/atoll/islands/p/netns/web".into(),
                source: eacces(),
            }),
            net("forwarding")(atoll_net::NetError::Sysctl {
                key: "sys/net/ipv4/ip_forward".into(),
                value: "1".into(),
                netns: "web".into(),
                source: eacces(),
            }),
            IslandsError::Runtime {
                island: "web".into(),
                source: atoll_runtime::RuntimeError::NotFound("p.web".into()),
            },
        ];
        for e in &values {
            let mut cur: &(dyn std::error::Error + 'static) = e;
            while let Some(cause) = cur.source() {
                let (outer, inner) = (cur.to_string(), cause.to_string());
                assert!(!outer.contains(&inner), "{outer:?} repeats {inner:?}");
                cur = cause;
            }
        }
        assert_eq!(
            report(&values[2]),
            "forwarding: write \"1\" to /proc/sys/net/ipv4/ip_forward in web: Permission denied (os error 13)"
        );
        assert_eq!(
            report(&values[3]),
            "island web: container \"p.web\" does not exist"
        );
    }

    fn libc_eacces() -> i32 {
        rustix::io::Errno::ACCESS.raw_os_error()
    }
}

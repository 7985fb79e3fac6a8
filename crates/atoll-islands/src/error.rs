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

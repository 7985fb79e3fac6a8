//! Why doctor itself could not run (exit code 2). A fault it finds is not an error: it is the
//! answer, in the report.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DoctorError {
    /// The question is malformed (a `--to` that does not parse).
    #[error("{0}")]
    Usage(String),
    /// Neither an island nor a container of that name exists.
    #[error("{0}")]
    NotFound(String),
}

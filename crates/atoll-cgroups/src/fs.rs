//! Reading and writing cgroup files, with the path and value in every error.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{CgroupError, Errno};

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    atoll_sys::pseudofs::read(path).map_err(|e| CgroupError::Read {
        path: path.to_path_buf(),
        errno: Errno::of(&e),
    })
}

/// Reads a file that may be absent on this kernel or configuration.
pub(crate) fn read_opt(path: &Path) -> Option<String> {
    atoll_sys::pseudofs::read(path).ok()
}

pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    let s = read_opt(path)?;
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// One write(2) of the whole value: cgroup files act on each write call.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let err = |e: std::io::Error| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        errno: Errno::of(&e),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

/// Every directory at or below `dir`, deepest first. A missing `dir` gives an empty list.
pub(crate) fn subtree_deepest_first(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                return Err(CgroupError::Read {
                    path: d,
                    errno: Errno::of(&e),
                })
            }
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
        out.push(d);
    }
    // Parents were pushed before their children, so reversing puts children first.
    out.reverse();
    Ok(out)
}

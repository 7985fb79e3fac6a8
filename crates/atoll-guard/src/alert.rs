//! The alert log: one JSON object per line, appended with a single write(2) on an O_APPEND
//! file, so concurrent writers never interleave and a Falco-style shipper can tail it.
//! Rule ids are stable API: see docs/threat-model.md.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::GuardError;

/// What the guard did with the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Enforce mode: the call failed (EPERM unless said otherwise).
    Deny,
    /// Detect mode: the call went on; this line is the only trace.
    AllowDetect,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub time: String,
    /// Stable id, e.g. `atoll.setns.foreign-namespace`.
    pub rule: String,
    /// The container id the notify fd was registered under.
    pub tenant: String,
    /// The calling thread, in the supervisor's pid namespace.
    pub pid: u32,
    /// Its real uid on the host (from /proc/<pid>/status; -1 if it could not be read).
    pub uid: i64,
    pub syscall: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nstype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ns_inode: Option<u64>,
    /// Who owns the namespace: "host", "island:<name>", "container:<id>" or "unknown".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub owner: Option<String>,
    pub decision: Decision,
    /// A few words for humans (e.g. "clone flags 0x10000000").
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

/// The append-only alert file.
#[derive(Debug)]
pub struct AlertLog {
    path: PathBuf,
    file: std::fs::File,
}

impl AlertLog {
    /// Open (create, 0600) `path` for appending.
    pub fn open(path: &Path) -> Result<AlertLog, GuardError> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(GuardError::io("open alert log", path))?;
        Ok(AlertLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Append one line (one write(2) call).
    pub fn write(&mut self, alert: &Alert) -> Result<(), GuardError> {
        let mut line = serde_json::to_vec(alert).expect("an Alert serializes");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(GuardError::io("append to alert log", &self.path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Parse an alert file's lines (for `atoll guard events` and tests); bad lines are skipped.
pub fn parse_lines(text: &str) -> Vec<Alert> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_documented_fields() {
        let a = Alert {
            time: "2026-01-01T00:00:00.000000000Z".into(),
            rule: "atoll.setns.foreign-namespace".into(),
            tenant: "web".into(),
            pid: 42,
            uid: 100000,
            syscall: "setns".into(),
            nstype: Some("net".into()),
            ns_inode: Some(4026531840),
            owner: Some("host".into()),
            decision: Decision::Deny,
            detail: None,
        };
        let v: serde_json::Value = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time":"2026-01-01T00:00:00.000000000Z","rule":"atoll.setns.foreign-namespace",
                "tenant":"web","pid":42,"uid":100000,"syscall":"setns","nstype":"net",
                "ns_inode":4026531840u64,"owner":"host","decision":"deny"})
        );
        let line = serde_json::to_string(&Alert {
            decision: Decision::AllowDetect,
            ..a
        })
        .unwrap();
        assert!(line.contains(r#""decision":"allow-detect""#));
        assert_eq!(parse_lines(&format!("junk\n{line}\n")).len(), 1);
    }
}

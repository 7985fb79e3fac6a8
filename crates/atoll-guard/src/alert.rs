//! The alert log: one JSON object per line, appended with a single write(2) on an O_APPEND
//! file, so concurrent writers never interleave and a Falco-style shipper can tail it; and, where
//! the node file asks, the same alert to syslog (RFC 5424) and to a collector's unix socket.
//! Rule ids are stable API: see docs/threat-model.md.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// How many other alerts of this tenant and rule this line stands for: those not written
    /// since the last line that was (the rate limit: [`BURST`], then [`PER_SECOND`]); each of
    /// those calls was decided all the same. Every line accounts for 1 + `suppressed` calls. On
    /// the next line written for the pair, or, when the tenant goes or the supervisor leaves,
    /// on a summary line: the last call held back, written late (its `suppressed` may be 0).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub suppressed: Option<u64>,
}

/// Lines per tenant and rule written at once before the rate limit starts...
pub const BURST: f64 = 20.0;
/// ...and the lines per second after that. A tenant looping on a denied call (one round trip
/// is about 20 µs) would otherwise write some 15 MB of alert lines a second: a way to fill the
/// disk, and to bury everyone else's alerts.
pub const PER_SECOND: f64 = 10.0;

/// A token bucket for one (tenant, rule).
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
    suppressed: u64,
    /// The last alert not written.
    latest: Option<Alert>,
}

/// Where alerts go besides the log file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sinks {
    /// A unix datagram socket that reads RFC 5424 messages (/dev/log, or a collector's).
    pub syslog: Option<PathBuf>,
    /// A unix socket (stream or datagram) that reads JSON lines.
    pub collector: Option<PathBuf>,
}

/// The append-only alert file, and the sinks.
#[derive(Debug)]
pub struct AlertLog {
    path: PathBuf,
    file: std::fs::File,
    sinks: Sinks,
    collector: Option<Collector>,
    host: String,
    limits: std::collections::HashMap<(String, String), Bucket>,
}

/// The collector connection, made at the first alert and again after a failure.
#[derive(Debug)]
enum Collector {
    Stream(UnixStream),
    Datagram(UnixDatagram),
}

/// A sink that does not take an alert within this time loses it (the log file has it): the
/// supervisor must not stall its tenants behind a slow reader.
const SINK_TIMEOUT: Duration = Duration::from_millis(100);
/// RFC 5424 PRI: facility authpriv (10), severity warning (4).
const SYSLOG_PRI: u32 = 10 * 8 + 4;
/// The SD-ID's enterprise number: 32473, the one RFC 5612 reserves for documentation and
/// examples, until atoll has its own.
const SD_ID: &str = "atoll@32473";

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
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        Ok(AlertLog {
            path: path.to_path_buf(),
            file,
            sinks: Sinks::default(),
            collector: None,
            host,
            limits: Default::default(),
        })
    }

    /// Also send each alert to `sinks`.
    pub fn with_sinks(mut self, sinks: Sinks) -> AlertLog {
        self.sinks = sinks;
        self
    }

    /// Append one line (one write(2) call), then hand the alert to the sinks. A sink that fails
    /// is reported, never fatal: the file has the alert.
    /// Rate-limited per tenant and rule (see [`Alert::suppressed`]): Ok without a line when the
    /// pair is over its rate.
    pub fn write(&mut self, alert: &Alert) -> Result<(), GuardError> {
        self.write_at(alert, std::time::Instant::now())
    }

    fn write_at(&mut self, alert: &Alert, now: std::time::Instant) -> Result<(), GuardError> {
        let key = (alert.tenant.clone(), alert.rule.clone());
        let b = self.limits.entry(key).or_insert(Bucket {
            tokens: BURST,
            at: now,
            suppressed: 0,
            latest: None,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * PER_SECOND).min(BURST);
        b.at = now;
        if b.tokens < 1.0 {
            b.suppressed += 1;
            b.latest = Some(alert.clone());
            return Ok(());
        }
        b.tokens -= 1.0;
        let suppressed = std::mem::take(&mut b.suppressed);
        b.latest = None;
        if suppressed == 0 {
            return self.append(alert);
        }
        self.append(&Alert {
            suppressed: Some(suppressed),
            ..alert.clone()
        })
    }

    /// `tenant` is gone: a summary line for each of its rules with alerts not yet written, and
    /// its buckets dropped.
    pub fn forget(&mut self, tenant: &str) -> Result<(), GuardError> {
        let keys: Vec<_> = self
            .limits
            .keys()
            .filter(|(t, _)| t == tenant)
            .cloned()
            .collect();
        let mut first_err = Ok(());
        for k in keys {
            let b = self.limits.remove(&k).expect("listed above");
            if let Some(latest) = b.latest.filter(|_| b.suppressed > 0) {
                // The last call held back, written late, for itself and the others.
                let summary = Alert {
                    suppressed: Some(b.suppressed - 1),
                    ..latest
                };
                if let (Err(e), Ok(())) = (self.append(&summary), &first_err) {
                    first_err = Err(e);
                }
            }
        }
        first_err
    }

    fn append(&mut self, alert: &Alert) -> Result<(), GuardError> {
        let mut line = serde_json::to_vec(alert).expect("an Alert serializes");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(GuardError::io("append to alert log", &self.path))?;
        if let Some(p) = self.sinks.syslog.clone() {
            let msg = rfc5424(
                alert,
                &self.host,
                std::process::id(),
                &line[..line.len() - 1],
            );
            let sent = UnixDatagram::unbound().and_then(|s| {
                s.set_write_timeout(Some(SINK_TIMEOUT))?;
                s.send_to(msg.as_bytes(), &p)
            });
            sent.map_err(GuardError::io("send alert to syslog", &p))?;
        }
        if let Some(p) = self.sinks.collector.clone() {
            self.send_to_collector(&p, &line)
                .map_err(GuardError::io("send alert to collector", &p))?;
        }
        Ok(())
    }

    fn send_to_collector(&mut self, path: &Path, line: &[u8]) -> std::io::Result<()> {
        for attempt in 0..2 {
            if self.collector.is_none() {
                self.collector = Some(match UnixStream::connect(path) {
                    Ok(s) => {
                        s.set_write_timeout(Some(SINK_TIMEOUT))?;
                        Collector::Stream(s)
                    }
                    // A datagram socket refuses a stream connect with EPROTOTYPE.
                    Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                        let d = UnixDatagram::unbound()?;
                        d.set_write_timeout(Some(SINK_TIMEOUT))?;
                        d.connect(path)?;
                        Collector::Datagram(d)
                    }
                    Err(e) => return Err(e),
                });
            }
            let res = match self.collector.as_mut().expect("set above") {
                Collector::Stream(s) => s.write_all(line),
                Collector::Datagram(d) => d.send(line).map(drop),
            };
            match res {
                Ok(()) => return Ok(()),
                // The collector restarted: one new connection, then give up on this alert.
                Err(e) if attempt == 0 && e.raw_os_error() == Some(libc::EPIPE) => {
                    self.collector = None
                }
                Err(e) => {
                    self.collector = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A supervisor that leaves writes what its rate limit still holds back.
impl Drop for AlertLog {
    fn drop(&mut self) {
        let tenants: std::collections::BTreeSet<String> =
            self.limits.keys().map(|(t, _)| t.clone()).collect();
        for t in tenants {
            let _ = self.forget(&t); // nowhere left to report a failure
        }
    }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`, the rule
/// id as MSGID (at most 32 printable characters), the main fields as structured data, and the
/// JSON line as MSG.
pub fn rfc5424(a: &Alert, host: &str, pid: u32, json: &[u8]) -> String {
    // RFC 5424 6.3.3: inside a PARAM-VALUE, '"', '\\' and ']' are escaped with a backslash.
    let esc = |v: &str| {
        v.chars().fold(String::new(), |mut s, c| {
            if matches!(c, '"' | '\\' | ']') {
                s.push('\\');
            }
            s.push(c);
            s
        })
    };
    let token = |v: &str, max: usize| {
        let t: String = v
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(max)
            .collect();
        if t.is_empty() {
            "-".to_string()
        } else {
            t
        }
    };
    let decision = match a.decision {
        Decision::Deny => "deny",
        Decision::AllowDetect => "allow-detect",
    };
    let mut sd = format!(
        "[{SD_ID} tenant=\"{}\" pid=\"{}\" syscall=\"{}\" decision=\"{decision}\"",
        esc(&a.tenant),
        a.pid,
        esc(&a.syscall)
    );
    if let Some(o) = &a.owner {
        sd.push_str(&format!(" owner=\"{}\"", esc(o)));
    }
    sd.push(']');
    format!(
        "<{SYSLOG_PRI}>1 {} {} atoll-guard {pid} {} {sd} {}",
        token(&a.time, 64),
        token(host, 255),
        token(&a.rule, 32),
        String::from_utf8_lossy(json)
    )
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
            suppressed: None,
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
            ..a.clone()
        })
        .unwrap();
        assert!(line.contains(r#""decision":"allow-detect""#));
        assert_eq!(parse_lines(&format!("junk\n{line}\n")).len(), 1);
        let m = rfc5424(&a, "node1", 7, b"{}");
        assert_eq!(
            m,
            "<84>1 2026-01-01T00:00:00.000000000Z node1 atoll-guard 7 atoll.setns.foreign-namespace \
             [atoll@32473 tenant=\"web\" pid=\"42\" syscall=\"setns\" decision=\"deny\" owner=\"host\"] {}"
        );
    }

    fn alert(tenant: &str, rule: &str, pid: u32) -> Alert {
        Alert {
            time: "t".into(),
            rule: rule.into(),
            tenant: tenant.into(),
            pid,
            uid: 0,
            syscall: "setns".into(),
            nstype: None,
            ns_inode: None,
            owner: None,
            decision: Decision::Deny,
            detail: None,
            suppressed: None,
        }
    }

    #[test]
    fn a_flood_is_written_at_the_rate_and_the_rest_counted() {
        let dir = std::env::temp_dir().join(format!("atoll-alert-rate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alerts.jsonl");
        let mut log = AlertLog::open(&path).unwrap();
        let t0 = std::time::Instant::now();
        for i in 0..100 {
            log.write_at(&alert("flood", "r", i), t0).unwrap();
        }
        // Another tenant, and another rule of the same tenant, have buckets of their own.
        log.write_at(&alert("quiet", "r", 1), t0).unwrap();
        log.write_at(&alert("flood", "other", 1), t0).unwrap();
        let lines = || parse_lines(&std::fs::read_to_string(&path).unwrap());
        let got = lines();
        assert_eq!(got.len(), BURST as usize + 2);
        assert!(got.iter().all(|a| a.suppressed.is_none()));
        // Half a second later: 5 tokens; the first line carries the count.
        let t1 = t0 + std::time::Duration::from_millis(500);
        for i in 100..110 {
            log.write_at(&alert("flood", "r", i), t1).unwrap();
        }
        let got = lines();
        let fresh: Vec<_> = got[BURST as usize + 2..].to_vec();
        assert_eq!(fresh.len(), 5);
        assert_eq!(fresh[0].suppressed, Some(80));
        assert_eq!(fresh[0].pid, 100);
        assert!(fresh[1..].iter().all(|a| a.suppressed.is_none()));
        // The tenant goes: the last of the 5 not written, for itself and the 4 others.
        log.forget("flood").unwrap();
        let got = lines();
        let last = got.last().unwrap();
        assert_eq!((last.pid, last.suppressed), (109, Some(4)));
        let calls: u64 = got.iter().map(|a| 1 + a.suppressed.unwrap_or(0)).sum();
        assert_eq!(calls, 110 + 2, "every call accounted for, once");
        assert_eq!(got.len(), BURST as usize + 2 + 5 + 1);
        log.forget("quiet").unwrap();
        assert_eq!(lines().len(), got.len(), "nothing was held back for quiet");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

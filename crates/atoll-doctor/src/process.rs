//! Layer 1, process: is the tenant running, and if not, how did it end.
//!
//! Evidence: the runtime's state (running, created, paused, stopped, or no container at all);
//! the kernel's counters in the tenant's cgroup (OOM kills from v1 `memory.oom_control` or v2
//! `memory.events`, forks refused at the limit from `pids.events`) and the limits in force; the
//! escape guard's alerts about this container since it was created; for an island that ended,
//! the last lines of its log. The cgroup outlives the tenant's last task until `atoll delete`
//! (for an island: `atoll down`), so a stopped tenant still shows why it stopped; once deleted,
//! the evidence says the counters are gone. atoll keeps no exit status (nothing waits for the
//! init once `create` returns: it is reparented, as with runc) and restarts nothing, so neither
//! is evidence here.
//!
//! Verdicts, and why:
//! - running: ok, unless it is at its pids limit now (every fork fails with EAGAIN: a service
//!   that cannot fork cannot serve) or, when the question is the tenant itself (no `--to`, no
//!   `--dns`: `atoll doctor X`, `atoll status`), the guard alerted about it: a tenant that tried
//!   to leave its namespaces is the first thing to look at. When the question is a flow or a
//!   name, alerts are evidence on an ok verdict: a denied setns() does not stop a packet, and
//!   the walk goes on to the layer that does. Past OOM kills and past refused forks of a tenant that still runs
//!   are evidence, not a fault: the counters never go down, and the init survived them.
//! - created, creating, paused, stopped, absent: FAULT, with how it ended and the fix
//!   (`start`, `resume`, the island's log and a re-up, a larger limit).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use atoll_cgroups::{Cgroup, Events};
use atoll_runtime::Status;

use crate::report::{Layer, LayerReport};
use crate::subject::Subject;

/// The guard's alert log for containers that are not islands, where the node file cannot be
/// read (otherwise its `alert_log`, by default `<root>/.guard/alerts.jsonl`).
pub const CONTAINER_ALERTS: &str = "/run/atoll/.guard/alerts.jsonl";

/// Only the end of an alert log or an island's log is read: doctor stays fast on a host whose
/// logs have grown, and the recent lines are the ones that matter.
const ALERT_TAIL: u64 = 256 << 10;
const LOG_TAIL: u64 = 4 << 10;
const LOG_LINES: usize = 3;

/// `alerts_are_faults`: the question is the tenant itself (see the module's verdicts).
pub fn check(subject: &Subject, alerts_are_faults: bool) -> LayerReport {
    let mut evidence = Vec::new();
    let events = cgroup_events(subject, &mut evidence);
    let grants = subject.island.as_ref().map(|r| &r.island().spec);
    evidence.extend(
        grants
            .and_then(atoll_islands::devices::DeviceStatus::of)
            .map(|d| d.one_line()),
    );
    let alerts = alerts(subject);
    let fix = Fixes { s: subject };

    let Some(status) = subject.status else {
        let root = subject.runtime_root.display();
        evidence.insert(
            0,
            format!("state: no container {} in {root}", subject.container_id),
        );
        return LayerReport::fault(
            Layer::Process,
            "absent: its container does not exist",
            fix.re_up(),
        )
        .with_evidence(evidence);
    };
    let pid = subject.saved.as_ref().map_or(0, |s| s.pid);
    let state = match status {
        Status::Stopped => format!("state: stopped (init pid {pid} has exited)"),
        Status::Creating => "state: creating (no init yet)".to_string(),
        _ => format!("state: {} (init pid {pid})", status.as_str()),
    };
    evidence.insert(0, state);
    let r = match status {
        Status::Running => running(subject, events.as_ref(), &alerts, alerts_are_faults, &fix),
        Status::Created => LayerReport::fault(
            Layer::Process,
            "created but not started",
            fix.runtime("start"),
        ),
        Status::Creating => LayerReport::fault(
            Layer::Process,
            "never got an init: `create` did not finish",
            fix.re_up(),
        ),
        Status::Paused => LayerReport::fault(
            Layer::Process,
            "paused (its cgroup is frozen)",
            fix.runtime("resume"),
        ),
        Status::Stopped => stopped(subject, events.as_ref(), &fix, &mut evidence),
    };
    evidence.extend(alerts.evidence());
    let summary = if r.verdict == crate::Verdict::Fault && status != Status::Running {
        let more = alerts.suffix();
        format!("{}{more}", r.summary)
    } else {
        r.summary.clone()
    };
    LayerReport {
        summary,
        evidence,
        ..r
    }
}

fn running(
    s: &Subject,
    ev: Option<&Events>,
    alerts: &Alerts,
    alerts_are_faults: bool,
    fix: &Fixes,
) -> LayerReport {
    if let Some(e) = ev {
        if let (Some(cur), Some(max)) = (e.pids_current, e.pids_limit) {
            if cur >= max {
                return LayerReport::fault(
                    Layer::Process,
                    format!(
                        "running, but at its pids limit ({cur} of {max}): every fork fails with EAGAIN"
                    ),
                    fix.pids(max),
                );
            }
        }
    }
    let alerted = alerts.latest.as_ref().map(|latest| {
        format!(
            "the escape guard {} {} time{} (latest: {} in {})",
            if latest.denied {
                "denied it"
            } else {
                "flagged it"
            },
            alerts.count,
            if alerts.count == 1 { "" } else { "s" },
            latest.rule,
            latest.syscall
        )
    });
    if let (Some(what), true) = (&alerted, alerts_are_faults) {
        return LayerReport::fault(Layer::Process, format!("running, but {what}"), fix.alerts());
    }
    let pid = s.pid.unwrap_or(0);
    // Past events of a tenant that still runs: said, not judged (see the module's verdicts).
    let mut past = Vec::new();
    if let Some(n) = ev.and_then(|e| e.oom_kills).filter(|&n| n > 0) {
        past.push(format!("{n} OOM kill{}", if n == 1 { "" } else { "s" }));
    }
    if let Some(n) = ev.and_then(|e| e.pids_max_hits).filter(|&n| n > 0) {
        past.push(format!(
            "{n} fork{} refused at the pids limit",
            if n == 1 { "" } else { "s" }
        ));
    }
    let past = if past.is_empty() {
        String::new()
    } else {
        format!("; earlier: {}", past.join(", "))
    };
    let alerted = alerted.map_or(String::new(), |a| format!("; {a}"));
    LayerReport::ok(
        Layer::Process,
        format!("running (init pid {pid}){past}{alerted}"),
    )
}

fn stopped(
    s: &Subject,
    ev: Option<&Events>,
    fix: &Fixes,
    evidence: &mut Vec<String>,
) -> LayerReport {
    if let Some(lines) = log_tail(s) {
        evidence.extend(lines);
    }
    evidence.push(
        "exit status: not recorded (nothing waits for the init once `create` returns); \
         restarts: none (atoll restarts no tenant)"
            .into(),
    );
    let kills = ev.and_then(|e| e.oom_kills).unwrap_or(0);
    if kills > 0 {
        let limit = ev.and_then(|e| e.memory_limit).map_or(String::new(), |l| {
            format!(" at its memory limit of {}", bytes(l))
        });
        return LayerReport::fault(
            Layer::Process,
            format!(
                "stopped: OOM-killed ({kills} OOM kill{} in its cgroup{limit})",
                if kills == 1 { "" } else { "s" }
            ),
            fix.memory(ev.and_then(|e| e.memory_limit)),
        );
    }
    LayerReport::fault(
        Layer::Process,
        "stopped: its init exited (no OOM kill counted)",
        fix.log_and_re_up(),
    )
}

/// The cgroup's counters, with one evidence line for the events and one for the limits.
fn cgroup_events(s: &Subject, evidence: &mut Vec<String>) -> Option<Events> {
    let Some(path) = s.saved.as_ref().and_then(|s| s.cgroup.as_deref()) else {
        evidence.push("cgroup: none recorded for this container".into());
        return None;
    };
    let cg = match Cgroup::from_saved(path) {
        Ok(cg) => cg,
        Err(e) => {
            evidence.push(format!("cgroup {path}: {e}"));
            return None;
        }
    };
    let e = cg.events();
    if !e.exists {
        evidence.push(format!(
            "cgroup {path}: gone (deleted with the container), its counters with it"
        ));
        return Some(e);
    }
    let count = |n: Option<u64>, file: &str| match n {
        Some(n) => format!("{n} ({file})"),
        None => format!("unknown ({file} not readable)"),
    };
    evidence.push(format!(
        "cgroup {path}: OOM kills {}, forks refused at the pids limit {}",
        count(e.oom_kills, mem_events_file(&e)),
        count(e.pids_max_hits, "pids.events max"),
    ));
    let lim = |cur: Option<u64>, max: Option<u64>, show: fn(u64) -> String| {
        let max = max.map_or("max".to_string(), show);
        match cur {
            Some(c) => format!("{max} (using {})", show(c)),
            None => max,
        }
    };
    evidence.push(format!(
        "limits: memory {}, pids {}",
        lim(e.memory_current, e.memory_limit, bytes),
        lim(e.pids_current, e.pids_limit, |n| n.to_string()),
    ));
    Some(e)
}

fn mem_events_file(e: &Events) -> &'static str {
    if e.sources.contains_key("memory.events") {
        "memory.events oom_kill"
    } else {
        "memory.oom_control oom_kill"
    }
}

/// 64M, 1.5G: short sizes for one line.
fn bytes(n: u64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
        if n >= 1 << shift {
            let whole = n >> shift;
            let tenth = ((n % (1 << shift)) * 10) >> shift;
            return if tenth == 0 {
                format!("{whole}{unit}")
            } else {
                format!("{whole}.{tenth}{unit}")
            };
        }
    }
    n.to_string()
}

/// The last lines of an island's log (its init's stdout and stderr), as evidence of how it
/// ended. Containers of other clients keep their logs elsewhere (podman: conmon's log).
fn log_tail(s: &Subject) -> Option<Vec<String>> {
    let island = s.island.as_ref()?.island();
    let text = read_tail(&island.log, LOG_TAIL).ok()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Some(vec![format!("log {}: empty", island.log.display())]);
    }
    let start = lines.len().saturating_sub(LOG_LINES);
    Some(
        lines[start..]
            .iter()
            .map(|l| format!("log {}: {}", island.log.display(), clip(l, 160)))
            .collect(),
    )
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n).collect();
    out.push('…');
    out
}

/// The last `max` bytes of a file, from the start of the first whole line in them.
fn read_tail(path: &Path, max: u64) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.take(max).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Ok(match (start, text.find('\n')) {
        (0, _) | (_, None) => text,
        (_, Some(i)) => text[i + 1..].to_string(),
    })
}

// ---- guard alerts ------------------------------------------------------------------------------

struct Latest {
    time: String,
    rule: String,
    syscall: String,
    denied: bool,
}

#[derive(Default)]
struct Alerts {
    file: PathBuf,
    count: usize,
    latest: Option<Latest>,
}

impl Alerts {
    fn evidence(&self) -> Vec<String> {
        match &self.latest {
            None => Vec::new(),
            Some(l) => vec![format!(
                "guard alerts in {} since the container was created: {}; latest {} {} {} ({})",
                self.file.display(),
                self.count,
                l.time,
                l.rule,
                l.syscall,
                if l.denied {
                    "denied"
                } else {
                    "allowed, detect mode"
                }
            )],
        }
    }

    fn suffix(&self) -> String {
        match self.count {
            0 => String::new(),
            n => format!("; {n} guard alert{} before", if n == 1 { "" } else { "s" }),
        }
    }
}

fn alert_file(s: &Subject) -> PathBuf {
    match &s.island {
        Some(i) => atoll_islands::guard::alerts(&i.plan),
        None => atoll_runtime::guard::GuardNode::load(&s.runtime_root)
            .map(|n| n.alert_log)
            .unwrap_or_else(|_| PathBuf::from(CONTAINER_ALERTS)),
    }
}

/// The guard's alerts about this container since it was created (ids are reused: an older
/// container of the same id is not this one). Both times are RFC 3339 in UTC with nanoseconds,
/// written by the same formatter, so they compare as strings.
fn alerts(s: &Subject) -> Alerts {
    let file = alert_file(s);
    let mut a = Alerts {
        file,
        ..Alerts::default()
    };
    let Ok(text) = read_tail(&a.file, ALERT_TAIL) else {
        return a;
    };
    let since = s.saved.as_ref().map_or("", |s| s.created.as_str());
    let needle = format!(
        "\"tenant\":{}",
        serde_json::Value::String(s.container_id.clone())
    );
    for line in text.lines().filter(|l| l.contains(&needle)) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        if field("tenant") != s.container_id || field("time").as_str() < since {
            continue;
        }
        a.count += 1;
        a.latest = Some(Latest {
            time: field("time"),
            rule: field("rule"),
            syscall: field("syscall"),
            denied: field("decision") == "deny",
        });
    }
    a
}

// ---- fixes -------------------------------------------------------------------------------------

struct Fixes<'a> {
    s: &'a Subject,
}

impl Fixes<'_> {
    /// `atoll --root R VERB ID`: the runtime's own verb on the tenant's container.
    fn runtime(&self, verb: &str) -> String {
        format!(
            "atoll --root {} {verb} {}",
            self.s.runtime_root.display(),
            self.s.container_id
        )
    }

    fn re_up(&self) -> String {
        match &self.s.island {
            Some(i) => format!(
                "atoll down {} && atoll up {}",
                i.plan.name,
                i.plan.file.display()
            ),
            None => format!(
                "{} and run it again with the tool that made it (podman, containerd)",
                self.runtime("delete --force")
            ),
        }
    }

    fn log_and_re_up(&self) -> String {
        match &self.s.island {
            Some(i) => format!(
                "read why it ended: atoll island logs {}/{}; then {}",
                i.plan.name,
                i.island().spec.name,
                self.re_up()
            ),
            None => format!(
                "read why it ended in its client's logs (podman logs {}); then {}",
                self.s.container_id,
                self.re_up()
            ),
        }
    }

    fn memory(&self, limit: Option<u64>) -> String {
        let now = limit.map_or(String::new(), |l| format!(" (now {})", bytes(l)));
        match &self.s.island {
            Some(i) => format!(
                "raise `memory` of [[island]] {} in {}{now}, then {}",
                i.island().spec.name,
                i.plan.file.display(),
                self.re_up()
            ),
            None => format!(
                "run it again with a larger memory limit{now} (podman run --memory); {}",
                self.runtime("delete --force")
            ),
        }
    }

    fn pids(&self, max: u64) -> String {
        let live = format!(
            "atoll --root {} update --pids-limit {} {}",
            self.s.runtime_root.display(),
            max.saturating_mul(2).max(64),
            self.s.container_id
        );
        match &self.s.island {
            Some(i) => format!(
                "{live} (now), and raise `pids` of [[island]] {} in {} (now {max}) so the next `atoll up` keeps it",
                i.island().spec.name,
                i.plan.file.display()
            ),
            None => live,
        }
    }

    fn alerts(&self) -> String {
        let see = match &self.s.island {
            Some(i) => format!(
                "atoll island events --alerts {}/{}",
                i.plan.name,
                i.island().spec.name
            ),
            None => format!(
                "atoll --root {} events --alerts {}",
                self.s.runtime_root.display(),
                self.s.container_id
            ),
        };
        format!(
            "find out what the tenant tried ({see}); the guard keeps refusing calls that would leave its namespaces: fix or replace the tenant's program, never the guard"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_short() {
        assert_eq!(bytes(16 << 20), "16M");
        assert_eq!(bytes(3 << 29), "1.5G");
        assert_eq!(bytes(512), "512");
    }

    #[test]
    fn a_tail_starts_at_a_whole_line() {
        let p = std::env::temp_dir().join(format!("atoll-doctor-tail-{}", std::process::id()));
        std::fs::write(&p, "first line\nsecond\nthird\n").unwrap();
        assert_eq!(read_tail(&p, 13).unwrap(), "third\n");
        assert_eq!(read_tail(&p, 100).unwrap(), "first line\nsecond\nthird\n");
        std::fs::remove_file(&p).unwrap();
    }
}

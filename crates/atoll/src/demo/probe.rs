//! How the demo looks at its islands: a command run inside one through `atoll exec` (on the
//! island's container id, in the runtime root `up` used) with a deadline, and what the host
//! sees of them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use atoll_islands::plan::{IslandPlan, Plan};
use atoll_runtime::Store;

/// How long one command inside an island may take before it is killed.
const DEADLINE: Duration = Duration::from_secs(15);

pub(crate) struct Demo<'a> {
    pub plan: &'a Plan,
    /// This atoll binary, run again for `exec`.
    pub exe: PathBuf,
}

impl<'a> Demo<'a> {
    pub fn new(plan: &'a Plan, exe: PathBuf) -> Self {
        Demo { plan, exe }
    }

    pub fn island(&self, name: &str) -> Result<&'a IslandPlan> {
        self.plan
            .island(name)
            .with_context(|| format!("the demo has no island {name:?}"))
    }

    /// `atoll --root ROOT exec [PRE...] ID` for the island, as a command line to finish.
    pub fn exec_command(&self, island: &str, pre: &[&str]) -> Result<Command> {
        let mut c = Command::new(&self.exe);
        c.arg("--root")
            .arg(&self.plan.runtime_root)
            .arg("exec")
            .args(pre)
            .arg(&self.island(island)?.container_id);
        Ok(c)
    }

    /// Run `args` inside `island`; (exit code, stdout and stderr). A command that cannot be
    /// started reads as exit -1 and one past the deadline as -2, with the reason as output:
    /// the claim that needed it fails and shows why.
    pub fn run_in(&self, island: &str, args: &[&str]) -> (i32, String) {
        let child = self.exec_command(island, &[]).and_then(|mut c| {
            c.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("spawn atoll exec")
        });
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return (-1, format!("{e:#}")),
        };
        let deadline = Instant::now() + DEADLINE;
        let code = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s.code().unwrap_or(-1),
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break -2;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break -1,
            }
        };
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut out);
        }
        (code, out)
    }

    /// The address of `island` on its link with `toward`.
    pub fn addr(&self, island: &str, toward: &str) -> Result<String> {
        let index = |name: &str| {
            self.plan
                .islands
                .iter()
                .position(|i| i.spec.name == name)
                .with_context(|| format!("the demo has no island {name:?}"))
        };
        let (a, b) = (index(island)?, index(toward)?);
        for l in &self.plan.links {
            if (l.a, l.b) == (a, b) {
                return Ok(l.addr_a.to_string());
            }
            if (l.a, l.b) == (b, a) {
                return Ok(l.addr_b.to_string());
            }
        }
        bail!("the demo has no link between {island} and {toward}")
    }
}

/// The host uid of a container's init, read from the host's /proc.
pub fn host_uid_of(runtime_root: &Path, id: &str) -> Option<u32> {
    let saved = Store::new(runtime_root).load(id).ok()?;
    let s = std::fs::read_to_string(format!("/proc/{}/status", saved.pid)).ok()?;
    status_line(&s, "Uid:")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The value of a /proc/PID/status line ("CapEff:" → "0000000000000400").
pub fn status_line(s: &str, key: &str) -> String {
    s.lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The local IPv4 addresses in `ip -o -4 addr` output ("inet A[/n]" or "inet A peer B/32").
pub fn local_addrs(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip_while(|w| *w != "inet");
            w.next()?;
            Some(w.next()?.split('/').next()?.to_string())
        })
        .collect()
}

pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ip_and_status_output() {
        let ip = "1: lo    inet 127.0.0.1/8 scope host lo\n\
                  2: backup    inet 10.0.0.1 peer 10.0.0.2/32 scope link backup\n";
        assert_eq!(local_addrs(ip), ["127.0.0.1", "10.0.0.1"]);
        let st = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000400\n";
        assert_eq!(status_line(st, "Uid:"), "1000 1000 1000 1000");
        assert_eq!(status_line(st, "CapEff:"), "0000000000000400");
        assert_eq!(status_line(st, "Seccomp:"), "");
    }
}

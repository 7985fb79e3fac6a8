//! The escape guard of a project: one `atoll guard serve` supervisor per project, started before
//! the first island is created (the runtime hands each island's seccomp notify fd to it at
//! create), and stopped by teardown. Alerts go to `<state>/alerts.jsonl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{io, IslandsError, Result};
use crate::file::Guard;
use crate::plan::Plan;

pub fn socket(plan: &Plan) -> PathBuf {
    plan.state_dir.join("guard.sock")
}

pub fn alerts(plan: &Plan) -> PathBuf {
    plan.state_dir.join("alerts.jsonl")
}

fn pid_file(state_dir: &Path) -> PathBuf {
    state_dir.join("guard.pid")
}

pub fn needed(plan: &Plan) -> bool {
    plan.islands.iter().any(|i| i.spec.guard != Guard::Off)
}

/// Start the project's supervisor and wait until it listens.
pub fn start(plan: &Plan, atoll: &Path) -> Result<()> {
    let sock = socket(plan);
    let log =
        std::fs::File::create(plan.state_dir.join("guard.log")).map_err(io("create guard.log"))?;
    // It says "ready" on this pipe once it listens: no polling for the socket file.
    let (ready_r, ready_w) = std::io::pipe().map_err(io("pipe"))?;
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new(atoll)
            .args(["guard", "serve", "--notify-ready", "--socket"])
            .arg(&sock)
            .arg("--alerts")
            .arg(alerts(plan))
            .stdin(Stdio::null())
            .stdout(ready_w)
            .stderr(log)
            // Its own process group: a ^C meant for `up` must not take the guard down.
            .process_group(0)
            .spawn()
            .map_err(io(format!("spawn {} guard serve", atoll.display())))?
    };
    std::fs::write(pid_file(&plan.state_dir), child.id().to_string())
        .map_err(io("write guard.pid"))?;
    if !ready_within(ready_r, Duration::from_secs(5)) {
        return Err(IslandsError::Other(format!(
            "the guard did not listen on {} within 5 s (see {})",
            sock.display(),
            plan.state_dir.join("guard.log").display()
        )));
    }
    Ok(())
}

/// Did "ready" come on `r` before `limit` (EOF or anything else: no)?
fn ready_within(r: std::io::PipeReader, limit: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    use std::io::Read;
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut r = r;
    while !got.ends_with(b"\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(&r, PollFlags::IN)];
        let ts = rustix::event::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
        let mut buf = [0u8; 16];
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got == b"ready\n"
}

/// Stop the supervisor recorded in `state_dir`, if it is still the one we started.
pub fn stop(state_dir: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(pid_file(state_dir)) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(());
    };
    // The pid may have been reused since: only a `guard serve` on this project's socket is ours.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let sock = state_dir.join("guard.sock");
    let ours = String::from_utf8_lossy(&cmdline).contains(&*sock.to_string_lossy());
    if ours {
        let p = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
        // Our child when `up` itself tears down after a failure: reap it.
        let _ = nix::sys::wait::waitpid(p, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
    let _ = std::fs::remove_file(pid_file(state_dir));
    Ok(())
}

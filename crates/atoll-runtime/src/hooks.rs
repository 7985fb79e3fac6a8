//! OCI hooks: each runs with the container state on stdin, its own args and env, and an optional
//! timeout after which it is killed. What a failure means depends on the hook kind (runtime-spec
//! config.md "POSIX-platform Hooks"): the caller decides.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// Which hook failed and why; the caller decides whether that stops the container.
#[derive(Debug, thiserror::Error)]
#[error("{kind} hook #{index} ({path})")]
pub struct HookFailed {
    pub kind: &'static str,
    pub index: usize,
    pub path: PathBuf,
    #[source]
    pub source: HookError,
}

/// Why one hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("cannot start")]
    Start(#[source] std::io::Error),
    #[error("wait")]
    Wait(#[source] std::io::Error),
    #[error("failed: {0}")]
    Failed(std::process::ExitStatus),
    #[error("timed out after {0}s")]
    TimedOut(i64),
}

/// Run poststop hooks: a failure is a warning and the rest still run (runtime-spec).
/// Returns the failures for the caller to log.
pub fn run_all_warn(kind: &'static str, hooks: &[Hook], state: &str) -> Vec<HookFailed> {
    hooks
        .iter()
        .enumerate()
        .filter_map(|(i, h)| run_one(kind, i, h, state).err())
        .collect()
}

/// Run hooks that stop the container on the first failure.
pub fn run_all(kind: &'static str, hooks: &[Hook], state: &str) -> Result<(), HookFailed> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(kind, i, h, state)?;
    }
    Ok(())
}

fn run_one(kind: &'static str, index: usize, h: &Hook, state: &str) -> Result<(), HookFailed> {
    let err = |source: HookError| HookFailed {
        kind,
        index,
        path: h.path().clone(),
        source,
    };
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first).args(rest);
        }
    }
    // A hook without `env` runs in the runtime's own environment (PATH in particular), as
    // runc's and crun's do; one with `env` gets exactly that list.
    if let Some(env) = h.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| err(HookError::Start(e)))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _hook_may_ignore_stdin = stdin.write_all(state.as_bytes());
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    if deadline.is_none() {
        let status = child.wait().map_err(|e| err(HookError::Wait(e)))?;
        return if status.success() {
            Ok(())
        } else {
            Err(err(HookError::Failed(status)))
        };
    }
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(err(HookError::Failed(status))),
            Ok(None) => {}
            Err(e) => return Err(err(HookError::Wait(e))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _already_dead_is_fine = child.kill();
            let _reap = child.wait();
            return Err(err(HookError::TimedOut(h.timeout().unwrap_or(0))));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

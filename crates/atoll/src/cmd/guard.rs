//! `atoll guard serve` (the seccomp agent) and `atoll guard events` (the alert log).

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use atoll_guard::{Policy, Supervisor, SupervisorOpts};

use crate::cli::GuardVerb;

pub fn guard(v: &GuardVerb) -> Result<i32> {
    match v {
        GuardVerb::Serve {
            socket,
            alerts,
            mode,
        } => {
            let policy = Policy {
                mode: mode.parse()?,
                ..Policy::default()
            };
            if let Some(dir) = socket.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
            }
            if let Some(dir) = alerts.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
            }
            let mut sup = Supervisor::bind(&SupervisorOpts {
                socket: socket.clone(),
                alerts: alerts.clone(),
                policy,
            })?;
            tracing::info!(socket = %socket.display(), alerts = %alerts.display(), "guard: serving");
            sup.run()?;
            Ok(0)
        }
        GuardVerb::Events { follow, alerts } => {
            events(alerts, *follow)?;
            Ok(0)
        }
    }
}

/// `events --alerts ID`: follow the guard's alerts about one container (an alert's `tenant` is
/// the container id) in `path`, which is created if the guard has written nothing yet.
pub fn follow_alerts(path: &Path, container_id: &str) -> Result<i32> {
    if !path.exists() {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("create {}", path.display()))?;
    }
    let needle = format!(
        "\"tenant\":{}",
        serde_json::Value::String(container_id.to_string())
    );
    events_matching(path, true, Some(&needle))?;
    Ok(0)
}

/// Print the file's lines; with `follow`, keep reading what is appended (like tail -f, polling:
/// the log is small and inotify would be one more moving part).
fn events(path: &Path, follow: bool) -> Result<()> {
    events_matching(path, follow, None)
}

fn events_matching(path: &Path, follow: bool, needle: Option<&str>) -> Result<()> {
    let open = || std::fs::File::open(path).with_context(|| format!("open {}", path.display()));
    let mut reader = std::io::BufReader::new(open()?);
    let out = std::io::stdout();
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n > 0 && line.ends_with('\n') {
            if needle.is_some_and(|w| !line.contains(w)) {
                continue;
            }
            let mut o = out.lock();
            o.write_all(line.as_bytes())?;
            o.flush()?;
            continue;
        }
        if !follow {
            if n > 0 {
                print!("{line}");
            }
            return Ok(());
        }
        // A partial line: go back and wait for the rest of it.
        reader.seek_relative(-(n as i64))?;
        std::thread::sleep(Duration::from_millis(200));
    }
}

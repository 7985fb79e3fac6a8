//! Read-only verbs: list, ps, events.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use atoll_runtime::{container, Store};

use crate::cli::Format;

pub fn list(store: &Store, format: Format, quiet: bool) -> Result<()> {
    let mut rows = Vec::new();
    for id in store.list()? {
        // gone meanwhile (a concurrent delete), or unreadable: `state ID` says why
        if let Ok(row) = container::state(store, &id) {
            rows.push(row);
        }
    }
    if quiet {
        for r in &rows {
            println!("{}", r["id"].as_str().unwrap_or(""));
        }
        return Ok(());
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string(&rows)?),
        Format::Table => {
            println!(
                "{:<12} {:<10} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for r in &rows {
                println!(
                    "{:<12} {:<10} {:<10} {:<40} {:<32} {}",
                    r["id"].as_str().unwrap_or(""),
                    r["pid"],
                    r["status"].as_str().unwrap_or(""),
                    r["bundle"].as_str().unwrap_or(""),
                    r["created"].as_str().unwrap_or(""),
                    if r["owner"].as_str().unwrap_or("").is_empty() {
                        "root"
                    } else {
                        r["owner"].as_str().unwrap_or("")
                    },
                );
            }
        }
    }
    Ok(())
}

/// Like runc: json prints the pids; table runs ps(1) and keeps the header and the container's rows.
pub fn ps(store: &Store, id: &str, format: Format, args: &[String]) -> Result<()> {
    let pids = container::pids(store, id)?;
    if format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps(1)")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for l in lines {
        if let Some(p) = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&p) {
                println!("{l}");
            }
        }
    }
    Ok(())
}

/// runc's `events`: a stats line every `every`, and an `{"type":"oom"}` line as soon as the
/// kernel reports an OOM in the container's cgroup (atoll_cgroups::oom).
pub fn events(store: &Store, id: &str, stats_once: bool, every: Duration) -> Result<()> {
    if stats_once {
        println!("{}", container::stats(store, id)?);
        return Ok(());
    }
    // Armed before the first line, so that an OOM after it is never missed. Without a memory
    // controller there is nothing to watch; the stats still stream (as runc).
    let mut oom = match container::oom_watch(store, id) {
        Ok(w) => Some(w),
        Err(atoll_runtime::RuntimeError::NotFound(n)) => {
            return Err(atoll_runtime::RuntimeError::NotFound(n).into())
        }
        Err(e) => {
            tracing::warn!("events {id}: no OOM notifications: {e}");
            None
        }
    };
    // A container that does not exist is an error; one deleted while followed ends the stream.
    println!("{}", container::stats(store, id)?);
    let mut next = std::time::Instant::now() + every;
    loop {
        let left = next.saturating_duration_since(std::time::Instant::now());
        match oom.as_mut().map(|w| w.wait(left)) {
            Some(Ok(atoll_cgroups::Oom::Fired(_))) => {
                println!("{}", serde_json::json!({"type": "oom", "id": id}));
                continue;
            }
            Some(Ok(atoll_cgroups::Oom::Gone)) => oom = None,
            Some(Ok(atoll_cgroups::Oom::Quiet)) => {}
            Some(Err(e)) => {
                tracing::warn!("events {id}: OOM notifications stop: {e}");
                oom = None;
            }
            None => std::thread::sleep(left),
        }
        if std::time::Instant::now() < next {
            continue;
        }
        next += every;
        match container::stats(store, id) {
            Ok(s) => println!("{s}"),
            Err(atoll_runtime::RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

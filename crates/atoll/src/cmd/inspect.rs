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

pub fn events(store: &Store, id: &str, stats_once: bool, every: Duration) -> Result<()> {
    if stats_once {
        println!("{}", container::stats(store, id)?);
        return Ok(());
    }
    // A container that does not exist is an error; one deleted while followed ends the stream.
    println!("{}", container::stats(store, id)?);
    loop {
        std::thread::sleep(every);
        match container::stats(store, id) {
            Ok(s) => println!("{s}"),
            Err(atoll_runtime::RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

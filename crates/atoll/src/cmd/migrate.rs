//! `migrate ISLAND` (and the island archives of `checkpoint --to` / `restore ARCHIVE`): the work
//! is in atoll_islands; this prints each phase as it ends, then the outage, or the report as JSON.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use atoll_islands::migrate::{self, MigrateOpts, Phase, Report};
use atoll_islands::plan::STATE_ROOT;

use crate::cli::Cli;

pub fn migrate(
    cli: &Cli,
    island: &str,
    images: Option<PathBuf>,
    keep_images: bool,
    json: bool,
) -> Result<i32> {
    let opts = MigrateOpts {
        criu: cli.criu.clone(),
        images,
        keep_images,
    };
    if !json {
        println!("migrate {island}");
    }
    let r = migrate::migrate(
        Path::new(STATE_ROOT),
        island,
        &opts,
        &mut phase_printer(json),
    )?;
    print_report(&r, json)?;
    Ok(0)
}

/// Prints a phase as it ends (not with --json: the report has them all).
pub fn phase_printer(json: bool) -> impl FnMut(&Phase) {
    move |p: &Phase| {
        if !json {
            println!("  {:<12} {:>9.1} ms", p.name, p.ms);
            // A phase line is progress: it must not wait in a buffer for the next one.
            let _ = std::io::stdout().flush();
        }
    }
}

pub fn print_report(r: &Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "  outage       {:>9.1} ms (lock of the island's netns to unlock of the new one)",
        r.outage_ms
    );
    if r.held_packets > 0 {
        println!(
            "  held         {:>9} packet(s) its peers sent in the outage, delivered at the unlock",
            r.held_packets
        );
    }
    println!(
        "  {}/{}: pid {} -> {}, {} connection(s): {}",
        r.project,
        r.island,
        r.pid_before,
        r.pid_after,
        r.connections.len(),
        r.connections.join(", ")
    );
    Ok(())
}

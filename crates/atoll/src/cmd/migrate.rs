//! `migrate ISLAND`: the work is in atoll_islands::migrate; this prints each phase as it ends,
//! then the outage (or the whole report as JSON).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use atoll_islands::migrate::{self, MigrateOpts, Phase};
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
    let mut print = |p: &Phase| {
        if !json {
            println!("  {:<12} {:>9.1} ms", p.name, p.ms);
            let _ = std::io::stdout().flush();
        }
    };
    if !json {
        println!("migrate {island}");
    }
    let r = migrate::migrate(std::path::Path::new(STATE_ROOT), island, &opts, &mut print)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "  outage       {:>9.1} ms (lock of the source to unlock of the target)\n  {}/{}: pid {} -> {}, {} connection(s) carried: {}",
            r.outage_ms,
            r.project,
            r.island,
            r.pid_before,
            r.pid_after,
            r.connections.len(),
            r.connections.join(", ")
        );
    }
    Ok(0)
}

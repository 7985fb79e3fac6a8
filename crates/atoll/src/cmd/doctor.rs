//! `atoll doctor`: read the question, run the walk (atoll-doctor), print text or JSON. Exit 0:
//! no fault; 1: a layer is at fault; 2: doctor could not run (the error names why).

use std::path::Path;

use anyhow::Result;
use atoll_doctor::{diagnose, find, Target};
use atoll_islands::plan::STATE_ROOT;

use crate::cli::{Cli, DoctorArgs, DEFAULT_ROOT};

pub fn doctor(cli: &Cli, a: &DoctorArgs) -> Result<i32> {
    let target = a.to.as_deref().map(Target::parse).transpose()?;
    // Only a `--root` other than the default counts as "given": a shim's own root.
    let root_given = cli.root != Path::new(DEFAULT_ROOT);
    let subject = find(&a.what, &cli.root, root_given, Path::new(STATE_ROOT))?;
    let report = diagnose(&subject, target.as_ref(), a.dns.as_deref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(report.exit_code())
}

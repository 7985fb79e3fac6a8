//! `atoll doctor`: read the question, run the walk (atoll-doctor), print text or JSON. Exit 0:
//! no fault; 1: a layer is at fault; 2: doctor could not run (the error names why).

use std::io::Write as _;
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
    let text = if a.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.render()
    };
    // A reader that stops early (`| head`) is not doctor failing: the verdict is the exit code.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(report.exit_code()),
    }
}

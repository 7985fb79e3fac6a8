//! `atoll demo`: bring up the built-in islands file, prove each of its promises live (from inside
//! the islands and from the host), print the evidence, and remove everything again.

mod claims;
mod probe;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use atoll_islands::apply::{self, UpOpts};
use atoll_islands::plan::{Plan, STATE_ROOT};
use atoll_islands::{file, status as st};

use crate::cli::Cli;

/// The claims shown true and false so far; each is printed with its evidence as it is checked.
#[derive(Default)]
pub(crate) struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    pub(crate) fn check(&mut self, claim: &str, ok: bool, evidence: &str) {
        let mark = if ok { "PASS" } else { "FAIL" };
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        println!("  [{mark}] {claim}");
        for l in evidence.lines().filter(|l| !l.trim().is_empty()).take(4) {
            println!("         | {}", l.trim_end());
        }
    }
}

pub fn run(cli: &Cli, keep: bool) -> Result<i32> {
    let state = PathBuf::from(STATE_ROOT);
    if state.join("demo").exists() {
        println!("a demo is already up: taking it down first");
        apply::down(&state, &cli.root, "demo")?;
    }
    let f = file::parse(Path::new("demo.toml (built in)"), atoll_islands::DEMO)?;
    println!(
        "== atoll demo: bringing up {} islands from the host's own /usr",
        f.islands.len()
    );
    let exe = std::env::current_exe().context("find the atoll binary (/proc/self/exe)")?;
    let opts = UpOpts {
        state_root: state,
        runtime_root: cli.root.clone(),
        atoll: exe.clone(),
        parallel: 8,
        net_only: false,
        arriving: None,
    };
    let t0 = Instant::now();
    let plan = apply::up(&f, &opts)?;
    println!("   up in {} ms\n", t0.elapsed().as_millis());
    print!("{}", st::status(&plan));
    println!();
    let mut tally = Tally::default();
    let result = claims::prove(&probe::Demo::new(&plan, exe), &mut tally);
    println!(
        "\n== {} of {} claims shown true",
        tally.passed,
        tally.passed + tally.failed
    );
    if keep {
        println!("the demo is still up: `atoll status`, `atoll island exec db -- busybox ps`, then `atoll down demo`");
    } else {
        tear_down(&plan)?;
    }
    result?;
    Ok(i32::from(tally.failed > 0))
}

/// `down`, then the demo's data and logs too (`down` keeps a tenant's; the demo's are of no use
/// afterwards), and a check that nothing is left.
fn tear_down(plan: &Plan) -> Result<()> {
    apply::teardown(plan)?;
    for i in &plan.islands {
        let _ = std::fs::remove_dir_all(&i.data_dir);
        let _ = std::fs::remove_file(&i.log);
    }
    if let Some(i) = plan.islands.first() {
        // the project's directories, now empty; a tenant's file kept open elsewhere keeps one
        for dir in [i.data_dir.parent(), i.log.parent()].into_iter().flatten() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    let gone = !plan.state_dir.exists()
        && !plan.islands.iter().any(|i| i.netns.exists())
        && atoll_net::firewall::counters(&plan.table).is_err();
    println!(
        "== torn down: netns, links, nft table {}, containers, guard, state, data and logs {}",
        plan.table,
        if gone { "removed" } else { "NOT all removed" }
    );
    if !gone {
        bail!("the demo left something behind");
    }
    Ok(())
}

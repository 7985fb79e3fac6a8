//! The islands verbs: up, down, status, backup, and `island exec|ps|events|logs`. The work is in
//! atoll-islands; this file reads arguments and prints. (`demo` is in crate::demo.)

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use atoll_islands::apply::{self, UpOpts};
use atoll_islands::plan::{self, Plan, STATE_ROOT};
use atoll_islands::{backup as bk, file, status as st};
use atoll_runtime::{container, Store};

use crate::cli::{Cli, ExecArgs, IslandVerb, UpArgs};

fn state_root() -> PathBuf {
    PathBuf::from(STATE_ROOT)
}

/// The island `what` names (ISLAND or PROJECT/ISLAND, among the projects that are up): its
/// project's plan, the runtime root its container lives in, and the container's id. `--root`
/// plays no part: the plan records the root `up` used.
fn island_container(what: &str) -> Result<(Plan, Store, String)> {
    let (plan, name) = atoll_islands::resolve(&state_root(), what)?;
    let id = plan
        .island(&name)
        .with_context(|| format!("island {name:?} is not in project {:?}", plan.name))?
        .container_id
        .clone();
    let store = Store::new(&plan.runtime_root);
    Ok((plan, store, id))
}

/// `atoll island VERB ISLAND ...`: the runc verb of the same name on the island's container.
pub fn island(v: &IslandVerb) -> Result<i32> {
    match v {
        IslandVerb::Exec(a) => {
            let (_, store, id) = island_container(&a.id)?;
            super::exec::exec(&store, &ExecArgs { id, ..a.clone() })
        }
        IslandVerb::Ps(a) => {
            let (_, store, id) = island_container(&a.id)?;
            super::inspect::ps(&store, &id, a.format, &a.ps_args)?;
            Ok(0)
        }
        IslandVerb::Events(a) => {
            let (plan, store, id) = island_container(&a.id)?;
            if a.alerts {
                let path = a
                    .alerts_file
                    .clone()
                    .unwrap_or_else(|| atoll_islands::guard::alerts(&plan));
                return super::guard::follow_alerts(&path, &id);
            }
            super::inspect::events(&store, &id, a.stats, a.interval)?;
            Ok(0)
        }
        IslandVerb::Logs { follow, island } => logs(island, *follow),
    }
}

fn up_opts(cli: &Cli, state: &Path, net_only: bool, parallel: usize) -> Result<UpOpts> {
    Ok(UpOpts {
        state_root: state.to_path_buf(),
        runtime_root: cli.root.clone(),
        atoll: std::env::current_exe().context("find the atoll binary (/proc/self/exe)")?,
        parallel,
        net_only,
        arriving: None,
    })
}

pub fn up(cli: &Cli, a: &UpArgs) -> Result<i32> {
    let f = file::load(&a.file)?;
    let mut opts = up_opts(cli, &a.state_dir, a.net_only, a.parallel)?;
    if let (Some(island), Some(via)) = (&a.arriving, a.via) {
        opts.arriving = Some(apply::Arriving {
            island: island.clone(),
            via,
        });
    }
    let plan = apply::up(&f, &opts)?;
    let s = st::status_after_up(&plan);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{s}");
    }
    Ok(0)
}

/// `down NAME`, `down FILE` (its project), or `down` (every project).
pub fn down(cli: &Cli, what: Option<&str>) -> Result<i32> {
    let names: Vec<String> = match what {
        Some(w) if w.ends_with(".toml") || Path::new(w).is_file() => {
            vec![file::load(Path::new(w))?.name]
        }
        Some(w) => vec![w.to_string()],
        None => {
            let mut v: Vec<String> = std::fs::read_dir(state_root())
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        }
    };
    let mut failed = false;
    for n in names {
        match apply::down(&state_root(), &cli.root, &n) {
            Ok(true) => println!("{n}: down"),
            Ok(false) => println!("{n}: was not up"),
            Err(e) => {
                eprintln!("{n}: {}", atoll_runtime::error::report(&e));
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

pub fn status(project: Option<&str>, json: bool) -> Result<i32> {
    let plans: Vec<Plan> = plan::existing(&state_root())
        .into_iter()
        .filter(|p| project.is_none_or(|n| n == p.name))
        .collect();
    let all: Vec<st::Status> = plans.iter().map(st::status).collect();
    let verdicts: Vec<Vec<Option<String>>> = plans.iter().map(doctor_verdicts).collect();
    if json {
        let mut v = serde_json::to_value(&all)?;
        for (p, per_island) in verdicts.iter().enumerate() {
            for (i, line) in per_island.iter().enumerate() {
                if let Some(island) = v[p]["islands"].get_mut(i) {
                    island["doctor"] = serde_json::json!(line);
                }
            }
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if all.is_empty() {
        println!("no islands are up");
    } else {
        for (s, per_island) in all.iter().zip(&verdicts) {
            print!("{s}");
            let wrong: Vec<(&str, &str)> = s
                .islands
                .iter()
                .zip(per_island)
                .filter_map(|(i, l)| Some((i.name.as_str(), l.as_deref()?)))
                .collect();
            if !wrong.is_empty() {
                println!("  doctor:");
            }
            for (name, line) in wrong {
                println!("    {name:<12} {line}  (atoll doctor {}/{name})", s.name);
            }
        }
    }
    Ok(0)
}

/// The doctor's one line for each island of `plan` (None: nothing wrong): the walk without a
/// question (process, files, network; nothing is probed), stopped at the first fault.
fn doctor_verdicts(plan: &Plan) -> Vec<Option<String>> {
    (0..plan.islands.len())
        .map(|i| {
            let subject = atoll_doctor::Subject::island(plan, i);
            match atoll_doctor::diagnose(&subject, None, None) {
                Ok(r) => r.one_line(),
                Err(e) => Some(format!("doctor could not run: {e}")),
            }
        })
        .collect()
}

fn logs(island: &str, follow: bool) -> Result<i32> {
    let (plan, name) = atoll_islands::resolve(&state_root(), island)?;
    let path = plan
        .island(&name)
        .with_context(|| format!("island {name:?} is not in project {:?}", plan.name))?
        .log
        .clone();
    let mut f = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let mut out = std::io::stdout();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        f.read_to_end(&mut buf)?;
        out.write_all(&buf)?;
        out.flush()?;
        if !follow || !path.exists() {
            return Ok(0);
        }
        // read_to_end stops at the current end; the next read goes on from there.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `backup --share`: the share's host directory, read as root from the host side, so what the
/// islands wrote through their idmapped mounts is copied as it is on disk (the owner's).
pub fn backup_share(
    what: &str,
    dest: &Path,
    freeze: bool,
    owners: bk::Owners,
    json: bool,
) -> Result<i32> {
    let (plan, share) = atoll_islands::share::resolve(&state_root(), what)?;
    let store = Store::new(&plan.runtime_root);
    let ids: Vec<&str> = share
        .mounts
        .iter()
        .map(|m| plan.islands[m.island].container_id.as_str())
        .collect();
    let mut frozen = Vec::new();
    let mut r = Ok(bk::Report::default());
    if freeze {
        for id in &ids {
            match container::pause(&store, id) {
                Ok(()) => frozen.push(*id),
                Err(e) => {
                    r = Err(anyhow::Error::from(e).context(format!("freeze {id}")));
                    break;
                }
            }
        }
    }
    if r.is_ok() {
        r = bk::copy_tree(&share.host, dest, owners).map_err(anyhow::Error::from);
    }
    for id in frozen {
        container::resume(&store, id).with_context(|| format!("thaw {id}"))?;
    }
    let r = r?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    println!(
        "backup of share {}/{} ({}): {} files, {} dirs, {} bytes to {}",
        plan.name,
        share.name,
        share.host.display(),
        r.files,
        r.dirs,
        r.bytes,
        dest.display()
    );
    Ok(0)
}

pub fn backup(
    island: &str,
    dest: &Path,
    freeze: bool,
    owners: bk::Owners,
    json: bool,
) -> Result<i32> {
    let (plan, name) = atoll_islands::resolve(&state_root(), island)?;
    let i = plan
        .island(&name)
        .with_context(|| format!("island {name:?} is not in project {:?}", plan.name))?;
    let store = Store::new(&plan.runtime_root);
    if freeze {
        container::pause(&store, &i.container_id).context("freeze the island")?;
    }
    let r = bk::copy_tree(&i.data_dir, dest, owners);
    // An image island's writable root keeps what it wrote outside its data dir in its own
    // upper dir (docs/images.md): copied beside, to DEST.root.
    let upper = i
        .spec
        .image
        .as_ref()
        .filter(|m| m.root == atoll_islands::image::ImageRoot::Overlay)
        .map(|m| atoll_islands::image::upper_dirs(i, m.root).0);
    let root_dest = dest.with_file_name(format!(
        "{}.root",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    let root_copy = match (&r, &upper) {
        (Ok(_), Some(u)) => Some(bk::copy_tree(u, &root_dest, owners)),
        _ => None,
    };
    if freeze {
        container::resume(&store, &i.container_id).context("thaw the island")?;
    }
    let r = r?;
    if let Some(rc) = root_copy {
        let rc = rc?;
        if !json {
            println!(
                "backup of {}/{}'s root (what it wrote outside its data dir): {} files, {} dirs, {} bytes to {}",
                plan.name,
                name,
                rc.files,
                rc.dirs,
                rc.bytes,
                root_dest.display()
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    println!(
        "backup of {}/{}: {} files, {} dirs, {} bytes to {}{}",
        plan.name,
        name,
        r.files,
        r.dirs,
        r.bytes,
        dest.display(),
        if freeze {
            " (island frozen while copying)"
        } else {
            ""
        }
    );
    for (p, t) in &r.symlinks {
        println!(
            "  symlink {} -> {} kept as a link, not followed",
            p.display(),
            t.display()
        );
    }
    for p in &r.skipped {
        println!("  skipped {} (not a file, dir or symlink)", p.display());
    }
    Ok(0)
}

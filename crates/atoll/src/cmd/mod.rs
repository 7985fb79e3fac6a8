//! One function per verb; each returns the process exit code.

mod checkpoint;
mod doctor;
mod exec;
mod features;
mod graph;
mod guard;
mod images;
mod inspect;
mod islands;
mod migrate;
mod spec;
mod update;

use anyhow::{Context, Result};
use atoll_runtime::{container, CreateOpts, Store};

use crate::cli::{Cli, CreateArgs, EventsArgs, IslandVerb, Verb};

pub fn dispatch(cli: &Cli) -> Result<i32> {
    let store = Store::new(&cli.root);
    if cli.systemd_cgroup && !std::path::Path::new("/run/systemd/system").exists() {
        tracing::warn!("--systemd-cgroup: systemd is not running on this host; atoll manages cgroupfs directly");
    }
    match &cli.verb {
        Verb::Create(a) => container::create(&store, &create_opts(a))?,
        Verb::Start { id } => container::start(&store, id)?,
        Verb::State { id } => println!(
            "{}",
            serde_json::to_string_pretty(&container::state(&store, id)?)?
        ),
        Verb::Kill { all, id, signal } => {
            let sig = container::parse_signal(signal)?;
            container::kill(&store, id, sig, *all)?
        }
        Verb::Delete { force, id } => container::delete(&store, id, *force)?,
        Verb::Run {
            detach,
            keep,
            create,
        } => {
            let how = container::RunMode {
                detach: *detach,
                keep: *keep,
            };
            return Ok(container::run(&store, &create_opts(create), how)?);
        }
        Verb::Exec(a) => return exec::exec(&store, a),
        Verb::Ps(a) => inspect::ps(&store, &a.id, a.format, &a.ps_args)?,
        Verb::Up(a) => return islands::up(cli, a),
        Verb::Down { project } => return islands::down(cli, project.as_deref()),
        Verb::Status { json, project } => return islands::status(project.as_deref(), *json),
        Verb::Island(v) => return islands::island(v),
        Verb::Images { json, verb } => return images::images(verb.is_some(), *json),
        Verb::Backup {
            freeze,
            json,
            share,
            keep_owners,
            island,
            dest,
        } => {
            let owners = if *keep_owners {
                atoll_islands::backup::Owners::Keep
            } else {
                atoll_islands::backup::Owners::Root
            };
            return if *share {
                islands::backup_share(island, dest, *freeze, owners, *json)
            } else {
                islands::backup(island, dest, *freeze, owners, *json)
            };
        }
        Verb::Migrate {
            json,
            images,
            keep_images,
            island,
        } => return migrate::migrate(cli, island, images.clone(), *keep_images, *json),
        Verb::Doctor(a) => return doctor::doctor(cli, a),
        Verb::Graph(a) => return graph::graph(cli, a),
        Verb::Demo { keep } => return crate::demo::run(cli, *keep),
        Verb::List { format, quiet } => inspect::list(&store, *format, *quiet)?,
        Verb::Pause { id } => container::pause(&store, id)?,
        Verb::Resume { id } => container::resume(&store, id)?,
        Verb::Update(a) => update::update(&store, a)?,
        Verb::Events(a) => return events(&store, &a.id, a),
        Verb::Checkpoint(a) => checkpoint::checkpoint(&store, cli, a)?,
        Verb::Restore(a) => return checkpoint::restore(&store, cli, a),
        Verb::Features => println!(
            "{}",
            serde_json::to_string_pretty(&features::features(cli.criu.as_deref(), &cli.root)?)?
        ),
        Verb::Spec { bundle, rootless } => spec::write(bundle, *rootless).context("spec")?,
        Verb::Guard(g) => return guard::guard(cli, g),
    }
    Ok(0)
}

/// `events ID` on a container of `store` (`island events` resolves the island first).
fn events(store: &Store, id: &str, a: &EventsArgs) -> Result<i32> {
    if a.alerts {
        store.load(id)?;
        let file = a.alerts_file.as_deref();
        let node = atoll_runtime::guard::GuardNode::load(store.root())?;
        return guard::follow_alerts(file.unwrap_or(&node.alert_log), id);
    }
    inspect::events(store, id, a.stats, a.interval)?;
    Ok(0)
}

/// `--preserve-fds N` hands the caller's fds 3..3+N to the container. Each must be open when
/// atoll starts, as runc requires ("unable to stat preserved-fd"): otherwise the first fds atoll
/// opens itself (its --log file, the state lock, its end of the init's socket) would land in
/// that range and be passed on, and an init holding the state lock makes every later command on
/// the container wait for it. Checked before atoll opens anything, so that with every fd of the
/// range taken, each fd of atoll's own is above it.
pub fn check_preserved_fds(cli: &Cli) -> Result<()> {
    let n = match &cli.verb {
        Verb::Create(a) | Verb::Run { create: a, .. } => a.preserve_fds,
        Verb::Exec(a) | Verb::Island(IslandVerb::Exec(a)) => a.preserve_fds,
        _ => 0,
    };
    for i in 0..n {
        let fd = 3 + u64::from(i);
        // lstat of the /proc link: says whether the fd is open without touching what it refers
        // to (and needs no unsafe borrow of a descriptor atoll does not own).
        std::fs::symlink_metadata(format!("/proc/self/fd/{fd}"))
            .with_context(|| format!("unable to stat preserved-fd {i} (of {n}): fd {fd}"))?;
    }
    Ok(())
}

fn create_opts(a: &CreateArgs) -> CreateOpts {
    CreateOpts {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        keep_console: false,
        for_run: false,
        preserve_fds: a.preserve_fds,
    }
}

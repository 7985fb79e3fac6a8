//! One function per verb; each returns the process exit code.

mod exec;
mod features;
mod guard; // atoll-guard (issue 4)
mod inspect;
mod islands;
mod spec;
mod update;

use anyhow::{Context, Result};
use atoll_runtime::{container, CreateOpts, Store};

use crate::cli::{Cli, CreateArgs, Verb};

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
        Verb::Run { detach, create } => {
            return Ok(container::run(&store, &create_opts(create), *detach)?)
        }
        Verb::Exec(a) => return exec::exec(&store, a),
        Verb::Ps {
            format,
            id: Some(id),
            ps_args,
        } => inspect::ps(&store, id, *format, ps_args)?,
        Verb::Ps {
            id: None, format, ..
        } => return islands::status(None, *format == crate::cli::Format::Json),
        Verb::Up(a) => return islands::up(cli, a),
        Verb::Down { project } => return islands::down(cli, project.as_deref()),
        Verb::Status { json, project } => return islands::status(project.as_deref(), *json),
        Verb::Logs { follow, island } => return islands::logs(island, *follow),
        Verb::Backup {
            freeze,
            json,
            island,
            dest,
        } => return islands::backup(island, dest, *freeze, *json),
        Verb::Demo { keep } => return islands::demo(cli, *keep),
        Verb::List { format, quiet } => inspect::list(&store, *format, *quiet)?,
        Verb::Pause { id } => container::pause(&store, id)?,
        Verb::Resume { id } => container::resume(&store, id)?,
        Verb::Update(a) => update::update(&store, a)?,
        Verb::Events {
            alerts: true,
            alerts_file,
            id,
            ..
        } => return guard::follow_alerts(&store, id, alerts_file.as_deref()),
        Verb::Events {
            stats,
            interval,
            id,
            ..
        } => inspect::events(&store, id, *stats, *interval)?,
        Verb::Features => println!("{}", serde_json::to_string_pretty(&features::features())?),
        Verb::Spec { bundle, rootless } => spec::write(bundle, *rootless).context("spec")?,
        Verb::Guard(g) => return guard::guard(g), // atoll-guard (issue 4)
    }
    Ok(0)
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

//! `exec`: build the process (from --process or the command line over the container's own
//! process) and run it in the container.

use anyhow::{bail, Context, Result};
use atoll_runtime::{process::exec::ExecOpts, Store};
use oci_spec::runtime::Process;

use crate::cli::ExecArgs;

pub fn exec(store: &Store, a: &ExecArgs) -> Result<i32> {
    let saved = store.load(&a.id)?;
    let mut process: Process = match &a.process {
        Some(p) => {
            let data = std::fs::read(p).with_context(|| format!("--process {}", p.display()))?;
            atoll_runtime::spec::parse_process(&data).map_err(|e| {
                anyhow::anyhow!(
                    "--process {}: not a runtime-spec process object: {e}",
                    p.display()
                )
            })?
        }
        None => {
            if a.command.is_empty() {
                bail!("exec: no command given (and no --process)");
            }
            let mut p = saved.config.process().clone().unwrap_or_default();
            p.set_args(Some(a.command.clone()));
            p.set_terminal(Some(a.tty));
            p
        }
    };
    if let Some(cwd) = &a.cwd {
        process.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        for kv in &a.env {
            let key = kv.split('=').next().unwrap_or("");
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        process.set_env(Some(env));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (
                u.parse::<u32>().context("--user uid")?,
                g.parse::<u32>().context("--user gid")?,
            ),
            None => (u.parse::<u32>().context("--user uid")?, 0),
        };
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        process.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = process.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        process.set_user(user);
    }
    // The hidden runc flags: applied like the process's own fields, or refused where this host
    // has no such LSM (never ignored).
    if let Some(p) = &a.apparmor {
        atoll_runtime::lsm::require_apparmor("exec --apparmor", p)?;
        process.set_apparmor_profile(Some(p.clone()));
    }
    if let Some(l) = &a.process_label {
        atoll_runtime::lsm::require_selinux("exec --process-label", l)?;
        process.set_selinux_label(Some(l.clone()));
    }
    atoll_runtime::lsm::inherit(&mut process, saved.config.process().as_ref());
    atoll_runtime::spec::refuse_unapplied_process(&process).context("the process to exec")?;
    // The exec'd process inherits the init's oom_score_adj; a different one would not be applied.
    let container_adj = saved
        .config
        .process()
        .as_ref()
        .and_then(|p| p.oom_score_adj());
    if process.oom_score_adj().is_some() && process.oom_score_adj() != container_adj {
        bail!("--process: oomScoreAdj: an exec'd process inherits the container's ({container_adj:?}); a different value is not applied");
    }
    if a.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut c = process.capabilities().clone().unwrap_or_default();
        let extra: Vec<oci_spec::runtime::Capability> = a
            .cap
            .iter()
            .map(|s| {
                serde_json::from_value(serde_json::Value::String(s.clone()))
                    .with_context(|| format!("--cap {s}: unknown capability"))
            })
            .collect::<Result<_>>()?;
        let add = |s: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = s.clone().unwrap_or_default();
            s.extend(extra.iter().cloned());
            Some(s)
        };
        c.set_bounding(add(c.bounding()));
        c.set_effective(add(c.effective()));
        c.set_permitted(add(c.permitted()));
        process.set_capabilities(Some(c));
    }
    let opts = ExecOpts {
        id: a.id.clone(),
        process,
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        sub_cgroup: atoll_cgroups::SubCgroup::parse(&a.cgroup).context("--cgroup")?,
        ignore_paused: a.ignore_paused,
    };
    Ok(atoll_runtime::process::exec::exec(store, &opts)?)
}

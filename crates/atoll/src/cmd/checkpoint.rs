//! `checkpoint` and `restore` (runc's flags): parse them into the runtime's options; restore
//! without --detach waits for the restored container and passes its exit code through.

use anyhow::{bail, Context, Result};
use atoll_islands::plan::STATE_ROOT;
use atoll_runtime::checkpoint::{self, CgroupsMode, CheckpointOpts, CommonOpts, RestoreOpts};
use atoll_runtime::Store;
use std::path::Path;

use crate::cli::{CheckpointArgs, Cli, CriuArgs, RestoreArgs};

fn common(cli: &Cli, a: &CriuArgs) -> Result<CommonOpts> {
    let mode = CgroupsMode::parse(&a.manage_cgroups_mode).with_context(|| {
        format!(
            "--manage-cgroups-mode {:?}: expected soft, full, strict or ignore",
            a.manage_cgroups_mode
        )
    })?;
    Ok(CommonOpts {
        criu: cli.criu.clone(),
        image_path: a.image_path.clone(),
        work_path: a.work_path.clone(),
        tcp_established: a.tcp_established,
        ext_unix_sk: a.ext_unix_sk,
        shell_job: a.shell_job,
        file_locks: a.file_locks,
        manage_cgroups_mode: mode,
        empty_ns: a.empty_ns.clone(),
        auto_dedup: a.auto_dedup,
        lazy_pages: a.lazy_pages,
        status_fd: a.status_fd,
        page_server: a.page_server.clone(),
        user_ns: false,
        preflight_done: false,
        network_lock_skip: false,
    })
}

pub fn checkpoint(store: &Store, cli: &Cli, a: &CheckpointArgs) -> Result<()> {
    if let Some(to) = &a.to {
        let r = atoll_islands::archive::checkpoint(
            Path::new(STATE_ROOT),
            &a.id,
            to,
            a.with_data,
            a.via,
            cli.criu.as_deref(),
            &mut super::migrate::phase_printer(a.json),
        )?;
        return super::migrate::print_report(&r, a.json);
    }
    let opts = CheckpointOpts {
        common: common(cli, &a.criu)?,
        leave_running: a.leave_running,
        pre_dump: a.pre_dump,
        ptrace_freeze: false,
        parent_path: a.parent_path.clone(),
    };
    checkpoint::checkpoint(store, &a.id, &opts).with_context(|| format!("checkpoint {}", a.id))
}

/// An island archive is a directory with a manifest; a container id never has a '/'.
fn is_archive(id: &str) -> bool {
    id.contains('/') || Path::new(id).join("manifest.json").exists()
}

pub fn restore(store: &Store, cli: &Cli, a: &RestoreArgs) -> Result<i32> {
    if is_archive(&a.id) {
        let r = atoll_islands::archive::restore(
            Path::new(STATE_ROOT),
            Path::new(&a.id),
            cli.criu.as_deref(),
            &mut super::migrate::phase_printer(a.json),
        )?;
        super::migrate::print_report(&r, a.json)?;
        return Ok(0);
    }
    if a.no_subreaper && !a.detach {
        bail!("restore --no-subreaper needs --detach: without it atoll waits for the restored container, as its reaper");
    }
    let opts = RestoreOpts {
        common: common(cli, &a.criu)?,
        bundle: a.bundle.clone(),
        no_pivot: a.no_pivot,
        console_socket: a.console_socket.clone(),
        stdio_log: None,
    };
    if !a.detach {
        // CRIU restores the init as our child (rst_sibling); as subreaper we also reap what it
        // leaves when it dies first (prctl(2) PR_SET_CHILD_SUBREAPER).
        nix::sys::prctl::set_child_subreaper(true).context("prctl PR_SET_CHILD_SUBREAPER")?;
    }
    let pid =
        checkpoint::restore(store, &a.id, &opts).with_context(|| format!("restore {}", a.id))?;
    if let Some(p) = &a.pid_file {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, pid.to_string()).with_context(|| format!("write {tmp:?}"))?;
        std::fs::rename(&tmp, p).with_context(|| format!("rename {tmp:?} to {p:?}"))?;
    }
    if a.detach {
        return Ok(0);
    }
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
        .with_context(|| format!("waitpid {pid}"))?;
    Ok(match status {
        nix::sys::wait::WaitStatus::Exited(_, code) => code,
        nix::sys::wait::WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => 0,
    })
}

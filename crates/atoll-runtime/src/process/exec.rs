//! `exec`: a new process in a running container. A first child joins every namespace of the
//! container's init at once through a pidfd (setns(pidfd, flags), atomic since Linux 5.8), then
//! forks the process itself so that it lands in the container's pid namespace, into the
//! container's cgroup2 cgroup where there is one (CLONE_INTO_CGROUP); before it is released it
//! joins each v1 hierarchy itself through fds the parent opened (no RCU grace period).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use atoll_cgroups::Cgroup;
use atoll_sys::process::{CloseFds, SingleThreaded};
use oci_spec::runtime::Process;

use super::init::{finalize, Prepared};
use super::protocol::{self, FdKind, Msg};
use super::stage1;
use crate::error::{errno, field, nix_errno, sys, Result, RuntimeError};
use crate::identity::CapSets;
use crate::state::{Status, Store};

#[derive(Clone)]
pub struct ExecOpts {
    pub id: String,
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// `--cgroup`: a sub-cgroup of the container's to put the process in.
    pub sub_cgroup: Option<atoll_cgroups::SubCgroup>,
    /// `--ignore-paused`: exec into a paused container too (the process waits, frozen).
    pub ignore_paused: bool,
}

pub fn exec(store: &Store, opts: &ExecOpts) -> Result<i32> {
    let relayed;
    let opts = match relayed_console_size(opts) {
        Some(o) => {
            relayed = o;
            &relayed
        }
        None => opts,
    };
    let saved = store.load(&opts.id)?;
    let status = saved.status();
    match status {
        Status::Running | Status::Created => {}
        Status::Paused if opts.ignore_paused => {}
        // runc refuses too, and names the flag that overrides it.
        Status::Paused => {
            return Err(RuntimeError::BadState {
                id: opts.id.clone(),
                status: status.as_str(),
                wanted: "cannot exec in a paused container (use --ignore-paused to override)",
            })
        }
        _ => {
            return Err(RuntimeError::BadState {
                id: opts.id.clone(),
                status: status.as_str(),
                wanted: "cannot exec in a container that is not running",
            })
        }
    }
    crate::lsm::check_process(&opts.process, "exec: process")?;
    let caps = CapSets::from_spec(opts.process.capabilities().as_ref())?;
    let terminal = opts.process.terminal().unwrap_or(false);
    // In the foreground without a console socket we relay the pty ourselves (as runc does);
    // detached, nobody would.
    if terminal && opts.detach && opts.console_socket.is_none() {
        return Err(field(
            "process.terminal",
            "true with --detach, but no --console-socket was given",
        ));
    }
    let seccomp = match saved
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
    {
        Some(s) => Some(atoll_seccomp::Filter::compile_cached(
            s,
            &store.seccomp_cache(),
        )?),
        None => None,
    };
    if !opts.detach {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(nix_errno("prctl(PR_SET_CHILD_SUBREAPER)"))?;
    }
    let pidfd = saved.init_pidfd()?.ok_or_else(|| RuntimeError::BadState {
        id: opts.id.clone(),
        status: "stopped",
        wanted: "cannot exec in a container that is not running",
    })?;
    let (psock, csock) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(errno("socketpair(AF_UNIX, SOCK_SEQPACKET)"))?;
    let mut cgroup = saved
        .cgroup
        .as_deref()
        .map(Cgroup::from_saved)
        .transpose()?;
    if let Some(sub) = &opts.sub_cgroup {
        let cg = cgroup
            .as_ref()
            .ok_or_else(|| RuntimeError::NoCgroup(saved.id.clone()))?;
        cgroup = Some(cg.below(sub)?);
    }
    // The container's cgroup2 directory, for stage 1 to clone the process straight into it:
    // moving it there afterwards would wait for an RCU grace period (see atoll_cgroups::join_self).
    let v2_dir = match &cgroup {
        Some(c) => c.open_v2_dir()?,
        None => None,
    };
    // Non-dumpable from here to execve (CVE-2019-5736): inherited by both children.
    nix::sys::prctl::set_dumpable(false).map_err(nix_errno("prctl(PR_SET_DUMPABLE, 0)"))?;
    let forward = crate::container::forwarded_signals();
    // A fork-like clone copies only the calling thread (see atoll_sys::process::clone3): checked
    // here, and kept true because nothing from here to the clone starts a thread.
    let proof =
        SingleThreaded::check().map_err(sys("count this process's threads before clone"))?;
    // Nothing but stdio, the preserved fds and the socket crosses into the process.
    let keep = [csock.as_fd()];
    let fork = stage1::Fork {
        sock: csock.as_fd(),
        cgroup: v2_dir.as_ref().map(|d| d.as_fd()),
        close: CloseFds {
            from: 3 + opts.preserve_fds,
            keep: &keep,
        },
    };
    let first = atoll_sys::process::spawn(&proof, 0, None, None, |_, proof| {
        stage1::run(
            &proof,
            &fork,
            || stage1::enter_for_exec(pidfd.as_fd(), saved.ns_flags),
            &|closed, _| {
                let err = match closed
                    .map_err(sys("close_range (the fds inherited from atoll)"))
                    .and_then(|()| process(fork.sock, opts, &caps, seccomp.as_ref()))
                {
                    Ok(p) => p.exec(),
                    Err(e) => e,
                };
                let _ = protocol::send(fork.sock, &Msg::Error(crate::error::report(&err)), None);
                127
            },
        )
    })
    .map_err(sys("clone3/clone (exec)"))?
    .pid;
    drop(csock);
    let _ = nix::sys::prctl::set_dumpable(true);
    let mut born_in_cgroup = false;
    let stage2 = loop {
        match protocol::recv(psock.as_fd()) {
            Ok(Some((Msg::BornInCgroup, _))) => born_in_cgroup = true,
            other => break other,
        }
    };
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(first), None);
    let pid = match stage2? {
        Some((Msg::Stage2(p), _)) if p > 0 => p,
        other => return Err(protocol::unexpected("Stage2 with a pid", other)),
    };
    let kill = |e: RuntimeError| {
        let _gone_is_fine = super::kill(pid, rustix::process::Signal::KILL);
        e
    };
    // Into the container's cgroup before Go, so before it can exec: cgroup2 by pid
    // unless it was born there; each v1 hierarchy by the process itself (JoinCgroup).
    if let Some(cg) = &cgroup {
        if !born_in_cgroup {
            cg.add_task_v2(pid).map_err(|e| kill(e.into()))?;
        }
        for (path, tasks) in cg.open_v1_tasks().map_err(|e| kill(e.into()))? {
            let path = path.to_string_lossy().into_owned();
            protocol::send(psock.as_fd(), &Msg::JoinCgroup(path), Some(tasks.as_fd()))
                .map_err(kill)?;
        }
    }
    if !opts.detach {
        forward
            .thread_block()
            .map_err(nix_errno("sigprocmask(SIG_BLOCK)"))?;
    }
    protocol::send(psock.as_fd(), &Msg::Go, None).map_err(kill)?;
    let console = serve(psock.as_fd(), opts, &saved, pid, store.root()).map_err(kill)?;
    if let Some(pf) = &opts.pid_file {
        std::fs::write(pf, pid.to_string())
            .map_err(crate::error::sys(format!("write {}", pf.display())))?;
    }
    // The socket is CLOEXEC in the child: EOF now means execve succeeded.
    match protocol::recv(psock.as_fd())? {
        None => {}
        other => return Err(protocol::unexpected("EOF (execve)", other)),
    }

    if opts.detach {
        return Ok(0);
    }
    // Threads start only now, after the clone, with the forwarded signals already blocked.
    let proxy = console.map(crate::tty::proxy).transpose().map_err(kill)?;
    let code =
        crate::container::wait_forwarding(pid, &forward, proxy.as_ref().map(|p| p.master.as_fd()));
    if let Some(p) = proxy {
        p.finish();
    }
    code
}

/// A terminal we relay ourselves starts at our own terminal's size: given to the process as its
/// consoleSize, so that it is set before execve (the relay starts only after it).
fn relayed_console_size(opts: &ExecOpts) -> Option<ExecOpts> {
    let relay = opts.process.terminal() == Some(true)
        && !opts.detach
        && opts.console_socket.is_none()
        && opts.process.console_size().is_none();
    if !relay {
        return None;
    }
    let ws = rustix::termios::tcgetwinsize(std::io::stdin()).ok()?;
    let mut o = opts.clone();
    let size = oci_spec::runtime::BoxBuilder::default()
        .height(u64::from(ws.ws_row))
        .width(u64::from(ws.ws_col))
        .build()
        .ok()?;
    o.process.set_console_size(Some(size));
    Some(o)
}

/// Serve the process until Ready; returns the pty master when we relay it ourselves (a
/// terminal in the foreground without --console-socket).
fn serve(
    sock: BorrowedFd<'_>,
    opts: &ExecOpts,
    saved: &crate::state::Saved,
    pid: i32,
    root: &std::path::Path,
) -> Result<Option<OwnedFd>> {
    let mut console = None;
    loop {
        match protocol::recv(sock)? {
            Some((Msg::Ready, _)) => return Ok(console),
            Some((Msg::Fd(FdKind::Console), Some(fd))) => match &opts.console_socket {
                Some(path) => crate::tty::send_console(path, fd.as_fd())?,
                None if !opts.detach => console = Some(fd),
                None => {
                    return Err(RuntimeError::Protocol {
                        expected: "no console fd (detached, no --console-socket)".into(),
                        got: "Fd(Console)".into(),
                    })
                }
            },
            Some((Msg::Fd(FdKind::Seccomp), Some(fd))) => {
                let s = saved
                    .config
                    .linux()
                    .as_ref()
                    .and_then(|l| l.seccomp().as_ref());
                let path = s
                    .and_then(|s| s.listener_path().clone())
                    .ok_or_else(|| field("linux.seccomp.listenerPath", "missing"))?;
                let meta = s.and_then(|s| s.listener_metadata().clone());
                let node = crate::guard::GuardNode::load(root)?;
                crate::guard::register(
                    &node,
                    &path,
                    fd.as_fd(),
                    pid,
                    meta.as_deref(),
                    &saved.state_json(Status::Running),
                )?;
            }
            other => {
                return Err(protocol::unexpected(
                    "Fd(Console), Fd(Seccomp) or Ready",
                    other,
                ))
            }
        }
    }
}

fn process(
    sock: BorrowedFd<'_>,
    opts: &ExecOpts,
    caps: &CapSets,
    seccomp: Option<&atoll_seccomp::Filter>,
) -> Result<Prepared> {
    let _no_log = super::init::log_nothing();
    protocol::join_cgroups_until(sock, &Msg::Go)?;
    let console: Option<OwnedFd> = if opts.process.terminal().unwrap_or(false) {
        let root =
            pathrs::Root::open("/").map_err(crate::error::pathrs("open the container's root /"))?;
        let (master, slave) = crate::tty::open_pty(&root)?;
        protocol::send(sock, &Msg::Fd(FdKind::Console), Some(master.as_fd()))?;
        Some(slave)
    } else {
        None
    };
    crate::tty::set_console_size(console.as_ref(), opts.process.console_size().as_ref())?;
    crate::lsm::set_exec_label(&opts.process)?;
    let p = finalize(
        &opts.process,
        caps,
        seccomp,
        opts.preserve_fds,
        console,
        sock,
    )?;
    protocol::send(sock, &Msg::Ready, None)?;
    Ok(p)
}

//! The parent side of `create`: check the config, make the cgroup and state, clone the init into
//! its namespaces, drive the sync protocol, and on any failure remove everything made so far.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use atoll_cgroups::Cgroup;
use atoll_sys::process::{CloseFds, SingleThreaded};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::init::{self, InitCtx};
use super::protocol::{self, FdKind, Msg};
use super::stage1;
use crate::error::{errno, field, nix_errno, sys, Result, RuntimeError};
use crate::identity::{self, CapSets};
use crate::rootfs::MountPlan;
use crate::spec::{self, Namespaces};
use crate::state::{Saved, Store};

/// `atoll create` options (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Keep the pty master instead of sending it to a console socket (foreground `run`).
    pub keep_console: bool,
    /// `run`: the caller releases the init right after create (no exec.fifo, one state save).
    pub for_run: bool,
}

/// A created container: its saved state and, for `run`, the open exec.fifo to release it.
pub struct Created {
    pub saved: Saved,
    /// Write one byte here to let init exec (`run`; `start` uses exec.fifo by path).
    pub release: OwnedFd,
    /// The pty master, when `keep_console` asked for it (foreground `run` with a terminal).
    pub console: Option<OwnedFd>,
}

pub fn create(store: &Store, opts: &CreateOpts) -> Result<Created> {
    let bundle = std::fs::canonicalize(&opts.bundle).map_err(|e| RuntimeError::Config {
        path: opts.bundle.clone(),
        msg: format!("bundle: {e}"),
    })?;
    let node = crate::guard::GuardNode::load(store.root())?;
    let spec = spec::load(&bundle, &node)?;
    let rootfs = spec::rootfs(&bundle, &spec)?;
    let ns = spec::namespaces(&spec)?;
    spec::validate(&spec, &ns)?;
    let mounts = MountPlan::from_spec(&spec, ns.has(LinuxNamespaceType::User))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| field("process", "missing"))?;
    let caps = CapSets::from_spec(process.capabilities().as_ref())?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && !opts.keep_console {
        return Err(field(
            "process.terminal",
            "true, but no --console-socket was given",
        ));
    }
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(atoll_seccomp::Filter::compile_cached(
            s,
            &store.seccomp_cache(),
        )?),
        None => None,
    };

    let lock = store.create_dir(&opts.id)?;
    let mut guard = Cleanup {
        store,
        id: &opts.id,
        cgroup: None,
        child: None,
        armed: true,
    };
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let cgroup = Cgroup::open(cgroups_path.as_deref(), &opts.id)?;
    let mut saved = Saved {
        id: opts.id.clone(),
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        pid: 0,
        pid_start: 0,
        created: crate::time::now_rfc3339(),
        started: false,
        owner: String::new(),
        cgroup: Some(cgroup.path().to_string()),
        annotations: spec.annotations().clone().unwrap_or_default(),
        ns_flags: ns.all_flags(),
        config: spec.clone(),
    };
    // Where the cgroup has a cgroup2 place (a pure v2 host, or the unified hierarchy of a
    // hybrid one) and init is cloned directly, init is born there (CLONE_INTO_CGROUP), so the
    // cgroup comes first. Otherwise the parent makes it after Go, while init unshares its
    // network namespace and builds its mounts: the two slowest steps of create then overlap
    // (the mkdirs in every v1 hierarchy, and the netns's per-net set-up, ~0.7 ms each here).
    // Either way init joins its v1 hierarchies itself (JoinCgroup): no RCU grace period.
    let born_in_cgroup = direct_path(&ns) && cgroup.v2_dir().is_some();
    let resources = effective_resources(&spec);
    // The state is saved before the cgroup is made, so that `delete --force` after a crash
    // finds it. Where the cgroup comes after the clone, one save after the clone does (the
    // init it names dies with us: PDEATHSIG, or EOF on its socket before Go); each save is a
    // new inode, which on ext4 after much churn costs ~0.4 ms (ext4_new_inode skipping
    // recently deleted inodes).
    if born_in_cgroup {
        store.save(&saved)?;
        tracing::debug!("create: config checked, state saved");
        cgroup.create(Some(&resources))?;
        tracing::debug!("create: cgroup made");
    }
    guard.cgroup = Some(cgroup);

    // What init blocks on until it may exec. `create`: the named exec.fifo that a later
    // `start` writes to, opened O_RDWR so the open never blocks and init's read waits for a
    // byte (Linux fifo rule). `run`: we release it ourselves, so a pipe does (no file to make).
    let (fifo, release) = if opts.for_run {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(errno("pipe2 (run release)"))?;
        (r, w)
    } else {
        let fifo_path = store.dir(&opts.id).join("exec.fifo");
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(nix_errno(format!("mkfifo {}", fifo_path.display())))?;
        let f = rustix::fs::open(
            &fifo_path,
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(errno(format!("open {}", fifo_path.display())))?;
        let w = f.try_clone().map_err(sys("dup exec.fifo"))?;
        (f, w)
    };
    let (parent_sock, child_sock) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(errno("socketpair(AF_UNIX, SOCK_SEQPACKET)"))?;

    let hierarchies = guard
        .cgroup
        .as_ref()
        .map(|c| c.hierarchies())
        .unwrap_or_default();
    let hooks = spec.hooks().as_ref();
    let has_hooks = hooks.is_some_and(|h| {
        [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
        ]
        .iter()
        .any(|x| x.as_ref().is_some_and(|v| !v.is_empty()))
    });
    let ctx = InitCtx {
        spec: &spec,
        bundle: &bundle,
        rootfs: &rootfs,
        mounts: &mounts,
        ns: &ns,
        caps,
        seccomp: seccomp.as_ref(),
        hierarchies,
        unshare_net: direct_path(&ns) && ns.creates(LinuxNamespaceType::Network),
        no_pivot: opts.no_pivot,
        terminal,
        preserve_fds: opts.preserve_fds,
        fifo: fifo.as_fd(),
        has_hooks,
        die_with_parent: direct_path(&ns),
        new_keyring: (!opts.no_new_keyring)
            .then(|| std::ffi::CString::new(format!("_ses.{}", opts.id)).ok())
            .flatten(),
    };
    // Non-dumpable until exec: a container process can't open /proc/<init>/exe or ptrace us
    // while init still runs atoll's code (CVE-2019-5736). execve resets it.
    nix::sys::prctl::set_dumpable(false).map_err(nix_errno("prctl(PR_SET_DUMPABLE, 0)"))?;
    // Born in its cgroup2 cgroup: no migration, so no wait for an RCU grace period. Otherwise
    // (v1, or the two-stage path) it is placed after Go, see below.
    let v2_dir = if born_in_cgroup {
        guard.cgroup.as_ref().expect("set above").open_v2_dir()?
    } else {
        None
    };
    // A fork-like clone copies only the calling thread (see atoll_sys::process::clone3): checked
    // here, and kept true because nothing from here to the clone starts a thread.
    let proof =
        SingleThreaded::check().map_err(sys("count this process's threads before clone"))?;
    let (pid, in_cgroup) = spawn_init(
        &proof,
        &ctx,
        parent_sock.as_fd(),
        child_sock,
        &spec,
        &ns,
        v2_dir.as_ref().map(|d| d.as_fd()),
    )?;
    tracing::debug!(pid, "create: init cloned");
    guard.child = Some(pid);
    let _ = nix::sys::prctl::set_dumpable(true);
    let console = serve_init(
        &proof,
        parent_sock.as_fd(),
        pid,
        in_cgroup,
        &Serve {
            store,
            spec: &spec,
            opts,
            cgroup: guard.cgroup.as_ref().expect("set above"),
            resources: &resources,
            cgroup_made: born_in_cgroup,
            node: &node,
        },
        &mut saved,
    )
    .map_err(|e| explain_failure(e, parent_sock.as_fd(), pid, &ctx.hierarchies))?;
    tracing::debug!("create: init ready");

    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, pid)?;
    }
    guard.armed = false;
    drop(lock);
    drop(fifo);
    Ok(Created {
        saved,
        release,
        console,
    })
}

/// What the parent needs while it serves a cloned init.
struct Serve<'a> {
    store: &'a Store,
    spec: &'a Spec,
    opts: &'a CreateOpts,
    cgroup: &'a Cgroup,
    resources: &'a oci_spec::runtime::LinuxResources,
    /// Made before the clone (init born in it); otherwise made here, after Go.
    cgroup_made: bool,
    node: &'a crate::guard::GuardNode,
}

/// The parent's side of create after the clone: save the state, Go, place init in its cgroup,
/// then answer it until Ready (protocol::CREATE). Returns the pty master kept for `run`.
fn serve_init(
    proof: &SingleThreaded,
    sock: BorrowedFd<'_>,
    pid: i32,
    in_cgroup: bool,
    s: &Serve<'_>,
    saved: &mut Saved,
) -> Result<Option<OwnedFd>> {
    if let Some(adj) = s.spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        let p = format!("/proc/{pid}/oom_score_adj");
        std::fs::write(&p, adj.to_string())
            .map_err(sys(format!("write {p} (process.oomScoreAdj)")))?;
    }
    saved.pid = pid;
    saved.pid_start = crate::state::pid_start_time(pid).ok_or_else(|| RuntimeError::Sys {
        op: format!("read init's start time from /proc/{pid}/stat"),
        source: std::io::Error::from_raw_os_error(libc::ESRCH),
    })?;
    // `run` releases the init as soon as we return: saved as started already. A reader that
    // does not lock (`list`) may see created/running a few ms early; every command that acts
    // on the container waits for our lock.
    saved.started = s.opts.for_run;
    s.store.save(saved)?;
    tracing::debug!("create: state saved");
    // Go first, then the cgroup. Init unshares its netns and builds its mounts meanwhile, and
    // waits for Placed before anything that needs the cgroup (cgroup namespace, cgroup mounts,
    // messages to us), long before it could exec.
    protocol::send(sock, &Msg::Go, None)?;
    if !s.cgroup_made {
        // A failure here is cleaned up like any other: create removes the dirs it made, the
        // guard kills init.
        s.cgroup.create(Some(s.resources))?;
        tracing::debug!("create: cgroup made");
    }
    if !in_cgroup {
        // The two-stage path, or clone3 answered ENOSYS (clone(2) has no CLONE_INTO_CGROUP):
        // moved by pid, which waits for an RCU grace period. A no-op without cgroup2.
        s.cgroup.add_task_v2(pid)?;
    }
    for (path, tasks) in s.cgroup.open_v1_tasks()? {
        let path = path.to_string_lossy().into_owned();
        protocol::send(sock, &Msg::JoinCgroup(path), Some(tasks.as_fd()))?;
    }
    protocol::send(sock, &Msg::Placed, None)?;
    tracing::debug!("create: cgroup sent");
    drive(proof, sock, saved, s)
}

/// A step of create failed after the clone. If init left an error in the socket, that is the
/// cause (a failure of ours may only be its consequence: a cgroup write for a process that is
/// gone); if init is gone without one, say how it went; otherwise the step's own error.
fn explain_failure(
    e: RuntimeError,
    sock: BorrowedFd<'_>,
    pid: i32,
    hierarchies: &[atoll_cgroups::Hierarchy],
) -> RuntimeError {
    if let RuntimeError::Init(_) = e {
        return e;
    }
    if let Some(why) = pending_error(sock) {
        return RuntimeError::Init(why);
    }
    let gone = matches!(e, RuntimeError::PeerGone { .. });
    match death(pid, gone) {
        Some(death) => RuntimeError::InitDied {
            pid,
            death,
            oom_kills: oom_kills(hierarchies),
        },
        None => e,
    }
}

/// The Error init left in the socket, if any; never blocks (init may still be running).
fn pending_error(sock: BorrowedFd<'_>) -> Option<String> {
    use rustix::event::{poll, PollFd, PollFlags};
    // Its last message comes last; a few earlier ones (a console fd) may still be queued.
    for _ in 0..8 {
        let mut fds = [PollFd::new(&sock, PollFlags::IN)];
        if !matches!(
            poll(&mut fds, Some(&rustix::event::Timespec::default())),
            Ok(1)
        ) {
            return None;
        }
        match protocol::recv(sock) {
            Ok(Some((Msg::Error(why), _))) => return Some(why),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
    None
}

/// How init ended, read without reaping it (WNOWAIT: the Cleanup guard reaps it, and a reaped
/// pid could be reused before the guard's kill). `gone`: its socket closed, so it is exiting and
/// worth a short wait; else only an exit that already happened counts. None: it still runs.
fn death(pid: i32, gone: bool) -> Option<crate::error::InitDeath> {
    use crate::error::InitDeath;
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    // The socket closes when init's files do (do_exit), a moment before it becomes a zombie.
    let tries = if gone { 200 } else { 1 };
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    for _ in 0..tries {
        match waitid(Id::Pid(nix::unistd::Pid::from_raw(pid)), flags) {
            Ok(WaitStatus::Exited(_, code)) => return Some(InitDeath::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Some(InitDeath::Killed(sig.as_str().to_string()))
            }
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(5)),
            // ECHILD: not our child (the two-stage path's init is the first child's).
            _ => return gone.then_some(InitDeath::Unknown),
        }
    }
    gone.then_some(InitDeath::Unknown)
}

/// The OOM kills the container's memory cgroup counted: cgroup2 memory.events or v1
/// memory.oom_control, line "oom_kill N" (Documentation/admin-guide/cgroup-v2.rst, Linux 4.13+
/// for v1). 0 where neither is there.
fn oom_kills(hierarchies: &[atoll_cgroups::Hierarchy]) -> u64 {
    hierarchies
        .iter()
        .filter_map(|h| {
            let file = if h.fs_type == "cgroup2" {
                "memory.events"
            } else if h.controllers.split(',').any(|c| c == "memory") {
                "memory.oom_control"
            } else {
                return None;
            };
            let text = atoll_sys::pseudofs::read(h.dir.join(file)).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Clone the init. Direct path: one clone with every CLONE_NEW* flag (the common case, and the
/// fast one). Two-stage path, when namespaces must be joined or a time namespace made: a first
/// child joins (setns), unshares, and forks the real init into the new pid/time namespaces.
/// Returns init's pid and whether it was born in the cgroup2 directory `cgroup`.
fn spawn_init(
    proof: &SingleThreaded,
    ctx: &InitCtx<'_>,
    psock: BorrowedFd<'_>,
    csock: OwnedFd,
    spec: &Spec,
    ns: &Namespaces,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<(i32, bool)> {
    let cgroupns = spec::ns_flag(LinuxNamespaceType::Cgroup);
    let direct = direct_path(ns);
    // The cgroup namespace is unshared by init once it is in its cgroup; the network namespace
    // by init right after Go (InitCtx::unshare_net), in parallel with the parent's work.
    let netns = spec::ns_flag(LinuxNamespaceType::Network);
    let flags = if direct {
        ns.new & !cgroupns & !netns
    } else {
        0
    };
    let keep = [csock.as_fd(), ctx.fifo];
    let spawned = if direct {
        atoll_sys::process::spawn(
            proof,
            flags,
            cgroup,
            Some(init_fds(ctx, &keep)),
            |closed, proof| init::run(ctx, csock.as_fd(), closed, &proof),
        )
    } else {
        let fork = stage1::Fork {
            sock: csock.as_fd(),
            cgroup: None,
            close: init_fds(ctx, &keep),
        };
        atoll_sys::process::spawn(proof, 0, None, None, |_, proof| {
            stage1::run(
                &proof,
                &fork,
                || stage1::enter_for_create(fork.sock, ns, spec),
                &|closed, proof| init::run(ctx, fork.sock, closed, &proof),
            )
        })
    }
    .map_err(sys(format!("clone3/clone(flags {flags:#x})")))?;
    let pid = spawned.pid;
    drop(csock);
    if direct {
        if ns.creates(LinuxNamespaceType::User) {
            write_maps(pid, spec)?;
        }
        return Ok((pid, spawned.in_cgroup));
    }
    // Two-stage: answer NeedMaps, learn the real init's pid, reap the first child.
    let reap = || {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    };
    loop {
        match protocol::recv(psock)? {
            Some((Msg::NeedMaps(p), _)) if p > 0 => {
                write_maps(p, spec)?;
                protocol::send(psock, &Msg::MapsDone, None)?;
            }
            Some((Msg::Stage2(p), _)) if p > 0 => {
                reap();
                return Ok((p, false));
            }
            other => {
                reap();
                return Err(protocol::unexpected(
                    "NeedMaps, or Stage2 with a pid",
                    other,
                ));
            }
        }
    }
}

/// The fds init closes before anything else: every fd inherited from the parent but its socket
/// and the exec fifo (and stdio and the preserved fds below them). The caller's stray fds (a host
/// directory, a jobserver pipe) and the parent's own (its end of the socket, the state lock,
/// whose flock would otherwise stay held by init) must not live on in the container.
fn init_fds<'a>(ctx: &InitCtx<'_>, keep: &'a [BorrowedFd<'a>]) -> CloseFds<'a> {
    CloseFds {
        from: 3 + ctx.preserve_fds,
        keep,
    }
}

/// One clone3 does it all unless namespaces must be joined first or a time namespace made.
fn direct_path(ns: &Namespaces) -> bool {
    ns.join.is_empty() && !ns.creates(LinuxNamespaceType::Time)
}

fn write_maps(pid: i32, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let uid = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gid = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    identity::write_id_maps(pid, &uid, &gid)
}

/// After Go: serve init until Ready (hooks, console fd, seccomp fd).
fn drive(
    proof: &SingleThreaded,
    sock: BorrowedFd<'_>,
    saved: &Saved,
    s: &Serve<'_>,
) -> Result<Option<OwnedFd>> {
    let (spec, opts) = (s.spec, s.opts);
    let mut console = None;
    loop {
        match protocol::recv(sock)? {
            Some((Msg::Ready, _)) => return Ok(console),
            Some((Msg::Hooks, _)) => {
                // The suite (and runtime-spec's hook examples) expect "created" here: the
                // container exists, its process has not run.
                let state = saved.state_json(crate::state::Status::Created).to_string();
                if let Some(h) = spec.hooks() {
                    if let Some(p) = h.prestart() {
                        crate::hooks::run_all("prestart", p, &state)?;
                    }
                    if let Some(c) = h.create_runtime() {
                        crate::hooks::run_all("createRuntime", c, &state)?;
                    }
                }
                protocol::send(sock, &Msg::State(state), None)?;
            }
            Some((Msg::NeedMount(i), _)) => match idmapped_mount(proof, saved, spec, i) {
                Ok(fd) => protocol::send(sock, &Msg::Fd(FdKind::Mount), Some(fd.as_fd()))?,
                Err(e) => {
                    protocol::send(sock, &Msg::Error(crate::error::report(&e)), None)?;
                    return Err(e);
                }
            },
            Some((Msg::Fd(FdKind::Console), Some(fd))) => match &opts.console_socket {
                Some(path) => crate::tty::send_console(path, fd.as_fd())?,
                None if opts.keep_console => console = Some(fd),
                None => {
                    return Err(RuntimeError::Protocol {
                        expected: "no console fd (no --console-socket)".into(),
                        got: "Fd(Console)".into(),
                    })
                }
            },
            Some((Msg::Fd(FdKind::Seccomp), Some(fd))) => {
                let filter_spec = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
                let path = filter_spec
                    .and_then(|s| s.listener_path().clone())
                    .ok_or_else(|| field("linux.seccomp.listenerPath", "missing"))?;
                let meta = filter_spec.and_then(|s| s.listener_metadata().clone());
                let state = saved.state_json(crate::state::Status::Creating);
                crate::guard::register(
                    s.node,
                    &path,
                    fd.as_fd(),
                    saved.pid,
                    meta.as_deref(),
                    &state,
                )?;
            }
            other => {
                return Err(protocol::unexpected(
                    "NeedMount, Fd(Console), Hooks, Fd(Seccomp) or Ready",
                    other,
                ))
            }
        }
    }
}

/// The config's resources plus device-cgroup allows for the devices the container gets (the
/// defaults, /dev/pts, /dev/ptmx, /dev/console and linux.devices), appended after the config's own
/// rules, so a "deny all" list still leaves the standard devices usable. A linux.devices entry
/// that the config's rules name by its own type and number keeps their access: an engine that
/// injected a CDI node with `permissions: "rw"` wrote that rule, and a later rwm would widen it
/// (last match wins, in v1's list as in the v2 program).
pub fn effective_resources(spec: &Spec) -> oci_spec::runtime::LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
    let mut res = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    let rule = |t: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(t));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    for d in crate::rootfs::all_devices(spec) {
        let t = if d.typ() == LinuxDeviceType::B {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        };
        if d.index.is_some()
            && crate::rootfs::configured_access(spec, t, d.major(), d.minor()).is_some()
        {
            continue;
        }
        rules.push(rule(t, Some(d.major()), Some(d.minor()), "rwm"));
    }
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(1), "rwm")); // /dev/console
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(2), "rwm")); // /dev/ptmx
    rules.push(rule(LinuxDeviceType::C, Some(136), None, "rwm")); // /dev/pts/*
    res.set_devices(Some(rules));
    res
}

/// Make the idmapped bind mount for config mount `i` of a container with its own user
/// namespace: only here, as root in the host's user namespace, may idmapping be turned on. The
/// mapping is the mount's own uidMappings/gidMappings or else the container's user namespace.
fn idmapped_mount(proof: &SingleThreaded, saved: &Saved, spec: &Spec, i: usize) -> Result<OwnedFd> {
    let mounts = spec.mounts().as_deref().unwrap_or(&[]);
    let container_userns = || -> Result<OwnedFd> {
        let p = format!("/proc/{}/ns/user", saved.pid);
        rustix::fs::open(
            p.as_str(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(errno(format!("open {p}")))
    };
    let userns = crate::rootfs::UsernsFor {
        mount: &|m| init::make_idmap_userns(proof, m),
        container: &container_userns,
    };
    crate::rootfs::prepare_for_init(&saved.bundle, mounts, i, saved.pid, &userns)
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("atoll-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(sys(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(sys(format!(
        "rename {} to {}",
        tmp.display(),
        path.display()
    )))
}

/// Removes what a failed `create` made: kill the init, remove the cgroup and the state dir.
struct Cleanup<'a> {
    store: &'a Store,
    id: &'a str,
    cgroup: Option<Cgroup>,
    child: Option<i32>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.child {
            let _gone_is_fine = super::kill(pid, rustix::process::Signal::KILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        if let Some(cg) = &self.cgroup {
            if let Err(e) = cg.destroy() {
                tracing::warn!("cleanup after failed create: {}", crate::error::report(&e));
            }
        }
        if let Err(e) = self.store.remove(self.id) {
            tracing::warn!("cleanup after failed create: {}", crate::error::report(&e));
        }
        self.store.drop_cache_if_unused();
    }
}

//! The container's init, from clone3 to execve. It runs in a fresh copy of the single-threaded
//! parent, starts no threads, and reports the first error to the parent before exiting, so the
//! parent can remove everything it made.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use atoll_cgroups::Hierarchy;
use atoll_seccomp::Filter;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::mount::{MountPropagationFlags as Propagation, UnmountFlags};
use rustix::thread::UnshareFlags;

use super::protocol::{self, FdKind, Msg};
use atoll_sys::process::{CloseFds, SingleThreaded};

use crate::error::{errno, field, nix_errno, sys, Result, RuntimeError};
use crate::identity::{self, CapSets};
use crate::rootfs::{MountCtx, MountError, MountPlan, PreparedMounts, Rootfs, UsernsFor};
use crate::spec::Namespaces;

/// Everything init needs, prepared by the parent before clone so the child only acts.
pub struct InitCtx<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    /// What init does to the rootfs, built from the spec before clone (config errors surface
    /// before any namespace exists).
    pub mounts: &'a MountPlan<'a>,
    pub ns: &'a Namespaces,
    pub caps: CapSets,
    pub seccomp: Option<&'a Filter>,
    pub hierarchies: Vec<Hierarchy>,
    /// Unshare the network namespace after Go (direct path: clone3 left it out, so that its
    /// set-up runs while the parent makes and joins the cgroup).
    pub unshare_net: bool,
    pub no_pivot: bool,
    pub terminal: bool,
    pub preserve_fds: u32,
    pub fifo: BorrowedFd<'a>,
    pub has_hooks: bool,
    /// Die with the parent (direct path). In the two-stage path our parent is the first child,
    /// which exits on purpose; there we notice a dead `create` by EOF on the socket instead.
    pub die_with_parent: bool,
    /// `--no-new-keyring` not given: join a new session keyring named after the container.
    pub new_keyring: Option<std::ffi::CString>,
}

/// Run init: returns only if it failed, with the exit status for the child. `closed` is the
/// outcome of closing the inherited fds (atoll_sys::process::spawn did it before we ran). Any
/// error goes to the parent as `Msg::Error`.
pub fn run(
    ctx: &InitCtx<'_>,
    sock: BorrowedFd<'_>,
    closed: std::io::Result<()>,
    proof: &SingleThreaded,
) -> i32 {
    let _no_log = log_nothing();
    let err = match closed
        .map_err(sys("close_range (the fds inherited from the parent)"))
        .and_then(|()| init(ctx, sock, proof))
    {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // Before Ready the parent reports the error; after it (start) the parent has closed its end
    // (send fails with EPIPE) and stderr is all we have. Never both: one error, one line.
    if protocol::send(sock, &Msg::Error(crate::error::report(&err)), None).is_err() {
        eprintln!("atoll init: {}", crate::error::report(&err));
    }
    127
}

/// After spawn closed the inherited fds: the log writer the binary installed is a copy of the
/// parent's, and its file's fd may be one of those closed (its number reused by the next open),
/// so this thread logs nothing through it while the guard lives.
pub fn log_nothing() -> tracing::dispatcher::DefaultGuard {
    tracing::dispatcher::set_default(&tracing::Dispatch::none())
}

/// Init's phases, in order; the messages they exchange with the parent are protocol::CREATE.
fn init(ctx: &InitCtx<'_>, sock: BorrowedFd<'_>, proof: &SingleThreaded) -> Result<Infallible> {
    die_with_parent(ctx)?;
    protocol::expect(sock, &Msg::Go)?;
    enter_net_namespace(ctx)?;
    loopback_up(ctx)?;
    let spec = ctx.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| field("process", "missing"))?;
    become_ns_root(ctx)?;
    join_session_keyring(ctx)?;
    // The parent joins us to our cgroup while we work; wait for that before anything that needs
    // it, and before sending the parent any request (it answers only after Placed).
    let placed = std::cell::Cell::new(false);
    let ensure_placed = || -> Result<()> {
        if placed.get() {
            return Ok(());
        }
        protocol::join_cgroups_until(sock, &Msg::Placed)?;
        placed.set(true);
        enter_cgroup_namespace(ctx)
    };
    set_uts_names(spec)?;
    if !ctx.ns.has(LinuxNamespaceType::Mount) {
        return Err(field("linux.namespaces", "a mount namespace is required"));
    }
    let rootfs = prepare_root(ctx)?;
    let plan = ctx.mounts;
    let make_userns = |m: &oci_spec::runtime::Mount| make_idmap_userns(proof, m);
    let container_userns = || open_self_ns("user");
    let source_from_parent = |index| {
        ensure_placed()?;
        need_mount(sock, index)
    };
    let mctx = MountCtx {
        bundle: ctx.bundle,
        cgroup_hierarchies: &ctx.hierarchies,
        cgroupns: ctx.ns.has(LinuxNamespaceType::Cgroup),
        userns: UsernsFor {
            mount: &make_userns,
            container: &container_userns,
        },
        source_from_parent: ctx
            .ns
            .has(LinuxNamespaceType::User)
            .then_some(&source_from_parent),
    };
    // The mounts before the first that needs the cgroup or the parent go on while the parent
    // makes the cgroup; the parent's mounts are fetched (it answers after Placed) before the rest.
    let (early, late) = plan.mounts.split_at(plan.independent());
    let mut prepared = PreparedMounts::default();
    rootfs.apply(early, &mut prepared, &mctx)?;
    if !late.is_empty() {
        ensure_placed()?;
        prepared = PreparedMounts::fetch(plan, |index| need_mount(sock, index))?;
        rootfs.apply(late, &mut prepared, &mctx)?;
    }
    make_devices(&rootfs, plan)?;
    make_cwd(&rootfs, process)?;
    ensure_placed()?;
    let console = open_console(ctx, &rootfs, sock)?;
    crate::tty::set_console_size(console.as_ref(), process.console_size().as_ref())?;
    let state_json = run_create_hooks(ctx, sock)?;
    write_sysctls_and_masks(ctx, &rootfs, plan)?;
    enter_root(ctx, &rootfs)?;
    drop(rootfs);
    make_root_readonly(spec)?;
    set_personality(spec)?;
    crate::lsm::set_exec_label(process)?;
    let ready = finalize(
        process,
        &ctx.caps,
        ctx.seccomp,
        ctx.preserve_fds,
        console,
        sock,
    )?;
    report_ready(sock)?;
    wait_for_start(ctx.fifo)?;
    run_start_hooks(spec, &state_json)?;
    Err(ready.exec())
}

/// If the parent dies before we are done, die too: nothing half-made must run on.
fn die_with_parent(ctx: &InitCtx<'_>) -> Result<()> {
    if ctx.die_with_parent {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(nix_errno("prctl(PR_SET_PDEATHSIG)"))?;
    }
    Ok(())
}

/// Right after Go, so hooks and the parent see the container's netns at /proc/<pid>/ns/net from
/// the first message on; owned by our user namespace if we have a new one, exactly as if the
/// clone had made it (the clone leaves it out so that its set-up overlaps the parent's work).
fn enter_net_namespace(ctx: &InitCtx<'_>) -> Result<()> {
    if ctx.unshare_net {
        atoll_sys::namespace::unshare(UnshareFlags::NEWNET)
            .map_err(sys("unshare(CLONE_NEWNET)"))?;
    }
    Ok(())
}

/// A network namespace we made has `lo` down; runc brings it up (its "loopback" network), and
/// programs expect 127.0.0.1 to work. A joined namespace (by path) is left as its owner set it.
fn loopback_up(ctx: &InitCtx<'_>) -> Result<()> {
    if ctx.ns.creates(LinuxNamespaceType::Network) {
        atoll_sys::netlink::set_loopback_up()
            .map_err(sys("RTM_NEWLINK lo IFF_UP (ip link set lo up)"))?;
    }
    Ok(())
}

/// `--no-new-keyring` not given: a new session keyring named after the container. ENOSYS: a
/// kernel without keyrings has nothing to share either.
fn join_session_keyring(ctx: &InitCtx<'_>) -> Result<()> {
    let Some(name) = &ctx.new_keyring else {
        return Ok(());
    };
    match atoll_sys::process::keyctl_join_session_keyring(name) {
        Err(e) if e.raw_os_error() != Some(libc::ENOSYS) => Err(RuntimeError::Sys {
            op: format!("keyctl(KEYCTL_JOIN_SESSION_KEYRING, {name:?})"),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Once in our cgroup: a new cgroup namespace is rooted at the cgroup we are in now, ours.
fn enter_cgroup_namespace(ctx: &InitCtx<'_>) -> Result<()> {
    if ctx.ns.creates(LinuxNamespaceType::Cgroup) {
        atoll_sys::namespace::unshare(UnshareFlags::NEWCGROUP)
            .map_err(sys("unshare(CLONE_NEWCGROUP)"))?;
    }
    Ok(())
}

fn set_uts_names(spec: &Spec) -> Result<()> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        check_uts_name("hostname", h)?;
        rustix::system::sethostname(h.as_bytes()).map_err(errno(format!("sethostname {h:?}")))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        check_uts_name("domainname", d)?;
        rustix::system::setdomainname(d.as_bytes())
            .map_err(errno(format!("setdomainname {d:?}")))?;
    }
    Ok(())
}

/// process.cwd, made inside the root (mode 0755, as runc does) if the image lacks it; "/" (the
/// usual cwd) always exists and costs nothing.
fn make_cwd(rootfs: &Rootfs, process: &oci_spec::runtime::Process) -> Result<()> {
    let cwd = process.cwd();
    if cwd == Path::new("/") {
        return Ok(());
    }
    Ok(rootfs.make_cwd(cwd)?)
}

/// The device nodes and /dev symlinks the plan has (none when the config binds its own /dev).
fn make_devices(rootfs: &Rootfs, plan: &MountPlan<'_>) -> Result<()> {
    if let Some(devices) = &plan.devices {
        rootfs.devices(devices)?;
        rootfs.dev_symlinks()?;
    }
    Ok(())
}

fn open_console(
    ctx: &InitCtx<'_>,
    rootfs: &Rootfs,
    sock: BorrowedFd<'_>,
) -> Result<Option<OwnedFd>> {
    if !ctx.terminal {
        return Ok(None);
    }
    open_console_in(rootfs, sock).map(Some)
}

/// With hooks: Hooks to the parent (which runs prestart and createRuntime), State back, then the
/// createContainer hooks here. Returns the state JSON the startContainer hooks get.
fn run_create_hooks(ctx: &InitCtx<'_>, sock: BorrowedFd<'_>) -> Result<String> {
    if !ctx.has_hooks {
        return Ok(String::new());
    }
    protocol::send(sock, &Msg::Hooks, None)?;
    let state_json = match protocol::recv(sock)? {
        Some((Msg::State(s), _)) => s,
        other => return Err(protocol::unexpected("State", other)),
    };
    if let Some(h) = ctx
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().as_ref())
    {
        crate::hooks::run_all("createContainer", h, &state_json)?;
    }
    Ok(state_json)
}

fn write_sysctls_and_masks(ctx: &InitCtx<'_>, rootfs: &Rootfs, plan: &MountPlan<'_>) -> Result<()> {
    if let Some(sysctl) = ctx.spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        write_sysctls(sysctl)?;
    }
    rootfs.mask(plan.masked)?;
    rootfs.readonly(plan.readonly)?;
    Ok(())
}

/// root.readonly: the new / read-only (mount_setattr on the mount itself, not recursively).
fn make_root_readonly(spec: &Spec) -> Result<()> {
    let readonly = spec.root().as_ref().and_then(|r| r.readonly());
    if readonly != Some(true) {
        return Ok(());
    }
    let root = rustix::fs::open(
        "/",
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(errno("open / after pivot_root"))?;
    atoll_sys::mount::mount_setattr(
        root.as_fd(),
        false,
        &atoll_sys::mount::MountAttr {
            set: atoll_sys::mount::MOUNT_ATTR_RDONLY,
            ..Default::default()
        },
    )
    .map_err(|e| RuntimeError::Sys {
        op: "mount_setattr ro on / (root.readonly)".into(),
        source: e,
    })
}

fn set_personality(spec: &Spec) -> Result<()> {
    let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) else {
        return Ok(());
    };
    let persona = match p.domain() {
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => {
            nix::sys::personality::Persona::from_bits_retain(0x0008)
        }
        _ => nix::sys::personality::Persona::empty(),
    };
    nix::sys::personality::set(persona).map_err(nix_errno("personality"))?;
    Ok(())
}

/// From Ready on the container outlives `create`: stop dying with it. (Should the parent die in
/// between, the saved state still names the cgroup and `delete --force` kills us.)
fn report_ready(sock: BorrowedFd<'_>) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(None).map_err(nix_errno("prctl(PR_SET_PDEATHSIG, 0)"))?;
    protocol::send(sock, &Msg::Ready, None)
}

/// Wait for `start`: it writes one byte to exec.fifo (`run`: the parent, to its pipe).
fn wait_for_start(fifo: BorrowedFd<'_>) -> Result<()> {
    let mut b = [0u8; 1];
    loop {
        match rustix::io::read(fifo, &mut b) {
            Ok(1) => return Ok(()),
            Ok(_) => {
                return Err(RuntimeError::Sys {
                    op: "read exec.fifo: closed before start".into(),
                    source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                })
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(errno("read exec.fifo")(e)),
        }
    }
}

fn run_start_hooks(spec: &Spec, state_json: &str) -> Result<()> {
    if let Some(h) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
    {
        crate::hooks::run_all("startContainer", h, state_json)?;
    }
    Ok(())
}

/// The process, ready for execve: everything checked, nothing left but the call.
pub struct Prepared {
    exe: PathBuf,
    exe_c: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl Prepared {
    pub fn exec(&self) -> RuntimeError {
        let e = nix::unistd::execve(&self.exe_c, &self.argv, &self.envp).unwrap_err();
        nix_errno(format!("execve {}", self.exe.display()))(e)
    }
}

/// The steps init and exec share, in the order the kernel needs: rlimits and umask, seccomp (early
/// if it needs CAP_SYS_ADMIN), bounding set, uid/gid, capability sets, no_new_privs + seccomp,
/// cwd, executable lookup, terminal, and every fd but stdio and the preserved ones CLOEXEC.
pub fn finalize(
    process: &oci_spec::runtime::Process,
    caps: &CapSets,
    seccomp: Option<&Filter>,
    preserve_fds: u32,
    console: Option<OwnedFd>,
    sock: BorrowedFd<'_>,
) -> Result<Prepared> {
    // Nothing but stdio and the preserved fds may cross exec (CVE-2024-21626). Done before
    // the seccomp filter goes on (a profile need not allow close_range); every fd opened
    // after this is O_CLOEXEC.
    atoll_sys::process::close_range_cloexec(3 + preserve_fds).map_err(|e| RuntimeError::Sys {
        op: "close_range(CLOSE_RANGE_CLOEXEC)".into(),
        source: e,
    })?;
    // Read as root, before seccomp and the uid switch: /etc/passwd may be unreadable to the user.
    let home = home_env(process);
    identity::apply_rlimits(process.rlimits().as_deref().unwrap_or(&[]))?;
    if let Some(umask) = process.user().umask() {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
    }
    // While we still hold CAP_SYS_NICE (a real-time policy needs it) and before a seccomp
    // profile that might not allow sched_setattr.
    super::scheduler::apply(process.scheduler().as_ref())?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    if !nnp {
        // Without no_new_privs the kernel wants CAP_SYS_ADMIN to install a filter: do it while
        // we still hold it.
        install_seccomp(seccomp, sock)?;
    }
    caps.apply_bounding()?;
    let setgroups_ok = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true);
    // Still root of the container (CAP_CHOWN) here; the user owns its stdio after the switch.
    identity::give_stdio_to_user(process)?;
    identity::switch_user(process, setgroups_ok)?;
    caps.apply_sets()?;
    if nnp {
        nix::sys::prctl::set_no_new_privs().map_err(nix_errno("prctl(PR_SET_NO_NEW_PRIVS)"))?;
        install_seccomp(seccomp, sock)?;
    }
    let cwd = process.cwd();
    std::env::set_current_dir(cwd).map_err(crate::error::sys(format!(
        "chdir {} (process.cwd)",
        cwd.display()
    )))?;
    let mut env = process.env().clone().unwrap_or_default();
    env.extend(home);
    let args = process.args().clone().unwrap_or_default();
    let first = args.first().ok_or_else(|| field("process.args", "empty"))?;
    let exe = find_executable(first, &env)?;
    let argv = cstrings(&args, "process.args")?;
    let envp = cstrings(&env, "process.env")?;
    let exe_c = CString::new(exe.as_os_str().as_bytes())
        .map_err(|_| field("process.args[0]", "contains NUL"))?;
    // The process leads a session and process group of its own inside the container, as runc's
    // do (setsid(2); with a terminal, that session's controlling terminal).
    nix::unistd::setsid().map_err(nix_errno("setsid"))?;
    if let Some(slave) = &console {
        set_controlling_terminal(slave.as_fd())?;
    }
    drop(console);
    reset_signals()?;
    Ok(Prepared {
        exe,
        exe_c,
        argv,
        envp,
    })
}

/// `HOME=...` for a process whose env has none (runc sets it): the home of the process's uid in
/// the container's /etc/passwd, else `/`. None when the env has HOME already (no file read).
fn home_env(process: &oci_spec::runtime::Process) -> Option<String> {
    let env = process.env().as_deref().unwrap_or(&[]);
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return None;
    }
    let uid = process.user().uid();
    let home = read_passwd()
        .and_then(|text| passwd_home(&text, uid))
        .unwrap_or_else(|| "/".into());
    Some(format!("HOME={home}"))
}

/// The container's /etc/passwd, read inside the root we are in (after pivot_root or setns, `/`
/// is the container's): openat2 with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS keeps every
/// symlink and `..` inside it, as rootfs::Rootfs::lookup does, in one call where pathrs' reopen
/// would mount a private procfs for it on every `run` without HOME. O_NONBLOCK: a FIFO there
/// cannot block us; anything but a regular file is not read (a device node is opened, under the
/// container's device cgroup, and left unread). None where there is none to read: HOME is then
/// `/`, as runc falls back.
fn read_passwd() -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::io::Read;
    const MAX: u64 = 4 << 20;
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let open = || {
        rustix::fs::openat2(
            &root,
            "etc/passwd",
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    };
    // EAGAIN: a rename or mount raced the walk and the kernel asks for a retry.
    let file = (0..16)
        .map(|_| open())
        .find(|r| !matches!(r, Err(rustix::io::Errno::AGAIN)))?
        .ok()?;
    let st = rustix::fs::fstat(&file).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return None;
    }
    let mut text = String::new();
    std::fs::File::from(file)
        .take(MAX)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The home directory (6th field) of the first passwd(5) line for `uid`; None if there is none
/// or it is empty.
fn passwd_home(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        match f.as_slice() {
            [_, _, u, _, _, home, ..] if u.parse() == Ok(uid) && !home.is_empty() => {
                Some(home.to_string())
            }
            _ => None,
        }
    })
}

/// The kernel keeps at most __NEW_UTS_LEN (64) bytes of a host or domain name and answers EINVAL
/// beyond: say so by field and length rather than echo the whole value.
fn check_uts_name(field_name: &str, name: &str) -> Result<()> {
    const NEW_UTS_LEN: usize = 64;
    if name.len() > NEW_UTS_LEN {
        return Err(field(
            field_name,
            format!(
                "{} bytes; the kernel allows at most {NEW_UTS_LEN}",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// In a new user namespace: become uid/gid 0 there (if mapped) so files we create are root's.
fn become_ns_root(ctx: &InitCtx<'_>) -> Result<()> {
    if !ctx.ns.creates(LinuxNamespaceType::User) {
        return Ok(());
    }
    let linux = ctx.spec.linux().as_ref();
    let maps_root = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.as_ref()
            .is_some_and(|v| v.iter().any(|x| x.container_id() == 0))
    };
    if linux.is_some_and(|l| maps_root(l.uid_mappings()) && maps_root(l.gid_mappings())) {
        let z = nix::unistd::Uid::from_raw(0);
        let g = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(g, g, g).map_err(nix_errno("setresgid 0 in the user namespace"))?;
        nix::unistd::setresuid(z, z, z).map_err(nix_errno("setresuid 0 in the user namespace"))?;
    }
    Ok(())
}

/// Make our mount tree private to us, bind the rootfs onto itself (pivot_root needs a mount point)
/// and open it.
fn prepare_root(ctx: &InitCtx<'_>) -> Result<Rootfs> {
    // Our own mounts must not propagate back to the host: slave (or private) first, but for
    // rootfsPropagation shared, which asks for exactly that (an rshared bind's new mounts reach
    // the host). The rest is applied after pivot_root, which refuses shared parents and could
    // not bind an unbindable rootfs.
    let (first, name) = match root_propagation(ctx.spec)? {
        Propagation::PRIVATE => (Propagation::PRIVATE, "rprivate"),
        Propagation::SHARED => (Propagation::SHARED, "rshared"),
        _ => (Propagation::DOWNSTREAM, "rslave"),
    };
    rustix::mount::mount_change("/", first | Propagation::REC)
        .map_err(errno(format!("mount --make-{name} /")))?;
    if first == Propagation::SHARED {
        crate::rootfs::make_rootfs_parent_private(ctx.rootfs)?;
    }
    rustix::mount::mount_bind_recursive(ctx.rootfs, ctx.rootfs).map_err(errno(format!(
        "bind mount rootfs {} onto itself",
        ctx.rootfs.display()
    )))?;
    Ok(Rootfs::open(ctx.rootfs)?)
}

/// linux.rootfsPropagation (default rslave, as runc).
fn root_propagation(spec: &Spec) -> Result<Propagation> {
    let prop = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .unwrap_or_else(|| "rslave".into());
    Ok(match prop.as_str() {
        "shared" | "rshared" => Propagation::SHARED,
        "private" | "rprivate" => Propagation::PRIVATE,
        "unbindable" | "runbindable" => Propagation::UNBINDABLE,
        "slave" | "rslave" => Propagation::DOWNSTREAM,
        other => {
            return Err(field(
                "linux.rootfsPropagation",
                format!("unknown value {other:?}"),
            ))
        }
    })
}

/// pivot_root(".", ".") then detach the old root (no directory needed), or with --no-pivot move
/// the rootfs onto / and chroot.
fn enter_root(ctx: &InitCtx<'_>, rootfs: &Rootfs) -> Result<()> {
    let prop = root_propagation(ctx.spec)?;
    let dir: OwnedFd = rootfs
        .root
        .try_clone()
        .map_err(crate::error::pathrs("dup the rootfs fd"))?
        .into();
    rustix::process::fchdir(&dir).map_err(errno(format!("fchdir {}", ctx.rootfs.display())))?;
    if ctx.no_pivot {
        rustix::mount::mount_move(".", "/").map_err(errno("mount --move rootfs / (--no-pivot)"))?;
        rustix::process::chroot(".").map_err(errno("chroot . (--no-pivot)"))?;
    } else {
        // prepare_root made the old root rslave or rprivate, so detaching it propagates nothing
        // to the host; but with rootfsPropagation shared it is still in the host's peer groups
        // and must be made rslave first. After pivot_root it is stacked on ".", yet "." names
        // the new root's mount (a lookup of "." crosses no mount): reach the old root by an fd
        // opened before, as runc does, so the new root's propagation (rshared binds) stays.
        let old_root = (prop == Propagation::SHARED)
            .then(|| {
                let flags = rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC;
                rustix::fs::open("/", flags, rustix::fs::Mode::empty())
            })
            .transpose()
            .map_err(errno("open / (the old root)"))?;
        rustix::process::pivot_root(".", ".")
            .map_err(errno(format!("pivot_root {}", ctx.rootfs.display())))?;
        if let Some(old_root) = old_root {
            rustix::process::fchdir(&old_root).map_err(errno("fchdir the old root"))?;
            rustix::mount::mount_change(".", Propagation::DOWNSTREAM | Propagation::REC)
                .map_err(errno("mount --make-rslave old root"))?;
        }
        rustix::mount::unmount(".", UnmountFlags::DETACH)
            .map_err(errno("umount2 old root (MNT_DETACH)"))?;
    }
    std::env::set_current_dir("/").map_err(crate::error::sys("chdir / after pivot_root"))?;
    if prop != Propagation::DOWNSTREAM {
        rustix::mount::mount_change("/", prop | Propagation::REC).map_err(errno(format!(
            "set linux.rootfsPropagation ({prop:?}) on /"
        )))?;
    }
    Ok(())
}

fn open_self_ns(name: &str) -> Result<OwnedFd> {
    let p = format!("/proc/self/ns/{name}");
    rustix::fs::open(
        p.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(errno(format!("open {p}")))
}

/// A user namespace carrying a mount's own uidMappings/gidMappings, for MOUNT_ATTR_IDMAP: a child
/// unshares it and waits; we take its ns fd, then let it exit.
pub fn make_idmap_userns(proof: &SingleThreaded, m: &oci_spec::runtime::Mount) -> Result<OwnedFd> {
    let (uid, gid) = match (m.uid_mappings(), m.gid_mappings()) {
        (Some(u), Some(g)) => (u.clone(), g.clone()),
        _ => {
            return Err(field(
                format!("mounts ({}).uidMappings", m.destination().display()),
                "uidMappings and gidMappings must both be set",
            ))
        }
    };
    // Where our /proc numbers our pid namespace (the host's `up`, the runtime's parent), a
    // holder that shares our memory: no fork's copies. Else (the init before pivot_root, in
    // the container's pid namespace) the fork-like helper below, which reports its /proc pid.
    if let Ok(holder) = atoll_sys::process::UsernsHolder::start() {
        identity::write_id_maps(holder.pid(), &uid, &gid)?;
        let p = format!("/proc/{}/ns/user", holder.pid());
        return rustix::fs::open(
            p.as_str(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(errno(format!("open {p}")));
    }
    let (r, w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(errno("pipe"))?;
    let (pid_r, pid_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(errno("pipe"))?;
    // The helper keeps only its two pipe ends: its copy of `w` closed, its read sees EOF as soon
    // as we drop ours.
    let keep = [r.as_fd(), pid_w.as_fd()];
    let child = atoll_sys::process::spawn(
        proof,
        libc::CLONE_NEWUSER as u64,
        None,
        Some(CloseFds {
            from: 3,
            keep: &keep,
        }),
        |closed, _| {
            if closed.is_err() {
                return 1;
            }
            // The /proc mounted here until pivot_root is the host's: /proc/self names us by our
            // pid there, which is the number the parent's /proc/<pid>/uid_map path needs.
            let me = std::fs::read_link("/proc/self").unwrap_or_default();
            let _ = rustix::io::write(&pid_w, me.as_os_str().as_encoded_bytes());
            let mut b = [0u8; 1];
            let _wait_for_parent = rustix::io::read(&r, &mut b);
            0
        },
    )
    .map_err(sys("clone3/clone(CLONE_NEWUSER) for an idmap"))?
    .pid;
    drop(r);
    drop(pid_w);
    // The pid spawn returned is the child's in the container's pid namespace, which /proc (the
    // host's, until pivot_root) does not number: ask the child for its /proc pid.
    let res = proc_pid_of_child(pid_r.as_fd(), child).and_then(|pid| {
        identity::write_id_maps(pid, &uid, &gid)?;
        Ok(pid)
    });
    let res = res.and_then(|pid| {
        let p = format!("/proc/{pid}/ns/user");
        rustix::fs::open(
            p.as_str(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(errno(format!("open {p}")))
    });
    drop(w);
    let _reap = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
    res
}

/// Read the pid the idmap helper `child` reported for itself as the mounted /proc numbers it.
fn proc_pid_of_child(from: BorrowedFd<'_>, child: i32) -> Result<i32> {
    let mut buf = [0u8; 16];
    let n = rustix::io::read(from, &mut buf).map_err(errno("read the idmap helper's pid"))?;
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| RuntimeError::Protocol {
            expected: format!("the idmap helper (pid {child}) to report its /proc pid"),
            got: format!("{n} bytes that are no pid"),
        })
}

/// NeedMount: the mount the parent makes for config mount `index` (see rootfs::MountKind).
fn need_mount(sock: BorrowedFd<'_>, index: usize) -> Result<OwnedFd> {
    protocol::send(sock, &Msg::NeedMount(index), None)?;
    let why = match protocol::recv(sock)? {
        Some((Msg::Fd(FdKind::Mount), Some(fd))) => return Ok(fd),
        Some((Msg::Error(e), _)) => e,
        other => format!("expected the mount fd, got {other:?}"),
    };
    Err(MountError::FromParent { index, why }.into())
}

/// Open a pty in the container's devpts, bind the slave at /dev/console, send the master to the
/// parent (for --console-socket) and return the slave for stdio.
pub fn open_console_in(rootfs: &Rootfs, sock: BorrowedFd<'_>) -> Result<OwnedFd> {
    let (master, slave) = crate::tty::open_pty(&rootfs.root)?;
    rootfs.console(slave.as_fd())?;
    protocol::send(sock, &Msg::Fd(FdKind::Console), Some(master.as_fd()))?;
    Ok(slave)
}

/// After setsid: `slave` becomes the session's controlling terminal and the process's stdio.
fn set_controlling_terminal(slave: BorrowedFd<'_>) -> Result<()> {
    rustix::process::ioctl_tiocsctty(slave).map_err(errno("ioctl(TIOCSCTTY)"))?;
    nix::unistd::dup2_stdin(slave).map_err(nix_errno("dup2 tty to stdin"))?;
    nix::unistd::dup2_stdout(slave).map_err(nix_errno("dup2 tty to stdout"))?;
    nix::unistd::dup2_stderr(slave).map_err(nix_errno("dup2 tty to stderr"))?;
    Ok(())
}

fn install_seccomp(seccomp: Option<&Filter>, sock: BorrowedFd<'_>) -> Result<()> {
    let Some(filter) = seccomp else { return Ok(()) };
    if let Some(fd) = filter.install()? {
        protocol::send(sock, &Msg::Fd(FdKind::Seccomp), Some(fd.as_fd()))?;
    }
    Ok(())
}

/// Write linux.sysctl through a procfs we mounted ourselves (pathrs), never through a /proc the
/// image could have shaped (CVE-2025-52881).
fn write_sysctls(sysctl: &std::collections::HashMap<String, String>) -> Result<()> {
    let proc = pathrs::procfs::ProcfsHandle::new()
        .map_err(crate::error::pathrs("open a private procfs"))?;
    for (k, v) in sysctl {
        let sub = format!("sys/{}", k.replace('.', "/"));
        let mut f = proc
            .open(
                pathrs::procfs::ProcfsBase::ProcRoot,
                &sub,
                pathrs::flags::OpenFlags::O_WRONLY,
            )
            .map_err(|e| RuntimeError::FieldSys {
                field: format!("linux.sysctl[{k:?}]"),
                op: format!("open /proc/{sub}"),
                source: crate::error::pathrs_io(e),
            })?;
        std::io::Write::write_all(&mut f, v.as_bytes()).map_err(|e| RuntimeError::FieldSys {
            field: format!("linux.sysctl[{k:?}]"),
            op: format!("write {v:?} to /proc/{sub}"),
            source: e,
        })?;
    }
    Ok(())
}

/// execvp's lookup, done before `start` so a missing binary fails `create` with a clear error.
fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf> {
    let check = |p: &Path| -> bool {
        rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok() && p.is_file()
    };
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        return if check(&p) {
            Ok(p)
        } else {
            Err(field(
                "process.args[0]",
                format!("{arg0}: no such executable in the container"),
            ))
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(arg0);
        if check(&p) {
            return Ok(p);
        }
    }
    Err(field(
        "process.args[0]",
        format!("{arg0:?}: executable file not found in $PATH ({path})"),
    ))
}

fn cstrings(v: &[String], what: &str) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| field(what, format!("{s:?} contains NUL"))))
        .collect()
}

/// The user's process starts with default signal dispositions and an empty mask.
fn reset_signals() -> Result<()> {
    atoll_sys::process::reset_signal_dispositions();
    nix::sys::signal::SigSet::empty()
        .thread_set_mask()
        .map_err(nix_errno("sigprocmask(SIG_SETMASK, {})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysctl that does not exist names its field and keeps ENOENT, so callers can tell it
    /// from a refused write (EACCES, EPERM).
    #[test]
    fn missing_sysctl_keeps_its_errno() {
        let mut sysctl = std::collections::HashMap::new();
        sysctl.insert("net.atoll_test.no_such_key".to_string(), "1".to_string());
        let e = write_sysctls(&sysctl).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT), "{e}");
        assert!(
            matches!(e, RuntimeError::FieldSys { ref field, .. } if field.contains("no_such_key"))
        );
    }

    #[test]
    fn home_from_passwd_by_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\n# note\nnohome:x:7:7::\nuser:x:1000:1000::/home/u:/bin/sh\n";
        assert_eq!(passwd_home(passwd, 0).as_deref(), Some("/root"));
        assert_eq!(passwd_home(passwd, 1000).as_deref(), Some("/home/u"));
        assert_eq!(passwd_home(passwd, 7), None);
        assert_eq!(passwd_home(passwd, 42), None);
    }

    #[test]
    fn uts_names_over_64_bytes_are_named() {
        assert!(check_uts_name("hostname", &"h".repeat(64)).is_ok());
        let e = check_uts_name("hostname", &"h".repeat(65)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: hostname: 65 bytes; the kernel allows at most 64"
        );
    }
}

//! The lifecycle verbs on a created container: start, state, kill, delete, pause, resume, ps,
//! update, stats, and `run` (create + start + wait). Each takes the container's lock.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use atoll_cgroups::Cgroup;
use nix::sys::signal::Signal;

use crate::error::{errno, nix_errno, Result, RuntimeError};
use crate::process;
use crate::process::spawn::{self, CreateOpts};
use crate::state::{Saved, Status, Store};

pub fn create(store: &Store, opts: &CreateOpts) -> Result<()> {
    spawn::create(store, opts).map(drop)
}

/// Release a created container: write one byte to exec.fifo, then run poststart hooks.
pub fn start(store: &Store, id: &str) -> Result<()> {
    let _lock = store.lock(id)?;
    let mut saved = store.load(id)?;
    let status = saved.status();
    if status != Status::Created {
        return Err(RuntimeError::BadState {
            id: id.into(),
            status: status.as_str(),
            wanted: "only a created container can be started",
        });
    }
    let fifo = store.dir(id).join("exec.fifo");
    // O_NONBLOCK: if init died there is no reader and open fails with ENXIO instead of hanging.
    let f = rustix::fs::open(
        &fifo,
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(errno(format!(
        "open {} (is the container's init alive?)",
        fifo.display()
    )))?;
    rustix::io::write(&f, b"0").map_err(errno(format!("write {}", fifo.display())))?;
    drop(f);
    let _ = std::fs::remove_file(&fifo);
    saved.started = true;
    store.save(&saved)?;
    poststart_or_remove(store, &saved)
}

/// Run the poststart hooks; the first that fails fails `start` (or `run`), and the container is
/// killed and removed, as runc and crun do: nothing is left running that the caller was told
/// did not start.
fn poststart_or_remove(store: &Store, saved: &Saved) -> Result<()> {
    let Some(h) = saved
        .config
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().as_ref())
    else {
        return Ok(());
    };
    // runtime-spec: poststart hooks run after the user's process has been executed.
    wait_for_exec(saved);
    let state = saved.state_json(Status::Running).to_string();
    let Err(failed) = crate::hooks::run_all("poststart", h, &state) else {
        return Ok(());
    };
    if let Err(e) = delete_locked(store, saved, true) {
        tracing::warn!(
            "after the failed poststart hook: {}",
            crate::error::report(&e)
        );
    }
    Err(failed.into())
}

pub fn state(store: &Store, id: &str) -> Result<serde_json::Value> {
    match store.load(id) {
        Ok(saved) => Ok(saved.state_json(saved.status())),
        // Only the directory: a create still before its first save, or killed there. Shown as
        // creating, so that whoever looks sees what `delete --force` has to clean.
        Err(RuntimeError::NotFound(_)) if store.exists(id) => {
            let bare = Saved {
                id: id.to_string(),
                ..Saved::default()
            };
            Ok(bare.state_json(Status::Creating))
        }
        Err(e) => Err(e),
    }
}

/// Wait (up to 10 s) until the init has exec'd the user's process: its /proc/<pid>/exe stops
/// being our own binary. Only used when poststart hooks need that ordering.
fn wait_for_exec(saved: &Saved) {
    let ours = std::fs::metadata("/proc/self/exe")
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let deadline = Instant::now() + KILL_WAIT;
    while Instant::now() < deadline && saved.init_alive() {
        let exe = std::fs::metadata(format!("/proc/{}/exe", saved.pid))
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if exe.is_some() && exe != ours {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Parse "KILL", "SIGKILL", "9" (runc accepts all three).
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| RuntimeError::UnknownSignal(s.into()));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| RuntimeError::UnknownSignal(s.into()))
}

pub fn kill(store: &Store, id: &str, sig: Signal, all: bool) -> Result<()> {
    let _lock = store.lock(id)?;
    let saved = store.load(id)?;
    let status = saved.status();
    if matches!(status, Status::Stopped | Status::Creating) && !all {
        return Err(RuntimeError::BadState {
            id: id.into(),
            status: status.as_str(),
            wanted: "container not running",
        });
    }
    if all {
        if let Some(cg) = cgroup_of(&saved)? {
            let rsig = to_rustix(sig)?;
            for pid in cg.pids()? {
                let _gone_is_fine = process::kill(pid, rsig);
            }
            if status == Status::Paused && sig == Signal::SIGKILL {
                cg.thaw_subtree()?;
            }
            return Ok(());
        }
    }
    signal_init(&saved, sig)?;
    if status == Status::Paused && sig == Signal::SIGKILL {
        if let Some(cg) = cgroup_of(&saved)? {
            cg.thaw_subtree()?;
        }
    }
    Ok(())
}

/// Signal the init through its pidfd (see `Saved::init_pidfd`): a recycled pid can never
/// receive our signal.
fn signal_init(saved: &Saved, sig: Signal) -> Result<()> {
    let pidfd = saved.init_pidfd()?.ok_or_else(|| RuntimeError::BadState {
        id: saved.id.clone(),
        status: "stopped",
        wanted: "container not running",
    })?;
    rustix::process::pidfd_send_signal(&pidfd, to_rustix(sig)?)
        .map_err(errno(format!("pidfd_send_signal {sig} to {}", saved.pid)))
}

/// The same signal as rustix spells it (parsing stays with nix, which names signals).
fn to_rustix(sig: Signal) -> Result<rustix::process::Signal> {
    rustix::process::Signal::from_named_raw(sig as i32)
        .ok_or_else(|| RuntimeError::UnknownSignal(sig.to_string()))
}

fn cgroup_of(saved: &Saved) -> Result<Option<Cgroup>> {
    match &saved.cgroup {
        Some(p) => Ok(Some(Cgroup::from_saved(p)?)),
        None => Ok(None),
    }
}

/// Remove a container. Without force it must be stopped, or only created: as runc does, a
/// created container's init is killed (containerd's shim deletes tasks it never started). With
/// force, kill whatever is left first; a container that does not exist is then no error (clients
/// call `delete --force` to be sure it is gone). Cleans up after crashed creates too: missing
/// pieces are not errors, and every step runs even if an earlier one failed.
pub fn delete(store: &Store, id: &str, force: bool) -> Result<()> {
    crate::state::check_id(id)?;
    if !store.exists(id) {
        return if force {
            Ok(())
        } else {
            Err(RuntimeError::NotFound(id.into()))
        };
    }
    // Bounded: whatever holds the lock (a hung command) must not make delete hang with it.
    let _lock = match store.lock_within(id, LOCK_WAIT) {
        Err(RuntimeError::NotFound(_)) if force => return Ok(()),
        other => other?,
    };
    let saved = match store.load(id) {
        Ok(s) => s,
        Err(RuntimeError::NotFound(_)) | Err(RuntimeError::State { .. }) if force => {
            // A create killed before it saved anything: only the directory is there.
            store.remove(id)?;
            store.drop_cache_if_unused();
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    delete_locked(store, &saved, force)
}

/// After a complete checkpoint (CRIU killed the tasks): remove the container as `delete` does,
/// with the lock the caller already holds.
pub(crate) fn remove_after_checkpoint(store: &Store, saved: &Saved) -> Result<()> {
    delete_locked(store, saved, true)
}

/// How long `delete` waits for another command's lock on the container.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// `delete` once the container is locked and its state read (or still in memory: `run`).
fn delete_locked(store: &Store, saved: &Saved, force: bool) -> Result<()> {
    let id = saved.id.as_str();
    let status = saved.status();
    match status {
        // A create killed half-way is "creating" forever: deletable, it is what --force cleans.
        // A created container's init has not run the user's process: runc kills it and deletes.
        Status::Stopped | Status::Creating | Status::Created => {}
        _ if force => {}
        _ => {
            return Err(RuntimeError::BadState {
                id: id.into(),
                status: status.as_str(),
                wanted: "cannot delete a container that is not stopped without --force",
            })
        }
    }
    let mut errors = Vec::new();
    let cg = cgroup_of(saved).unwrap_or(None);
    tracing::debug!("delete: state loaded");
    if saved.init_alive() {
        if let Err(e) = kill_and_wait(saved, cg.as_ref()) {
            errors.push(crate::error::report(&e));
        }
    } else if let Some(cg) = &cg {
        // Init is gone but exec'd processes may be left in the cgroup (its pid namespace died
        // with init only if it had one). Best effort: destroy reports what stays.
        let _ = cg.thaw_subtree();
        for pid in cg.pids().unwrap_or_default() {
            let _gone_is_fine = process::kill(pid, rustix::process::Signal::KILL);
        }
    }
    if status != Status::Creating {
        if let Some(h) = saved
            .config
            .hooks()
            .as_ref()
            .and_then(|h| h.poststop().as_ref())
        {
            let state = saved.state_json(Status::Stopped).to_string();
            for e in crate::hooks::run_all_warn("poststop", h, &state) {
                tracing::warn!("{}", crate::error::report(&e));
            }
        }
    }
    tracing::debug!("delete: processes gone, hooks run");
    if let Some(cg) = &cg {
        if let Err(e) = cg.destroy() {
            errors.push(crate::error::report(&e));
        }
    }
    if let Err(e) = store.remove(id) {
        errors.push(crate::error::report(&e));
    }
    store.drop_cache_if_unused();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::DeleteIncomplete {
            id: id.into(),
            failures: errors,
        })
    }
}

/// How long `delete --force` waits for a SIGKILLed init to exit.
const KILL_WAIT: Duration = Duration::from_secs(10);

fn kill_and_wait(saved: &Saved, cg: Option<&Cgroup>) -> Result<()> {
    let Some(pidfd) = saved.init_pidfd()? else {
        return Ok(());
    };
    let mut thawed = Ok(());
    if let Some(cg) = cg {
        for p in cg.pids().unwrap_or_default() {
            let _gone_is_fine = process::kill(p, rustix::process::Signal::KILL);
        }
        // A frozen task takes no SIGKILL (v1): thaw every level, sub-cgroups frozen on their
        // own too, or the kill never lands (runc thaws a paused container it kills).
        thawed = cg.thaw_subtree();
    }
    rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL)
        .map_err(errno(format!("kill {}", saved.pid)))?;
    // The pidfd polls readable once the process has exited.
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let mut fds = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = rustix::event::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => break,
            Ok(_) => {
                // Still there: a failed thaw is the likely cause, and the better report.
                thawed?;
                return Err(RuntimeError::NotKilled {
                    pid: saved.pid,
                    secs: KILL_WAIT.as_secs(),
                });
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(errno("poll pidfd")(e)),
        }
    }
    // If it is our child (run), reap it; otherwise its parent (or init) does.
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(saved.pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
    Ok(())
}

pub fn pause(store: &Store, id: &str) -> Result<()> {
    let _lock = store.lock(id)?;
    let saved = store.load(id)?;
    let status = saved.status();
    if !matches!(status, Status::Running | Status::Created) {
        return Err(RuntimeError::BadState {
            id: id.into(),
            status: status.as_str(),
            wanted: "container not running",
        });
    }
    cgroup_of(&saved)?
        .ok_or_else(|| RuntimeError::NoCgroup(saved.id.clone()))?
        .freeze()?;
    Ok(())
}

pub fn resume(store: &Store, id: &str) -> Result<()> {
    let _lock = store.lock(id)?;
    let saved = store.load(id)?;
    let status = saved.status();
    if status != Status::Paused {
        return Err(RuntimeError::BadState {
            id: id.into(),
            status: status.as_str(),
            wanted: "container not paused",
        });
    }
    cgroup_of(&saved)?
        .ok_or_else(|| RuntimeError::NoCgroup(saved.id.clone()))?
        .thaw()?;
    Ok(())
}

pub fn pids(store: &Store, id: &str) -> Result<Vec<i32>> {
    let saved = store.load(id)?;
    match cgroup_of(&saved)? {
        Some(cg) => Ok(cg.pids()?),
        None => Ok(vec![]),
    }
}

pub fn update(
    store: &Store,
    id: &str,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    let _lock = store.lock(id)?;
    let mut saved = store.load(id)?;
    if saved.status() == Status::Stopped {
        return Err(RuntimeError::BadState {
            id: id.into(),
            status: "stopped",
            wanted: "container not running",
        });
    }
    let cg = cgroup_of(&saved)?.ok_or_else(|| RuntimeError::NoCgroup(saved.id.clone()))?;
    cg.update(&with_standard_devices(&saved.config, resources))?;
    let state_file = store.dir(id).join("state.json");
    if let Some(linux) = saved.config.linux_mut() {
        // Only the fields given change (as in runc): the rest of the saved limits stay.
        let merged = match linux.resources() {
            Some(old) => merge_resources(old, resources).map_err(|source| RuntimeError::State {
                path: state_file,
                source,
            })?,
            None => resources.clone(),
        };
        linux.set_resources(Some(merged));
    }
    store.save(&saved)
}

/// New device rules replace the old ones whole (a v1 "deny a" first, a new v2 program), so they
/// get the standard devices' allows appended as at create: clients send the config's own list
/// (containerd's CRI update sends a bare "deny all"), and without them /dev/null, /dev/ptmx and
/// /dev/pts/* are denied to every process in the container from then on.
fn with_standard_devices(
    config: &oci_spec::runtime::Spec,
    resources: &oci_spec::runtime::LinuxResources,
) -> oci_spec::runtime::LinuxResources {
    if resources.devices().is_none() {
        return resources.clone();
    }
    let mut spec = config.clone();
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(resources.clone()));
    spec.set_linux(Some(linux));
    spawn::effective_resources(&spec)
}

/// `new` over `old`, field by field: objects merge, anything else (numbers, strings, lists such
/// as devices) replaces.
fn merge_resources(
    old: &oci_spec::runtime::LinuxResources,
    new: &oci_spec::runtime::LinuxResources,
) -> std::result::Result<oci_spec::runtime::LinuxResources, serde_json::Error> {
    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    match a.get_mut(&k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            a.insert(k, v);
                        }
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }
    let mut value = serde_json::to_value(old)?;
    merge(&mut value, serde_json::to_value(new)?);
    serde_json::from_value(value)
}

pub fn stats(store: &Store, id: &str) -> Result<serde_json::Value> {
    let saved = store.load(id)?;
    let cg = cgroup_of(&saved)?.ok_or_else(|| RuntimeError::NoCgroup(saved.id.clone()))?;
    let s = cg.stats()?;
    Ok(serde_json::json!({"type": "stats", "id": id, "data": s}))
}

/// An OOM notification armed on the container's cgroup, for `events`.
pub fn oom_watch(store: &Store, id: &str) -> Result<atoll_cgroups::OomWatch> {
    let saved = store.load(id)?;
    let cg = cgroup_of(&saved)?.ok_or_else(|| RuntimeError::NoCgroup(saved.id.clone()))?;
    Ok(cg.oom_watch()?)
}

/// How `run` ends: return once started (`detach`), or wait and then delete the container unless
/// `keep` (runc's --keep: it stays, stopped, for `state` and `delete`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunMode {
    pub detach: bool,
    pub keep: bool,
}

/// `run`: create, start, and (unless detached) wait for the init, forwarding signals, then
/// delete it (unless kept) and return its exit status the way a shell reports it (128+signal
/// when killed).
pub fn run(store: &Store, opts: &CreateOpts, how: RunMode) -> Result<i32> {
    let detach = how.detach;
    if !detach {
        // Orphans of the two-stage path (and of exec) are re-parented to us, so we can wait.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(nix_errno("prctl(PR_SET_CHILD_SUBREAPER)"))?;
    }
    let mut opts = opts.clone();
    // In the foreground with a terminal but no console socket, we are the terminal (as runc).
    opts.keep_console = !detach && opts.console_socket.is_none();
    opts.for_run = true;
    let created = spawn::create(store, &opts)?;
    let saved = created.saved;
    let forward = forwarded_signals();
    if !detach {
        // Blocked before any proxy thread exists, so every thread inherits the mask and the
        // signals reach our signalfd.
        forward
            .thread_block()
            .map_err(nix_errno("sigprocmask(SIG_BLOCK)"))?;
    }
    let proxy = match created.console {
        Some(master) => Some(crate::tty::proxy(master)?),
        None => None,
    };
    rustix::io::write(&created.release, b"0").map_err(errno("release the init (pipe)"))?;
    drop(created.release);
    if saved.config.hooks().is_some() {
        let _lock = store.lock(&opts.id)?;
        poststart_or_remove(store, &saved)?;
    }
    if detach {
        return Ok(0);
    }
    let code = wait_forwarding(
        saved.pid,
        &forward,
        proxy.as_ref().map(|p| p.master.as_fd()),
    )?;
    if let Some(p) = proxy {
        p.finish();
    }
    tracing::debug!(code, "run: container exited");
    if how.keep {
        return Ok(code);
    }
    // The state this process created, still in memory: no need to read it back.
    let _lock = store.lock(&opts.id)?;
    delete_locked(store, &saved, true)?;
    tracing::debug!("run: deleted");
    Ok(code)
}

/// The signals a foreground `run` or `exec` passes on to the container's process.
pub(crate) fn forwarded_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::SigSet;
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
    ] {
        set.add(s);
    }
    set
}

/// Wait for `pid` with signals blocked, forwarding each one but SIGCHLD to it; reap every child
/// (we are a subreaper). Returns the shell-style exit status.
/// With a pty we proxy (`console`), SIGWINCH resizes it instead (the kernel then signals the
/// container's foreground process group itself).
pub fn wait_forwarding(
    pid: i32,
    set: &nix::sys::signal::SigSet,
    console: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let sfd =
        nix::sys::signalfd::SignalFd::with_flags(set, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC)
            .map_err(nix_errno("signalfd"))?;
    loop {
        // Reap everything that has exited; stop when our process is among them.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, c)) if p.as_raw() == pid => return Ok(c),
                Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => return Ok(128 + s as i32),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(nix_errno("waitpid")(e)),
            }
        }
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let sig = info.ssi_signo as i32;
                if let (true, Some(m)) = (sig == Signal::SIGWINCH as i32, console) {
                    crate::tty::copy_winsize(m);
                } else if sig != Signal::SIGCHLD as i32 {
                    if let Some(s) = rustix::process::Signal::from_named_raw(sig) {
                        let _gone_is_fine = process::kill(pid, s);
                    }
                }
            }
            Ok(None) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(nix_errno("read signalfd")(e)),
        }
        let _ = sfd.as_fd();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn update_merges_saved_resources() {
        let old: oci_spec::runtime::LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":100,"reservation":50},"pids":{"limit":9},
                "devices":[{"allow":false,"access":"rwm"}]}"#,
        )
        .unwrap();
        let new = serde_json::from_str(r#"{"memory":{"limit":200},"cpu":{"shares":512}}"#).unwrap();
        let m = serde_json::to_value(super::merge_resources(&old, &new).unwrap()).unwrap();
        assert_eq!(m["memory"]["limit"], 200);
        assert_eq!(m["memory"]["reservation"], 50);
        assert_eq!(m["pids"]["limit"], 9);
        assert_eq!(m["cpu"]["shares"], 512);
        assert_eq!(m["devices"][0]["allow"], false);
    }
}

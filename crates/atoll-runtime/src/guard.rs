//! The escape guard, on by default: the node file (/etc/atoll/config.toml) says which mode a
//! container gets, [`apply`] puts the guard's trap rules into its seccomp profile at load, and
//! [`register`] hands the notify fd to the supervisor, starting one when none answers.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_seccomp::policy::{attach_listener, Mode, Policy, PolicyError};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Spec};
use rustix::fs::{flock, FlockOperation};
use serde::Deserialize;

use crate::error::{field, Result, RuntimeError};

pub use crate::node::{NODE_CONFIG, NODE_CONFIG_ENV};

/// The guard's files under --root: a dot directory, which no container id can name
/// (state::check_id), so `list` and the seccomp cache's cleanup see no container in it.
pub const GUARD_DIR: &str = ".guard";

/// Per-container overrides (annotations).
pub const GUARD_ANNOTATION: &str = "org.atoll.guard";
pub const GUARD_SOCKET_ANNOTATION: &str = "org.atoll.guard.socket";
pub const GUARD_METADATA_ANNOTATION: &str = "org.atoll.guard.metadata";

/// How long a started supervisor with no tenant stays before it exits, unless the node file
/// says otherwise: long enough to serve a burst of `run`s without a restart each, short enough
/// that nothing of atoll's lingers after its last container.
pub const DEFAULT_IDLE_EXIT: Duration = Duration::from_secs(2);

/// The `[guard]` table as written (every key optional; see docs/threat-model.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    #[serde(default)]
    guard: GuardTable,
    /// crate::node's (checked there).
    #[serde(default)]
    #[allow(dead_code)]
    islands: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardTable {
    mode: Option<String>,
    privileged: Option<String>,
    socket: Option<PathBuf>,
    alert_log: Option<PathBuf>,
    autostart: Option<bool>,
    idle_exit_ms: Option<u64>,
    userns: Option<String>,
    vsock: Option<String>,
    syslog: Option<PathBuf>,
    collector: Option<PathBuf>,
}

/// The node's guard policy, resolved: every field has its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardNode {
    /// The file read, if there was one.
    pub source: Option<PathBuf>,
    /// The --root these defaults were made for.
    pub root: PathBuf,
    /// Mode of a container without an `org.atoll.guard` annotation.
    pub mode: Mode,
    /// Mode of a container meant to reach the host (host pid namespace, or the full capability
    /// set): detect by default, so node agents keep working and every setns still alerts.
    pub privileged: Mode,
    /// The supervisor's socket (a container's listenerPath): `<root>/.guard/guard.sock` by
    /// default, one supervisor per --root.
    pub socket: PathBuf,
    pub alert_log: PathBuf,
    /// Start a supervisor from `create` when none answers at `socket`.
    pub autostart: bool,
    pub idle_exit: Duration,
    /// May containers create user namespaces?
    pub allow_userns: bool,
    /// May containers open AF_VSOCK sockets (a channel to the hypervisor host)?
    pub allow_vsock: bool,
    /// RFC 5424 alerts to this unix datagram socket (e.g. /dev/log).
    pub syslog: Option<PathBuf>,
    /// JSON alert lines to this unix socket (a collector's).
    pub collector: Option<PathBuf>,
}

impl GuardNode {
    /// The defaults for containers under `root`.
    pub fn defaults(root: &Path) -> GuardNode {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        GuardNode {
            source: None,
            root: root.clone(),
            mode: Mode::Enforce,
            privileged: Mode::Detect,
            socket: root.join(GUARD_DIR).join("guard.sock"),
            alert_log: root.join(GUARD_DIR).join("alerts.jsonl"),
            autostart: true,
            idle_exit: DEFAULT_IDLE_EXIT,
            allow_userns: false,
            allow_vsock: false,
            syslog: None,
            collector: None,
        }
    }

    /// Read the node file (`$ATOLL_CONFIG`, else /etc/atoll/config.toml); no file: defaults.
    /// One open(2) when there is none, which is all the hot path pays.
    pub fn load(root: &Path) -> Result<GuardNode> {
        let path = crate::node::path();
        match std::fs::read_to_string(&path) {
            Ok(text) => match GuardNode::parse(&text, root) {
                Ok(n) => Ok(GuardNode {
                    source: Some(path),
                    ..n
                }),
                Err(msg) => Err(RuntimeError::Config { path, msg }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GuardNode::defaults(root)),
            Err(e) => Err(RuntimeError::Config {
                path,
                msg: format!("cannot read: {e}"),
            }),
        }
    }

    /// Parse the node file's text; the error names the field (`guard.mode: ...`).
    pub fn parse(text: &str, root: &Path) -> std::result::Result<GuardNode, String> {
        let file: NodeFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let g = file.guard;
        let mut n = GuardNode::defaults(root);
        let mode = |key: &str, v: &Option<String>, dflt: Mode| match v {
            None => Ok(dflt),
            Some(s) => s
                .parse::<Mode>()
                .map_err(|e: PolicyError| format!("guard.{key}: {}", e.msg)),
        };
        n.mode = mode("mode", &g.mode, n.mode)?;
        n.privileged = mode("privileged", &g.privileged, n.privileged)?;
        let choice = |key: &str, v: &Option<String>, dflt: bool| match v.as_deref() {
            None => Ok(dflt),
            Some("allow") => Ok(true),
            Some("deny") => Ok(false),
            Some(o) => Err(format!("guard.{key}: {o:?} is not one of allow, deny")),
        };
        n.allow_userns = choice("userns", &g.userns, n.allow_userns)?;
        n.allow_vsock = choice("vsock", &g.vsock, n.allow_vsock)?;
        let abs = |key: &str, p: Option<PathBuf>| match p {
            Some(p) if !p.is_absolute() => Err(format!(
                "guard.{key}: {:?} is not an absolute path",
                p.display()
            )),
            p => Ok(p),
        };
        if let Some(s) = abs("socket", g.socket)? {
            n.socket = s;
        }
        if let Some(s) = abs("alert_log", g.alert_log)? {
            n.alert_log = s;
        }
        n.syslog = abs("syslog", g.syslog)?;
        n.collector = abs("collector", g.collector)?;
        if let Some(a) = g.autostart {
            n.autostart = a;
        }
        if let Some(ms) = g.idle_exit_ms {
            n.idle_exit = Duration::from_millis(ms);
        }
        Ok(n)
    }

    /// The mode a container gets, and why (for `atoll guard status` and logs).
    pub fn mode_for(&self, spec: &Spec) -> Result<(Mode, &'static str)> {
        let ann = spec.annotations().as_ref();
        if let Some(m) = ann.and_then(|a| a.get(GUARD_ANNOTATION)) {
            let m = m.parse().map_err(|e: PolicyError| {
                field(format!("annotations.{GUARD_ANNOTATION:?}"), e.msg)
            })?;
            return Ok((m, "annotation"));
        }
        if reaches_host(spec) {
            Ok((
                self.privileged,
                "privileged default (host pid namespace or every capability)",
            ))
        } else {
            Ok((self.mode, "node default"))
        }
    }

    /// What the node gives containers, as JSON (`atoll features`, `atoll guard status`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.source.as_ref().map(|p| p.display().to_string()),
            "mode": self.mode.as_str(),
            "privileged": self.privileged.as_str(),
            "socket": self.socket.display().to_string(),
            "alertLog": self.alert_log.display().to_string(),
            "autostart": self.autostart,
            "idleExitMs": self.idle_exit.as_millis() as u64,
            "userns": if self.allow_userns { "allow" } else { "deny" },
            "vsock": if self.allow_vsock { "allow" } else { "deny" },
            "syslog": self.syslog.as_ref().map(|p| p.display().to_string()),
            "collector": self.collector.as_ref().map(|p| p.display().to_string()),
        })
    }
}

/// Every capability of Linux 5.9 (CAP_CHECKPOINT_RESTORE, 40): a bounding set holding all of
/// them is what `--privileged` gives (docker, podman, containerd all fill it from the kernel).
const FULL_CAPS: usize = 41;

/// Is the container meant to reach the host: it shares the host's pid namespace (no `pid`
/// entry in linux.namespaces), or its bounding set is the full capability set?
pub fn reaches_host(spec: &Spec) -> bool {
    let linux = spec.linux().as_ref();
    let own_pid = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Pid));
    if !own_pid {
        return true;
    }
    let bounding = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref());
    bounding.is_some_and(|b| {
        b.len() >= FULL_CAPS
            && b.contains(&Capability::SysAdmin)
            && b.contains(&Capability::SysModule)
    })
}

/// Put the container under the guard (at load, so the saved config and `exec` carry the same
/// filter): the annotation's mode, else the node's default, else the privileged default. A
/// profile that already names a seccomp agent (an island's, someone else's) is left as it is
/// unless the annotation asks for the guard.
pub fn apply(mut spec: Spec, node: &GuardNode) -> Result<Spec> {
    let ann = spec.annotations().clone().unwrap_or_default();
    let annotated = ann.contains_key(GUARD_ANNOTATION);
    let has_agent = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .is_some_and(|s| s.listener_path().is_some());
    if !annotated && has_agent {
        return Ok(spec);
    }
    let (mode, _) = node.mode_for(&spec)?;
    let bad = |k: &str, e: PolicyError| field(format!("annotations.{k:?}"), e.to_string());
    let base = Policy {
        mode,
        allow_userns: node.allow_userns,
        ..Default::default()
    };
    let meta = ann
        .get(GUARD_METADATA_ANNOTATION)
        .map(String::as_str)
        .unwrap_or("");
    let policy =
        Policy::from_metadata(meta, &base).map_err(|e| bad(GUARD_METADATA_ANNOTATION, e))?;
    let mut linux = spec.linux().clone().unwrap_or_default();
    if policy.mode == Mode::Off {
        return Ok(spec);
    }
    let socket = ann
        .get(GUARD_SOCKET_ANNOTATION)
        .map(PathBuf::from)
        .unwrap_or_else(|| node.socket.clone());
    let mut sc = attach_listener(linux.seccomp().clone(), &socket, &policy)
        .map_err(|e| bad(GUARD_ANNOTATION, e))?;
    if !node.allow_vsock && policy.mode == Mode::Enforce {
        atoll_seccomp::policy::deny_vsock(&mut sc);
    }
    linux.set_seccomp(Some(sc));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The lock beside a supervisor socket: creators hold it shared while they connect and send, a
/// supervisor leaving for idleness takes it exclusive, so no notify fd is ever sent to one that
/// is about to exit; `create` takes it exclusive to start one, so two creates start one.
pub fn lock_path(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Hand `notify` to the seccomp agent at `socket` (runtime-spec listenerPath). For the node's
/// own socket, start a supervisor when none answers (unless autostart is off).
pub fn register(
    node: &GuardNode,
    socket: &Path,
    notify: BorrowedFd<'_>,
    pid: i32,
    meta: Option<&str>,
    state: &serde_json::Value,
) -> Result<()> {
    let send = || atoll_seccomp::send_to_listener(socket, notify, pid, meta, state);
    if socket != node.socket || !node.autostart {
        return Ok(send()?);
    }
    // Whether a supervisor took the tenant; Ok(false) where none listens at the socket.
    let answered = || -> Result<bool> {
        match send() {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::ECONNREFUSED)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    };
    // A supervisor leaving for idleness unlinks the lock file while it holds it exclusively
    // (atoll_guard::Supervisor::leave_if_idle): whoever then gets a lock on the old inode holds
    // nothing the next creator can see, so after each flock the file must still be the one at
    // the path, else open the path anew.
    'lock: loop {
        let lock = open_lock(socket)?;
        let take = |op, what: &str| -> Result<bool> {
            flock(&lock, op).map_err(|e| RuntimeError::Sys {
                op: format!("flock({what}) {}", lock_path(socket).display()),
                source: e.into(),
            })?;
            Ok(still_at_path(&lock, &lock_path(socket)))
        };
        if !take(FlockOperation::LockShared, "LOCK_SH")? {
            continue 'lock;
        }
        if answered()? {
            return Ok(());
        }
        // Nobody answers: become the one who starts it (an exclusive lock converts ours, not
        // atomically: a leaving supervisor may have come in between).
        if !take(FlockOperation::LockExclusive, "LOCK_EX")? {
            continue 'lock;
        }
        if answered()? {
            return Ok(());
        }
        // A container being created has only the tenant we register: the new supervisor's
        // adoption walk passes it over (an exec's container may hold threads to adopt).
        let creating = (state["status"] == "creating")
            .then(|| state["id"].as_str())
            .flatten();
        start_supervisor(node, socket, creating)?;
        return Ok(send()?);
    }
}

/// The guard's layer for a restored container: its profile's SCMP_ACT_NOTIFY rules only, over
/// a default allow. None when the profile notifies nothing (the guard is off for it).
///
/// Stacked on the filter CRIU restored (which still holds every rule, the traps included), it
/// changes nothing the profile decides: the kernel takes the strictest action over all layers,
/// and among equal ones the newest layer's, so a trapped call is notified on this layer's
/// listener, and a call the profile denies stays denied. Compiled through the seccomp cache
/// `cache` (the store's): a restore pays for libseccomp once per profile, not inside each
/// outage.
pub fn notify_layer(spec: &Spec, cache: &Path) -> Result<Option<atoll_seccomp::Filter>> {
    use oci_spec::runtime::LinuxSeccompAction as Act;
    let Some(sc) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) else {
        return Ok(None);
    };
    let notify: Vec<_> = sc
        .syscalls()
        .iter()
        .flatten()
        .filter(|r| r.action() == Act::ScmpActNotify)
        .cloned()
        .collect();
    if notify.is_empty() || sc.listener_path().is_none() {
        return Ok(None);
    }
    let mut layer = sc;
    layer.set_default_action(Act::ScmpActAllow);
    layer.set_default_errno_ret(None);
    layer.set_flags(None);
    layer.set_syscalls(Some(notify));
    Ok(Some(atoll_seccomp::Filter::compile_cached(&layer, cache)?))
}

/// Give the tasks of a restored container back to the guard. CRIU restores each thread's
/// seccomp filter but not its listener, which lived in the supervisor: the traps would answer
/// ENOSYS, and no alert would be raised. So each thread of each of `pids` (stopped by CRIU's
/// leave-stopped) gets [`notify_layer`] with a new listener, put in from outside with ptrace
/// (atoll_sys::inject), and each listener is registered like a created container's, under the
/// container's init `init`. The tasks stay stopped: the caller continues them.
///
/// The kernel lets a thread take a new filter only with no_new_privs or CAP_SYS_ADMIN in its
/// user namespace. A thread with neither (a container with `noNewPrivileges: false` and without
/// CAP_SYS_ADMIN, as podman makes by default) cannot be given one, by us or by itself: it keeps
/// the restored filter, whose trapped calls fail closed with ENOSYS but raise no alert. Such
/// threads are returned in `unguarded`, for the caller to say so.
pub fn reattach(
    node: &GuardNode,
    layer: &atoll_seccomp::Filter,
    init: i32,
    pids: &[i32],
    state: &serde_json::Value,
) -> Result<Reattached> {
    let socket = layer
        .listener_path()
        .ok_or_else(|| field("linux.seccomp.listenerPath", "missing"))?
        .to_path_buf();
    let meta = layer.listener_metadata();
    // CRIU stops them by a SIGSTOP after its detach: a thread seized before that SIGSTOP is
    // taken would take it after our SIGCONT, and stay stopped.
    wait_stopped(pids)?;
    let mut done = Reattached::default();
    layer_threads(layer, pids, &mut done, &mut |fd| {
        register(node, &socket, fd, init, meta, state)
    })?;
    Ok(done)
}

/// Wait (up to 5 s) until every thread of `pids` is in group-stop (state T in
/// /proc/PID/task/TID/stat).
fn wait_stopped(pids: &[i32]) -> Result<()> {
    let stopped = |pid: i32| -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return true; // exited
        };
        tasks.flatten().all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // "pid (comm) S ...": the state follows the last ')'.
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('T'))
                .unwrap_or(true)
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|&p| stopped(p)) {
        if std::time::Instant::now() > deadline {
            return Err(RuntimeError::Sys {
                op: format!("wait for the restored tasks {pids:?} to stop (CRIU's leave-stopped)"),
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Put `layer` with a new listener on every thread of `pids` not yet in `done`, handing each
/// listener to `send`. A thread whose filters still have a live listener (the kernel refuses a
/// second one: EBUSY) is counted as `alive`; one that exits meanwhile is passed over.
pub(crate) fn layer_threads(
    layer: &atoll_seccomp::Filter,
    pids: &[i32],
    done: &mut Reattached,
    send: &mut dyn FnMut(BorrowedFd<'_>) -> Result<()>,
) -> Result<()> {
    use crate::error::sys;
    use std::io::ErrorKind;
    use std::os::fd::AsFd;
    let gone = |e: &std::io::Error| {
        e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
    };
    for &pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue; // exited
        };
        let tids: Vec<i32> = tasks
            .flatten()
            .filter_map(|t| t.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect();
        for tid in tids {
            if !done.seen.insert(tid) {
                continue;
            }
            if filters(pid, tid) == Some(0) {
                // No filter yet: a process of `exec` still setting up, which installs and
                // registers its own (a layer of ours would make its NEW_LISTENER fail).
                continue;
            }
            if !may_take_a_filter(pid, tid) {
                done.unguarded.push(tid);
                continue;
            }
            match atoll_sys::inject::seccomp_listener(pid, tid, layer.program()) {
                Ok(listener) => {
                    send(listener.as_fd())?;
                    done.guarded += 1;
                }
                Err(e) if e.kind() == ErrorKind::ResourceBusy => done.alive += 1,
                Err(e) if gone(&e) => {}
                Err(e) => {
                    return Err(sys(format!(
                        "put the guard's seccomp layer on thread {tid} of pid {pid} (ptrace)"
                    ))(e))
                }
            }
        }
    }
    Ok(())
}

/// What [`reattach`] did.
#[derive(Debug, Default)]
pub struct Reattached {
    /// Threads that have the guard's layer and a registered listener.
    pub guarded: usize,
    /// Threads whose filters still had a live listener: left as they were.
    pub alive: usize,
    /// Every thread looked at.
    pub seen: std::collections::HashSet<i32>,
    /// Threads with neither no_new_privs nor CAP_SYS_ADMIN: their trapped calls get ENOSYS.
    pub unguarded: Vec<i32>,
}

/// How many seccomp filters thread `tid` has (/proc/PID/task/TID/status `Seccomp_filters`).
fn filters(pid: i32, tid: i32) -> Option<u32> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    st.lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .and_then(|v| v.trim().parse().ok())
}

/// capability(7) number of CAP_SYS_ADMIN (the bit in /proc status masks).
const CAP_SYS_ADMIN: u32 = 21;

/// Does the kernel let thread `tid` install a seccomp filter: no_new_privs, or CAP_SYS_ADMIN
/// effective in its own user namespace (/proc/PID/task/TID/status)?
fn may_take_a_filter(pid: i32, tid: i32) -> bool {
    let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
        return true; // gone, or unreadable: let the injection say which
    };
    let field = |name: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let nnp = field("NoNewPrivs:").is_some_and(|v| v == "1");
    let sys_admin = field("CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0);
    nnp || sys_admin
}

/// Is the file we hold the one `path` names now (not unlinked or replaced since we opened it)?
fn still_at_path(f: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

fn open_lock(socket: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = lock_path(socket);
    // A supervisor leaving for idleness removes the guard directory once it is empty: one that
    // goes between our mkdir and our open is made again.
    let mut tries = 5;
    loop {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Sys {
                op: format!("mkdir {}", dir.display()),
                source: e,
            })?;
        }
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries > 0 => tries -= 1,
            r => {
                return r.map_err(|e| RuntimeError::Sys {
                    op: format!("open {}", path.display()),
                    source: e,
                })
            }
        }
    }
}

/// Start `atoll guard serve --daemon` for `socket` and wait for it: it exits once the supervisor
/// it started (own session, out of our cgroup, stdio on its log) listens. We hold the
/// exclusive lock. `creating`: the container whose `create` we are, which registers itself.
fn start_supervisor(node: &GuardNode, socket: &Path, creating: Option<&str>) -> Result<()> {
    let log = {
        let mut p = socket.as_os_str().to_owned();
        p.push(".log");
        PathBuf::from(p)
    };
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("--root")
        .arg(&node.root)
        .arg("guard")
        .arg("serve")
        .arg("--daemon")
        .arg("--socket")
        .arg(socket)
        .arg("--alerts")
        .arg(&node.alert_log)
        .arg("--idle-exit-ms")
        .arg(node.idle_exit.as_millis().to_string())
        .arg("--log-file")
        .arg(&log);
    if let Some(id) = creating {
        cmd.arg("--registering").arg(id);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let status = cmd.status().map_err(|e| RuntimeError::Sys {
        op: "spawn /proc/self/exe guard serve --daemon".into(),
        source: e,
    })?;
    if !status.success() {
        return Err(RuntimeError::Sys {
            op: format!(
                "start the guard supervisor for {} (`atoll guard serve --daemon`, {status}; see {})",
                socket.display(),
                log.display()
            ),
            source: std::io::Error::from_raw_os_error(libc::ECHILD),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_file_defaults_and_errors_name_the_field() {
        let root = Path::new("/run/x");
        let n = GuardNode::parse("", root).unwrap();
        assert_eq!(n.mode, Mode::Enforce);
        assert_eq!(n.privileged, Mode::Detect);
        assert_eq!(n.socket, Path::new("/run/x/.guard/guard.sock"));
        let n = GuardNode::parse(
            "[guard]\nmode = \"detect\"\nprivileged = \"off\"\nsocket = \"/s\"\nidle_exit_ms = 5\nsyslog = \"/dev/log\"\n",
            root,
        )
        .unwrap();
        assert_eq!((n.mode, n.privileged), (Mode::Detect, Mode::Off));
        assert_eq!(n.socket, Path::new("/s"));
        assert_eq!(n.idle_exit, Duration::from_millis(5));
        let e = GuardNode::parse("[guard]\nmode = \"enforced\"\n", root).unwrap_err();
        assert!(e.contains("guard.mode") && e.contains("enforced"), "{e}");
        let e = GuardNode::parse("[guard]\nmodes = \"enforce\"\n", root).unwrap_err();
        assert!(e.contains("modes"), "{e}");
        let e = GuardNode::parse("[guard]\nsocket = \"rel.sock\"\n", root).unwrap_err();
        assert!(e.contains("guard.socket"), "{e}");
    }
}

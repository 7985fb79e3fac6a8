//! The event loop: one epoll set over the registration socket and every tenant's notify fd.
//! Each turn handles at most one notification per ready fd and a few registrations, so a tenant
//! that floods us with trapped calls waits in the kernel (its threads block in the syscall), not
//! in a queue of ours; the others still get their turn.
//!
//! Per notification: recv → gather facts (pidfd_open the caller, ID_VALID, pidfd_getfd its fd,
//! nsfs ioctls) → judge → ID_VALID again → answer → alert line.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atoll_sys::nsfs;
use atoll_sys::seccomp::{self as sc, SeccompNotif, SeccompNotifResp};
use rustix::event::epoll;
use rustix::process::{pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};
use serde::Deserialize;

use crate::alert::{Alert, AlertLog, Decision, Sinks};
use crate::decide::{self, judge_ns, ns_facts, NsFacts};
use crate::ns::NsType;
use crate::registry::{Owner, Registry, Tenant};
use crate::{GuardError, Mode, Policy};

const LISTENER: u64 = 0;
/// Registrations accepted per turn, and the largest message (the state JSON is ~1 KiB).
const ACCEPTS_PER_TURN: usize = 8;
const MAX_MESSAGE: usize = 64 * 1024;
/// A registering peer that stalls holds the loop at most this long.
const REGISTRATION_TIMEOUT: Duration = Duration::from_millis(500);

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

#[derive(Debug, Clone)]
pub struct SupervisorOpts {
    /// The listenerPath socket to bind (a stale socket file there is replaced).
    pub socket: PathBuf,
    /// The alert log (appended to).
    pub alerts: PathBuf,
    /// Policy for tenants whose listenerMetadata does not say otherwise.
    pub policy: Policy,
    /// Leave after this long without a tenant (a supervisor `create` started); None: serve on.
    pub idle_exit: Option<Duration>,
    /// Alert sinks besides the log file.
    pub sinks: Sinks,
}

pub struct Supervisor {
    epoll: OwnedFd,
    listener: UnixListener,
    reg: Registry,
    log: AlertLog,
    policy: Policy,
    next_token: u64,
    socket: PathBuf,
    /// We bound the socket path (and remove it when dropped); an inherited one is the keeper's.
    owns_path: bool,
    /// The keeper's channel: every tenant is copied there (keeper.rs).
    keeper: Option<OwnedFd>,
    idle_exit: Option<Duration>,
    idle_since: Option<Instant>,
    events: Vec<epoll::Event>,
    /// The keeper's memfd where each received notification is noted before it is judged.
    inflight: Option<OwnedFd>,
    /// (st_dev, st_ino) of the socket path when we started: the path's own inode, which the
    /// listener fd does not give (fstat on it is the sockfs inode). A later supervisor's
    /// socket at the same path is another inode, never ours to remove.
    path_id: Option<(u64, u64)>,
    /// The alert log's path: removed with us when idle and empty (see `leave_if_idle`).
    alerts: PathBuf,
}

fn path_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// The runtime-spec "Container Process State" message, as far as we read it.
#[derive(Deserialize)]
struct ProcessState {
    #[serde(default)]
    fds: Vec<String>,
    pid: i32,
    #[serde(default)]
    metadata: Option<String>,
    state: ContainerState,
}

#[derive(Deserialize)]
struct ContainerState {
    id: String,
}

/// A call the guard judged dangerous.
struct Event {
    rule: &'static str,
    nstype: Option<NsType>,
    ns_inode: Option<u64>,
    owner: Option<Owner>,
    detail: Option<String>,
    errno: i32,
    /// Deny even in detect mode (calls we cannot judge at all).
    always: bool,
}

impl Event {
    fn new(rule: &'static str, errno: i32) -> Event {
        Event {
            rule,
            nstype: None,
            ns_inode: None,
            owner: None,
            detail: None,
            errno,
            always: false,
        }
    }
}

/// What to answer.
enum Verdict {
    /// Let the kernel run it (SECCOMP_USER_NOTIF_FLAG_CONTINUE).
    Continue,
    /// Fail it quietly with the errno the kernel itself would give (EBADF, EINVAL...).
    Fail(i32),
    /// Judged dangerous: alert; deny in enforce mode.
    Alert(Event),
    /// The caller is gone; nothing to answer.
    Gone,
}

impl Supervisor {
    /// Bind the socket (mode 0600), open the alert log, record the host's namespaces.
    pub fn bind(opts: &SupervisorOpts) -> Result<Supervisor, GuardError> {
        let listener = bind_socket(&opts.socket)?;
        let mut sup = Supervisor::with_listener(listener, None, opts)?;
        sup.owns_path = true;
        Ok(sup)
    }

    /// Serve on a listener the keeper bound (our stdin), copying every tenant to the keeper at
    /// `keeper`; first take back the tenants the keeper holds (a previous supervisor's).
    pub fn inherit(
        listener: UnixListener,
        keeper: OwnedFd,
        opts: &SupervisorOpts,
    ) -> Result<Supervisor, GuardError> {
        let mut sup = Supervisor::with_listener(listener, None, opts)?;
        loop {
            match crate::keeper::recv(keeper.as_fd()) {
                Ok(Some((crate::keeper::Message::Slot, Some(fd)))) => sup.inflight = Some(fd),
                Ok(Some((crate::keeper::Message::Keep(rec), Some(fd)))) => {
                    sup.next_token = sup.next_token.max(rec.token + 1);
                    match Tenant::restore(&rec, &sup.policy, fd) {
                        Ok(t) => sup.add(rec.token, t)?,
                        Err(e) => tracing::warn!(tenant = %rec.id, "guard: cannot take back: {e}"),
                    }
                }
                Ok(Some((crate::keeper::Message::End, _))) => break,
                Ok(Some((other, _))) => {
                    return Err(GuardError::Protocol(format!("keeper sent {other:?}")))
                }
                Ok(None) => return Err(GuardError::Protocol("keeper closed the channel".into())),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(GuardError::sys("recvmsg (keeper channel)")(e)),
            }
        }
        if sup.tenants() > 0 {
            tracing::info!(
                tenants = sup.tenants(),
                "guard: took back the keeper's tenants"
            );
            sup.answer_inflight();
        }
        sup.keeper = Some(keeper);
        Ok(sup)
    }

    fn with_listener(
        listener: UnixListener,
        keeper: Option<OwnedFd>,
        opts: &SupervisorOpts,
    ) -> Result<Supervisor, GuardError> {
        let log = AlertLog::open(&opts.alerts)?.with_sinks(opts.sinks.clone());
        let reg = Registry::new()?;
        listener
            .set_nonblocking(true)
            .map_err(GuardError::io("set O_NONBLOCK on", &opts.socket))?;
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| GuardError::sys("epoll_create1")(e.into()))?;
        epoll::add(
            &ep,
            &listener,
            epoll::EventData::new_u64(LISTENER),
            epoll::EventFlags::IN,
        )
        .map_err(|e| GuardError::sys("epoll_ctl(ADD, listener)")(e.into()))?;
        Ok(Supervisor {
            epoll: ep,
            listener,
            reg,
            log,
            policy: opts.policy.clone(),
            next_token: 1,
            socket: opts.socket.clone(),
            owns_path: false,
            keeper,
            idle_exit: opts.idle_exit,
            idle_since: None,
            alerts: opts.alerts.clone(),
            events: Vec::with_capacity(64),
            inflight: None,
            path_id: path_id(&opts.socket),
        })
    }

    /// Serve until idle for `idle_exit` (forever without it).
    pub fn run(&mut self) -> Result<(), GuardError> {
        self.run_with(|_| {})
    }

    /// [`Supervisor::run`], calling `changed` whenever a tenant came or went.
    pub fn run_with(&mut self, mut changed: impl FnMut(&Supervisor)) -> Result<(), GuardError> {
        let mut count = self.reg.len();
        loop {
            if self.reg.len() != count {
                count = self.reg.len();
                changed(self);
            }
            let wait = match (self.idle_exit, self.reg.is_empty()) {
                (Some(idle), true) => {
                    let since = *self.idle_since.get_or_insert_with(Instant::now);
                    match idle.checked_sub(since.elapsed()) {
                        Some(left) if !left.is_zero() => Some(left),
                        _ => {
                            if self.leave_if_idle()? {
                                return Ok(());
                            }
                            self.idle_since = Some(Instant::now());
                            Some(idle)
                        }
                    }
                }
                _ => {
                    self.idle_since = None;
                    None
                }
            };
            self.turn(wait)?;
        }
    }

    /// The calls our predecessor had received when it died, whose callers still wait (the
    /// kernel delivers a notification once; unanswered, it would block its caller for as long
    /// as the keeper holds the fd). The last one it noted per tenant is judged and answered now.
    /// Any other still pending (SENT: we have received nothing yet, so a dead supervisor did)
    /// was taken between its receive and its note: ids are consecutive per filter, so it is
    /// one of the next few, answered EINTR (fail closed; we never saw its arguments).
    fn answer_inflight(&mut self) {
        let Some(slot) = &self.inflight else { return };
        let mut found = Vec::new();
        for token in self.reg.tokens() {
            let mut buf = [0u8; crate::keeper::INFLIGHT_LEN];
            let at = crate::keeper::slot_offset(token);
            if !matches!(rustix::io::pread(slot, &mut buf, at), Ok(n) if n == buf.len()) {
                continue;
            }
            match crate::keeper::decode_inflight(&buf) {
                Some((t, n)) if t == token => found.push((token, n)),
                _ => {}
            }
        }
        for (token, n) in found {
            let Some(t) = self.reg.get(token) else {
                continue;
            };
            let fd = t.notify.as_fd();
            for k in 1..=8 {
                let id = n.id.wrapping_add(k);
                if matches!(sc::seccomp_notif_id_valid(fd, id), Ok(true)) {
                    tracing::warn!(tenant = %t.id, "guard: a call our predecessor took unnoted: EINTR");
                    let _ = sc::seccomp_notif_send(fd, &SeccompNotifResp::fail(id, libc::EINTR));
                }
            }
            if matches!(sc::seccomp_notif_id_valid(fd, n.id), Ok(true)) {
                tracing::info!(tenant = %t.id, "guard: answering the call our predecessor left");
                self.judge_and_answer(token, n);
            }
        }
    }

    /// Leave if no create is handing us a tenant: under the exclusive lock creators hold shared
    /// while they connect and send, take what is queued, and if that is nothing, remove the
    /// socket path (later creates start a new supervisor) and say so.
    fn leave_if_idle(&mut self) -> Result<bool, GuardError> {
        let mut lock_path = self.socket.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = match std::fs::File::open(&lock_path) {
            Ok(f) => Some(f),
            // The directory is gone (a test's root removed): nobody can come to us.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(GuardError::io("open", PathBuf::from(lock_path))(e)),
        };
        if let Some(l) = &lock {
            match rustix::fs::flock(l, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
                Err(e) => return Err(GuardError::sys("flock(LOCK_EX|LOCK_NB)")(e.into())),
            }
        }
        self.accept_some();
        if !self.reg.is_empty() {
            return Ok(false);
        }
        if self.is_our_path() {
            let _ = std::fs::remove_file(&self.socket); // gone already: nothing to do
            self.remove_what_holds_nothing(lock.is_some());
        }
        tracing::info!(socket = %self.socket.display(), "guard: no tenant left; leaving");
        // The lock is released at exit, after the path is gone.
        std::mem::forget(lock);
        Ok(true)
    }

    /// A supervisor `create` started leaves nothing of its own behind when it goes idle, so a
    /// host whose last container is gone keeps no guard files: the alert log beside the socket
    /// if no alert was written, the log `create` gave it (`<socket>.log`) if nothing at WARN or
    /// above is in it, and the lock (the caller then removes its status file and atoll's
    /// `.guard` directory if that leaves it empty). Anything with content stays for the
    /// operator. Called holding the exclusive lock: no creator is between its connect and its
    /// send, and creators check after each flock that the lock file they hold is still the one
    /// at the path (atoll_runtime::guard::register).
    fn remove_what_holds_nothing(&self, holding_lock: bool) {
        let empty = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() == 0);
        if self.alerts.parent() == self.socket.parent() && empty(&self.alerts) {
            let _ = std::fs::remove_file(&self.alerts); // a racing remover is as good
        }
        let with = |ext: &str| {
            let mut p = self.socket.as_os_str().to_owned();
            p.push(ext);
            PathBuf::from(p)
        };
        let log = with(".log");
        let quiet = std::fs::read_to_string(&log).is_ok_and(|t| {
            !t.lines()
                .any(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
        });
        if quiet {
            let _ = std::fs::remove_file(&log); // the keeper's last line goes to the unlinked file
        }
        if holding_lock {
            let _ = std::fs::remove_file(with(".lock"));
        }
    }

    /// Does the socket path still name our listener (not a newer supervisor's)?
    fn is_our_path(&self) -> bool {
        self.path_id.is_some() && path_id(&self.socket) == self.path_id
    }

    /// The container ids of the tenants.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.reg.ids()
    }

    /// Number of notify fds being watched.
    pub fn tenants(&self) -> usize {
        self.reg.len()
    }

    /// Register a tenant directly (in-process use; the socket path does the same).
    pub fn register(&mut self, t: Tenant) -> Result<(), GuardError> {
        let token = self.next_token;
        self.next_token += 1;
        if let Some(k) = &self.keeper {
            // First to the keeper: if we die from here on, the tenant is handed back.
            let rec = t.record(token);
            crate::keeper::send(
                k.as_fd(),
                &crate::keeper::Message::Keep(rec),
                Some(t.notify.as_fd()),
            )
            .map_err(GuardError::sys("sendmsg (keeper channel)"))?;
        }
        self.add(token, t)
    }

    fn add(&mut self, token: u64, t: Tenant) -> Result<(), GuardError> {
        // Synchronous wake-ups: the trapped task hands its CPU to us and we hand it back, instead
        // of two cross-CPU wake-ups per call. Older kernels (EINVAL) just wake as before.
        let _ =
            sc::seccomp_notif_set_flags(t.notify.as_fd(), sc::SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
        epoll::add(
            &self.epoll,
            &t.notify,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )
        .map_err(|e| GuardError::sys(format!("epoll_ctl(ADD, notify fd of {})", t.id))(e.into()))?;
        tracing::debug!(tenant = %t.id, pid = t.pid, mode = t.policy.mode.as_str(), "guard: registered");
        self.reg.insert(token, t);
        Ok(())
    }

    /// One wait and what it brought. Returns the number of ready fds.
    pub fn turn(&mut self, timeout: Option<Duration>) -> Result<usize, GuardError> {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let ts = timeout.map(|d| rustix::event::Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as i64,
        });
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events),
            ts.as_ref(),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {
                self.events = events;
                return Ok(0);
            }
            Err(e) => return Err(GuardError::sys("epoll_wait")(e.into())),
        }
        for ev in &events {
            let (token, flags) = (ev.data.u64(), { ev.flags }); // copies: Event is packed

            if token == LISTENER {
                self.accept_some();
            } else if flags.contains(epoll::EventFlags::IN) {
                self.handle_one(token);
            } else if flags.intersects(epoll::EventFlags::HUP | epoll::EventFlags::ERR) {
                // The filter has no task left (all of the tenant's processes exited).
                if let Some(t) = self.reg.remove(token) {
                    let _ = epoll::delete(&self.epoll, &t.notify); // closing it removes it anyway
                    if let Some(k) = &self.keeper {
                        let drop_it = crate::keeper::Message::Drop(token);
                        if let Err(e) = crate::keeper::send(k.as_fd(), &drop_it, None) {
                            tracing::warn!("guard: tell the keeper {} is gone: {e}", t.id);
                        }
                    }
                    if let Err(e) = self.log.forget(&t.id) {
                        tracing::error!("guard: {e}");
                    }
                    tracing::debug!(tenant = %t.id, "guard: tenant gone");
                }
            }
        }
        let n = events.len();
        self.events = events;
        Ok(n)
    }

    fn accept_some(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let conn = match self.listener.accept() {
                Ok((c, _)) => c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("guard: accept on {}: {e}", self.socket.display());
                    return;
                }
            };
            // Handled here, not returned: one bad client must not stop the daemon.
            match self.registration(conn) {
                Ok(()) => {}
                // The container ran and exited before we read its namespaces (`run /bin/true`):
                // nothing left to guard.
                Err(GuardError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    tracing::debug!("guard: tenant gone before it was registered")
                }
                Err(e) => tracing::warn!("guard: registration refused: {e}"),
            }
        }
    }

    fn registration(&mut self, conn: UnixStream) -> Result<(), GuardError> {
        let cred = rustix::net::sockopt::socket_peercred(&conn)
            .map_err(|e| GuardError::sys("getsockopt(SO_PEERCRED)")(e.into()))?;
        let me = rustix::process::geteuid();
        if cred.uid != me && !cred.uid.is_root() {
            return Err(GuardError::Protocol(format!(
                "peer uid {} is neither root nor us",
                cred.uid.as_raw()
            )));
        }
        conn.set_nonblocking(false)
            .and_then(|_| conn.set_read_timeout(Some(REGISTRATION_TIMEOUT)))
            .map_err(GuardError::sys(
                "set registration socket blocking with timeout",
            ))?;
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (mut n, fd) = atoll_sys::socket::recv_with_fd(conn.as_fd(), &mut buf)
            .map_err(GuardError::sys("recvmsg (registration)"))?;
        if n == 0 && fd.is_none() {
            return Ok(()); // a probe: connected and closed
        }
        let fd = fd.ok_or_else(|| GuardError::Protocol("no fd in SCM_RIGHTS".into()))?;
        let mut rest = (&conn).take((MAX_MESSAGE - n) as u64);
        loop {
            match rest.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(GuardError::sys("read (registration)")(e)),
            }
        }
        let msg: ProcessState = serde_json::from_slice(&buf[..n])
            .map_err(|e| GuardError::Protocol(format!("state JSON: {e}")))?;
        if msg.fds.first().map(String::as_str) != Some("seccompFd") {
            return Err(GuardError::Protocol(format!(
                "fds {:?}: expected [\"seccompFd\"]",
                msg.fds
            )));
        }
        let policy = Policy::from_metadata(msg.metadata.as_deref().unwrap_or(""), &self.policy)?;
        if policy.mode == Mode::Off {
            // Nobody answers an "off" tenant's fd: closing it makes any trapped call fail
            // with ENOSYS (fail closed), and an off profile should trap nothing anyway.
            return Err(GuardError::Protocol(format!(
                "{}: mode=off tenant sent a notify fd; closed",
                msg.state.id
            )));
        }
        let t = Tenant::new(msg.state.id, policy, msg.pid, fd)?;
        self.register(t)
    }

    fn handle_one(&mut self, token: u64) {
        let Some(t) = self.reg.get(token) else { return };
        let fd = t.notify.as_fd();
        let n = match sc::seccomp_notif_recv(fd) {
            Ok(n) => n,
            // ENOENT: the caller died between the wakeup and our read.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::EINTR | libc::EAGAIN)
                ) =>
            {
                return
            }
            Err(e) => {
                tracing::warn!(tenant = %t.id, "guard: SECCOMP_IOCTL_NOTIF_RECV: {e}; dropping");
                self.reg.remove(token);
                return;
            }
        };
        if let Some(slot) = &self.inflight {
            // One pwrite: what a supervisor that replaces us after a kill needs to answer this
            // call, which the kernel will not deliver twice (keeper.rs).
            let at = crate::keeper::slot_offset(token);
            let _ = rustix::io::pwrite(slot, &crate::keeper::encode_inflight(token, &n), at);
        }
        self.judge_and_answer(token, n);
    }

    fn judge_and_answer(&mut self, token: u64, n: SeccompNotif) {
        let Some(t) = self.reg.get(token) else { return };
        let fd = t.notify.as_fd();
        let verdict = judge(t, &self.reg, fd, &n);
        let (resp, alert) = match verdict {
            Verdict::Gone => return,
            Verdict::Continue => (SeccompNotifResp::continue_syscall(n.id), None),
            Verdict::Fail(errno) => (SeccompNotifResp::fail(n.id, errno), None),
            Verdict::Alert(ev) => {
                let deny = ev.always || t.policy.mode == Mode::Enforce;
                let resp = if deny {
                    SeccompNotifResp::fail(n.id, ev.errno)
                } else {
                    SeccompNotifResp::continue_syscall(n.id)
                };
                let decision = if deny {
                    Decision::Deny
                } else {
                    Decision::AllowDetect
                };
                (resp, Some(alert_line(t, &n, ev, decision)))
            }
        };
        // What we read is only worth acting on if the caller is still the one blocked in the
        // call (seccomp_unotify(2): ID_VALID after reading target state, before responding).
        if !matches!(sc::seccomp_notif_id_valid(fd, n.id), Ok(true)) {
            return;
        }
        match sc::seccomp_notif_send(fd, &resp) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return, // died meanwhile
            Err(e) => tracing::warn!(tenant = %t.id, "guard: SECCOMP_IOCTL_NOTIF_SEND: {e}"),
        }
        if let Some(a) = alert {
            if let Err(e) = self.log.write(&a) {
                tracing::error!("guard: {e}");
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.owns_path && self.is_our_path() {
            let _ = std::fs::remove_file(&self.socket); // best effort: a later bind replaces it
        }
    }
}

/// Bind `socket` (mode 0600), replacing a stale socket file there.
pub fn bind_socket(socket: &Path) -> Result<UnixListener, GuardError> {
    if let Ok(m) = std::fs::symlink_metadata(socket) {
        use std::os::unix::fs::FileTypeExt;
        if m.file_type().is_socket() {
            std::fs::remove_file(socket).map_err(GuardError::io("remove stale socket", socket))?;
        }
    }
    let listener = UnixListener::bind(socket).map_err(GuardError::io("bind", socket))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(GuardError::io("chmod 0600", socket))?;
    Ok(listener)
}

fn syscall_name(nr: i64) -> &'static str {
    match nr {
        libc::SYS_setns => "setns",
        libc::SYS_unshare => "unshare",
        libc::SYS_clone => "clone",
        libc::SYS_clone3 => "clone3",
        libc::SYS_open_by_handle_at => "open_by_handle_at",
        libc::SYS_mount => "mount",
        libc::SYS_fsopen => "fsopen",
        libc::SYS_fsmount => "fsmount",
        libc::SYS_move_mount => "move_mount",
        libc::SYS_open_tree => "open_tree",
        _ => "unknown",
    }
}

fn alert_line(t: &Tenant, n: &SeccompNotif, ev: Event, decision: Decision) -> Alert {
    let (uid, _) = decide::task_status(n.pid);
    Alert {
        time: atoll_sys::time::now_rfc3339(),
        rule: ev.rule.to_string(),
        tenant: t.id.clone(),
        pid: n.pid,
        uid,
        syscall: syscall_name(n.data.nr as i64).to_string(),
        nstype: ev.nstype.map(|t| t.name().to_string()),
        ns_inode: ev.ns_inode,
        owner: ev.owner.map(|o| o.to_string()),
        decision,
        detail: ev.detail,
        suppressed: None,
    }
}

fn judge(t: &Tenant, reg: &Registry, notify: BorrowedFd<'_>, n: &SeccompNotif) -> Verdict {
    if n.data.arch != NATIVE_ARCH {
        // A compat-ABI call: its numbers mean other syscalls. Never judged, never continued.
        let mut ev = Event::new("atoll.guard.foreign-arch", libc::ENOSYS);
        ev.detail = Some(format!("arch {:#x} nr {}", n.data.arch, n.data.nr));
        ev.always = true;
        return Verdict::Alert(ev);
    }
    let flags = n.data.args[0];
    match n.data.nr as i64 {
        libc::SYS_setns => judge_setns(t, reg, notify, n),
        libc::SYS_unshare | libc::SYS_clone
            if flags & libc::CLONE_NEWUSER as u64 != 0 && !t.policy.allow_userns =>
        {
            let mut ev = Event::new("atoll.userns.create", libc::EPERM);
            ev.nstype = Some(NsType::User);
            ev.detail = Some(format!("flags {flags:#x}"));
            Verdict::Alert(ev)
        }
        libc::SYS_unshare | libc::SYS_clone => Verdict::Continue,
        libc::SYS_open_by_handle_at => {
            Verdict::Alert(Event::new("atoll.open-by-handle-at", libc::EPERM))
        }
        libc::SYS_mount
        | libc::SYS_fsopen
        | libc::SYS_fsmount
        | libc::SYS_move_mount
        | libc::SYS_open_tree => {
            if t.policy.trap_mounts {
                Verdict::Alert(Event::new("atoll.mount.denied", libc::EPERM))
            } else {
                Verdict::Continue
            }
        }
        nr => {
            let mut ev = Event::new("atoll.guard.unexpected-syscall", libc::ENOSYS);
            ev.detail = Some(format!("nr {nr}"));
            ev.always = true;
            Verdict::Alert(ev)
        }
    }
}

/// setns(fd, nstype): look at the very file the caller's fd number names now.
fn judge_setns(t: &Tenant, reg: &Registry, notify: BorrowedFd<'_>, n: &SeccompNotif) -> Verdict {
    let target_fd = n.data.args[0] as i32; // setns(int fd, int nstype): the kernel truncates
    let nstype = n.data.args[1] as u32 as i32;
    let tid = n.pid as i32;
    if tid == 0 {
        let mut ev = Event::new("atoll.setns.unverifiable", libc::EPERM);
        ev.detail = Some("caller is outside the guard's pid namespace".into());
        return Verdict::Alert(ev);
    }
    // A pidfd for the calling thread (its fd table may differ from the leader's).
    let Some(pid) = rustix::process::Pid::from_raw(tid) else {
        return Verdict::Gone;
    };
    let thread = PidfdFlags::from_bits_retain(nsfs::PIDFD_THREAD);
    let pidfd = match pidfd_open(pid, thread).or_else(|_| pidfd_open(pid, PidfdFlags::empty())) {
        Ok(p) => p,
        Err(_) => return Verdict::Gone,
    };
    // The pidfd is for the task blocked in this call only if the id is still valid now: the
    // tid cannot have been reused while that task is alive.
    if !matches!(sc::seccomp_notif_id_valid(notify, n.id), Ok(true)) {
        return Verdict::Gone;
    }
    let file = match pidfd_getfd(&pidfd, target_fd, PidfdGetfdFlags::empty()) {
        Ok(f) => f,
        Err(rustix::io::Errno::BADF) => return Verdict::Fail(libc::EBADF),
        Err(e) => {
            let mut ev = Event::new("atoll.setns.unverifiable", libc::EPERM);
            ev.detail = Some(format!("pidfd_getfd({target_fd}): {e}"));
            return Verdict::Alert(ev);
        }
    };
    let verdict = match rustix::fs::fstatfs(&file) {
        Ok(s) if s.f_type as u64 == nsfs::NSFS_MAGIC => judge_nsfs(t, reg, file.as_fd(), nstype),
        _ => match decide::pidfd_pid(file.as_fd()) {
            Some(pid) => judge_pidfd(t, reg, file.as_fd(), pid, nstype),
            None => return Verdict::Fail(libc::EINVAL), // what setns says for any other file
        },
    };
    if matches!(verdict, Verdict::Continue) && t.policy.mode == Mode::Enforce {
        // The race we cannot close: between our pidfd_getfd and the kernel's fdget, another
        // task sharing this fd table could dup2 a foreign namespace onto the same number. Our
        // filter already refuses the ways to get a second fd-table user besides threads
        // (clone3, clone CLONE_FILES without CLONE_THREAD, io_uring); threads we refuse here.
        let threads = decide::thread_count(n.pid);
        if threads != 1 {
            let mut ev = Event::new("atoll.setns.shared-fd-table", libc::EPERM);
            ev.detail = Some(format!(
                "caller has {threads} threads: the fd could be re-pointed between check and call"
            ));
            return Verdict::Alert(ev);
        }
    }
    verdict
}

fn foreign(f: &NsFacts, owner: Owner, detail: Option<String>) -> Verdict {
    let mut ev = Event::new("atoll.setns.foreign-namespace", libc::EPERM);
    ev.nstype = Some(f.ty);
    ev.ns_inode = Some(f.id.ino);
    ev.owner = Some(owner);
    ev.detail = detail;
    Verdict::Alert(ev)
}

fn judge_nsfs(t: &Tenant, reg: &Registry, ns: BorrowedFd<'_>, nstype: i32) -> Verdict {
    // The common case, a tenant joining one of its own namespaces, needs two calls (fstat,
    // NS_GET_NSTYPE), not the walk up the user namespaces that naming a foreign one takes.
    if let (Ok(id), Ok(flag)) = (crate::ns::NsId::of_fd(ns), nsfs::ns_get_nstype(ns)) {
        if let Some(own) = t.ns.find(id) {
            if nstype != 0 && nstype != flag {
                return Verdict::Fail(libc::EINVAL);
            }
            if own.clone_flag() == flag {
                return Verdict::Continue;
            }
        }
    }
    let f = match ns_facts(ns) {
        Ok(f) => f,
        Err(e) => {
            let mut ev = Event::new("atoll.setns.unverifiable", libc::EPERM);
            ev.detail = Some(format!("nsfs ioctl: {e}"));
            return Verdict::Alert(ev);
        }
    };
    if nstype != 0 && nstype != f.ty.clone_flag() {
        return Verdict::Fail(libc::EINVAL); // the kernel's answer to a type mismatch
    }
    match judge_ns(t, reg, &f) {
        Ok(()) => Verdict::Continue,
        Err(owner) => foreign(&f, owner, None),
    }
}

/// setns(pidfd, flags) joins several namespaces of another process at once: judge each one
/// through /proc/<pid>/ns, then make sure the pid still names that process.
fn judge_pidfd(t: &Tenant, reg: &Registry, pidfd: BorrowedFd<'_>, pid: i32, flags: i32) -> Verdict {
    if pid <= 0 {
        return Verdict::Fail(libc::ESRCH); // exited (-1) or invisible to us (0)
    }
    let types = NsType::in_flags(flags as u32 as u64);
    let known: i32 = NsType::ALL
        .iter()
        .map(|t| t.clone_flag())
        .fold(0, |a, b| a | b);
    if types.is_empty() || flags & !known != 0 {
        return Verdict::Fail(libc::EINVAL);
    }
    let mut first_foreign = None;
    for ty in types {
        let p = Path::new("/proc")
            .join(pid.to_string())
            .join("ns")
            .join(ty.name());
        let facts = std::fs::File::open(&p).and_then(|f| ns_facts(f.as_fd()));
        match facts {
            Ok(f) => {
                if let Err(owner) = judge_ns(t, reg, &f) {
                    first_foreign.get_or_insert((f, owner));
                }
            }
            Err(_) => return Verdict::Fail(libc::ESRCH),
        }
    }
    // The pid was the pidfd's process all along only if that process is still there now.
    if decide::pidfd_pid(pidfd) != Some(pid) {
        return Verdict::Fail(libc::ESRCH);
    }
    match first_foreign {
        None => Verdict::Continue,
        Some((f, owner)) => foreign(&f, owner, Some(format!("via pidfd of pid {pid}"))),
    }
}

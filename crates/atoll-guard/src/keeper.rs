//! The fd keeper: a small parent process that holds the listening socket and a copy of every
//! tenant's notify fd, so that a supervisor that dies (kill -9, a crash) leaves no tenant with
//! ENOSYS: the keeper starts a new one and hands it the listener and every tenant back.
//!
//! keeper ──spawn──▶ worker (stdin: the listener, stdout: our SOCK_SEQPACKET channel)
//! keeper ◀─ Keep{record}+fd / Drop{token} ── worker   (as tenants come and go)
//! keeper ── Slot+memfd, Keep{record}+fd … End ──▶ worker (first thing, each start)
//! worker: pwrite(memfd, the notification it just received) at its tenant's record before
//! judging it, so that a successor answers a call the dead one had taken (the kernel delivers
//! each only once).
//! worker exits 0 (idle): the keeper exits too.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};

use atoll_sys::seccomp::{SeccompData, SeccompNotif};

use crate::fdstore::{FdStore, Restored};
use crate::GuardError;

/// The largest channel message (a record is a container id, a policy string and 8 inode pairs).
const MAX_MESSAGE: usize = 8 * 1024;
/// Restarts closer together than this are slowed down to it: a worker that cannot start must
/// not spin.
const RESTART_GAP: Duration = Duration::from_millis(200);

pub use crate::record::TenantRecord;

/// One channel message.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Message {
    /// A tenant (its notify fd rides along in SCM_RIGHTS).
    Keep(TenantRecord),
    /// The tenant is gone: close the copy.
    Drop(u64),
    /// The in-flight slot (a memfd; sent first).
    Slot,
    /// The keeper has handed back every tenant.
    End,
}

/// The in-flight slot's record: token, then `struct seccomp_notif` field by field (native
/// endianness: the keeper and the worker are the same binary on the same machine).
pub const INFLIGHT_LEN: usize = 8 + 8 + 4 + 4 + 4 + 4 + 8 + 6 * 8;

/// Tenants share the slot file by token, modulo this many records (~360 KiB): two live tenants
/// on one record overwrite each other's note, and the token in it tells whose it is.
const SLOTS: u64 = 4096;

pub fn slot_offset(token: u64) -> u64 {
    (token % SLOTS) * INFLIGHT_LEN as u64
}

pub fn encode_inflight(token: u64, n: &SeccompNotif) -> [u8; INFLIGHT_LEN] {
    let mut b = [0u8; INFLIGHT_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        b[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&token.to_ne_bytes());
    put(&n.id.to_ne_bytes());
    put(&n.pid.to_ne_bytes());
    put(&n.flags.to_ne_bytes());
    put(&n.data.nr.to_ne_bytes());
    put(&n.data.arch.to_ne_bytes());
    put(&n.data.instruction_pointer.to_ne_bytes());
    for a in n.data.args {
        put(&a.to_ne_bytes());
    }
    b
}

pub fn decode_inflight(b: &[u8; INFLIGHT_LEN]) -> Option<(u64, SeccompNotif)> {
    let u64_at = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let token = u64_at(0);
    if token == 0 {
        return None; // never written
    }
    let mut args = [0u64; 6];
    for (i, a) in args.iter_mut().enumerate() {
        *a = u64_at(40 + 8 * i);
    }
    Some((
        token,
        SeccompNotif {
            id: u64_at(8),
            pid: u32_at(16),
            flags: u32_at(20),
            data: SeccompData {
                nr: u32_at(24) as i32,
                arch: u32_at(28),
                instruction_pointer: u64_at(32),
                args,
            },
        },
    ))
}

pub fn send(
    chan: BorrowedFd<'_>,
    msg: &Message,
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).expect("a channel message serializes");
    atoll_sys::socket::send_with_fd(chan, &body, fd).map(drop)
}

/// Receive one message; None at EOF (the peer is gone).
pub fn recv(chan: BorrowedFd<'_>) -> std::io::Result<Option<(Message, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let (n, fd) = atoll_sys::socket::recv_with_fd(chan, &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..n])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some((msg, fd)))
}

/// Run the keeper: spawn `worker()` (a command for `atoll guard worker`) with `listener` as its
/// stdin and a channel as its stdout, keep what it sends, start another when it dies by a
/// signal or an error, and return when it exits 0 (it left for idleness).
/// `store`: systemd's fd store, with what it handed back at our start (see crate::fdstore).
pub fn run(
    listener: UnixListener,
    worker: impl Fn() -> Command,
    store: Option<(FdStore, Restored)>,
) -> Result<(), GuardError> {
    let (store, restored) = match store {
        Some((s, r)) => (Some(s), r),
        None => (None, Restored::default()),
    };
    let mut tenants = restored.tenants;
    let mut last_start = None::<Instant>;
    let slot = match restored.slot {
        Some(slot) => slot,
        None => {
            let slot = crate::fdstore::memfd("atoll-guard-inflight")?;
            if let Some(store) = &store {
                store.keep_slot(&slot)?;
            }
            slot
        }
    };
    if store.is_some() {
        tracing::info!(
            tenants = tenants.len(),
            "keeper: systemd's fd store holds a copy of every tenant's notify fd"
        );
    }
    loop {
        if let Some(t) = last_start {
            let since = t.elapsed();
            if since < RESTART_GAP {
                std::thread::sleep(RESTART_GAP - since);
            }
        }
        last_start = Some(Instant::now());
        let (ours, theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| GuardError::sys("socketpair(SEQPACKET)")(e.into()))?;
        let stdin: OwnedFd = listener
            .as_fd()
            .try_clone_to_owned()
            .map_err(GuardError::sys("dup the listener"))?;
        let mut child = worker()
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(theirs))
            .spawn()
            .map_err(GuardError::sys("spawn the guard worker"))?;
        tracing::info!(
            worker = child.id(),
            tenants = tenants.len(),
            "keeper: worker started"
        );
        // The slot, every tenant, then End: the worker serves nothing before it has them all.
        if let Err(e) = send(ours.as_fd(), &Message::Slot, Some(slot.as_fd())) {
            tracing::warn!("keeper: hand over the in-flight slot: {e}");
        }
        for (rec, fd) in tenants.values() {
            if let Err(e) = send(ours.as_fd(), &Message::Keep(rec.clone()), Some(fd.as_fd())) {
                tracing::warn!("keeper: hand back {}: {e}", rec.id);
            }
        }
        let _ = send(ours.as_fd(), &Message::End, None); // a dead worker shows at wait below
        serve(ours.as_fd(), &mut tenants, store.as_ref());
        let status = child
            .wait()
            .map_err(GuardError::sys("wait for the guard worker"))?;
        if status.success() {
            tracing::info!("keeper: worker left (idle); leaving");
            return Ok(());
        }
        tracing::warn!(%status, tenants = tenants.len(), "keeper: worker died; starting another");
    }
}

/// Keep what the worker sends until the channel closes (the worker exited).
fn serve(
    chan: BorrowedFd<'_>,
    tenants: &mut HashMap<u64, (TenantRecord, OwnedFd)>,
    store: Option<&FdStore>,
) {
    loop {
        let mut fds = [PollFd::new(&chan, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::warn!("keeper: poll: {e}");
                return;
            }
        }
        match recv(chan) {
            Ok(Some((Message::Keep(rec), Some(fd)))) => {
                let token = rec.token;
                tenants.insert(token, (rec, fd));
                if let Some(Err(e)) = store.map(|s| s.keep(tenants, token)) {
                    tracing::warn!("keeper: fd store: keep tenant {token}: {e}");
                }
            }
            Ok(Some((Message::Drop(token), _))) => {
                if tenants.remove(&token).is_some() {
                    if let Some(Err(e)) = store.map(|s| s.drop_tenant(tenants, token)) {
                        tracing::warn!("keeper: fd store: drop tenant {token}: {e}");
                    }
                }
            }
            Ok(Some((other, _))) => tracing::warn!("keeper: unexpected {other:?}"),
            Ok(None) => return,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => {
                tracing::warn!("keeper: channel: {e}");
                return;
            }
        }
    }
}

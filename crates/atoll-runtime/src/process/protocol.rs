//! The parent <-> container-init conversation, over one SOCK_SEQPACKET socketpair (one message per
//! packet, fds riding along in SCM_RIGHTS). Every step is one message; the parent drives.
//!
//! ```text
//!   parent (atoll create)                          init (cloned, in the new namespaces)
//!   clone3(CLONE_NEW* but NET) ──────────────────▶ waits for Go
//!   write uid_map/gid_map, oom adj, save state
//!   Go ───────────────────────────────────────────▶ unshare(NEWNET), hostname, mounts ...
//!   make the cgroup (v1: meanwhile)
//!   JoinCgroup(tasks path) + fd, per v1 hierarchy ▶ (read when init first needs its cgroup)
//!   Placed ───────────────────────────────────────▶ write "0" to each tasks fd: joined;
//!                                                   cgroupns, cgroup mounts, devices ...
//!                    ◀──────────────────── Hooks    (only if createRuntime/prestart hooks exist)
//!   run them in the host namespaces
//!   State(json) ────────────────────────────────────▶ createContainer hooks, pivot_root, masks,
//!                    ◀──────────────────── Fd(Console) + pty master (if terminal)
//!                    ◀──────────────────── Fd(Seccomp) + notify fd (if SCMP_ACT_NOTIFY)
//!                    ◀──────────────────── Ready    (or Error(msg) at any point, then exit)
//!   save state, exit                                blocks reading exec.fifo until `start`
//! ```
//! The two-stage path (joining existing namespaces) adds `Stage2(pid)` before Go.
//! If the parent dies, init reads EOF (and has PDEATHSIG) and exits: nothing half-made survives.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::error::{sys, Result, RuntimeError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Msg {
    Go,
    /// With an fd: the `tasks` file (named, for errors) of one v1 hierarchy of init's cgroup,
    /// opened by the parent; init joins it itself (atoll_cgroups::join_self).
    JoinCgroup(String),
    /// Init is in its cgroup in every hierarchy, or will be once it joined those sent before.
    Placed,
    /// Two-stage path: the pid (in the parent's pid namespace) of the real init.
    Stage2(i32),
    /// exec, before Stage2: the process was cloned straight into the container's cgroup2
    /// cgroup (CLONE_INTO_CGROUP), so the parent need not move it there.
    BornInCgroup,
    /// Two-stage path: a new user namespace exists in this pid; write its id maps.
    NeedMaps(i32),
    MapsDone,
    /// Init reached the hook point (before pivot_root); the parent runs prestart and
    /// createRuntime hooks and answers with `State` (the JSON the container hooks get).
    Hooks,
    State(String),
    Fd(FdKind),
    /// Init (in a user namespace) needs the idmapped bind mount for config mount N: the parent
    /// makes it and answers `Fd(Mount)`. Sent after Placed, one per such mount, before the init
    /// applies the first mount that needs the cgroup or the parent (rootfs::MountPlan).
    NeedMount(usize),
    Ready,
    Error(String),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub enum FdKind {
    Console,
    Seccomp,
    Mount,
}

pub fn send(sock: BorrowedFd<'_>, msg: &Msg, fd: Option<BorrowedFd<'_>>) -> Result<()> {
    let buf = serde_json::to_vec(msg).expect("protocol messages always serialize");
    match atoll_sys::socket::send_with_fd(sock, &buf, fd) {
        Ok(_) => Ok(()),
        // The other side is gone; if it said why before it went, that is the error to report
        // (EOF comes at once on a closed SEQPACKET socket, so this never blocks).
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => match recv(sock) {
            Ok(Some((Msg::Error(why), _))) => Err(RuntimeError::Init(why)),
            _ => Err(sys("sendmsg on the init sync socket")(e)),
        },
        Err(e) => Err(sys("sendmsg on the init sync socket")(e)),
    }
}

/// Receive one message; `Ok(None)` when the other side closed (died or exec'd).
pub fn recv(sock: BorrowedFd<'_>) -> Result<Option<(Msg, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; 64 * 1024];
    let (len, fd) = atoll_sys::socket::recv_with_fd(sock, &mut buf)
        .map_err(sys("recvmsg on the init sync socket"))?;
    if len == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..len])
        .map_err(|e| RuntimeError::Other(format!("bad message on the init sync socket: {e}")))?;
    Ok(Some((msg, fd)))
}

/// Join the v1 hierarchies the parent sends (`JoinCgroup` + a `tasks` fd each, written "0" by
/// us: atoll_cgroups::join_self) until `until` arrives; anything else is an error.
pub fn join_cgroups_until(sock: BorrowedFd<'_>, until: &Msg) -> Result<()> {
    loop {
        match recv(sock)? {
            Some((Msg::JoinCgroup(path), Some(tasks))) => {
                atoll_cgroups::join_self(std::path::Path::new(&path), tasks.as_fd())?;
            }
            Some((ref m, _)) if m == until => return Ok(()),
            Some((Msg::Error(e), _)) => return Err(RuntimeError::Init(e)),
            other => {
                return Err(RuntimeError::Other(format!(
                    "init sync: expected JoinCgroup or {until:?}, got {other:?}"
                )))
            }
        }
    }
}

/// Expect a specific message; anything else (or EOF) is an error naming what came instead.
pub fn expect(sock: BorrowedFd<'_>, want: &Msg) -> Result<()> {
    match recv(sock)? {
        Some((ref m, _)) if m == want => Ok(()),
        Some((Msg::Error(e), _)) => Err(RuntimeError::Init(e)),
        Some((m, _)) => Err(RuntimeError::Other(format!(
            "init sync: expected {want:?}, got {m:?}"
        ))),
        None => Err(RuntimeError::Other(format!(
            "init sync: expected {want:?}, the other side exited"
        ))),
    }
}

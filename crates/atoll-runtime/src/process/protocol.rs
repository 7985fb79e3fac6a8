//! The parent <-> child conversation of `create` (parent: atoll, child: the container's init) and
//! of `exec` (child: the new process), over one SOCK_SEQPACKET socketpair: one message per packet,
//! fds riding along in SCM_RIGHTS. The order is written down as data in [`CREATE`] and [`EXEC`];
//! a unit test keeps the diagrams below in that order.
//!
//! ```text
//! create                                           parent ▶ init
//!   parent (atoll create)                          init (cloned into CLONE_NEW* but net, cgroup)
//!   two-stage path only (namespaces to join, or a time namespace):
//!                    ◀──────────────────── NeedMaps(pid)  (the first child unshared a user ns)
//!   write its uid_map/gid_map
//!   MapsDone ─────────────────────────────────────▶ forks the real init
//!                    ◀──────────────────── Stage2(pid)    (the real init's pid)
//!   write uid_map/gid_map (direct path), oom adj, save state
//!   Go ───────────────────────────────────────────▶ unshare(NEWNET), hostname, root, mounts ...
//!   make the cgroup, move init by pid unless it was born there (CLONE_INTO_CGROUP)
//!   JoinCgroup(tasks path) + fd, per v1 hierarchy ▶ (read when init first needs its cgroup:
//!   Placed ───────────────────────────────────────▶  a cgroup mount, NeedMount, or after mounts;
//!                                                     writes "0" to each tasks fd, then
//!                                                     unshare(NEWCGROUP))
//!                    ◀──────────────────── NeedMount(i)   (user ns: per idmapped bind mount,
//!                                                     or bind source init was refused: EACCES)
//!   make the idmapped mount, or open the source O_PATH in init's mount namespace
//!   Fd(Mount) + fd ───────────────────────────────▶ attach it / open_tree it and attach
//!                    ◀──────────────────── Fd(Console) + pty master (process.terminal)
//!                    ◀──────────────────── Hooks    (prestart/createRuntime/... hooks exist)
//!   run prestart, createRuntime hooks
//!   State(json) ──────────────────────────────────▶ createContainer hooks, sysctl, masks,
//!                                                    pivot_root, rlimits, caps, user ...
//!                    ◀──────────────────── Fd(Seccomp) + notify fd (SCMP_ACT_NOTIFY)
//!                    ◀──────────────────── Ready    (Error(msg) instead, at any point, then exit)
//!   save state, exit                                blocks reading exec.fifo until `start`
//!
//! exec                                             parent ▶ process
//!   parent (atoll exec)                            first child: setns(pidfd of init), clone
//!                    ◀──────────────────── BornInCgroup   (CLONE_INTO_CGROUP took effect)
//!                    ◀──────────────────── Stage2(pid)    (the process's pid; first child exits)
//!   move it by pid unless born there
//!   JoinCgroup(tasks path) + fd, per v1 hierarchy ▶ joins each
//!   Go ───────────────────────────────────────────▶ pty, rlimits, caps, user ...
//!                    ◀──────────────────── Fd(Console) + pty master (process.terminal)
//!                    ◀──────────────────── Fd(Seccomp) + notify fd (SCMP_ACT_NOTIFY)
//!                    ◀──────────────────── Ready
//!   EOF (the socket is CLOEXEC): execve succeeded    execve    (or Error(msg), then exit)
//! ```
//! If the parent dies, the child reads EOF (and has PDEATHSIG) and exits: nothing half-made
//! survives. If the child dies, the parent first reads what it left in the socket (its Error),
//! then asks the kernel how it died (spawn::explain_death).

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

/// Who sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Parent,
    Child,
}

/// One step of the conversation: who sends which message, and when it happens at all.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub from: Side,
    /// The message, as the diagram names it.
    pub msg: &'static str,
    pub when: &'static str,
}

const fn step(from: Side, msg: &'static str, when: &'static str) -> Step {
    Step { from, msg, when }
}

/// `create`, in order. `Error(msg)` from the child may replace any child step, and ends it.
pub const CREATE: &[Step] = &[
    step(
        Side::Child,
        "NeedMaps",
        "two-stage path, new user namespace",
    ),
    step(Side::Parent, "MapsDone", "answers NeedMaps"),
    step(Side::Child, "Stage2", "two-stage path"),
    step(Side::Parent, "Go", "always"),
    step(Side::Parent, "JoinCgroup", "once per v1 hierarchy"),
    step(Side::Parent, "Placed", "always"),
    step(
        Side::Child,
        "NeedMount",
        "per idmapped bind mount or unreachable bind source",
    ),
    step(Side::Parent, "Fd(Mount)", "answers NeedMount"),
    step(Side::Child, "Fd(Console)", "process.terminal"),
    step(Side::Child, "Hooks", "any hook configured"),
    step(Side::Parent, "State", "answers Hooks"),
    step(Side::Child, "Fd(Seccomp)", "SCMP_ACT_NOTIFY in the profile"),
    step(Side::Child, "Ready", "always, last"),
];

/// `exec`, in order; after Ready the parent reads EOF once the process has exec'd.
pub const EXEC: &[Step] = &[
    step(Side::Child, "BornInCgroup", "CLONE_INTO_CGROUP took effect"),
    step(Side::Child, "Stage2", "always"),
    step(Side::Parent, "JoinCgroup", "once per v1 hierarchy"),
    step(Side::Parent, "Go", "always"),
    step(Side::Child, "Fd(Console)", "process.terminal"),
    step(Side::Child, "Fd(Seccomp)", "SCMP_ACT_NOTIFY in the profile"),
    step(Side::Child, "Ready", "always, last"),
];

/// The longest error text sent: a SEQPACKET message must fit the socket's send buffer (else
/// EMSGSIZE) and the reader's buffer (else it is cut), and an error that embeds its input (a 10 MB
/// hostname) must still arrive.
const MAX_ERROR: usize = 16 * 1024;
const RECV_BUF: usize = 64 * 1024;

pub fn send(sock: BorrowedFd<'_>, msg: &Msg, fd: Option<BorrowedFd<'_>>) -> Result<()> {
    let buf = match msg {
        Msg::Error(text) if text.len() > MAX_ERROR => {
            let mut cut = MAX_ERROR;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let short = format!("{} ... ({} bytes cut)", &text[..cut], text.len() - cut);
            serde_json::to_vec(&Msg::Error(short))
        }
        _ => serde_json::to_vec(msg),
    }
    .expect("protocol messages always serialize");
    match atoll_sys::socket::send_with_fd(sock, &buf, fd) {
        Ok(_) => Ok(()),
        // The other side is gone; if it said why before it went, that is the error to report
        // (a closed SEQPACKET peer gives its queued messages, then EOF: this never blocks).
        Err(e) if is_peer_gone(&e) => match recv(sock) {
            Ok(Some((Msg::Error(why), _))) => Err(RuntimeError::Init(why)),
            _ => Err(RuntimeError::PeerGone {
                awaiting: format!("{} to be read", name(msg)),
            }),
        },
        Err(e) => Err(sys("sendmsg on the init sync socket")(e)),
    }
}

fn is_peer_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN)
    )
}

/// Receive one message; `Ok(None)` when the other side closed (died or exec'd).
///
/// A peer that exits while messages we sent sit unread in its queue makes the kernel flag our
/// socket ECONNRESET (net/unix/af_unix.c, unix_release_sock), and recvmsg reports that flag before
/// the messages the peer left for us (net/core/datagram.c checks sock_error first). The flag is
/// cleared by reporting it: read on, so that the peer's last word (its Error) is never lost.
pub fn recv(sock: BorrowedFd<'_>) -> Result<Option<(Msg, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; RECV_BUF];
    let (len, fd) = match atoll_sys::socket::recv_with_fd(sock, &mut buf) {
        Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => {
            atoll_sys::socket::recv_with_fd(sock, &mut buf)
        }
        other => other,
    }
    .map_err(sys("recvmsg on the init sync socket"))?;
    if len == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..len]).map_err(|e| RuntimeError::Protocol {
        expected: "a message".into(),
        got: format!("{len} bytes that do not parse ({e})"),
    })?;
    Ok(Some((msg, fd)))
}

/// A message's name as the diagram and the tables give it.
pub fn name(msg: &Msg) -> String {
    match msg {
        Msg::Fd(kind) => format!("Fd({kind:?})"),
        Msg::Error(_) => "Error".into(),
        other => {
            let dbg = format!("{other:?}");
            dbg.split('(').next().unwrap_or_default().to_string()
        }
    }
}

/// What came instead of `expected`: the peer's Error as such, EOF as PeerGone, anything else as
/// a protocol error.
pub fn unexpected(expected: &str, got: Option<(Msg, Option<OwnedFd>)>) -> RuntimeError {
    match got {
        Some((Msg::Error(e), _)) => RuntimeError::Init(e),
        Some((m, _)) => RuntimeError::Protocol {
            expected: expected.into(),
            got: name(&m),
        },
        None => RuntimeError::PeerGone {
            awaiting: expected.into(),
        },
    }
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
            other => {
                return Err(unexpected(
                    &format!("JoinCgroup + fd or {}", name(until)),
                    other,
                ))
            }
        }
    }
}

/// Expect a specific message; anything else (or EOF) is an error naming what came instead.
pub fn expect(sock: BorrowedFd<'_>, want: &Msg) -> Result<()> {
    match recv(sock)? {
        Some((ref m, _)) if m == want => Ok(()),
        other => Err(unexpected(&name(want), other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap()
    }

    /// The child reports an error and exits while a message of ours sits unread in its queue:
    /// the kernel flags our end ECONNRESET, and the error must still be read.
    #[test]
    fn error_left_by_a_peer_that_reset_the_socket_is_read() {
        let (parent, child) = pair();
        send(parent.as_fd(), &Msg::Placed, None).unwrap();
        send(
            child.as_fd(),
            &Msg::Error("mounts[7].source: ENOENT".into()),
            None,
        )
        .unwrap();
        drop(child);
        match recv(parent.as_fd()).unwrap() {
            Some((Msg::Error(e), _)) => assert!(e.contains("mounts[7].source")),
            other => panic!("{other:?}"),
        }
        assert!(recv(parent.as_fd()).unwrap().is_none(), "then EOF");
    }

    /// Sending to a peer that is gone returns what it left, not EPIPE.
    #[test]
    fn send_to_a_gone_peer_returns_its_error() {
        let (parent, child) = pair();
        send(parent.as_fd(), &Msg::Go, None).unwrap();
        send(
            child.as_fd(),
            &Msg::Error("hostname: too long".into()),
            None,
        )
        .unwrap();
        drop(child);
        match send(parent.as_fd(), &Msg::Placed, None) {
            Err(RuntimeError::Init(e)) => assert_eq!(e, "hostname: too long"),
            other => panic!("{other:?}"),
        }
        let (parent, child) = pair();
        drop(child);
        assert!(matches!(
            send(parent.as_fd(), &Msg::Go, None),
            Err(RuntimeError::PeerGone { .. })
        ));
    }

    /// An error far larger than a packet may be still arrives, cut.
    #[test]
    fn huge_error_arrives_cut() {
        let (parent, child) = pair();
        let big = format!("sethostname {:?}", "h".repeat(10 << 20));
        send(child.as_fd(), &Msg::Error(big), None).unwrap();
        match recv(parent.as_fd()).unwrap() {
            Some((Msg::Error(e), _)) => {
                assert!(e.len() < RECV_BUF);
                assert!(e.starts_with("sethostname \"hhh"), "{}", &e[..40]);
                assert!(e.ends_with("bytes cut)"));
            }
            other => panic!("{other:?}"),
        }
    }

    /// The diagram at the top of this file lists the messages of CREATE and EXEC in their order.
    #[test]
    fn diagram_follows_the_tables() {
        let src = include_str!("protocol.rs");
        let diagram: String = src
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        let (create, exec) = diagram.split_once("//! exec ").expect("two diagrams");
        for (text, table) in [(create, CREATE), (exec, EXEC)] {
            let mut at = 0;
            for s in table {
                let arrow = match s.from {
                    Side::Parent => format!("//!   {}", s.msg),
                    Side::Child => format!("◀──────────────────── {}", s.msg),
                };
                let found = text[at..].find(&arrow).map(|i| i + at);
                at = found
                    .unwrap_or_else(|| panic!("{} ({:?}) missing or out of order", s.msg, s.from));
            }
        }
    }

    /// Every message the code can send has its place in a table.
    #[test]
    fn every_message_is_in_a_table() {
        let all = [
            Msg::Go,
            Msg::JoinCgroup(String::new()),
            Msg::Placed,
            Msg::Stage2(1),
            Msg::BornInCgroup,
            Msg::NeedMaps(1),
            Msg::MapsDone,
            Msg::Hooks,
            Msg::State(String::new()),
            Msg::Fd(FdKind::Console),
            Msg::Fd(FdKind::Seccomp),
            Msg::Fd(FdKind::Mount),
            Msg::NeedMount(0),
            Msg::Ready,
        ];
        for m in all {
            let n = name(&m);
            assert!(
                CREATE.iter().chain(EXEC).any(|s| s.msg == n),
                "{n} is in no table"
            );
        }
    }
}

//! The first child of the two-stage paths: `create` when namespaces must be joined or a time
//! namespace made, and every `exec`. It enters the namespaces, forks the real process into them
//! (a new pid or time namespace applies to children only: setns(2), unshare(2)), reports the pid
//! (protocol: `BornInCgroup`, `Stage2`), and exits. Code here runs between clone and execve:
//! no threads, few allocations.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use atoll_sys::process::{CloseFds, SingleThreaded};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::thread::{
    move_into_link_name_space, move_into_thread_name_spaces, LinkNameSpaceType,
    ThreadNameSpaceType, UnshareFlags,
};

use super::protocol::{self, Msg};
use crate::error::{errno, field, nix_errno, sys, Result};
use crate::spec::{self, Namespaces};

/// Where the real process goes and what it keeps.
pub struct Fork<'a> {
    /// The socket to the parent (kept open in the real process).
    pub sock: BorrowedFd<'a>,
    /// A cgroup2 directory to clone it into (CLONE_INTO_CGROUP), where the kernel lets us.
    pub cgroup: Option<BorrowedFd<'a>>,
    /// The fds the real process closes before it runs.
    pub close: CloseFds<'a>,
}

/// Stage 1: `enter` the namespaces, fork `child` into them, report its pid; returns this
/// process's exit status (0 once the pid is reported, 1 after reporting an error).
pub fn run(
    proof: &SingleThreaded,
    fork: &Fork<'_>,
    enter: impl FnOnce() -> Result<()>,
    child: &dyn Fn(io::Result<()>, SingleThreaded) -> i32,
) -> i32 {
    let sock = fork.sock;
    let res = (|| -> Result<i32> {
        // The parent's death must not leave a half-made process behind.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(nix_errno("prctl(PR_SET_PDEATHSIG)"))?;
        enter()?;
        let spawn = |cgroup| {
            atoll_sys::process::spawn(proof, 0, cgroup, Some(fork.close), |closed, p| {
                child(closed, p)
            })
        };
        // Straight into the cgroup2 cgroup if the kernel lets us (it may not: a user namespace
        // joined above can lack write access to it, or a v2 cgroup with children refuses
        // processes); otherwise the parent moves it.
        let spawned = match fork.cgroup.map(|fd| spawn(Some(fd))) {
            Some(Ok(s)) => s,
            _ => spawn(None).map_err(sys("clone3/clone (stage 2)"))?,
        };
        if spawned.in_cgroup {
            protocol::send(sock, &Msg::BornInCgroup, None)?;
        }
        Ok(spawned.pid)
    })();
    match res {
        Ok(pid) => match protocol::send(sock, &Msg::Stage2(pid), None) {
            Ok(()) => 0,
            Err(_) => 1,
        },
        Err(e) => {
            let _ = protocol::send(sock, &Msg::Error(crate::error::report(&e)), None);
            1
        }
    }
}

/// `create`'s namespaces: join those given by path, unshare the new ones but the cgroup
/// namespace (init makes it once it is in its cgroup), have the parent map a new user namespace
/// (NeedMaps), set the time offsets (they can be written only before a process enters the new
/// time namespace: time_namespaces(7)).
pub fn enter_for_create(sock: BorrowedFd<'_>, ns: &Namespaces, spec: &Spec) -> Result<()> {
    for (t, path) in &ns.join {
        let f = std::fs::File::open(path).map_err(sys(format!(
            "open {} (linux.namespaces {})",
            path.display(),
            spec::ns_name(*t)
        )))?;
        move_into_link_name_space(f.as_fd(), Some(link_ns_type(*t))).map_err(errno(format!(
            "setns {} ({})",
            path.display(),
            spec::ns_name(*t)
        )))?;
    }
    let flags = ns.new & !spec::ns_flag(LinuxNamespaceType::Cgroup);
    if flags != 0 {
        atoll_sys::namespace::unshare(UnshareFlags::from_bits_retain(flags as u32))
            .map_err(sys(format!("unshare(flags {flags:#x})")))?;
    }
    if ns.creates(LinuxNamespaceType::User) {
        protocol::send(sock, &Msg::NeedMaps(std::process::id() as i32), None)?;
        protocol::expect(sock, &Msg::MapsDone)?;
    }
    if ns.creates(LinuxNamespaceType::Time) {
        write_time_offsets(spec)?;
    }
    Ok(())
}

/// `exec`: every namespace of the container's init at once, through its pidfd (setns(2) with a
/// pidfd, Linux 5.8: atomic, and immune to pid reuse).
pub fn enter_for_exec(pidfd: BorrowedFd<'_>, ns_flags: u64) -> Result<()> {
    move_into_thread_name_spaces(
        pidfd,
        ThreadNameSpaceType::from_bits_retain(ns_flags as u32),
    )
    .map_err(errno(format!("setns(pidfd of init, {ns_flags:#x})")))
}

/// setns(2)'s nstype for a namespace joined by path: the kernel checks the fd is one.
fn link_ns_type(t: LinuxNamespaceType) -> LinkNameSpaceType {
    match t {
        LinuxNamespaceType::Mount => LinkNameSpaceType::Mount,
        LinuxNamespaceType::Cgroup => LinkNameSpaceType::ControlGroup,
        LinuxNamespaceType::Uts => LinkNameSpaceType::HostNameAndNISDomainName,
        LinuxNamespaceType::Ipc => LinkNameSpaceType::InterProcessCommunication,
        LinuxNamespaceType::User => LinkNameSpaceType::User,
        LinuxNamespaceType::Pid => LinkNameSpaceType::ProcessID,
        LinuxNamespaceType::Network => LinkNameSpaceType::Network,
        LinuxNamespaceType::Time => LinkNameSpaceType::Time,
    }
}

fn write_time_offsets(spec: &Spec) -> Result<()> {
    let Some(offs) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, o) in offs {
        let id = match clock.as_str() {
            "monotonic" => "monotonic",
            "boottime" => "boottime",
            other => {
                return Err(field(
                    format!("linux.timeOffsets[{other:?}]"),
                    "only monotonic and boottime exist",
                ))
            }
        };
        text.push_str(&format!(
            "{id} {} {}\n",
            o.secs().unwrap_or(0),
            o.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", text)
        .map_err(sys("write /proc/self/timens_offsets"))
}

//! clone3(2) and close_range(2): the two process-level syscalls that neither rustix nor nix wrap.

use std::io;
use std::os::fd::RawFd;

/// What [`clone3`] returned, like fork(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// We are the new process.
    Child,
    /// We are the caller; this is the new process's pid in our pid namespace.
    Parent(i32),
}

/// CLONE_INTO_CGROUP (Linux 5.7): start the child in the cgroup v2 directory `cgroup` refers to.
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3(2) with fork(2) semantics (no CLONE_VM, a copied stack): `flags` are CLONE_NEW* namespace flags
/// (and CLONE_INTO_CGROUP with `cgroup_fd` on cgroup v2); the child's exit signal is SIGCHLD.
///
/// The caller must be single-threaded: the child is a copy of this one thread only, so any lock another
/// thread held would stay locked forever in the child. atoll calls this from its main thread before it
/// starts any other thread (it never starts one on the create path).
pub fn clone3(flags: u64, cgroup_fd: Option<RawFd>) -> io::Result<Forked> {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: `args` lives on our stack for the whole call and its size is passed with it; without
    // CLONE_VM the kernel gives the child a copy-on-write copy of this address space (fork semantics),
    // so the child may go on running Rust code; the single-thread contract above keeps that sound.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// close_range(first, ~0, CLOSE_RANGE_CLOEXEC): mark every fd from `first` up close-on-exec, so that no
/// fd but the ones below `first` survives the container's execve (CVE-2024-21626).
pub fn close_range_cloexec(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags; no memory is passed. Marking fds CLOEXEC cannot
    // invalidate an OwnedFd we hold (they stay open until exec, when we no longer need them).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set every catchable signal back to SIG_DFL (what execve would keep as "ignored" otherwise).
pub fn reset_signal_dispositions() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours in signal context and passes no memory;
        // invalid numbers (32, 33 reserved by glibc) just fail with EINVAL, which we ignore.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// close_range(first, last, 0): close every fd in [first, last].
///
/// Closing fds that Rust code still owns would make those owners close a reused number later: the
/// caller must only pass ranges that hold no `OwnedFd` it keeps using (atoll uses it right after
/// clone, on fds inherited from the parent process that this process never took ownership of).
pub fn close_range(first: u32, last: u32) -> io::Result<()> {
    if first > last {
        return Ok(());
    }
    // SAFETY: no memory is passed; the ownership rule above is the caller's contract.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): give the calling process a new, named session
/// keyring, so the container does not share the host session's keys.
pub fn keyctl_join_session_keyring(name: &std::ffi::CStr) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: `name` is a NUL-terminated string alive for the call; the kernel only reads it.
    let ret =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

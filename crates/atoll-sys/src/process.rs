//! Making processes: clone3(2) with a clone(2) fallback, and close_range(2). Neither rustix nor nix
//! wraps clone3; a copy of a process made by a raw clone is sound only under rules the compiler
//! cannot see, so the raw calls are `unsafe fn`s and [`spawn`] is the safe way in: it needs a
//! [`SingleThreaded`] proof, runs the child's code itself and never lets it return.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// What a raw [`clone3`] or [`clone`] returned, like fork(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// We are the new process.
    Child,
    /// We are the caller; this is the new process's pid in our pid namespace.
    Parent(i32),
}

/// CLONE_INTO_CGROUP (Linux 5.7): start the child in the cgroup v2 directory `cgroup` refers to.
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The flags [`spawn`] accepts: new namespaces only. Everything else clone knows (CLONE_VM,
/// CLONE_THREAD, CLONE_SETTLS, the tid pointers ...) would make the child share memory or state
/// with us, which the fork-like use below cannot allow. CLONE_NEWTIME is left out: its bit is in
/// clone(2)'s exit-signal byte (CSIGNAL), so the fallback could not carry it; callers unshare(2)
/// a time namespace instead.
pub const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

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

/// clone3(2) with fork(2) semantics: no CLONE_VM, so the child runs on a copy-on-write copy of
/// our address space and stack; its exit signal is SIGCHLD. With `cgroup`, CLONE_INTO_CGROUP.
///
/// # Safety
///
/// - This process has exactly one thread. The child is a copy of the calling thread only: a lock
///   another thread held (malloc's arenas, stdio, any `Mutex`) would stay locked in the child
///   forever, and unlike fork(3) no atfork handler resets libc's own locks.
/// - `flags` has no bit outside [`NAMESPACE_FLAGS`]: CLONE_VM, CLONE_THREAD, CLONE_SETTLS or the
///   tid/pidfd pointer flags would make the kernel write through pointers we do not pass, or let
///   the child share our memory while it runs on a copy of our stack.
/// - In the child, every owner copied from the parent (`OwnedFd`s, `File`s, heap buffers in the
///   caller's frames) is a copy: the child must not return into or unwind through the caller's
///   frames as if it were the parent; it leaves by execve(2) or _exit(2).
pub unsafe fn clone3(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    if flags & !NAMESPACE_FLAGS != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: `args` lives on our stack for the whole call and its size is passed with it; it
    // carries no pointers (pidfd, tid and stack fields are 0) and the cgroup fd is borrowed for the
    // call. The caller upholds the single-thread and no-return rules above.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    forked(ret)
}

/// clone(2) with fork(2) semantics (SIGCHLD, no new stack, no tid pointers): what libc falls back
/// to where clone3 is answered ENOSYS (a seccomp profile, such as Docker's default one or an
/// island's, that cannot inspect clone3's flags in memory refuses it so).
///
/// # Safety
///
/// The rules of [`clone3`].
pub unsafe fn clone(flags: u64) -> io::Result<Forked> {
    if flags & !NAMESPACE_FLAGS != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: with a 0 stack the child runs on a copy of ours (fork semantics); the parent/child
    // tid pointers and tls are 0 and the flags ask for none of them, so the kernel writes no
    // memory of ours (their order differs between architectures; all are 0 here). The caller
    // upholds the single-thread and no-return rules of clone3.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD as u64) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    forked(ret)
}

fn forked(ret: libc::c_long) -> io::Result<Forked> {
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Set once clone3 was answered ENOSYS: later calls (this process's, and its children's, which
/// inherit the filter and a copy of this flag) go straight to clone.
static CLONE3_ENOSYS: AtomicBool = AtomicBool::new(false);

/// Proof that this process has exactly one thread, which is what makes a fork-like clone sound.
///
/// It is made by [`SingleThreaded::check`], or handed to a [`spawn`]ed child (a fresh copy of one
/// thread). It is neither `Send` nor `Sync`, so it stays on the thread it proves alone; the holder
/// must start no thread while it keeps the token (atoll's create and exec paths start none).
#[derive(Debug)]
pub struct SingleThreaded {
    _one_thread: PhantomData<*mut ()>,
}

impl SingleThreaded {
    /// Count this process's threads: /proc/self/task's link count is 2 plus the number of
    /// threads (fs/proc/base.c, proc_task_getattr). One stat, no allocation.
    pub fn check() -> io::Result<SingleThreaded> {
        let st = rustix::fs::stat("/proc/self/task").map_err(io::Error::from)?;
        match st.st_nlink {
            3 => Ok(SingleThreaded {
                _one_thread: PhantomData,
            }),
            n => Err(io::Error::other(format!(
                "{} threads in this process; a fork-like clone needs exactly one",
                n.saturating_sub(2)
            ))),
        }
    }
}

/// Which fds a [`spawn`]ed child closes before its code runs: every fd from `from` up except
/// those in `keep`.
#[derive(Debug, Clone, Copy)]
pub struct CloseFds<'a> {
    pub from: u32,
    pub keep: &'a [BorrowedFd<'a>],
}

/// What the parent learns from [`spawn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawned {
    /// The child's pid in our pid namespace.
    pub pid: i32,
    /// Whether the child was born in the cgroup passed (CLONE_INTO_CGROUP took effect). clone(2)
    /// has no such flag: after the ENOSYS fallback the caller must move the child itself.
    pub in_cgroup: bool,
}

/// Start a child process running `child`, fork-like, in new namespaces `flags` (only
/// [`NAMESPACE_FLAGS`]; else EINVAL) and, where the kernel lets us, in the cgroup2 directory
/// `cgroup`. clone3 first; where clone3 is answered ENOSYS, clone(2) as libc does.
///
/// In the child, before `child` runs, the fds in `close` are closed; `child` gets the outcome and
/// a fresh [`SingleThreaded`] proof for its own spawns. Its return value (127 if it panics) is the
/// child's exit status: the child leaves by _exit(2) and never returns into the caller's frames,
/// so the owners copied from them (fds, buffers) are never dropped or used there, and stdio
/// buffers copied from us are not flushed twice.
pub fn spawn(
    _proof: &SingleThreaded,
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
    close: Option<CloseFds<'_>>,
    child: impl FnOnce(io::Result<()>, SingleThreaded) -> i32,
) -> io::Result<Spawned> {
    if flags & !NAMESPACE_FLAGS != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut in_cgroup = cgroup.is_some();
    let mut res = Err(io::Error::from_raw_os_error(libc::ENOSYS));
    if !CLONE3_ENOSYS.load(Ordering::Relaxed) {
        // SAFETY: one thread (the proof); namespace flags only (checked above); the child never
        // returns from this function (it _exits below).
        res = unsafe { clone3(flags, cgroup) };
    }
    if matches!(&res, Err(e) if e.raw_os_error() == Some(libc::ENOSYS)) {
        CLONE3_ENOSYS.store(true, Ordering::Relaxed);
        in_cgroup = false;
        // SAFETY: as for clone3 above.
        res = unsafe { clone(flags) };
    }
    match res? {
        Forked::Parent(pid) => Ok(Spawned { pid, in_cgroup }),
        Forked::Child => {
            let closed = match close {
                // SAFETY: the fds in the range are either `keep` (left open), or owned by copies
                // in the caller's frames and statics that this child never returns to or drops
                // (it _exits below); `child` has not run yet, so it owns none. A static owner used
                // later (a log file) would be written after its fd is gone: the caller's `child`
                // must not use such owners.
                Some(c) => unsafe { close_range_except(c.from, c.keep) },
                None => Ok(()),
            };
            let proof = SingleThreaded {
                _one_thread: PhantomData,
            };
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(closed, proof)))
                    .unwrap_or(127);
            // SAFETY: _exit ends the process at once, running no destructor and no atexit handler
            // (the parent's stdio buffers, copied here, must not be flushed a second time).
            unsafe { libc::_exit(code) }
        }
    }
}

/// close_range(2) over [from, ~0] leaving the fds in `keep` (at most 8) open.
///
/// # Safety
///
/// The rules of [`close_range`], for every fd in the range but `keep`.
unsafe fn close_range_except(from: u32, keep: &[BorrowedFd<'_>]) -> io::Result<()> {
    // A fixed array: this runs between clone and execve, where we allocate as little as we can.
    let mut sorted = [u32::MAX; 8];
    if keep.len() > sorted.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (slot, fd) in sorted.iter_mut().zip(keep) {
        *slot = fd.as_raw_fd() as u32;
    }
    sorted.sort_unstable();
    let mut first = from;
    for k in sorted.into_iter().take(keep.len()).filter(|&k| k >= from) {
        if k > first {
            // SAFETY: [first, k - 1] holds no fd of `keep`; the caller's rules cover the rest.
            unsafe { close_range(first, k - 1) }?;
        }
        first = k + 1;
    }
    // SAFETY: as above, for [first, ~0].
    unsafe { close_range(first, u32::MAX) }
}

/// close_range(first, last, 0): close every fd in [first, last].
///
/// # Safety
///
/// No live owner (`OwnedFd`, `File`, a socket, a log writer) of an fd in [first, last] may be used
/// or dropped after this call: its number is gone, the next open(2) reuses it, and the owner would
/// then read, write or close an unrelated file. Owners that exist only as copies made by a
/// fork-like clone, in frames or statics the child never returns to or touches again, are fine.
pub unsafe fn close_range(first: u32, last: u32) -> io::Result<()> {
    if first > last {
        return Ok(());
    }
    // SAFETY: no memory is passed; fd ownership is the caller's rule above.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// close_range(first, ~0, CLOSE_RANGE_CLOEXEC): mark every fd from `first` up close-on-exec, so that
/// no fd but the ones below `first` survives the next execve (CVE-2024-21626). Safe: it closes
/// nothing now, and after execve no owner of this process exists any more.
pub fn close_range_cloexec(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on open fds; no memory is
    // passed and no fd is closed before execve, so every owner stays valid until then.
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

/// The scheduling attributes of sched_setattr(2), in the kernel's `struct sched_attr` layout up
/// to SCHED_ATTR_SIZE_VER1 (Linux 5.3, with the utilization clamps). libc has the struct only up
/// to VER0 and no wrapper; the clamps stay 0, as runc passes them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// sched_setattr(2) on the calling thread (pid 0). `attr.size` is set here.
pub fn sched_setattr(attr: &SchedAttr) -> io::Result<()> {
    let mut attr = *attr;
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a local `repr(C)` struct laid out as the kernel's sched_attr, alive for
    // the whole call, and its `size` field tells the kernel how many bytes it may read; the
    // kernel only reads it (flags 0).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0 as libc::pid_t,
            &attr as *const SchedAttr,
            0 as libc::c_uint,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel reads SCHED_ATTR_SIZE_VER1 bytes (include/uapi/linux/sched/types.h).
    #[test]
    fn sched_attr_is_the_kernels_ver1_size() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 56);
    }

    #[test]
    fn spawn_refuses_flags_beyond_namespaces() {
        // Unit tests run on several threads, so make the proof by hand only where it is true;
        // the flag check comes first either way.
        let proof = SingleThreaded {
            _one_thread: PhantomData,
        };
        let e = spawn(&proof, libc::CLONE_VM as u64, None, None, |_, _| 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn check_counts_this_process_threads() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(SingleThreaded::check().is_err(), "two threads now");
        drop(tx);
        let _ = t.join();
    }
}

/// A process that does nothing but live in a new user namespace until dropped: the holder of
/// an idmapped mount's namespace, while the caller writes its id maps through
/// `/proc/<pid>/{uid,gid}_map` and opens `/proc/<pid>/ns/user`.
///
/// It is a clone with CLONE_VM | CLONE_FILES: it shares our memory and fd table, so no page
/// table and no fd table is copied (a fork of `atoll up` costs about half a millisecond of
/// copies and copy-on-write faults afterwards; this clone a tenth of that). Its code, on its
/// own small stack, makes two raw system calls: read(2) on the holder's pipe, which returns
/// when the pipe's write end is closed (by [`Drop`]), then exit(2). It touches no memory of
/// ours but its stack and one byte on it, takes no lock, runs no signal handler (every signal
/// stays blocked in it) and never returns into Rust frames.
#[derive(Debug)]
pub struct UsernsHolder {
    pid: i32,
    release: Option<OwnedFd>,
    // Dropped after Drop::drop has reaped the holder, as the stack is: fields go after it.
    _wait_end: OwnedFd,
    _stack: Vec<u8>,
}

/// The holder's code: wait for EOF on the fd in `arg`, then leave. Raw syscalls only: errno,
/// a thread-local of the parent's thread (the TLS pointer is shared), is never written, since
/// a read that returns 0 or a byte sets none and exit does not return.
extern "C" fn hold_userns(arg: *mut libc::c_void) -> libc::c_int {
    let fd = arg as usize as libc::c_long;
    let mut byte = 0u8;
    // SAFETY: `fd` is the holder's read end, open in the shared table until the holder is
    // reaped; the buffer is one byte on this child's own stack.
    unsafe {
        libc::syscall(libc::SYS_read, fd, &mut byte as *mut u8, 1usize);
        libc::syscall(libc::SYS_exit, 0);
    }
    0
}

impl UsernsHolder {
    /// Start the holder. Needs a /proc that numbers our own pid namespace (checked: the
    /// caller's `/proc/<pid>` paths must name the holder). Unlike a fork, it needs no single
    /// thread: the child copies no lock, as posix_spawn's CLONE_VM child does not.
    pub fn start() -> io::Result<UsernsHolder> {
        let me = std::fs::read_link("/proc/self")?;
        if me.as_os_str().as_encoded_bytes() != std::process::id().to_string().as_bytes() {
            return Err(io::Error::other(
                "this /proc does not number our pid namespace: /proc/<pid> would not name the holder",
            ));
        }
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let mut stack = vec![0u8; 16 * 1024];
        // The stack grows down from its 16-byte aligned top.
        let top = (stack.as_mut_ptr() as usize + stack.len()) & !0xf;
        let flags = libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_NEWUSER | libc::SIGCHLD;
        // The child starts with every signal blocked (it inherits this thread's mask) and never
        // unblocks one: a handler of ours must not run on its stack in our memory (as
        // posix_spawn does). Our own mask is restored right after the clone.
        // SAFETY: sigset_t is plain data, all zeroes a valid (empty) set.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: both sets live on our stack; pthread_sigmask changes this thread's mask only.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // SAFETY: glibc's clone(3) runs `hold_userns` on `stack`, which outlives the child
        // (Drop reaps it before the Vec goes); the child shares our memory but writes only its
        // stack, and calls nothing that takes a lock.
        let pid = unsafe {
            libc::clone(
                hold_userns,
                top as *mut libc::c_void,
                flags,
                r.as_raw_fd() as usize as *mut libc::c_void,
            )
        };
        let err = io::Error::last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        if pid == -1 {
            return Err(err);
        }
        Ok(UsernsHolder {
            pid,
            release: Some(w),
            _wait_end: r,
            _stack: stack,
        })
    }

    /// The holder's pid (in our pid namespace, which our /proc numbers).
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for UsernsHolder {
    fn drop(&mut self) {
        // EOF on the holder's read: it exits; reap it before its stack is freed.
        drop(self.release.take());
        let mut status = 0;
        // SAFETY: our own child, not reaped before (only here).
        while unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) } == -1
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}

#[cfg(test)]
mod holder_tests {
    use super::*;

    #[test]
    fn the_holder_lives_in_a_new_user_namespace_until_dropped() {
        // The test harness runs tests on threads: the holder needs none of them stopped.
        let h = UsernsHolder::start().unwrap();
        let ours = std::fs::read_link("/proc/self/ns/user").unwrap();
        let theirs = std::fs::read_link(format!("/proc/{}/ns/user", h.pid())).unwrap();
        assert_ne!(ours, theirs, "the holder is in a user namespace of its own");
        let pid = h.pid();
        drop(h);
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_err(),
            "the holder is gone (reaped) after drop"
        );
    }
}

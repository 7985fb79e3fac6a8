//! Make another task call a syscall, from outside, with ptrace: what a restored task needs when
//! its seccomp listener could not travel with it (CRIU restores the filter, not the listener,
//! so the guard's traps would answer ENOSYS and nobody would hear of them).
//!
//! The way CRIU's own compel does it, reduced to syscalls only: seize the thread, interrupt it,
//! save its registers, point its instruction pointer at a `syscall` instruction of its vDSO with
//! the number and arguments in registers, run it to the syscall's exit stop, read the result,
//! and at the end put every register back and detach. No code is written into the tracee; data
//! goes into a page the tracee itself maps (an injected mmap) and unmaps afterwards.
//!
//! x86_64 only: elsewhere [`Tracee::seize`] answers ENOSYS, and the caller says so.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::seccomp::SockFilter;

/// A seized and stopped thread. Dropping it puts its registers back and detaches it; a thread
/// that was in group-stop (SIGSTOP) returns to it.
pub struct Tracee {
    tgid: i32,
    tid: i32,
    /// The registers to put back (none until read).
    #[cfg(target_arch = "x86_64")]
    saved: Option<libc::user_regs_struct>,
    syscall_ip: u64,
    /// Signals that arrived while we held the thread (we stop their delivery, which would run
    /// a handler in the middle of our calls): queued to it again at detach.
    pending: Vec<i32>,
}

/// How many stops one injected syscall may take (its entry and exit, plus signals that arrive
/// meanwhile) before we give up on it: a tracee that keeps stopping is not running our call.
const MAX_STOPS: usize = 64;

fn last() -> io::Error {
    io::Error::last_os_error()
}

/// ptrace(2) with the calling conventions of the requests used here.
fn ptrace(req: libc::c_uint, tid: i32, addr: usize, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: every request used here takes integers, or (GETREGS/SETREGS) a pointer to a
    // user_regs_struct that the caller owns for the duration of the call.
    let r = unsafe {
        libc::ptrace(
            req,
            tid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if r == -1 {
        Err(last())
    } else {
        Ok(r)
    }
}

/// Wait for `tid`'s next stop; Err(ESRCH) if it exited instead.
fn wait_stop(tid: i32) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if r == -1 {
            let e = last();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if libc::WIFSTOPPED(status) {
            return Ok(status);
        }
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
}

/// The address of a `syscall` instruction (0f 05) in `pid`'s vDSO, read through /proc (of a
/// held task: one running may exec meanwhile).
fn vdso_syscall_ip(pid: i32) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let line = maps
        .lines()
        .find(|l| l.ends_with("[vdso]"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the task has no vDSO"))?;
    let range = line.split_whitespace().next().unwrap_or_default();
    let (a, b) = range.split_once('-').unwrap_or_default();
    let (start, end) = (
        u64::from_str_radix(a, 16).map_err(|_| io::ErrorKind::InvalidData)?,
        u64::from_str_radix(b, 16).map_err(|_| io::ErrorKind::InvalidData)?,
    );
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut buf = vec![0u8; (end - start) as usize];
    mem.read_exact_at(&mut buf, start)?;
    buf.windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|off| start + off as u64)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no syscall instruction in the vDSO",
            )
        })
}

impl Tracee {
    /// Seize thread `tid` of process `tgid` and stop it, whether it was running, blocked in a
    /// syscall or stopped by SIGSTOP. Its vDSO is looked up once it is held: a task that execs
    /// until then has a new one elsewhere, and an address read before would point into nothing.
    #[cfg(target_arch = "x86_64")]
    pub fn seize(tgid: i32, tid: i32) -> io::Result<Tracee> {
        ptrace(
            libc::PTRACE_SEIZE,
            tid,
            0,
            libc::PTRACE_O_TRACESYSGOOD as usize,
        )?;
        // From here on Drop detaches (and hands back what signals we held).
        let mut t = Tracee {
            tgid,
            tid,
            saved: None,
            syscall_ip: 0,
            pending: Vec::new(),
        };
        ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0)?;
        loop {
            let st = wait_stop(tid)?;
            if st >> 16 == libc::PTRACE_EVENT_STOP {
                break;
            }
            // A signal-delivery stop came first: keep the signal for the detach, wait for ours.
            t.pending.push(libc::WSTOPSIG(st));
            ptrace(libc::PTRACE_CONT, tid, 0, 0)?;
        }
        t.syscall_ip = vdso_syscall_ip(tid)?;
        let mut r = t.regs()?;
        // Interrupted inside a syscall: roll it back the way the kernel would on return to user
        // space, so that it runs again after the detach (we clear orig_rax, which stops the
        // kernel from doing it itself).
        if (r.orig_rax as i64) >= 0 {
            const ERESTARTSYS: i64 = 512;
            const ERESTARTNOINTR: i64 = 513;
            const ERESTARTNOHAND: i64 = 514;
            const ERESTART_RESTARTBLOCK: i64 = 516;
            match -(r.rax as i64) {
                ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                    r.rax = r.orig_rax;
                    r.rip -= 2;
                }
                // What the kernel does itself with no handler to run: restart_syscall(2)
                // carries on from current->restart_block, which our calls leave alone.
                ERESTART_RESTARTBLOCK => {
                    r.rax = libc::SYS_restart_syscall as u64;
                    r.rip -= 2;
                }
                _ => {}
            }
            r.orig_rax = u64::MAX;
        }
        t.saved = Some(r);
        Ok(t)
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn seize(_tgid: i32, _tid: i32) -> io::Result<Tracee> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    #[cfg(target_arch = "x86_64")]
    fn regs(&self) -> io::Result<libc::user_regs_struct> {
        // SAFETY: as in Tracee::seize.
        let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        ptrace(
            libc::PTRACE_GETREGS,
            self.tid,
            0,
            &mut r as *mut libc::user_regs_struct as usize,
        )?;
        Ok(r)
    }

    #[cfg(target_arch = "x86_64")]
    fn set_regs(&self, r: &libc::user_regs_struct) -> io::Result<()> {
        ptrace(
            libc::PTRACE_SETREGS,
            self.tid,
            0,
            r as *const libc::user_regs_struct as usize,
        )
        .map(drop)
    }

    /// Run syscall `nr` with `args` in the tracee; its raw return value (-errno on failure).
    #[cfg(target_arch = "x86_64")]
    pub fn syscall(&mut self, nr: libc::c_long, args: [u64; 6]) -> io::Result<i64> {
        let mut r = self.saved.ok_or(io::ErrorKind::InvalidInput)?;
        r.rip = self.syscall_ip;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) =
            (args[0], args[1], args[2], args[3], args[4], args[5]);
        self.set_regs(&r)?;
        // Two stops: the syscall's entry, then its exit (SIGTRAP|0x80 with TRACESYSGOOD).
        let mut syscall_stops = 0;
        for _ in 0..MAX_STOPS {
            ptrace(libc::PTRACE_SYSCALL, self.tid, 0, 0)?;
            let st = wait_stop(self.tid)?;
            let sig = libc::WSTOPSIG(st);
            if sig == libc::SIGTRAP | 0x80 {
                syscall_stops += 1;
                if syscall_stops == 2 {
                    return Ok(self.regs()?.rax as i64);
                }
            } else if st >> 16 == 0 {
                // A fault of our own making (no syscall instruction where we jumped): restarting
                // would fault again, for ever. Anything else is the tenant's: held for later.
                if self.faulted(sig)? {
                    return Err(io::Error::other(format!(
                        "the injected syscall {nr} faulted with signal {sig}"
                    )));
                }
                self.pending.push(sig);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the injected syscall {nr} did not complete in {MAX_STOPS} stops"),
        ))
    }

    /// Is the signal of this signal-delivery stop a fault raised by the kernel at the
    /// instruction the thread ran (SIGSEGV, SIGBUS, SIGILL, SIGFPE with a positive si_code),
    /// rather than one sent to it?
    fn faulted(&self, sig: i32) -> io::Result<bool> {
        if ![libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE].contains(&sig) {
            return Ok(false);
        }
        // SAFETY: siginfo_t is plain data; GETSIGINFO fills it.
        let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
        ptrace(
            libc::PTRACE_GETSIGINFO,
            self.tid,
            0,
            &mut si as *mut libc::siginfo_t as usize,
        )?;
        Ok(si.si_code > 0)
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn syscall(&mut self, _nr: libc::c_long, _args: [u64; 6]) -> io::Result<i64> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    /// Queue the held signals to the thread again (each pending until it runs), then detach.
    /// A restart with a signal is honoured only from some stops (ptrace(2)), so none is passed.
    fn detach_raw(&self) {
        for &sig in &self.pending {
            // SAFETY: integer arguments only.
            unsafe { libc::syscall(libc::SYS_tgkill, self.tgid, self.tid, sig) };
        }
        let _ = ptrace(libc::PTRACE_DETACH, self.tid, 0, 0);
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if let Some(r) = self.saved {
            let _ = self.set_regs(&r);
        }
        self.detach_raw();
    }
}

/// The raw result as io::Result.
fn ok(r: i64, what: &str) -> io::Result<u64> {
    if (-4095..0).contains(&r) {
        let e = io::Error::from_raw_os_error(-r as i32);
        Err(io::Error::new(
            e.kind(),
            format!("{what} in the tracee: {e}"),
        ))
    } else {
        Ok(r as u64)
    }
}

/// Put a seccomp filter layer `prog` with a new listener on thread `tid` of process `pid`, and
/// return the listener (taken out of the tracee's fd table, which keeps nothing of it). The
/// tracee needs no_new_privs, or CAP_SYS_ADMIN in its user namespace (EACCES otherwise).
pub fn seccomp_listener(pid: i32, tid: i32, prog: &[SockFilter]) -> io::Result<OwnedFd> {
    use std::os::unix::fs::FileExt;
    let mut t = Tracee::seize(pid, tid)?;
    let filter_len = std::mem::size_of_val(prog);
    // struct sock_fprog { unsigned short len; struct sock_filter *filter; } then the filter.
    let len = 16 + filter_len;
    let page = ok(
        t.syscall(
            libc::SYS_mmap,
            [
                0,
                len as u64,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?,
        "mmap",
    )?;
    let installed = (|| {
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(&(prog.len() as u64).to_ne_bytes()); // len + padding
        buf.extend_from_slice(&(page + 16).to_ne_bytes());
        for f in prog {
            buf.extend_from_slice(&f.code.to_ne_bytes());
            buf.push(f.jt);
            buf.push(f.jf);
            buf.extend_from_slice(&f.k.to_ne_bytes());
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{tid}/mem"))?
            .write_all_at(&buf, page)?;
        const SECCOMP_SET_MODE_FILTER: u64 = 1;
        const SECCOMP_FILTER_FLAG_NEW_LISTENER: u64 = 1 << 3;
        ok(
            t.syscall(
                libc::SYS_seccomp,
                [
                    SECCOMP_SET_MODE_FILTER,
                    SECCOMP_FILTER_FLAG_NEW_LISTENER,
                    page,
                    0,
                    0,
                    0,
                ],
            )?,
            "seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER)",
        )
    })();
    let unmapped = t.syscall(libc::SYS_munmap, [page, len as u64, 0, 0, 0, 0]);
    let remote_fd = installed?;
    let taken = take_fd(pid, remote_fd as i32);
    let closed = t.syscall(libc::SYS_close, [remote_fd, 0, 0, 0, 0, 0]);
    ok(unmapped?, "munmap")?;
    ok(closed?, "close")?;
    taken
}

/// pidfd_getfd(2): a duplicate of fd `fd` of process `pid` (O_CLOEXEC, as the kernel gives it).
pub fn take_fd(pid: i32, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only; the returned fds are new and owned here.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(last());
    }
    // SAFETY: pidfd was just returned to us and is owned by this OwnedFd alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    use std::os::fd::AsRawFd;
    // SAFETY: integer arguments only.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if got < 0 {
        return Err(last());
    }
    // SAFETY: a new fd, owned by the returned OwnedFd alone.
    Ok(unsafe { OwnedFd::from_raw_fd(got as i32) })
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A `sh -c SCRIPT` child (under `wrap`), killed if the test fails before it ends it.
    struct Sh(std::process::Child);

    impl Sh {
        fn new(wrap: &[&str], script: &str) -> Sh {
            let (prog, args) = wrap.split_first().unwrap_or((&"sh", &[]));
            let mut c = Command::new(prog);
            c.args(args);
            if !wrap.is_empty() {
                c.arg("sh");
            }
            let child = c
                .arg("-c")
                .arg(script)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
            Sh(child)
        }

        fn pid(&self) -> i32 {
            self.0.id() as i32
        }

        fn fds(&self) -> usize {
            std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
                .unwrap()
                .count()
        }

        /// SIGTERM, then its exit code (the scripts trap it with `exit 7`).
        fn term(mut self) -> Option<i32> {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(self.pid(), libc::SIGTERM) };
            self.0.wait().unwrap().code()
        }
    }

    impl Drop for Sh {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A child that sleeps in a loop: we make it call getppid() and get our pid back, then it
    /// carries on (it still answers to SIGTERM and exits with its status).
    #[test]
    fn a_seized_child_runs_our_syscall_and_carries_on() {
        let child = Sh::new(&[], "trap 'exit 7' TERM; while :; do sleep 0.05; done");
        let pid = child.pid();
        {
            let mut t = Tracee::seize(pid, pid).unwrap();
            let got = t.syscall(libc::SYS_getppid, [0; 6]).unwrap();
            assert_eq!(got, std::process::id() as i64);
        }
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert_eq!(
            child.term(),
            Some(7),
            "the child carried on and ran its trap"
        );
    }

    /// Signals that arrive while we hold the thread reach it after we let go, every one of
    /// them: the shell's USR1 trap sets u=1 before its TERM trap exits with 7 + u.
    #[test]
    fn signals_that_arrive_while_seized_are_all_delivered_after() {
        let child = Sh::new(
            &["busybox"],
            "u=0; trap 'u=1' USR1; trap 'exit $((7 + u))' TERM; while :; do sleep 0.05; done",
        );
        let pid = child.pid();
        {
            let mut t = Tracee::seize(pid, pid).unwrap();
            // SAFETY: signals to our own child.
            unsafe {
                libc::kill(pid, libc::SIGUSR1);
                libc::kill(pid, libc::SIGTERM);
            }
            // Both arrive (signal-delivery stops) while our call runs.
            assert_eq!(
                t.syscall(libc::SYS_getppid, [0; 6]).unwrap(),
                std::process::id() as i64
            );
        }
        let mut child = child;
        assert_eq!(child.0.wait().unwrap().code(), Some(8), "USR1 then TERM");
    }

    /// An injection that faults (no syscall instruction where it jumps) is an error, not a
    /// loop that restarts the faulting instruction for ever; the tracee carries on unharmed.
    #[test]
    fn a_faulting_injection_is_an_error_and_the_tracee_carries_on() {
        let child = Sh::new(&[], "trap 'exit 7' TERM; while :; do sleep 0.05; done");
        {
            let mut t = Tracee::seize(child.pid(), child.pid()).unwrap();
            t.syscall_ip = 0x1000; // never mapped (vm.mmap_min_addr)
            let e = t.syscall(libc::SYS_getppid, [0; 6]).unwrap_err();
            assert!(e.to_string().contains("faulted with signal 11"), "{e}");
        }
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert_eq!(child.term(), Some(7));
    }

    /// A child with no_new_privs calls uname(2) in a loop: after the injection its next uname
    /// waits for us on the listener we got back; answered, the child carries on.
    #[test]
    fn an_injected_filter_hands_us_its_listener() {
        use crate::seccomp::{seccomp_notif_recv, seccomp_notif_send, SeccompNotifResp};
        use std::os::fd::AsFd;
        let child = Sh::new(
            &["setpriv", "--no-new-privs"],
            "trap 'exit 7' TERM; while :; do uname >/dev/null; sleep 0.02; done",
        );
        let pid = child.pid();
        let fds = child.fds();
        // ld nr; jeq uname ? notify : allow
        let prog = [
            SockFilter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 0,
            },
            SockFilter {
                code: 0x15,
                jt: 0,
                jf: 1,
                k: libc::SYS_uname as u32,
            },
            SockFilter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x7fc0_0000,
            },
            SockFilter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x7fff_0000,
            },
        ];
        let listener = seccomp_listener(pid, pid, &prog).unwrap();
        assert_eq!(child.fds(), fds, "the tracee keeps no fd of ours");
        for _ in 0..2 {
            let n = seccomp_notif_recv(listener.as_fd()).unwrap();
            assert_eq!(n.data.nr, libc::SYS_uname as i32);
            seccomp_notif_send(listener.as_fd(), &SeccompNotifResp::continue_syscall(n.id))
                .unwrap();
        }
        assert_eq!(child.term(), Some(7));
    }
}

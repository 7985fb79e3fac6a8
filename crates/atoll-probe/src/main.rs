//! atoll-probe: the escape attempts busybox cannot make, run inside test containers by
//! crates/atoll/tests/escape_corpus.rs (and bench/guard.sh, bench/islands-guard.sh). Each verb
//! makes one real attempt and prints `ok` or `errno=N`, then exits 0, so the test asserts on what
//! the kernel said. Usage errors exit 2.
//!
//! Test-only (publish = false, not a bin of the atoll package). Calls go through rustix or nix
//! where they offer the call; the rest (clone with CLONE_NEWUSER and no stack, clone3, bpf,
//! perf_event_open, ptrace, module loading, open_by_handle_at, keyctl, add_key) are raw
//! syscalls, one unsafe block each. The probe is single-threaded: nothing here starts a thread.
//! It is linked dynamically like any test build; escape_corpus.rs copies the libraries ldd names
//! into its busybox rootfs, and islands see the host's /usr and /lib.

use std::ffi::{CStr, CString};
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::ExitCode;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::thread::LinkNameSpaceType;

/// What the test reads: `ok` or `errno=N`.
fn report<T>(res: Result<T, Errno>) {
    match res {
        Ok(_) => println!("ok"),
        Err(e) => println!("errno={}", e.raw_os_error()),
    }
}

/// A raw syscall's return: negative means failure with errno set by libc's syscall(2) wrapper.
fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL))
    } else {
        Ok(ret)
    }
}

/// A usage error: the test called the probe wrong, which is not a kernel answer.
struct Usage(String);

fn usage(what: impl Into<String>) -> Usage {
    Usage(what.into())
}

fn cstring(s: &str) -> Result<CString, Usage> {
    CString::new(s).map_err(|_| usage(format!("NUL in argument {s:?}")))
}

fn open(path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::empty())
}

/// Connect to a unix stream socket and take the first fd passed in SCM_RIGHTS.
fn recv_fd(path: &str) -> Result<OwnedFd, Usage> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| usage(format!("connect {path}: {e}")))?;
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(
        &s,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| usage(format!("recvmsg on {path}: {e}")))?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(usage(format!("no fd received on {path}")))
}

fn nstype(name: &str) -> Result<Option<LinkNameSpaceType>, Usage> {
    Ok(Some(match name {
        "net" => LinkNameSpaceType::Network,
        "mnt" => LinkNameSpaceType::Mount,
        "pid" => LinkNameSpaceType::ProcessID,
        "user" => LinkNameSpaceType::User,
        "uts" => LinkNameSpaceType::HostNameAndNISDomainName,
        "ipc" => LinkNameSpaceType::InterProcessCommunication,
        "0" | "any" => return Ok(None),
        n => return Err(usage(format!("unknown namespace type {n:?}"))),
    }))
}

fn setns(fd: BorrowedFd<'_>, ty: Option<LinkNameSpaceType>) -> Result<(), Errno> {
    rustix::thread::move_into_link_name_space(fd, ty)
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, Usage> {
    s.parse()
        .map_err(|_| usage(format!("{what}: not a number: {s:?}")))
}

/// The child of a fork-style clone: leave at once.
fn exit_child() -> ! {
    // SAFETY: _exit(2) takes no memory; the child (a copy of this single-threaded process) ends
    // without running Rust or libc teardown on state copied from the parent.
    unsafe { libc::_exit(0) }
}

/// After a clone that made a child: reap it so no zombie outlives the probe.
fn reap(pid: libc::c_long) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            let _reaped_or_gone = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
    }
}

/// clone(CLONE_NEWUSER | SIGCHLD) with no new stack, like fork: the child exits at once.
fn clone_user() -> Result<libc::c_long, Errno> {
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: without CLONE_VM the child gets a copy of our memory, and a null stack makes it run
    // on its copy of this stack, as fork does; the probe is single-threaded, so no lock is held
    // by another thread, and the child only calls _exit. No pointers are passed (ptid, ctid and
    // tls are null).
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    let pid = check(ret)?;
    if pid == 0 {
        exit_child();
    }
    reap(pid);
    Ok(pid)
}

/// clone3 with CLONE_NEWUSER: the flags live in memory, where seccomp cannot read them.
fn clone3_user() -> Result<libc::c_long, Errno> {
    // struct clone_args (linux/sched.h), CLONE_ARGS_SIZE_VER2: flags, pidfd, child_tid,
    // parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup.
    let mut args = [0u64; 11];
    args[0] = libc::CLONE_NEWUSER as u64;
    args[4] = libc::SIGCHLD as u64;
    // SAFETY: `args` is a live local of exactly the size passed, read by the kernel during the
    // call; it holds no pointers (stack 0: the child runs on its copy of this stack, as with
    // fork). The probe is single-threaded and the child only calls _exit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args.as_mut_ptr(),
            std::mem::size_of_val(&args),
        )
    };
    let pid = check(ret)?;
    if pid == 0 {
        exit_child();
    }
    reap(pid);
    Ok(pid)
}

/// "shocker": a file handle for inode 2 (the root of most filesystems), opened through a
/// directory fd of the container's root.
fn open_by_handle() -> Result<libc::c_long, Errno> {
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        ino: u32,
        gen: u32,
    }
    let h = Handle {
        bytes: 8,
        kind: 1, // FILEID_INO32_GEN
        ino: 2,
        gen: 0,
    };
    let root = open("/", OFlags::RDONLY | OFlags::DIRECTORY)?;
    // SAFETY: `h` is a live struct file_handle (header plus its 8 bytes of handle) that the
    // kernel only reads during the call; `root` is borrowed and stays open. A returned fd is
    // left to process exit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            root.as_raw_fd(),
            &h as *const Handle,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    check(ret)
}

fn socket(family: &str) -> Result<Result<OwnedFd, Errno>, Usage> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let (family, ty) = match family {
        "vsock" => (AddressFamily::VSOCK, SocketType::STREAM),
        "packet" => (AddressFamily::PACKET, SocketType::RAW),
        n => (
            AddressFamily::from_raw(parse("family", n)?),
            SocketType::STREAM,
        ),
    };
    Ok(rustix::net::socket_with(
        family,
        ty,
        SocketFlags::CLOEXEC,
        None,
    ))
}

/// BPF_MAP_CREATE of a tiny array: the first thing any bpf() user does.
fn bpf_map_create() -> Result<libc::c_long, Errno> {
    let mut attr = [0u32; 30];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4; // key_size
    attr[2] = 4; // value_size
    attr[3] = 1; // max_entries
                 // SAFETY: `attr` is a live local of the size passed; the kernel reads (and for this command
                 // writes nothing into) it during the call. A returned map fd is left to process exit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0, // BPF_MAP_CREATE
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    check(ret)
}

/// perf_event_open of a hardware counter for this process on any CPU.
fn perf_event_open() -> Result<libc::c_long, Errno> {
    let mut attr = [0u8; 128];
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes()); // size; type 0 = PERF_TYPE_HARDWARE
                                                       // SAFETY: `attr` is a live 128-byte struct perf_event_attr whose size field says 128; the
                                                       // kernel reads it (and may write the size back into it) during the call. pid -1 with cpu 0,
                                                       // group -1, no flags. A returned fd is left to process exit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_mut_ptr(),
            -1i32,
            0i32,
            -1i32,
            0u64,
        )
    };
    check(ret)
}

/// init_module with a 64-byte image of zeros (never a valid module: a kernel that got past its
/// permission checks refuses it as ENOEXEC).
fn init_module() -> Result<libc::c_long, Errno> {
    let img = [0u8; 64];
    // SAFETY: `img` and the empty NUL-terminated parameter string are alive for the call; the
    // kernel only reads `img.len()` bytes of the image.
    let ret =
        unsafe { libc::syscall(libc::SYS_init_module, img.as_ptr(), img.len(), c"".as_ptr()) };
    check(ret)
}

/// finit_module on /bin/busybox (an ELF file, never a module).
fn finit_module() -> Result<libc::c_long, Errno> {
    let fd = open("/bin/busybox", OFlags::RDONLY)?;
    // SAFETY: `fd` is borrowed and stays open for the call; the parameter string is a static
    // NUL-terminated string the kernel only reads.
    let ret = unsafe { libc::syscall(libc::SYS_finit_module, fd.as_raw_fd(), c"".as_ptr(), 0) };
    check(ret)
}

/// keyctl(KEYCTL_SEARCH, ring, "user", name, 0): find a user key by name from a keyring.
fn keyctl_search(ring: i32, name: &CStr) -> Result<libc::c_long, Errno> {
    const KEYCTL_SEARCH: libc::c_int = 10;
    // SAFETY: both strings are NUL-terminated and alive for the call, which only reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_SEARCH,
            ring,
            c"user".as_ptr(),
            name.as_ptr(),
            0,
        )
    };
    check(ret)
}

/// add_key("user", name, "secret", ring): plant a key (the host side of the keyring test).
fn add_key(ring: i32, name: &CStr) -> Result<libc::c_long, Errno> {
    let payload = b"secret";
    // SAFETY: the type and description are NUL-terminated and the payload slice is alive for the
    // call with its exact length passed; the kernel copies all three before returning.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            name.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            ring,
        )
    };
    check(ret)
}

/// keyctl(KEYCTL_INVALIDATE, key): remove what add_key planted.
fn keyctl_invalidate(key: i32) -> Result<libc::c_long, Errno> {
    const KEYCTL_INVALIDATE: libc::c_int = 21;
    // SAFETY: integers only; no memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, key) };
    check(ret)
}

/// ptrace(PTRACE_SEIZE, pid): attach to a process without stopping it.
fn ptrace_seize(pid: libc::pid_t) -> Result<libc::c_long, Errno> {
    // SAFETY: PTRACE_SEIZE reads no memory of ours: addr is ignored and data (the options) is 0.
    let ret = unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_SEIZE, pid, 0usize, 0usize) };
    check(ret)
}

fn median_ns(mut v: Vec<u128>) -> u128 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn run(args: &[String]) -> Result<(), Usage> {
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match a(0) {
        // setns on an fd a host helper passes over SCM_RIGHTS at socket a(1).
        "setns-recv" => {
            let fd = recv_fd(a(1))?;
            report(setns(fd.as_fd(), nstype(a(2))?));
        }
        "setns-path" => {
            let ty = nstype(a(2))?;
            report(open(a(1), OFlags::RDONLY).and_then(|fd| setns(fd.as_fd(), ty)));
        }
        "unshare-user" => report(
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
                .map_err(|e| Errno::from_raw_os_error(e as i32)),
        ),
        "clone-user" => report(clone_user()),
        "clone3-user" => report(clone3_user()),
        "open-by-handle" => report(open_by_handle()),
        "socket" => report(socket(a(1))?),
        "bpf" => report(bpf_map_create()),
        "perf" => report(perf_event_open()),
        "init-module" => report(init_module()),
        "finit-module" => report(finit_module()),
        // KEYCTL_SEARCH in the keyring a(1) for a user key named a(2).
        "keyctl-search" => report(keyctl_search(parse("keyring", a(1))?, &cstring(a(2))?)),
        // Host side of the keyring test: plant a user key named a(2) in keyring a(1), print its
        // serial; `key-invalidate` removes it.
        "add-key" => match add_key(parse("keyring", a(1))?, &cstring(a(2))?) {
            Ok(serial) => println!("{serial}"),
            Err(e) => println!("errno={}", e.raw_os_error()),
        },
        "key-invalidate" => report(keyctl_invalidate(parse("key", a(1))?)),
        "ptrace" => {
            report(ptrace_seize(parse("pid", a(1))?));
        }
        "mknod-block" => {
            let dev = rustix::fs::makedev(
                parse("major", if a(2).is_empty() { "8" } else { a(2) })?,
                parse("minor", if a(3).is_empty() { "0" } else { a(3) })?,
            );
            report(rustix::fs::mknodat(
                rustix::fs::CWD,
                a(1),
                rustix::fs::FileType::BlockDevice,
                Mode::from_raw_mode(0o600),
                dev,
            ));
        }
        "open-rw" => report(open(a(1), OFlags::RDWR)),
        "open-ro" => report(open(a(1), OFlags::RDONLY)),
        // The bench: a(1) getpid calls (each a real syscall); prints nanoseconds per call.
        "getpid-loop" => {
            let n: u64 = parse("count", a(1))?;
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(rustix::process::getpid());
            }
            println!("{}", t.elapsed().as_nanos() as f64 / n.max(1) as f64);
        }
        // The bench: a(1) setns calls on our own net namespace; prints the median in ns.
        "setns-loop" => {
            let n: usize = parse("count", a(1))?;
            let fd = match open("/proc/self/ns/net", OFlags::RDONLY) {
                Ok(fd) => fd,
                Err(e) => {
                    println!("errno={}", e.raw_os_error());
                    return Ok(());
                }
            };
            let mut v = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                let t = std::time::Instant::now();
                if let Err(e) = setns(fd.as_fd(), Some(LinkNameSpaceType::Network)) {
                    println!("errno={}", e.raw_os_error());
                    return Ok(());
                }
                if v.len() < 1 << 20 {
                    v.push(t.elapsed().as_nanos());
                }
            }
            println!("{}", median_ns(v));
        }
        other => return Err(usage(format!("unknown verb {other:?}"))),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Usage(why)) => {
            eprintln!("atoll-probe: {why}");
            ExitCode::from(2)
        }
    }
}

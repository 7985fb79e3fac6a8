//! atoll-probe: the escape attempts busybox cannot make, run inside test containers by
//! crates/atoll/tests/escape_corpus.rs (and the guard bench). Each verb makes one real attempt
//! and prints `ok` or `errno=N`, then exits 0, so the test asserts on what the kernel said.
//! Not part of the runtime; raw libc calls are the point here (the attempts are the test), which
//! is why this binary, not a library crate, holds them.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn report(ret: i64) {
    if ret < 0 {
        println!(
            "errno={}",
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        );
    } else {
        println!("ok");
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in argument")
}

fn open(path: &str, flags: i32) -> RawFd {
    // SAFETY: a NUL-terminated path alive for the call.
    unsafe { libc::open(cstr(path).as_ptr(), flags | libc::O_CLOEXEC) }
}

/// Connect to a unix stream socket and take the first fd passed in SCM_RIGHTS.
fn recv_fd(path: &str) -> RawFd {
    let s = std::os::unix::net::UnixStream::connect(path).expect("connect helper socket");
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: zeroed msghdr pointed at live local buffers; the kernel writes at most their lengths.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        if libc::recvmsg(s.as_raw_fd(), &mut msg, 0) < 0 {
            panic!("recvmsg: {}", std::io::Error::last_os_error());
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null(), "no fd received");
        std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd)
    }
}

fn nstype(name: &str) -> i32 {
    match name {
        "net" => libc::CLONE_NEWNET,
        "mnt" => libc::CLONE_NEWNS,
        "pid" => libc::CLONE_NEWPID,
        "user" => libc::CLONE_NEWUSER,
        "uts" => libc::CLONE_NEWUTS,
        "ipc" => libc::CLONE_NEWIPC,
        "0" | "any" => 0,
        n => n.parse().expect("nstype"),
    }
}

fn setns(fd: RawFd, t: i32) -> i64 {
    // SAFETY: no memory is passed.
    unsafe { libc::setns(fd, t) as i64 }
}

fn median_ns(mut v: Vec<u128>) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    // SAFETY (whole match): each arm is one raw syscall with constant or local arguments that
    // live for the call; fds returned are leaked on purpose (the process exits right after).
    unsafe {
        match a(0) {
            // setns on an fd a host helper passes over SCM_RIGHTS at socket a(1).
            "setns-recv" => {
                let fd = recv_fd(a(1));
                report(setns(fd, nstype(a(2))));
            }
            "setns-path" => {
                let fd = open(a(1), libc::O_RDONLY);
                report(if fd < 0 { -1 } else { setns(fd, nstype(a(2))) });
            }
            "unshare-user" => report(libc::unshare(libc::CLONE_NEWUSER) as i64),
            "clone-user" => {
                let pid = libc::syscall(
                    libc::SYS_clone,
                    (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64,
                    0u64,
                    0u64,
                    0u64,
                    0u64,
                );
                if pid == 0 {
                    libc::_exit(0);
                }
                if pid > 0 {
                    libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
                }
                report(pid);
            }
            "clone3-user" => {
                let mut args = [0u64; 11];
                args[0] = libc::CLONE_NEWUSER as u64;
                args[4] = libc::SIGCHLD as u64;
                let pid = libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), 88usize);
                if pid == 0 {
                    libc::_exit(0);
                }
                if pid > 0 {
                    libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
                }
                report(pid);
            }
            // "shocker": a file handle for inode 2 (the root of most filesystems), opened
            // through a directory fd of the container's root.
            "open-by-handle" => {
                #[repr(C)]
                struct Handle {
                    bytes: u32,
                    kind: i32,
                    ino: u32,
                    gen: u32,
                }
                let mut h = Handle {
                    bytes: 8,
                    kind: 1, // FILEID_INO32_GEN
                    ino: 2,
                    gen: 0,
                };
                let root = open("/", libc::O_RDONLY | libc::O_DIRECTORY);
                report(libc::syscall(
                    libc::SYS_open_by_handle_at,
                    root,
                    &mut h as *mut Handle,
                    libc::O_RDONLY,
                ));
            }
            "socket" => {
                let family = match a(1) {
                    "vsock" => libc::AF_VSOCK,
                    "packet" => libc::AF_PACKET,
                    n => n.parse().expect("family"),
                };
                let ty = if family == libc::AF_PACKET {
                    libc::SOCK_RAW
                } else {
                    libc::SOCK_STREAM
                };
                report(libc::socket(family, ty | libc::SOCK_CLOEXEC, 0) as i64);
            }
            "bpf" => {
                // BPF_MAP_CREATE of a tiny array: the first thing any bpf() user does.
                let mut attr = [0u32; 30];
                attr[0] = 2; // BPF_MAP_TYPE_ARRAY
                attr[1] = 4;
                attr[2] = 4;
                attr[3] = 1;
                report(libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), 120usize));
            }
            "perf" => {
                let mut attr = [0u8; 128];
                attr[4..8].copy_from_slice(&128u32.to_ne_bytes()); // size; type 0 = HARDWARE
                report(libc::syscall(
                    libc::SYS_perf_event_open,
                    attr.as_mut_ptr(),
                    -1i32,
                    0i32,
                    -1i32,
                    0u64,
                ));
            }
            "init-module" => {
                let img = [0u8; 64];
                report(libc::syscall(
                    libc::SYS_init_module,
                    img.as_ptr(),
                    img.len(),
                    c"".as_ptr(),
                ));
            }
            "finit-module" => {
                let fd = open("/bin/busybox", libc::O_RDONLY);
                report(libc::syscall(libc::SYS_finit_module, fd, c"".as_ptr(), 0));
            }
            // KEYCTL_SEARCH (10) in the keyring a(1) for a user key named a(2).
            "keyctl-search" => {
                let ring: i32 = a(1).parse().expect("keyring id");
                report(libc::syscall(
                    libc::SYS_keyctl,
                    10,
                    ring,
                    c"user".as_ptr(),
                    cstr(a(2)).as_ptr(),
                    0,
                ));
            }
            "ptrace" => {
                let pid: i32 = a(1).parse().expect("pid");
                report(libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) as i64);
            }
            "mknod-block" => {
                let dev = libc::makedev(a(2).parse().unwrap_or(8), a(3).parse().unwrap_or(0));
                report(libc::mknod(cstr(a(1)).as_ptr(), libc::S_IFBLK | 0o600, dev) as i64);
            }
            "open-rw" => report(open(a(1), libc::O_RDWR) as i64),
            "open-ro" => report(open(a(1), libc::O_RDONLY) as i64),
            // The bench: a(1) getpid calls; prints nanoseconds per call.
            "getpid-loop" => {
                let n: u64 = a(1).parse().expect("count");
                let t = std::time::Instant::now();
                for _ in 0..n {
                    libc::syscall(libc::SYS_getpid);
                }
                println!("{}", t.elapsed().as_nanos() as f64 / n as f64);
            }
            // The bench: a(1) setns calls on our own net namespace; prints the median in ns.
            "setns-loop" => {
                let n: usize = a(1).parse().expect("count");
                let fd = OwnedFd::from_raw_fd(open("/proc/self/ns/net", libc::O_RDONLY));
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let t = std::time::Instant::now();
                    if setns(fd.as_raw_fd(), libc::CLONE_NEWNET) < 0 {
                        println!(
                            "errno={}",
                            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
                        );
                        return;
                    }
                    v.push(t.elapsed().as_nanos());
                }
                println!("{}", median_ns(v));
            }
            other => {
                eprintln!("atoll-probe: unknown verb {other:?}");
                std::process::exit(2);
            }
        }
    }
}

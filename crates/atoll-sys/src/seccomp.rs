//! seccomp(2): install an exported BPF program (optionally asking for a user-notification fd).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

pub const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1 << 0;
pub const SECCOMP_FILTER_FLAG_LOG: u32 = 1 << 1;
pub const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;
pub const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// One classic-BPF instruction, as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog). With SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel
/// returns a new notification fd, which we own from here on (it is created O_CLOEXEC).
///
/// The caller must have set no_new_privs or hold CAP_SYS_ADMIN (the kernel checks). Performs no
/// allocation: safe to call between clone and execve.
pub fn seccomp_set_mode_filter(flags: u32, prog: &[SockFilter]) -> io::Result<Option<OwnedFd>> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }
    let len = u16::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = SockFprog { len, filter: prog.as_ptr() };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program
    // before returning. With NEW_LISTENER a successful return value is a fresh fd nobody else owns.
    let ret = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &fprog as *const SockFprog)
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        // SAFETY: see above: the kernel just installed this fd for us.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) }));
    }
    Ok(None)
}

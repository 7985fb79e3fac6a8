//! seccomp(2) and the user-notification ioctls (seccomp_unotify(2)): install an exported BPF
//! program, optionally asking for a listener fd, and the four ioctls a supervisor needs on that fd.
//! The kernel structs stay behind this line; callers see plain typed values and `OwnedFd`s.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub const SECCOMP_FILTER_FLAG_TSYNC: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC as u32;
pub const SECCOMP_FILTER_FLAG_LOG: u32 = libc::SECCOMP_FILTER_FLAG_LOG as u32;
pub const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;
pub const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
pub const SECCOMP_FILTER_FLAG_TSYNC_ESRCH: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH as u32;
pub const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 =
    libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u32;

/// The kernel refuses longer programs (BPF_MAXINSNS in include/uapi/linux/bpf_common.h).
pub const BPF_MAXINSNS: usize = 4096;

/// One classic-BPF instruction, as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const _: () = assert!(size_of::<SockFilter>() == size_of::<libc::sock_filter>());

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog). With SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel
/// returns a new notification fd (always O_CLOEXEC), which the caller owns from here on.
///
/// The kernel requires no_new_privs or CAP_SYS_ADMIN in the caller's user namespace (EACCES
/// otherwise). Performs no allocation, so it is callable between fork/clone and execve.
pub fn seccomp_set_mode_filter(flags: u32, prog: &[SockFilter]) -> io::Result<Option<OwnedFd>> {
    if prog.is_empty() || prog.len() > BPF_MAXINSNS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let fprog = libc::sock_fprog {
        len: prog.len() as u16, // <= BPF_MAXINSNS, checked above
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog.filter` points at `prog.len()` instructions of `prog` (same layout as
    // sock_filter, asserted above), borrowed for the whole call; the kernel copies the program
    // before returning and never writes through the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            flags as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER a non-negative return is a fd the kernel has just installed
        // in our table for this call; nothing else refers to it, so we are its only owner.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) }));
    }
    if ret > 0 {
        // TSYNC without TSYNC_ESRCH: `ret` is the id of a thread that could not be synchronised
        // and the filter was not installed (seccomp(2), RETURN VALUE).
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(None)
}

/// Sizes of the notification structs as the running kernel knows them
/// (seccomp(SECCOMP_GET_NOTIF_SIZES)): a supervisor checks them against ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeccompNotifSizes {
    pub notif: u16,
    pub notif_resp: u16,
    pub data: u16,
}

impl SeccompNotifSizes {
    /// The sizes this crate was built with.
    pub const OURS: SeccompNotifSizes = SeccompNotifSizes {
        notif: size_of::<libc::seccomp_notif>() as u16,
        notif_resp: size_of::<libc::seccomp_notif_resp>() as u16,
        data: size_of::<libc::seccomp_data>() as u16,
    };
}

/// seccomp(SECCOMP_GET_NOTIF_SIZES, 0, &sizes).
pub fn seccomp_notify_sizes() -> io::Result<SeccompNotifSizes> {
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: the kernel writes exactly one `struct seccomp_notif_sizes` (three u16s) through the
    // pointer, which points at our local for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES as libc::c_ulong,
            0 as libc::c_ulong,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(SeccompNotifSizes {
        notif: sizes.seccomp_notif,
        notif_resp: sizes.seccomp_notif_resp,
        data: sizes.seccomp_data,
    })
}

/// What the filter saw: `struct seccomp_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeccompData {
    pub nr: i32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

/// One pending system call: `struct seccomp_notif`. `pid` is in the listener's pid namespace
/// (0 if the target is not visible there); `id` is only meaningful while it stays valid
/// ([`seccomp_notif_id_valid`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeccompNotif {
    pub id: u64,
    pub pid: u32,
    pub flags: u32,
    pub data: SeccompData,
}

/// The answer to one notification: `struct seccomp_notif_resp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeccompNotifResp {
    pub id: u64,
    /// The syscall's return value when `error` is 0.
    pub val: i64,
    /// A negated errno (e.g. `-libc::EPERM`), or 0 for success.
    pub error: i32,
    /// 0 or SECCOMP_USER_NOTIF_FLAG_CONTINUE.
    pub flags: u32,
}

impl SeccompNotifResp {
    /// Fail the call with `errno` (positive, e.g. `libc::EPERM`).
    pub fn fail(id: u64, errno: i32) -> Self {
        SeccompNotifResp {
            id,
            val: 0,
            error: -errno,
            flags: 0,
        }
    }
    /// Pretend the call ran and returned `val`.
    pub fn succeed(id: u64, val: i64) -> Self {
        SeccompNotifResp {
            id,
            val,
            error: 0,
            flags: 0,
        }
    }
    /// Let the kernel run the call as if there were no filter. Only safe for decisions that do
    /// not depend on pointer arguments the target can change after we looked (seccomp_unotify(2)).
    pub fn continue_syscall(id: u64) -> Self {
        SeccompNotifResp {
            id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        }
    }
}

/// ioctl(SECCOMP_IOCTL_NOTIF_RECV): block until a notification arrives. ENOENT means the target
/// died before we read it; EINTR is returned as is.
pub fn seccomp_notif_recv(notify_fd: BorrowedFd<'_>) -> io::Result<SeccompNotif> {
    // The kernel insists the buffer is zeroed (check_zeroed_user), so start from zero each time.
    // SAFETY: seccomp_notif is plain integers; all-zero is a valid value.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the command encodes sizeof(struct seccomp_notif) and the kernel writes exactly that
    // many bytes into `n`, a local we exclusively borrow for the call (a kernel with a larger
    // struct would have a different command number and reject ours with EINVAL).
    let ret = unsafe {
        libc::ioctl(
            notify_fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut n as *mut libc::seccomp_notif,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(SeccompNotif {
        id: n.id,
        pid: n.pid,
        flags: n.flags,
        data: SeccompData {
            nr: n.data.nr,
            arch: n.data.arch,
            instruction_pointer: n.data.instruction_pointer,
            args: n.data.args,
        },
    })
}

/// ioctl(SECCOMP_IOCTL_NOTIF_SEND): answer a notification. ENOENT: the target is gone or the
/// id was already answered.
pub fn seccomp_notif_send(notify_fd: BorrowedFd<'_>, resp: &SeccompNotifResp) -> io::Result<()> {
    let mut r = libc::seccomp_notif_resp {
        id: resp.id,
        val: resp.val,
        error: resp.error,
        flags: resp.flags,
    };
    // SAFETY: `r` is a live local of exactly the size the command encodes; the kernel reads it
    // (and, _IOWR notwithstanding, writes nothing back).
    let ret = unsafe {
        libc::ioctl(
            notify_fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut r as *mut libc::seccomp_notif_resp,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// ioctl(SECCOMP_IOCTL_NOTIF_ID_VALID): is the target still blocked in the call `id` names?
/// Check it after reading the target's memory and before acting on what was read (TOCTOU
/// against pid reuse, seccomp_unotify(2)).
pub fn seccomp_notif_id_valid(notify_fd: BorrowedFd<'_>, id: u64) -> io::Result<bool> {
    // SAFETY: the kernel reads one u64 through the pointer, which points at our local `id`.
    let ret = unsafe {
        libc::ioctl(
            notify_fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id as *const u64,
        )
    };
    if ret < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(true)
}

/// Where [`seccomp_notif_addfd`] puts the fd in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddfdTarget {
    /// The lowest free number, like open(2).
    Lowest,
    /// Exactly this number, replacing what is there, like dup2(2) (SECCOMP_ADDFD_FLAG_SETFD).
    At(u32),
}

/// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (linux/seccomp.h): wake the supervisor on the waiting
/// task's CPU and switch to it directly, and back on the answer (Linux 6.6).
pub const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// ioctl(SECCOMP_IOCTL_NOTIF_SET_FLAGS): set flags on a listener (EINVAL on a kernel before 6.6
/// or for an unknown flag).
pub fn seccomp_notif_set_flags(notify_fd: BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    // SAFETY: the command takes the flags by value in the argument (seccomp_notify_ioctl passes
    // `arg` itself to seccomp_notify_set_flags); no memory is passed.
    let ret = unsafe {
        libc::ioctl(
            notify_fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            flags as libc::c_ulong,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// ioctl(SECCOMP_IOCTL_NOTIF_ADDFD): install a copy of `src` in the target's fd table and
/// return its number there. With `send`, the same ioctl also answers the notification with that
/// number as the syscall's result (SECCOMP_ADDFD_FLAG_SEND, atomically).
pub fn seccomp_notif_addfd(
    notify_fd: BorrowedFd<'_>,
    id: u64,
    src: BorrowedFd<'_>,
    target: AddfdTarget,
    cloexec: bool,
    send: bool,
) -> io::Result<i32> {
    let (mut flags, newfd) = match target {
        AddfdTarget::Lowest => (0, 0),
        AddfdTarget::At(n) => (libc::SECCOMP_ADDFD_FLAG_SETFD as u32, n),
    };
    if send {
        flags |= libc::SECCOMP_ADDFD_FLAG_SEND as u32;
    }
    let a = libc::seccomp_notif_addfd {
        id,
        flags,
        srcfd: src.as_raw_fd() as u32,
        newfd,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: the kernel reads one `struct seccomp_notif_addfd` (the size the command encodes)
    // from our local `a`; `src` is borrowed, so it stays open until the kernel has taken its
    // own reference. The returned number lives in the target's table, not ours: no ownership.
    let ret = unsafe {
        libc::ioctl(
            notify_fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ADDFD,
            &a as *const libc::seccomp_notif_addfd,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_struct_sizes_match_ours() {
        // SECCOMP_GET_NOTIF_SIZES needs no privilege (kernel >= 5.0).
        let k = seccomp_notify_sizes().unwrap();
        assert_eq!(k.data, SeccompNotifSizes::OURS.data);
        assert!(k.notif >= SeccompNotifSizes::OURS.notif);
        assert!(k.notif_resp >= SeccompNotifSizes::OURS.notif_resp);
        assert_eq!(
            SeccompNotifSizes::OURS,
            SeccompNotifSizes {
                notif: 80,
                notif_resp: 24,
                data: 64
            }
        );
    }

    #[test]
    fn empty_or_oversized_programs_are_refused_before_the_kernel() {
        let e = seccomp_set_mode_filter(0, &[]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let big = vec![
            SockFilter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x7fff_0000
            };
            BPF_MAXINSNS + 1
        ];
        let e = seccomp_set_mode_filter(0, &big).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn ioctls_on_a_non_listener_fd_fail_cleanly() {
        let f = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsFd;
        assert!(seccomp_notif_recv(f.as_fd()).is_err());
        assert!(seccomp_notif_send(f.as_fd(), &SeccompNotifResp::fail(1, libc::EPERM)).is_err());
        assert!(seccomp_notif_id_valid(f.as_fd(), 1).is_err());
        assert!(
            seccomp_notif_addfd(f.as_fd(), 1, f.as_fd(), AddfdTarget::Lowest, true, false).is_err()
        );
    }
}

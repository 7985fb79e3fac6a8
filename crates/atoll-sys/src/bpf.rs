//! bpf(2) for cgroup v2 device programs: load a BPF_PROG_TYPE_CGROUP_DEVICE program, attach it to
//! a cgroup directory fd, list and detach the programs already there. rustix and nix do not wrap
//! bpf(2); each command gets its own `#[repr(C)]` prefix of `union bpf_attr`, and the kernel
//! zero-fills the rest of the union (bpf_check_uarg_tail_zero accepts a shorter `size`).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// enum bpf_prog_type: BPF_PROG_TYPE_CGROUP_DEVICE.
pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// enum bpf_attach_type: BPF_CGROUP_DEVICE.
pub const BPF_CGROUP_DEVICE: u32 = 6;
/// Attach flag: several programs may sit on one cgroup; all of them must allow an access.
pub const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// The raw call. Callers pass a pointer to one of the attr structs above and its exact size.
///
/// # Safety
/// `attr` must point to `size` readable and writable bytes that stay alive for the call, and every
/// pointer stored inside it must be valid for what `cmd` makes the kernel read or write.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: forwarded from the caller's contract; `attr` is a live &mut, so the kernel's writes
    // (prog_cnt, ...) land in memory we own exclusively for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// The verifier's complaint on a failed BPF_PROG_LOAD, kept with the errno. The message shows
/// the errno, so it is no `source()` (a cause is printed once).
#[derive(Debug, thiserror::Error)]
#[error("{errno}{}", if verifier_log.is_empty() { String::new() } else { format!(" (verifier: {verifier_log})") })]
pub struct ProgLoadError {
    pub errno: io::Error,
    pub verifier_log: String,
}

/// bpf(BPF_PROG_LOAD) of a BPF_PROG_TYPE_CGROUP_DEVICE program. `insns` are raw 8-byte `struct
/// bpf_insn` values in host byte order. On EINVAL/EACCES the load is retried once with a verifier
/// log so the error can say why.
pub fn bpf_prog_load_cgroup_device(
    insns: &[u64],
    license: &CStr,
    name: &str,
) -> Result<OwnedFd, ProgLoadError> {
    let mut prog_name = [0u8; 16];
    for (dst, src) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src;
    }
    let load = |log: Option<&mut [u8]>| -> io::Result<OwnedFd> {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name,
            expected_attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        // SAFETY: `insns`, `license` and the optional log buffer are borrowed for this whole
        // closure call, so the addresses stored in `attr` stay valid while the kernel reads the
        // program (insn_cnt * 8 bytes), the NUL-terminated license, and writes at most
        // log_size bytes of log.
        let fd = unsafe { bpf(BPF_PROG_LOAD, &mut attr)? };
        // SAFETY: on success BPF_PROG_LOAD returns a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    };
    match load(None) {
        Ok(fd) => Ok(fd),
        Err(errno) => {
            let mut buf = vec![0u8; 64 * 1024];
            let verifier_log = match load(Some(&mut buf)) {
                Ok(_) => String::new(),
                Err(_) => {
                    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                    String::from_utf8_lossy(&buf[..end]).trim().to_string()
                }
            };
            Err(ProgLoadError {
                errno,
                verifier_log,
            })
        }
    }
}

/// bpf(BPF_PROG_ATTACH): attach `prog` to the cgroup directory `cgroup` as `attach_type`.
pub fn bpf_prog_attach(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
    };
    // SAFETY: `attr` holds no pointers; both fds are borrowed and so stay open during the call.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr)? };
    Ok(())
}

/// bpf(BPF_PROG_DETACH): detach exactly `prog` (needed with BPF_F_ALLOW_MULTI) from `cgroup`.
pub fn bpf_prog_detach(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: 0,
    };
    // SAFETY: `attr` holds no pointers; both fds are borrowed and so stay open during the call.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr)? };
    Ok(())
}

/// bpf(BPF_PROG_QUERY): the ids of the programs attached directly to `cgroup` as `attach_type`.
pub fn bpf_prog_query(cgroup: BorrowedFd<'_>, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = ProgQueryAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        // SAFETY: `ids` is a live, exclusively borrowed buffer of prog_cnt u32s; the kernel writes
        // at most prog_cnt ids into it and returns ENOSPC (with the real count) if it is short.
        match unsafe { bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            Err(e)
                if e.raw_os_error() == Some(libc::ENOSPC) && attr.prog_cnt as usize > ids.len() =>
            {
                ids = vec![0u32; attr.prog_cnt as usize];
            }
            Err(e) => return Err(e),
        }
    }
}

/// bpf(BPF_PROG_GET_FD_BY_ID): an fd for an already loaded program (needs CAP_SYS_ADMIN).
pub fn bpf_prog_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    // SAFETY: `attr` holds no pointers.
    let fd = unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)? };
    // SAFETY: on success the kernel returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

//! `Filter`: a compiled program plus what installing it needs, prepared so that `install` is a
//! single seccomp(2) call with no allocation (it runs in the container's init just before execve).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use atoll_sys::seccomp::{self as sys, SockFilter};
use oci_spec::runtime::LinuxSeccomp;

use crate::cache::CacheEntry;
use crate::profile::Plan;
use crate::SeccompError;

/// A compiled, ready-to-install program.
#[derive(Debug, Clone)]
pub struct Filter {
    prog: Vec<SockFilter>,
    flags: u32,
    notify: bool,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
}

/// Whether `compile_cached` found a usable entry (tests and logs want to know).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    /// Compiled; `stored` says whether the cache file could be written.
    Miss {
        stored: bool,
    },
}

impl Filter {
    /// Compile OCI `linux.seccomp` (runtime-spec 1.2) with libseccomp and export the program.
    ///
    /// Syscall names this libseccomp does not know are skipped, as runc does. Refused, naming the
    /// field: an errnoRet on an action without one, an errno above 4095, an argument index above
    /// 5, an architecture libseccomp cannot add, SCMP_ACT_NOTIFY without listenerPath or as the
    /// default action, and a program longer than the kernel's 4096 instructions. Unknown action,
    /// architecture, operator and flag strings are already refused when config.json is parsed.
    pub fn compile(spec: &LinuxSeccomp) -> Result<Filter, SeccompError> {
        let plan = Plan::from_spec(spec)?;
        let prog = plan.compile()?;
        Ok(Filter::new(spec, &plan, prog))
    }

    /// As [`Filter::compile`], reusing `cache_dir/<hash>.bpf` when it holds this exact profile
    /// compiled by this libseccomp on this machine. The cache only saves time: a corrupt entry
    /// is recompiled and rewritten, and failing to write one is not an error.
    pub fn compile_cached(spec: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter, SeccompError> {
        Filter::compile_cached_reporting(spec, cache_dir).map(|(f, _)| f)
    }

    /// [`Filter::compile_cached`], also saying whether the cache was used.
    pub fn compile_cached_reporting(
        spec: &LinuxSeccomp,
        cache_dir: &Path,
    ) -> Result<(Filter, CacheUse), SeccompError> {
        // The checks run on every call, so a cached entry never skips a refusal.
        let plan = Plan::from_spec(spec)?;
        let entry = CacheEntry::new(cache_dir, spec);
        if let Some(prog) = entry.load() {
            return Ok((Filter::new(spec, &plan, prog), CacheUse::Hit));
        }
        let prog = plan.compile()?;
        let stored = entry.store(&prog).is_ok();
        Ok((Filter::new(spec, &plan, prog), CacheUse::Miss { stored }))
    }

    fn new(spec: &LinuxSeccomp, plan: &Plan, prog: Vec<SockFilter>) -> Filter {
        Filter {
            prog,
            flags: plan.flags,
            notify: plan.notify,
            listener_path: spec.listener_path().clone(),
            listener_metadata: spec.listener_metadata().clone(),
        }
    }

    /// True when the profile uses SCMP_ACT_NOTIFY: `install` then returns the listener fd.
    pub fn uses_notify(&self) -> bool {
        self.notify
    }

    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    pub fn listener_metadata(&self) -> Option<&str> {
        self.listener_metadata.as_deref()
    }

    /// The exported classic-BPF program.
    pub fn program(&self) -> &[SockFilter] {
        &self.prog
    }

    /// The seccomp(2) flags `install` passes (SECCOMP_FILTER_FLAG_*).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Install on the calling thread: seccomp(SECCOMP_SET_MODE_FILTER, flags, prog), with
    /// SECCOMP_FILTER_FLAG_NEW_LISTENER when the profile notifies; returns that listener fd
    /// (O_CLOEXEC). Does not allocate.
    ///
    /// The kernel requires no_new_privs to be set, or CAP_SYS_ADMIN in the caller's user
    /// namespace (EACCES otherwise). This crate never sets no_new_privs: the runtime does, when
    /// process.noNewPrivileges says so; without it, install while CAP_SYS_ADMIN is still held.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let fd = sys::seccomp_set_mode_filter(self.flags, &self.prog).map_err(|source| {
            SeccompError::Install {
                flags: self.flags,
                source,
            }
        })?;
        if self.notify && fd.is_none() {
            // Cannot happen (NEW_LISTENER is set whenever notify is); fail closed if it does.
            return Err(SeccompError::Install {
                flags: self.flags,
                source: std::io::Error::from_raw_os_error(libc::EBADF),
            });
        }
        Ok(fd)
    }
}

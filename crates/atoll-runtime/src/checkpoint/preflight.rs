//! Before anything is frozen: a CRIU that can dump this container on this kernel, no open file
//! CRIU cannot serialize (named by pid, fd and why), and room for the images.

use std::fs;
use std::path::{Path, PathBuf};

use super::{CheckpointError, Result};

/// Where atoll finds CRIU: --criu, else $ATOLL_CRIU, else the build scripts/criu.sh installs,
/// else `criu` on PATH.
pub fn criu_path(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("ATOLL_CRIU") {
        return p.into();
    }
    let built = Path::new(INSTALLED);
    if built.exists() {
        return built.to_path_buf();
    }
    "criu".into()
}

/// The CRIU binary `criu_path` would run, when it exists (a bare name is looked up on PATH):
/// what `atoll features` reports, without running it.
pub fn criu_found(given: Option<&Path>) -> Option<PathBuf> {
    let p = criu_path(given);
    if p.components().count() > 1 {
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(&p))
        .find(|c| c.is_file())
}

const INSTALLED: &str = "/usr/local/sbin/criu";
/// The result of scripts/criu.sh's smoke test (a dump of a process holding a TCP socket).
const STAMP: &str = "/var/lib/atoll/criu-check";
/// CRIU 4.2 has the fix for kernels >= 6.16, where getsockopt(SOL_SOCKET, 16) on an inet socket
/// is EOPNOTSUPP and older CRIUs fail every dump of such a socket; `criu check` misses it.
const INET_FIXED: u32 = 40200;

pub struct Preflight;

impl Preflight {
    /// CRIU runs, answers the RPC, and is new enough for inet sockets on this kernel (or the
    /// setup's smoke test showed that this very version dumps one here).
    pub fn criu_only(criu: &Path) -> Result<u32> {
        let mut c = rust_criu::Criu::new_with_criu_path(criu.to_string_lossy().into_owned())
            .map_err(|e| CheckpointError::Preflight(format!("criu {criu:?}: {e}")))?;
        let version = c.get_criu_version().map_err(|e| {
            CheckpointError::Preflight(format!(
                "criu {criu:?} does not answer its RPC (VERSION): {e}; scripts/setup.sh \
                 installs a working one at {INSTALLED}"
            ))
        })?;
        if version >= INET_FIXED || smoke_tested(version) {
            keep_kdat_cache(criu, version);
            return Ok(version);
        }
        Err(CheckpointError::Preflight(format!(
            "criu {criu:?} is version {}: CRIU before 4.2 fails to dump any inet socket on \
             kernels >= 6.16, and no smoke test in {STAMP} shows this version working on kernel \
             {}; run scripts/criu.sh",
            dotted(version),
            kernel()
        )))
    }

    /// Everything `checkpoint` checks before CRIU freezes the container.
    pub fn run(criu: &Path, pids: &[i32], images: &Path) -> Result<()> {
        Self::criu_only(criu)?;
        let mut bad = Vec::new();
        let mut rss_kib = 0u64;
        for &pid in pids {
            bad.extend(unsupported_fds(pid));
            rss_kib += rss_kib_of(pid);
        }
        if !bad.is_empty() {
            return Err(CheckpointError::Preflight(format!(
                "CRIU cannot checkpoint these open files: {}",
                bad.join("; ")
            )));
        }
        let need = rss_kib * 1024 + MARGIN;
        let st = rustix::fs::statvfs(images).map_err(|e| CheckpointError::Io {
            what: "statvfs",
            path: images.to_path_buf(),
            source: e.into(),
        })?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < need {
            return Err(CheckpointError::Preflight(format!(
                "{images:?} has {} MiB free, the images need about {} MiB (the container's \
                 resident memory plus {} MiB)",
                free >> 20,
                need >> 20,
                MARGIN >> 20
            )));
        }
        Ok(())
    }
}

/// CRIU's cache of its kernel probes, read by every CRIU that starts (criu/kerndat.c).
const KDAT: &str = "/run/criu.kdat";
/// Which boot and which CRIU made the KDAT that atoll wrote.
const KDAT_TAG: &str = "/run/criu.kdat.atoll";
/// statfs(2) f_type of a tmpfs (linux/magic.h).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Every CRIU run probes the kernel first (about 50-70 ms here, twice per migration, inside the
/// outage) unless /run/criu.kdat holds the probes of an earlier run. CRIU writes that cache only
/// when /run is a tmpfs, so that it dies with the boot (kerndat.c, kerndat_save_cache), but
/// reads it from any filesystem. Where /run is no tmpfs, atoll makes the cache: `criu check` in
/// a private mount namespace over a tmpfs /run, copied out, tagged with the boot id and the CRIU
/// version; a cache of another boot or another CRIU is replaced, never used. Only a speed-up:
/// a failure leaves CRIU probing as before.
fn keep_kdat_cache(criu: &Path, version: u32) {
    if rustix::fs::statfs("/run").is_ok_and(|st| is_tmpfs(&st)) {
        return;
    }
    let Ok(boot) = fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
        return;
    };
    let tag = format!("boot={} criu={version}\n", boot.trim());
    if Path::new(KDAT).is_file() && fs::read_to_string(KDAT_TAG).is_ok_and(|t| t == tag) {
        return;
    }
    if let Err(e) = make_kdat_cache(criu, &tag) {
        tracing::debug!("no CRIU kdat cache (CRIU probes the kernel on every run): {e}");
    }
}

// f_type's width differs between architectures: the cast is a no-op only on some.
#[allow(clippy::unnecessary_cast)]
fn is_tmpfs(st: &rustix::fs::StatFs) -> bool {
    st.f_type as i64 == TMPFS_MAGIC
}

fn make_kdat_cache(criu: &Path, tag: &str) -> std::io::Result<()> {
    // Old probes go first: CRIU trusts any file with its magic numbers.
    for stale in [KDAT, KDAT_TAG] {
        match fs::remove_file(stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(
            r#"mount -t tmpfs atoll-kdat /run && "$0" check >/dev/null 2>&1 && cat /run/criu.kdat"#,
        )
        .arg(criu)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(std::io::Error::other(format!(
            "`criu check` over a private tmpfs /run: {}",
            out.status
        )));
    }
    let tmp = format!("{KDAT}.atoll-new");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // As CRIU makes it: root's alone.
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?
            .write_all(&out.stdout)?;
    }
    fs::rename(&tmp, KDAT)?;
    fs::write(KDAT_TAG, tag)
}

/// Room for the non-memory images (fds, mounts, tmpfs contents are bounded by their own sizes).
const MARGIN: u64 = 16 << 20;

fn smoke_tested(version: u32) -> bool {
    let Ok(s) = fs::read_to_string(STAMP) else {
        return false;
    };
    let want_version = format!("version={}", dotted(version));
    let want_kernel = format!("kernel={}", kernel());
    s.lines().any(|l| l == want_version)
        && s.lines().any(|l| l == want_kernel)
        && s.lines().any(|l| l == "inet_dump=ok")
}

fn dotted(v: u32) -> String {
    let (major, minor, sub) = (v / 10000, v / 100 % 100, v % 100);
    if sub == 0 {
        format!("{major}.{minor}")
    } else {
        format!("{major}.{minor}.{sub}")
    }
}

fn kernel() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// File kinds CRIU 4.2 has no dumper for, as the kernel names them in /proc/PID/fd.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "anon_inode:[io_uring]",
        "io_uring instances cannot be dumped",
    ),
    ("anon_inode:bpf-prog", "BPF programs cannot be dumped"),
    ("anon_inode:[perf_event]", "perf events cannot be dumped"),
    ("anon_inode:[userfaultfd]", "a userfaultfd cannot be dumped"),
    ("anon_inode:kvm-", "KVM file descriptors cannot be dumped"),
    ("anon_inode:[vfio", "VFIO devices cannot be dumped"),
    (
        "anon_inode:[landlock-ruleset]",
        "Landlock rulesets cannot be dumped",
    ),
    ("anon_inode:[secretmem]", "secretmem cannot be dumped"),
];

fn why_unsupported(link: &str) -> Option<&'static str> {
    UNSUPPORTED
        .iter()
        .find(|(p, _)| link.starts_with(p))
        .map(|(_, why)| *why)
}

fn unsupported_fds(pid: i32) -> Vec<String> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Ok(target) = fs::read_link(e.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        if let Some(why) = why_unsupported(&t) {
            out.push(format!(
                "pid {pid} fd {} ({t}): {why}",
                e.file_name().to_string_lossy()
            ));
        }
    }
    out
}

fn rss_kib_of(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_print_dotted() {
        assert_eq!(dotted(40201), "4.2.1");
        assert_eq!(dotted(40200), "4.2");
        assert_eq!(dotted(31700), "3.17");
    }

    #[test]
    fn fd_kinds() {
        assert!(why_unsupported("anon_inode:[io_uring]").is_some());
        assert!(why_unsupported("anon_inode:bpf-prog").is_some());
        assert!(why_unsupported("anon_inode:kvm-vcpu:0").is_some());
        for ok in [
            "pipe:[123]",
            "socket:[9]",
            "/dev/null",
            "anon_inode:[eventpoll]",
            "anon_inode:[eventfd]",
        ] {
            assert!(why_unsupported(ok).is_none(), "{ok}");
        }
    }

    #[test]
    fn own_fds_have_nothing_unsupported() {
        assert!(unsupported_fds(std::process::id() as i32).is_empty());
        assert!(rss_kib_of(std::process::id() as i32) > 0);
    }
}

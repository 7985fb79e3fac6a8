//! The on-disk cache of exported programs: `<dir>/<fnv64 of the key>.bpf`, where the key is the
//! profile's JSON, the libseccomp version, the machine and this crate's version. The file holds
//! the whole key, so a hash collision is a miss, never somebody else's filter.
//!
//! File: "ATOLLBPF" | u32 key length | key | u32 instruction count | program | u64 FNV-1a of all
//! before it. Anything else is corrupt: ignored and rewritten.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use atoll_sys::seccomp::SockFilter;
use oci_spec::runtime::LinuxSeccomp;

use crate::profile::{decode_program, encode_program};

const MAGIC: &[u8; 8] = b"ATOLLBPF";

pub(crate) struct CacheEntry {
    key: Vec<u8>,
    pub path: PathBuf,
}

impl CacheEntry {
    pub fn new(dir: &Path, spec: &LinuxSeccomp) -> CacheEntry {
        // Struct fields serialize in declaration order and the profile holds no maps, so this
        // JSON is canonical for a given oci-spec version (which the crate version pins).
        // Where the notify fd goes (listenerPath, listenerMetadata) is not part of the program:
        // leaving it out keeps one entry per filter, not one per container or island.
        let mut program_only = spec.clone();
        program_only.set_listener_path(None);
        program_only.set_listener_metadata(None);
        let mut key = serde_json::to_vec(&program_only).expect("LinuxSeccomp serializes");
        let lib = libseccomp::ScmpVersion::current()
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
            .unwrap_or_default();
        key.extend_from_slice(
            format!(
                "\0libseccomp {lib}\0{}\0atoll-seccomp {}\0{}",
                std::env::consts::ARCH,
                env!("CARGO_PKG_VERSION"),
                crate::profile::CODEGEN
            )
            .as_bytes(),
        );
        let path = dir.join(format!("{:016x}.bpf", fnv1a(&key)));
        CacheEntry { key, path }
    }

    /// The cached program, if the file exists, is whole and was made for this exact key.
    pub fn load(&self) -> Option<Vec<SockFilter>> {
        let bytes = std::fs::read(&self.path).ok()?;
        let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
        if fnv1a(body).to_ne_bytes() != sum {
            return None;
        }
        let rest = body.strip_prefix(MAGIC)?;
        let (key, rest) = take_counted(rest, 1)?;
        if key != self.key {
            return None;
        }
        let (prog, rest) = take_counted(rest, 8)?;
        if !rest.is_empty() {
            return None;
        }
        decode_program(prog)
    }

    /// Write the entry atomically: a private temp file in the same directory, then rename(2), so
    /// a reader sees the old file, the new one, or none; never half of one.
    pub fn store(&self, prog: &[SockFilter]) -> std::io::Result<()> {
        let dir = self.path.parent().expect("cache path has a directory");
        // Only the cache's own directory is private: the directories above it (the runtime's
        // --root on a fresh boot) are made as the runtime makes its root, 0711, so that a
        // process with another uid can still reach what lives beside the cache there.
        if let Some(up) = dir.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(up)?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut out = Vec::with_capacity(32 + self.key.len() + prog.len() * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.key.len() as u32).to_ne_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&(prog.len() as u32).to_ne_bytes());
        encode_program(prog, &mut out);
        out.extend_from_slice(&fnv1a(&out).to_ne_bytes());

        static SEQ: AtomicU32 = AtomicU32::new(0);
        let tmp = self.path.with_extension(format!(
            "tmp.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        prune(dir, MAX_ENTRIES.saturating_sub(1));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&out).and_then(|()| f.sync_data()))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if written.is_err() {
            // Best effort: the temp file may not exist, and the write error is the one to report.
            let _tmp_may_be_missing = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// The cache keeps at most this many programs; the least recently written go first. A host
/// that runs many distinct profiles recompiles now and then instead of filling /run.
const MAX_ENTRIES: usize = 256;

/// Remove the oldest entries until at most `keep` remain (best effort: a concurrent writer may
/// add one meanwhile; a missing file is already gone).
fn prune(dir: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "bpf"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if entries.len() <= keep {
        return;
    }
    entries.sort();
    for (_, p) in &entries[..entries.len() - keep] {
        let _gone_already_is_fine = std::fs::remove_file(p);
    }
}

/// A u32 count of `unit`-byte items, then the items.
fn take_counted(bytes: &[u8], unit: usize) -> Option<(&[u8], &[u8])> {
    let (n, rest) = bytes.split_at_checked(4)?;
    let len = (u32::from_ne_bytes(n.try_into().ok()?) as usize).checked_mul(unit)?;
    rest.split_at_checked(len)
}

/// FNV-1a: a file name and a corruption check, not a security boundary (the key is compared
/// in full). Written here to avoid a dependency for ten lines.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use crate::testutil::{spec, TempDir};
    use crate::{CacheUse, Filter};

    const PROFILE: &str = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#;

    fn only_file(dir: &std::path::Path) -> std::path::PathBuf {
        let files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "one entry, no temp files left: {files:?}");
        files.into_iter().next().unwrap()
    }

    #[test]
    fn second_compile_reads_the_file() {
        let tmp = TempDir::new();
        let dir = tmp.path().join("cache");
        let s = spec(PROFILE);
        let (a, used) = Filter::compile_cached_reporting(&s, &dir).unwrap();
        assert_eq!(used, CacheUse::Miss { stored: true });
        let file = only_file(&dir);
        assert!(file.extension().is_some_and(|e| e == "bpf"), "{file:?}");
        let (b, used) = Filter::compile_cached_reporting(&s, &dir).unwrap();
        assert_eq!(used, CacheUse::Hit);
        assert_eq!(a.program(), b.program());
        assert_eq!(a.program(), Filter::compile(&s).unwrap().program());
        assert_eq!(a.flags(), b.flags());
    }

    #[test]
    fn only_the_cache_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new();
        let root = tmp.path().join("root");
        let dir = root.join(".cache/seccomp");
        Filter::compile_cached(&spec(PROFILE), &dir).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700 & !umask());
        assert_eq!(
            mode(&root),
            0o711 & !umask(),
            "the runtime root stays searchable"
        );
    }

    /// Read, not set: umask(2) is process-wide and the other tests run beside this one.
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn corrupt_entries_are_recompiled_and_rewritten() {
        let tmp = TempDir::new();
        let s = spec(PROFILE);
        Filter::compile_cached(&s, tmp.path()).unwrap();
        let file = only_file(tmp.path());
        let good = std::fs::read(&file).unwrap();
        let mut flipped = good.clone();
        let mid = flipped.len() - 20; // inside the program
        flipped[mid] ^= 0x40;
        for bad in [
            b"junk".to_vec(),
            Vec::new(),
            good[..good.len() - 9].to_vec(),
            flipped,
        ] {
            std::fs::write(&file, &bad).unwrap();
            let (f, used) = Filter::compile_cached_reporting(&s, tmp.path()).unwrap();
            assert_eq!(used, CacheUse::Miss { stored: true });
            assert_eq!(f.program(), Filter::compile(&s).unwrap().program());
            assert_eq!(std::fs::read(&file).unwrap(), good);
        }
    }

    #[test]
    fn an_entry_for_another_profile_is_not_used() {
        let tmp = TempDir::new();
        let other = spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["rmdir"],"action":"SCMP_ACT_KILL"}]}"#,
        );
        Filter::compile_cached(&other, tmp.path()).unwrap();
        let theirs = std::fs::read(only_file(tmp.path())).unwrap();
        // Plant the other profile's (valid, checksummed) entry under our name: a hash collision.
        let s = spec(PROFILE);
        let ours = super::CacheEntry::new(tmp.path(), &s).path;
        std::fs::write(&ours, theirs).unwrap();
        let (f, used) = Filter::compile_cached_reporting(&s, tmp.path()).unwrap();
        assert_eq!(used, CacheUse::Miss { stored: true });
        assert_eq!(f.program(), Filter::compile(&s).unwrap().program());
    }

    #[test]
    fn refusals_are_not_skipped_by_a_cache_hit_and_an_unwritable_cache_is_no_error() {
        let tmp = TempDir::new();
        let bad = spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        assert!(Filter::compile_cached(&bad, tmp.path()).is_err());
        let file_in_the_way = tmp.path().join("f");
        std::fs::write(&file_in_the_way, b"").unwrap();
        let (_, used) =
            Filter::compile_cached_reporting(&spec(PROFILE), &file_in_the_way.join("cache"))
                .unwrap();
        assert_eq!(used, CacheUse::Miss { stored: false });
    }

    #[test]
    fn the_listener_is_not_part_of_the_key_and_the_cache_is_bounded() {
        let tmp = TempDir::new();
        let notify = r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/a.sock","listenerMetadata":"name=a","syscalls":[{"names":["setns"],"action":"SCMP_ACT_NOTIFY"}]}"#;
        let a = spec(notify);
        let b = spec(
            &notify
                .replace("a.sock", "b.sock")
                .replace("name=a", "name=b"),
        );
        Filter::compile_cached(&a, tmp.path()).unwrap();
        let (fb, used) = Filter::compile_cached_reporting(&b, tmp.path()).unwrap();
        assert_eq!(
            used,
            CacheUse::Hit,
            "same program, other listener: one entry"
        );
        assert_eq!(
            fb.listener_path(),
            Some(std::path::Path::new("/run/b.sock"))
        );
        assert_eq!(fb.listener_metadata(), Some("name=b"));
        only_file(tmp.path());

        for n in 0..super::MAX_ENTRIES + 5 {
            let p = PROFILE.replace("\"errnoRet\":38", &format!("\"errnoRet\":{}", n + 1));
            Filter::compile_cached(&spec(&p), tmp.path()).unwrap();
        }
        let count = std::fs::read_dir(tmp.path()).unwrap().count();
        assert!(count <= super::MAX_ENTRIES, "{count} entries");
    }
}

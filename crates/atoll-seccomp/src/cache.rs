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
        let mut key = serde_json::to_vec(spec).expect("LinuxSeccomp serializes");
        let lib = libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default();
        key.extend_from_slice(format!("\0libseccomp {lib}\0{}\0atoll-seccomp {}", std::env::consts::ARCH, env!("CARGO_PKG_VERSION")).as_bytes());
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
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let mut out = Vec::with_capacity(32 + self.key.len() + prog.len() * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.key.len() as u32).to_ne_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&(prog.len() as u32).to_ne_bytes());
        encode_program(prog, &mut out);
        out.extend_from_slice(&fnv1a(&out).to_ne_bytes());

        static SEQ: AtomicU32 = AtomicU32::new(0);
        let tmp = self.path.with_extension(format!("tmp.{}.{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
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

/// A u32 count of `unit`-byte items, then the items.
fn take_counted(bytes: &[u8], unit: usize) -> Option<(&[u8], &[u8])> {
    let (n, rest) = bytes.split_at_checked(4)?;
    let len = (u32::from_ne_bytes(n.try_into().ok()?) as usize).checked_mul(unit)?;
    rest.split_at_checked(len)
}

/// FNV-1a: a file name and a corruption check, not a security boundary (the key is compared
/// in full). Written here to avoid a dependency for ten lines.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

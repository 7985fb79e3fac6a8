//! Helpers for this crate's unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use oci_spec::runtime::LinuxSeccomp;

pub fn spec(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).expect("test profile parses")
}

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "atoll-seccomp-test.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&p).expect("create test dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _gone_already_is_fine = std::fs::remove_dir_all(&self.0);
    }
}

/// Run a classic-BPF seccomp program on one `struct seccomp_data` (x86_64 layout, little-endian
/// argument words) and return the SECCOMP_RET_* value: enough of the BPF machine for the
/// programs libseccomp emits, so tests can ask what a filter does instead of how it is spelled.
pub fn run_bpf(prog: &[atoll_sys::seccomp::SockFilter], arch: u32, nr: i32, args: [u64; 6]) -> u32 {
    let mut data = [0u32; 16];
    data[0] = nr as u32;
    data[1] = arch;
    for (i, a) in args.iter().enumerate() {
        data[4 + 2 * i] = *a as u32;
        data[5 + 2 * i] = (*a >> 32) as u32;
    }
    let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
    loop {
        let f = prog[pc];
        pc += 1;
        let k = f.k;
        match f.code {
            0x20 => a = data[k as usize / 4], // ld [k]
            0x00 => a = k,                    // ld #k
            0x60 => a = mem[k as usize],      // ld M[k]
            0x61 => x = mem[k as usize],      // ldx M[k]
            0x01 => x = k,                    // ldx #k
            0x02 => mem[k as usize] = a,      // st M[k]
            0x03 => mem[k as usize] = x,      // stx M[k]
            0x54 => a &= k,                   // and #k
            0x44 => a |= k,                   // or #k
            0x07 => x = a,                    // tax
            0x87 => a = x,                    // txa
            0x05 => pc += k as usize,         // ja
            0x15 | 0x25 | 0x35 | 0x45 | 0x1d | 0x2d | 0x3d | 0x4d => {
                let v = if f.code & 0x08 != 0 { x } else { k };
                let taken = match f.code & 0xf0 {
                    0x10 => a == v,
                    0x20 => a > v,
                    0x30 => a >= v,
                    _ => a & v != 0,
                };
                pc += usize::from(if taken { f.jt } else { f.jf });
            }
            0x06 => return k, // ret #k
            0x16 => return a, // ret a
            other => panic!("BPF opcode {other:#x} at {} not modelled", pc - 1),
        }
    }
}

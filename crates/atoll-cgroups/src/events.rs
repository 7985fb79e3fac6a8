//! What the kernel counted about a cgroup's limits, for a diagnosis: OOM kills, forks refused
//! at the pids limit, and the limits in force. Read-only; a counter this host does not keep is
//! None rather than zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::fs::{read_opt, read_u64};

/// The counters and limits of one cgroup, and where each was read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Events {
    /// Whether the cgroup's directory still exists in the memory (or unified) hierarchy: it
    /// outlives its last task until the runtime deletes the container.
    pub exists: bool,
    /// Processes the OOM killer killed in this cgroup (v1 memory.oom_control `oom_kill`, v2
    /// memory.events `oom_kill`; Linux 4.13 and later).
    pub oom_kills: Option<u64>,
    /// Times the memory limit was hit and reclaim did not free enough (v2 memory.events `oom`;
    /// v1 has no such counter).
    pub ooms: Option<u64>,
    /// Forks and clones refused because the pids limit was reached (pids.events `max`, v1 and
    /// v2).
    pub pids_max_hits: Option<u64>,
    /// Bytes; None: no limit ("max", or v1's page-rounded LLONG_MAX).
    pub memory_limit: Option<u64>,
    pub memory_current: Option<u64>,
    /// None: no limit.
    pub pids_limit: Option<u64>,
    pub pids_current: Option<u64>,
    /// The files read, for evidence ("memory.oom_control" -> its path).
    pub sources: BTreeMap<&'static str, PathBuf>,
}

/// v1's "no limit" for memory.limit_in_bytes is LLONG_MAX rounded down to a page; anything at
/// or above 2^62 bytes is taken as unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn limit(v: Option<u64>) -> Option<u64> {
    v.filter(|&n| n != u64::MAX && n < V1_UNLIMITED)
}

/// `memory` is the cgroup's directory in the hierarchy holding the memory controller, `pids`
/// the one holding pids (the same directory on v2); `v2` says which files to read.
pub(crate) fn read(memory: Option<&Path>, pids: Option<&Path>, v2: bool) -> Events {
    let mut e = Events::default();
    if let Some(d) = memory {
        e.exists = d.is_dir();
        if v2 {
            let f = d.join("memory.events");
            if let Some(t) = read_opt(&f) {
                let k = flat_keyed(&t);
                e.oom_kills = k.get("oom_kill").copied();
                e.ooms = k.get("oom").copied();
                e.sources.insert("memory.events", f);
            }
            e.memory_limit = limit(read_u64(&d.join("memory.max")));
            e.memory_current = read_u64(&d.join("memory.current"));
        } else {
            let f = d.join("memory.oom_control");
            if let Some(t) = read_opt(&f) {
                e.oom_kills = flat_keyed(&t).get("oom_kill").copied();
                e.sources.insert("memory.oom_control", f);
            }
            e.memory_limit = limit(read_u64(&d.join("memory.limit_in_bytes")));
            e.memory_current = read_u64(&d.join("memory.usage_in_bytes"));
        }
    }
    if let Some(d) = pids {
        e.exists |= d.is_dir();
        let f = d.join("pids.events");
        if let Some(t) = read_opt(&f) {
            e.pids_max_hits = flat_keyed(&t).get("max").copied();
            e.sources.insert("pids.events", f);
        }
        e.pids_limit = limit(read_u64(&d.join("pids.max")));
        e.pids_current = read_u64(&d.join("pids.current"));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_files_give_the_same_counters() {
        let dir = std::env::temp_dir().join(format!("atoll-cg-events-{}", std::process::id()));
        let (v1, v2) = (dir.join("v1"), dir.join("v2"));
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(
            v1.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(v1.join("pids.events"), "max 3\n").unwrap();
        std::fs::write(v1.join("pids.max"), "max\n").unwrap();
        std::fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        std::fs::write(v2.join("memory.max"), "8388608\n").unwrap();
        std::fs::write(v2.join("pids.events"), "max 0\n").unwrap();
        std::fs::write(v2.join("pids.max"), "16\n").unwrap();
        std::fs::write(v2.join("pids.current"), "16\n").unwrap();

        let a = read(Some(&v1), Some(&v1), false);
        assert!(a.exists);
        assert_eq!(
            (a.oom_kills, a.ooms, a.pids_max_hits),
            (Some(2), None, Some(3))
        );
        assert_eq!((a.memory_limit, a.pids_limit), (None, None));
        let b = read(Some(&v2), Some(&v2), true);
        assert_eq!(
            (b.oom_kills, b.ooms, b.pids_max_hits),
            (Some(1), Some(1), Some(0))
        );
        assert_eq!((b.memory_limit, b.pids_limit), (Some(8 << 20), Some(16)));
        assert_eq!(b.pids_current, Some(16));
        let gone = read(Some(&dir.join("gone")), None, true);
        assert!(!gone.exists);
        assert_eq!(gone.oom_kills, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

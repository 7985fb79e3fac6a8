//! Where the cgroup hierarchies are mounted on this host, read once per process from
//! /proc/self/mountinfo (and /proc/self/cgroup for relative paths), and which mode that makes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::CgroupError;

/// How the host arranges its cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only cgroup v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 mount used for process tracking only (systemd "hybrid").
    Hybrid,
    /// One cgroup2 hierarchy (at the conventional root, /sys/fs/cgroup).
    V2,
}

/// v1 controllers this crate knows; anything else in the super options is a mount flag.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub v2: bool,
    /// v1: controllers in mount order ("cpu", "cpuacct") or ["name=systemd"]; v2: empty.
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    /// The mountinfo "root" field: the cgroup that is visible at `mount_point`.
    pub root: PathBuf,
}

impl Mount {
    /// The mount option / directory name: "cpu,cpuacct", "name=systemd", "" for v2.
    pub fn controller_list(&self) -> String {
        self.controllers.join(",")
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub mode: Mode,
    /// v1 hierarchies (one per distinct controller set) and, in Hybrid or V2 mode, the cgroup2 mount.
    pub mounts: Vec<Mount>,
}

/// Parses mountinfo text. `v2_root` says whether the conventional root (/sys/fs/cgroup) is a
/// cgroup2 filesystem (statfs magic), which decides V2 over Hybrid when both kinds are mounted.
pub(crate) fn parse_mountinfo(text: &str, v2_root: bool) -> Result<Layout, CgroupError> {
    let mut v1: Vec<Mount> = Vec::new();
    let mut v2: Vec<Mount> = Vec::new();
    for line in text.lines() {
        // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - cgroup cgroup rw,cpu,cpuacct
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let root = PathBuf::from(unescape(left[3]));
        let mount_point = PathBuf::from(unescape(left[4]));
        match right[0] {
            "cgroup2" => v2.push(Mount {
                v2: true,
                controllers: Vec::new(),
                mount_point,
                root,
            }),
            "cgroup" => {
                let controllers: Vec<String> = right[2]
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                    .map(str::to_string)
                    .collect();
                // The same hierarchy may be mounted twice (bind mounts); the first one wins.
                if !controllers.is_empty() && !v1.iter().any(|m| m.controllers == controllers) {
                    v1.push(Mount {
                        v2: false,
                        controllers,
                        mount_point,
                        root,
                    });
                }
            }
            _ => {}
        }
    }
    let conventional = Path::new("/sys/fs/cgroup");
    let pick_v2 = |mounts: &[Mount], prefer: &Path| {
        mounts
            .iter()
            .find(|m| m.mount_point == prefer)
            .or_else(|| mounts.first())
            .cloned()
    };
    if v2_root || v1.is_empty() {
        let Some(m) = pick_v2(&v2, conventional) else {
            return Err(CgroupError::NoCgroupfs);
        };
        return Ok(Layout {
            mode: Mode::V2,
            mounts: vec![m],
        });
    }
    let mut mounts = v1;
    let mode = match pick_v2(&v2, &conventional.join("unified")) {
        Some(m) => {
            mounts.push(m);
            Mode::Hybrid
        }
        None => Mode::V1,
    };
    Ok(Layout { mode, mounts })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/<pid>/cgroup: "hierarchy-id:controller-list:path". Keyed by controller list
/// ("cpu,cpuacct", "name=systemd") with "" for the v2 line.
pub(crate) fn parse_proc_cgroup(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some((controllers.to_string(), path.to_string()))
        })
        .collect()
}

/// The cgroup of the calling process in the hierarchy of `mount`.
pub(crate) fn own_cgroup<'a>(own: &'a BTreeMap<String, String>, mount: &Mount) -> Option<&'a str> {
    if mount.v2 {
        return own.get("").map(String::as_str);
    }
    own.iter()
        .find(|(k, _)| {
            let set: Vec<&str> = k.split(',').collect();
            mount.controllers.iter().all(|c| set.contains(&c.as_str()))
        })
        .map(|(_, v)| v.as_str())
}

/// statfs(2) magic of a cgroup2 filesystem (linux/magic.h).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

fn detect() -> Result<Layout, CgroupError> {
    let text =
        atoll_sys::pseudofs::read("/proc/self/mountinfo").map_err(|e| CgroupError::Read {
            path: "/proc/self/mountinfo".into(),
            errno: crate::error::Errno::of(&e),
        })?;
    let v2_root = rustix::fs::statfs("/sys/fs/cgroup")
        // f_type is i64 here but a narrower type on other architectures.
        .map(|s| {
            #[allow(clippy::unnecessary_cast)]
            let magic = s.f_type as i64;
            magic == CGROUP2_SUPER_MAGIC
        })
        .unwrap_or(false);
    parse_mountinfo(&text, v2_root)
}

/// The host layout, detected on first use and cached for the life of the process.
pub(crate) fn layout() -> Result<&'static Layout, CgroupError> {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    if let Some(l) = LAYOUT.get() {
        return Ok(l);
    }
    // A failed detection is not cached: the next call may find cgroupfs mounted.
    let detected = detect()?;
    Ok(LAYOUT.get_or_init(|| detected))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_with_separate_cpu_and_cpuacct() {
        let l = parse_mountinfo(HYBRID, false).unwrap();
        assert_eq!(l.mode, Mode::Hybrid);
        let names: Vec<String> = l.mounts.iter().map(Mount::controller_list).collect();
        assert_eq!(names, ["cpu", "cpuacct", "memory", "name=systemd", ""]);
        assert_eq!(l.mounts[4].mount_point, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn classic_v1_comounted_cpu_cpuacct() {
        let text = "\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
27 24 0:23 / /mnt/memory\\040bind rw - cgroup cgroup rw,memory
";
        let l = parse_mountinfo(text, false).unwrap();
        assert_eq!(l.mode, Mode::V1);
        assert_eq!(l.mounts.len(), 2);
        assert!(l.mounts[0].has("cpuacct") && l.mounts[0].has("cpu"));
        assert_eq!(l.mounts[0].controller_list(), "cpu,cpuacct");
    }

    #[test]
    fn pure_v2() {
        let text = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = parse_mountinfo(text, true).unwrap();
        assert_eq!(l.mode, Mode::V2);
        assert_eq!(l.mounts.len(), 1);
        assert!(l.mounts[0].v2);
        assert!(parse_mountinfo("", false).is_err());
    }

    #[test]
    fn mountinfo_octal_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn proc_cgroup_lookup() {
        let own = parse_proc_cgroup("4:memory:/job/x\n2:cpu,cpuacct:/\n1:name=systemd:/s\n0::/u\n");
        let l = parse_mountinfo(HYBRID, false).unwrap();
        assert_eq!(own_cgroup(&own, &l.mounts[2]), Some("/job/x"));
        assert_eq!(own_cgroup(&own, &l.mounts[0]), Some("/"));
        assert_eq!(own_cgroup(&own, &l.mounts[1]), Some("/"));
        assert_eq!(own_cgroup(&own, &l.mounts[3]), Some("/s"));
        assert_eq!(own_cgroup(&own, &l.mounts[4]), Some("/u"));
    }
}

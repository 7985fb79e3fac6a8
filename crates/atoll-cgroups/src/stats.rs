//! Usage counters in the JSON shape of the "data" object of runc's `events --stats`. A counter
//! this host does not provide is left out rather than reported as zero.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::fs::{read_opt, read_u64};

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio: Option<Blkio>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttling: Option<Throttling>,
}

/// Nanoseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CpuUsage {
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Throttling {
    pub periods: u64,
    #[serde(rename = "throttledPeriods")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    pub usage: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    pub failcnt: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<u64>,
    pub usage: MemoryEntry,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<MemoryEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<MemoryEntry>,
    #[serde(rename = "kernelTCP", skip_serializing_if = "Option::is_none")]
    pub kernel_tcp: Option<MemoryEntry>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Pids {
    pub current: u64,
    /// 0 means no limit, as in runc.
    pub limit: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Blkio {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Hugetlb {
    pub usage: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    pub failcnt: u64,
}

/// "key value" lines (cpu.stat, memory.stat, cpuacct.stat).
fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn keyed(dir: &Path, file: &str) -> Option<BTreeMap<String, u64>> {
    read_opt(&dir.join(file)).map(|t| flat_keyed(&t))
}

/// "max" (or v1's huge "unlimited" number) reads as u64::MAX; runc reports that as is.
fn limit(dir: &Path, file: &str) -> u64 {
    read_u64(&dir.join(file)).unwrap_or(0)
}

/// Hugepage sizes as runc names them ("2MB", "1GB"), from /sys/kernel/mm/hugepages.
fn hugepage_sizes() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<(u64, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some((kb, page_size_name(kb)))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, n)| n).collect()
}

fn page_size_name(kb: u64) -> String {
    match kb {
        kb if kb >= 1 << 20 && kb % (1 << 20) == 0 => format!("{}GB", kb >> 20),
        kb if kb >= 1 << 10 && kb % (1 << 10) == 0 => format!("{}MB", kb >> 10),
        kb => format!("{kb}KB"),
    }
}

// ---- v1 ----------------------------------------------------------------------------------------

/// `dir_of(controller)` gives the container's directory in the hierarchy of that controller.
pub(crate) fn read_v1<'a>(dir_of: impl Fn(&'static str) -> Option<&'a Path>) -> Stats {
    let mut s = Stats::default();
    if let Some(d) = dir_of("cpuacct") {
        if let Some(total) = read_u64(&d.join("cpuacct.usage")) {
            let percpu = read_opt(&d.join("cpuacct.usage_percpu"))
                .map(|t| {
                    t.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            // cpuacct.stat counts USER_HZ ticks (100 per second on every Linux architecture).
            let st = keyed(d, "cpuacct.stat").unwrap_or_default();
            let ns = |k: &str| st.get(k).copied().unwrap_or(0) * 10_000_000;
            s.cpu = Some(Cpu {
                usage: CpuUsage {
                    total,
                    percpu,
                    kernel: ns("system"),
                    user: ns("user"),
                },
                throttling: None,
            });
        }
    }
    if let Some(d) = dir_of("cpu") {
        if let Some(st) = keyed(d, "cpu.stat") {
            let cpu = s.cpu.get_or_insert_with(Cpu::default);
            cpu.throttling = Some(Throttling {
                periods: st.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: st.get("throttled_time").copied().unwrap_or(0),
            });
        }
    }
    if let Some(d) = dir_of("memory") {
        s.memory = memory_v1(d);
    }
    if let Some(d) = dir_of("pids") {
        if let Some(current) = read_u64(&d.join("pids.current")) {
            let lim = limit(d, "pids.max");
            s.pids = Some(Pids {
                current,
                limit: if lim == u64::MAX { 0 } else { lim },
            });
        }
    }
    if let Some(d) = dir_of("blkio") {
        s.blkio = blkio_v1(d);
    }
    if let Some(d) = dir_of("hugetlb") {
        for size in hugepage_sizes() {
            let f = |what: &str| format!("hugetlb.{size}.{what}");
            if let Some(usage) = read_u64(&d.join(f("usage_in_bytes"))) {
                s.hugetlb.insert(
                    size.clone(),
                    Hugetlb {
                        usage,
                        max: read_u64(&d.join(f("max_usage_in_bytes"))),
                        failcnt: limit(d, &f("failcnt")),
                    },
                );
            } else if let Some(h) = hugetlb_v2(d, &size) {
                // Hybrid host with hugetlb in the unified hierarchy.
                s.hugetlb.insert(size, h);
            }
        }
    }
    s
}

fn memory_entry_v1(d: &Path, prefix: &str) -> Option<MemoryEntry> {
    let usage = read_u64(&d.join(format!("{prefix}usage_in_bytes")))?;
    Some(MemoryEntry {
        limit: limit(d, &format!("{prefix}limit_in_bytes")),
        usage,
        max: read_u64(&d.join(format!("{prefix}max_usage_in_bytes"))),
        failcnt: limit(d, &format!("{prefix}failcnt")),
    })
}

fn memory_v1(d: &Path) -> Option<Memory> {
    let usage = memory_entry_v1(d, "memory.")?;
    let raw = keyed(d, "memory.stat").unwrap_or_default();
    Some(Memory {
        cache: raw.get("total_cache").or_else(|| raw.get("cache")).copied(),
        usage,
        swap: memory_entry_v1(d, "memory.memsw."),
        kernel: memory_entry_v1(d, "memory.kmem."),
        kernel_tcp: memory_entry_v1(d, "memory.kmem.tcp."),
        raw,
    })
}

/// "8:0 Read 4096" lines; the "Total" line has no device and is skipped.
fn blkio_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (maj, min) = f.next()?.split_once(':')?;
            let op = f.next()?;
            let value = f.next()?.parse().ok()?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: op.to_string(),
                value,
            })
        })
        .collect()
}

fn blkio_v1(d: &Path) -> Option<Blkio> {
    // The BFQ counters when that scheduler runs, else the throttle layer's, as runc does.
    let pick = |a: &str, b: &str| read_opt(&d.join(a)).or_else(|| read_opt(&d.join(b)));
    let bytes = pick(
        "blkio.bfq.io_service_bytes_recursive",
        "blkio.throttle.io_service_bytes_recursive",
    )?;
    let ios = pick(
        "blkio.bfq.io_serviced_recursive",
        "blkio.throttle.io_serviced_recursive",
    )
    .unwrap_or_default();
    Some(Blkio {
        io_service_bytes_recursive: blkio_entries(&bytes),
        io_serviced_recursive: blkio_entries(&ios),
    })
}

// ---- v2 ----------------------------------------------------------------------------------------

pub(crate) fn read_v2(d: &Path) -> Stats {
    let mut s = Stats::default();
    if let Some(st) = keyed(d, "cpu.stat") {
        let us = |k: &str| st.get(k).copied().unwrap_or(0) * 1000;
        s.cpu = Some(Cpu {
            usage: CpuUsage {
                total: us("usage_usec"),
                percpu: Vec::new(),
                kernel: us("system_usec"),
                user: us("user_usec"),
            },
            throttling: st.get("nr_periods").map(|&periods| Throttling {
                periods,
                throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: us("throttled_usec"),
            }),
        });
    }
    if let Some(usage) = read_u64(&d.join("memory.current")) {
        let raw = keyed(d, "memory.stat").unwrap_or_default();
        let events = keyed(d, "memory.events").unwrap_or_default();
        let swap = read_u64(&d.join("memory.swap.current")).map(|usage| MemoryEntry {
            limit: limit(d, "memory.swap.max"),
            usage,
            max: read_u64(&d.join("memory.swap.peak")),
            failcnt: keyed(d, "memory.swap.events")
                .and_then(|e| e.get("max").copied())
                .unwrap_or(0),
        });
        s.memory = Some(Memory {
            cache: raw.get("file").copied(),
            usage: MemoryEntry {
                limit: limit(d, "memory.max"),
                usage,
                max: read_u64(&d.join("memory.peak")),
                failcnt: events.get("max").copied().unwrap_or(0),
            },
            swap,
            kernel: None,
            kernel_tcp: None,
            raw,
        });
    }
    if let Some(current) = read_u64(&d.join("pids.current")) {
        let lim = limit(d, "pids.max");
        s.pids = Some(Pids {
            current,
            limit: if lim == u64::MAX { 0 } else { lim },
        });
    }
    if let Some(text) = read_opt(&d.join("io.stat")) {
        s.blkio = Some(io_stat(&text));
    }
    for size in hugepage_sizes() {
        if let Some(h) = hugetlb_v2(d, &size) {
            s.hugetlb.insert(size, h);
        }
    }
    s
}

fn hugetlb_v2(d: &Path, size: &str) -> Option<Hugetlb> {
    let f = |what: &str| format!("hugetlb.{size}.{what}");
    let usage = read_u64(&d.join(f("current")))?;
    let failcnt = keyed(d, &f("events"))
        .and_then(|e| e.get("max").copied())
        .unwrap_or(0);
    Some(Hugetlb {
        usage,
        max: None,
        failcnt,
    })
}

/// io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per device.
fn io_stat(text: &str) -> Blkio {
    let mut b = Blkio::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((maj, min)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let b = io_stat("8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(b.io_service_bytes_recursive.len(), 2);
        assert_eq!(b.io_serviced_recursive[1].op, "Write");
        let e = blkio_entries("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].value, 4096);
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1_048_576), "1GB");
        assert_eq!(page_size_name(64), "64KB");
        let m = flat_keyed("usage_usec 5\nuser_usec 3\n");
        assert_eq!(m["usage_usec"], 5);
    }

    #[test]
    fn json_shape_omits_missing() {
        let s = Stats {
            pids: Some(Pids {
                current: 1,
                limit: 0,
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"pids":{"current":1,"limit":0}}"#
        );
    }
}

//! Resources → the list of cgroup file writes that apply them (plain data, no I/O), for v1 and
//! v2. Only what the resources set is written. v2 values follow runc's v1→v2 conversions.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};

use crate::devices::{self, DeviceRule};
use crate::error::CgroupError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Write `value` to the first of `files` that exists (usually just one) in the hierarchy that
    /// has `controller`. Each file may carry its own value (io.bfq.weight vs io.weight).
    Write {
        field: &'static str,
        controller: &'static str,
        files: Vec<(String, String)>,
    },
    /// v1 memory.limit_in_bytes + memory.memsw.limit_in_bytes, ordered against the current limit
    /// so neither write is rejected for crossing the other (runc's setMemoryAndSwap).
    /// `swap_optional`: the swap write is implied, skip it if the kernel lacks swap accounting.
    V1MemoryAndSwap {
        limit: i64,
        swap: i64,
        swap_optional: bool,
    },
    /// v1 cpu.rt_period_us / cpu.rt_runtime_us, after giving every ancestor cgroup the RT budget
    /// the runtime needs (a fresh parent has none: see `rt_budget`).
    V1RtSched {
        period: Option<u64>,
        runtime: Option<i64>,
    },
    /// checkBeforeUpdate: refuse a memory limit below current usage.
    CheckUsage { limit: i64 },
    /// v2 device access: load and attach this program (replacing the previous one).
    DevicePrograms(Vec<DeviceRule>),
}

fn write(field: &'static str, controller: &'static str, file: &str, value: String) -> Step {
    Step::Write {
        field,
        controller,
        files: vec![(file.to_string(), value)],
    }
}

impl Step {
    /// The v2 controller that must be enabled for this step, if any.
    pub fn controller(&self) -> Option<&'static str> {
        match self {
            Step::Write { controller, .. } => Some(controller),
            Step::V1MemoryAndSwap { .. } | Step::CheckUsage { .. } => Some("memory"),
            Step::V1RtSched { .. } => Some("cpu"),
            Step::DevicePrograms(_) => None,
        }
    }
}

fn unsupported(field: &'static str, why: &str) -> CgroupError {
    CgroupError::Unsupported {
        field,
        why: why.to_string(),
    }
}

/// Hugepage sizes and rdma device names end up in file names and lines: keep them to a safe set.
fn check_token(field: &'static str, value: &str) -> Result<(), CgroupError> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CgroupError::Invalid {
            field,
            value: value.to_string(),
            why: "expected letters, digits, '_' or '-'",
        })
    }
}

const NEG: &str = "negative: only -1 (no limit) is allowed";

fn out_of_range(field: &'static str, value: impl ToString, why: &'static str) -> CgroupError {
    CgroupError::Invalid {
        field,
        value: value.to_string(),
        why,
    }
}

/// Values the kernel would refuse, or read as something else, refused by name before anything is
/// made. -1 is "no limit" where a limit can be lifted; 0 keeps its runc meaning of "not set"
/// where the kernel has no use for it (pids, memory), and is refused where it would be passed on
/// or silently dropped (cpu period, quota, shares, realtime period).
pub fn check(res: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(p) = res.pids() {
        if p.limit() < -1 {
            return Err(out_of_range("linux.resources.pids.limit", p.limit(), NEG));
        }
    }
    if let Some(m) = res.memory() {
        for (f, v) in [
            ("linux.resources.memory.limit", m.limit()),
            ("linux.resources.memory.swap", m.swap()),
            ("linux.resources.memory.reservation", m.reservation()),
            ("linux.resources.memory.kernel", m.kernel()),
            ("linux.resources.memory.kernelTCP", m.kernel_tcp()),
        ] {
            if let Some(v) = v.filter(|&v| v < -1) {
                return Err(out_of_range(f, v, NEG));
            }
        }
    }
    if let Some(c) = res.cpu() {
        check_cpu(c)?;
    }
    Ok(())
}

/// sched(7) and the kernel's cpu controller: the CFS period is 1 ms..=1 s, a quota is at least
/// 1 ms or negative (no limit), shares are 2..=262144 (v1 clamps anything else), and an rt period
/// of 0 is refused.
fn check_cpu(c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(p) = c.period().filter(|p| !(1_000..=1_000_000).contains(p)) {
        return Err(out_of_range(
            "linux.resources.cpu.period",
            p,
            "the CFS period is 1000..=1000000 microseconds",
        ));
    }
    if let Some(q) = c
        .quota()
        .filter(|&q| q == 0 || q < -1 || (0..1_000).contains(&q))
    {
        return Err(out_of_range(
            "linux.resources.cpu.quota",
            q,
            "-1 (no limit) or at least 1000 microseconds",
        ));
    }
    if let Some(s) = c.shares().filter(|s| !(2..=262_144).contains(s)) {
        return Err(out_of_range(
            "linux.resources.cpu.shares",
            s,
            "shares are 2..=262144",
        ));
    }
    if c.realtime_period() == Some(0) {
        return Err(out_of_range(
            "linux.resources.cpu.realtimePeriod",
            0,
            "a period of 0 is refused by the kernel",
        ));
    }
    if let Some(r) = c.realtime_runtime().filter(|&r| r < -1) {
        return Err(out_of_range("linux.resources.cpu.realtimeRuntime", r, NEG));
    }
    Ok(())
}

// ---- v1 ----------------------------------------------------------------------------------------

pub(crate) fn plan_v1(res: &LinuxResources, updating: bool) -> Result<Vec<Step>, CgroupError> {
    let mut steps = Vec::new();
    if let Some(d) = res.devices() {
        let rules = devices::rules_from_oci(d)?;
        for (file, line) in devices::v1_writes(&rules) {
            steps.push(write("linux.resources.devices", "devices", file, line));
        }
    }
    if let Some(m) = res.memory() {
        memory_v1(m, updating, &mut steps)?;
    }
    if let Some(c) = res.cpu() {
        cpu_v1(c, &mut steps);
    }
    if let Some(p) = res.pids() {
        if let Some(v) = pids_value(p.limit()) {
            steps.push(write("linux.resources.pids.limit", "pids", "pids.max", v));
        }
    }
    if let Some(b) = res.block_io() {
        blkio_v1(b, &mut steps);
    }
    for h in res.hugepage_limits().iter().flatten() {
        check_token("linux.resources.hugepageLimits[].pageSize", h.page_size())?;
        // The v2 name is for hybrid hosts whose hugetlb controller sits in the unified hierarchy.
        let (size, limit) = (h.page_size(), h.limit().to_string());
        steps.push(Step::Write {
            field: "linux.resources.hugepageLimits",
            controller: "hugetlb",
            files: vec![
                (format!("hugetlb.{size}.limit_in_bytes"), limit.clone()),
                (format!("hugetlb.{size}.max"), limit),
            ],
        });
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            steps.push(write(
                "linux.resources.network.classID",
                "net_cls",
                "net_cls.classid",
                id.to_string(),
            ));
        }
        for p in n.priorities().iter().flatten() {
            let line = format!("{} {}", p.name(), p.priority());
            steps.push(write(
                "linux.resources.network.priorities",
                "net_prio",
                "net_prio.ifpriomap",
                line,
            ));
        }
    }
    rdma(res, &mut steps)?;
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(unsupported(
            "linux.resources.unified",
            "it is a cgroup v2 key/value map and this host uses cgroup v1 controllers",
        ));
    }
    Ok(steps)
}

fn memory_v1(m: &LinuxMemory, updating: bool, steps: &mut Vec<Step>) -> Result<(), CgroupError> {
    const C: &str = "memory";
    let limit = m.limit().unwrap_or(0);
    let swap = m.swap().unwrap_or(0);
    if updating && m.check_before_update() == Some(true) && limit > 0 {
        steps.push(Step::CheckUsage { limit });
    }
    if limit == -1 && swap == 0 {
        steps.push(Step::V1MemoryAndSwap {
            limit,
            swap: -1,
            swap_optional: true,
        });
    } else if limit != 0 && swap != 0 {
        steps.push(Step::V1MemoryAndSwap {
            limit,
            swap,
            swap_optional: false,
        });
    } else if limit != 0 {
        steps.push(write(
            "linux.resources.memory.limit",
            C,
            "memory.limit_in_bytes",
            limit.to_string(),
        ));
    } else if swap != 0 {
        steps.push(write(
            "linux.resources.memory.swap",
            C,
            "memory.memsw.limit_in_bytes",
            swap.to_string(),
        ));
    }
    if let Some(r) = m.reservation() {
        steps.push(write(
            "linux.resources.memory.reservation",
            C,
            "memory.soft_limit_in_bytes",
            r.to_string(),
        ));
    }
    if let Some(k) = m.kernel() {
        steps.push(write(
            "linux.resources.memory.kernel",
            C,
            "memory.kmem.limit_in_bytes",
            k.to_string(),
        ));
    }
    if let Some(k) = m.kernel_tcp() {
        steps.push(write(
            "linux.resources.memory.kernelTCP",
            C,
            "memory.kmem.tcp.limit_in_bytes",
            k.to_string(),
        ));
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::Invalid {
                field: "linux.resources.memory.swappiness",
                value: s.to_string(),
                why: "must be 0..=100",
            });
        }
        steps.push(write(
            "linux.resources.memory.swappiness",
            C,
            "memory.swappiness",
            s.to_string(),
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        steps.push(write(
            "linux.resources.memory.disableOOMKiller",
            C,
            "memory.oom_control",
            "1".into(),
        ));
    }
    if let Some(h) = m.use_hierarchy() {
        steps.push(write(
            "linux.resources.memory.useHierarchy",
            C,
            "memory.use_hierarchy",
            (h as u8).to_string(),
        ));
    }
    Ok(())
}

fn cpu_v1(c: &LinuxCpu, steps: &mut Vec<Step>) {
    if let Some(v) = c.shares().filter(|&s| s != 0) {
        steps.push(write(
            "linux.resources.cpu.shares",
            "cpu",
            "cpu.shares",
            v.to_string(),
        ));
    }
    if let Some(v) = c.period().filter(|&p| p != 0) {
        steps.push(write(
            "linux.resources.cpu.period",
            "cpu",
            "cpu.cfs_period_us",
            v.to_string(),
        ));
    }
    if let Some(v) = c.quota().filter(|&q| q != 0) {
        steps.push(write(
            "linux.resources.cpu.quota",
            "cpu",
            "cpu.cfs_quota_us",
            v.to_string(),
        ));
    }
    if let Some(v) = c.burst() {
        steps.push(write(
            "linux.resources.cpu.burst",
            "cpu",
            "cpu.cfs_burst_us",
            v.to_string(),
        ));
    }
    let period = c.realtime_period().filter(|&p| p != 0);
    let runtime = c.realtime_runtime().filter(|&r| r != 0);
    if period.is_some() || runtime.is_some() {
        steps.push(Step::V1RtSched { period, runtime });
    }
    if let Some(v) = c.idle() {
        steps.push(write(
            "linux.resources.cpu.idle",
            "cpu",
            "cpu.idle",
            v.to_string(),
        ));
    }
    cpuset(c, steps);
}

fn cpuset(c: &LinuxCpu, steps: &mut Vec<Step>) {
    if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        steps.push(write(
            "linux.resources.cpu.cpus",
            "cpuset",
            "cpuset.cpus",
            v.to_string(),
        ));
    }
    if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        steps.push(write(
            "linux.resources.cpu.mems",
            "cpuset",
            "cpuset.mems",
            v.to_string(),
        ));
    }
}

/// runc: 0 leaves the limit alone, a negative value is "max".
fn pids_value(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        l if l < 0 => Some("max".into()),
        l => Some(l.to_string()),
    }
}

type Throttles<'a> = [(
    &'a Option<Vec<LinuxThrottleDevice>>,
    &'static str,
    &'static str,
); 4];

fn throttles(b: &LinuxBlockIo) -> Throttles<'_> {
    [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
            "rbps",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
            "wbps",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
            "riops",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
            "wiops",
        ),
    ]
}

fn blkio_v1(b: &LinuxBlockIo, steps: &mut Vec<Step>) {
    const F: &str = "linux.resources.blockIO";
    // CFQ's blkio.weight is gone from current kernels; BFQ offers blkio.bfq.weight instead.
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        steps.push(Step::Write {
            field: "linux.resources.blockIO.weight",
            controller: "blkio",
            files: vec![
                ("blkio.weight".into(), w.to_string()),
                ("blkio.bfq.weight".into(), w.to_string()),
            ],
        });
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        steps.push(write(
            "linux.resources.blockIO.leafWeight",
            "blkio",
            "blkio.leaf_weight",
            w.to_string(),
        ));
    }
    for d in b.weight_device().iter().flatten() {
        let dev = format!("{}:{}", d.major(), d.minor());
        if let Some(w) = d.weight() {
            steps.push(Step::Write {
                field: "linux.resources.blockIO.weightDevice",
                controller: "blkio",
                files: vec![
                    ("blkio.weight_device".into(), format!("{dev} {w}")),
                    ("blkio.bfq.weight_device".into(), format!("{dev} {w}")),
                ],
            });
        }
        if let Some(w) = d.leaf_weight() {
            steps.push(write(
                "linux.resources.blockIO.weightDevice[].leafWeight",
                "blkio",
                "blkio.leaf_weight_device",
                format!("{dev} {w}"),
            ));
        }
    }
    for (list, file, _) in throttles(b) {
        for t in list.iter().flatten() {
            steps.push(write(
                F,
                "blkio",
                file,
                format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            ));
        }
    }
}

fn rdma(res: &LinuxResources, steps: &mut Vec<Step>) -> Result<(), CgroupError> {
    let Some(map) = res.rdma() else {
        return Ok(());
    };
    let mut devices: Vec<_> = map.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, limit) in devices {
        check_token("linux.resources.rdma key", dev)?;
        let mut line = dev.clone();
        if let Some(h) = limit.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = limit.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        if line.len() > dev.len() {
            steps.push(write("linux.resources.rdma", "rdma", "rdma.max", line));
        }
    }
    Ok(())
}

// ---- v2 ----------------------------------------------------------------------------------------

/// runc's ConvertCPUSharesToCgroupV2Value: shares 2..262144 → weight 1..10000 linearly.
pub(crate) fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// runc's ConvertBlkIOToIOWeightValue: blkio weight 10..1000 → io.weight 1..10000.
pub(crate) fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// runc's ConvertMemorySwapToCgroupV2Value: OCI swap is memory+swap; v2 wants swap alone.
/// 0 means "do not set", -1 "max".
pub(crate) fn memory_swap_to_v2(swap: i64, memory: i64) -> Result<i64, CgroupError> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    let invalid = |why| CgroupError::Invalid {
        field: "linux.resources.memory.swap",
        value: swap.to_string(),
        why,
    };
    if memory == 0 || memory == -1 {
        return Err(invalid("a swap limit needs a memory limit"));
    }
    if memory < 0 {
        return Err(invalid("the memory limit is negative"));
    }
    if swap < memory {
        return Err(invalid("memory+swap must be >= the memory limit"));
    }
    Ok(swap - memory)
}

/// v2 number: -1 → "max", 0 → not set.
fn v2_num(v: i64) -> Option<String> {
    match v {
        0 => None,
        v if v < 0 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

/// `update` with a swap limit but no memory limit (`update --memory-swap`): runc merges the new
/// values into the container's config, so the conversion to v2's swap-only value uses the memory
/// limit in force. Given memory.max as read (`current_max`), returns the resources with that limit
/// filled in, or None when nothing needs it ("max": no limit to subtract, which the plan refuses
/// by name as runc does).
pub(crate) fn with_current_memory_limit(
    res: &LinuxResources,
    current_max: &str,
) -> Option<LinuxResources> {
    let m = res.memory().as_ref()?;
    let swap_needs_base = m.swap().is_some_and(|s| s > 0);
    if !swap_needs_base || m.limit().is_some_and(|l| l != 0) {
        return None;
    }
    let limit: i64 = current_max.trim().parse().ok()?;
    let mut m = *m;
    m.set_limit(Some(limit));
    let mut out = res.clone();
    out.set_memory(Some(m));
    Some(out)
}

pub(crate) fn plan_v2(res: &LinuxResources, updating: bool) -> Result<Vec<Step>, CgroupError> {
    let mut steps = Vec::new();
    if let Some(d) = res.devices() {
        steps.push(Step::DevicePrograms(devices::rules_from_oci(d)?));
    }
    if let Some(m) = res.memory() {
        memory_v2(m, updating, &mut steps)?;
    }
    if let Some(c) = res.cpu() {
        cpu_v2(c, &mut steps)?;
    }
    if let Some(p) = res.pids() {
        if let Some(v) = pids_value(p.limit()) {
            steps.push(write("linux.resources.pids.limit", "pids", "pids.max", v));
        }
    }
    if let Some(b) = res.block_io() {
        io_v2(b, &mut steps)?;
    }
    for h in res.hugepage_limits().iter().flatten() {
        check_token("linux.resources.hugepageLimits[].pageSize", h.page_size())?;
        let file = format!("hugetlb.{}.max", h.page_size());
        steps.push(write(
            "linux.resources.hugepageLimits",
            "hugetlb",
            &file,
            h.limit().to_string(),
        ));
    }
    if let Some(n) = res.network() {
        if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(unsupported(
                "linux.resources.network",
                "cgroup v2 has no net_cls/net_prio controllers",
            ));
        }
    }
    rdma(res, &mut steps)?;
    if let Some(u) = res.unified() {
        let mut keys: Vec<_> = u.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in keys {
            let controller = unified_controller(key)?;
            steps.push(Step::Write {
                field: "linux.resources.unified",
                controller,
                files: vec![(key.clone(), value.clone())],
            });
        }
    }
    Ok(steps)
}

/// "memory.high" → "memory". The key must name one file in the cgroup directory.
fn unified_controller(key: &str) -> Result<&'static str, CgroupError> {
    let invalid = |why| CgroupError::Invalid {
        field: "linux.resources.unified key",
        value: key.to_string(),
        why,
    };
    if key.contains('/') || key.starts_with('.') || key.contains("..") {
        return Err(invalid("must be a file name in the cgroup directory"));
    }
    let Some((prefix, _)) = key.split_once('.') else {
        return Err(invalid("expected <controller>.<file>"));
    };
    // Known names as 'static strs; "cgroup." files belong to no controller.
    const KNOWN: &[&str] = &[
        "cgroup", "cpu", "cpuset", "io", "memory", "hugetlb", "pids", "rdma", "misc",
    ];
    KNOWN
        .iter()
        .find(|k| **k == prefix)
        .copied()
        .ok_or_else(|| invalid("unknown cgroup v2 controller"))
}

fn memory_v2(m: &LinuxMemory, updating: bool, steps: &mut Vec<Step>) -> Result<(), CgroupError> {
    const C: &str = "memory";
    let limit = m.limit().unwrap_or(0);
    let swap_req = m.swap().unwrap_or(0);
    if updating && m.check_before_update() == Some(true) && limit > 0 {
        steps.push(Step::CheckUsage { limit });
    }
    let swap = memory_swap_to_v2(swap_req, limit)?;
    let swap_value = match v2_num(swap) {
        // memory and memory+swap equal: no swap at all.
        None if swap_req > 0 => Some("0".to_string()),
        v => v,
    };
    if let Some(v) = swap_value {
        steps.push(write(
            "linux.resources.memory.swap",
            C,
            "memory.swap.max",
            v,
        ));
    }
    if let Some(v) = v2_num(limit) {
        steps.push(write("linux.resources.memory.limit", C, "memory.max", v));
    }
    if let Some(v) = m.reservation().and_then(v2_num) {
        steps.push(write(
            "linux.resources.memory.reservation",
            C,
            "memory.low",
            v,
        ));
    }
    if m.kernel().is_some() {
        return Err(unsupported(
            "linux.resources.memory.kernel",
            "cgroup v2 has no separate kernel memory limit",
        ));
    }
    if m.kernel_tcp().is_some() {
        return Err(unsupported(
            "linux.resources.memory.kernelTCP",
            "cgroup v2 has no separate kernel TCP memory limit",
        ));
    }
    if m.swappiness().is_some() {
        return Err(unsupported(
            "linux.resources.memory.swappiness",
            "cgroup v2 has no per-cgroup swappiness",
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(unsupported(
            "linux.resources.memory.disableOOMKiller",
            "cgroup v2 cannot disable the OOM killer",
        ));
    }
    if m.use_hierarchy() == Some(false) {
        return Err(unsupported(
            "linux.resources.memory.useHierarchy",
            "cgroup v2 is always hierarchical",
        ));
    }
    Ok(())
}

fn cpu_v2(c: &LinuxCpu, steps: &mut Vec<Step>) -> Result<(), CgroupError> {
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        steps.push(write(
            "linux.resources.cpu.shares",
            "cpu",
            "cpu.weight",
            cpu_shares_to_weight(s).to_string(),
        ));
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let mut v = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            v.push_str(&format!(" {period}"));
        }
        steps.push(write("linux.resources.cpu.quota", "cpu", "cpu.max", v));
    }
    if let Some(b) = c.burst() {
        steps.push(write(
            "linux.resources.cpu.burst",
            "cpu",
            "cpu.max.burst",
            b.to_string(),
        ));
    }
    if c.realtime_runtime().is_some_and(|r| r != 0) || c.realtime_period().is_some_and(|p| p != 0) {
        return Err(unsupported(
            "linux.resources.cpu.realtimeRuntime/realtimePeriod",
            "cgroup v2 has no realtime bandwidth control",
        ));
    }
    if let Some(i) = c.idle() {
        steps.push(write(
            "linux.resources.cpu.idle",
            "cpu",
            "cpu.idle",
            i.to_string(),
        ));
    }
    cpuset(c, steps);
    Ok(())
}

fn io_v2(b: &LinuxBlockIo, steps: &mut Vec<Step>) -> Result<(), CgroupError> {
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        // BFQ takes the v1 range as is; io.weight needs the conversion.
        steps.push(Step::Write {
            field: "linux.resources.blockIO.weight",
            controller: "io",
            files: vec![
                ("io.bfq.weight".into(), w.to_string()),
                (
                    "io.weight".into(),
                    format!("default {}", blkio_weight_to_io_weight(w)),
                ),
            ],
        });
    }
    if b.leaf_weight().is_some_and(|w| w != 0) {
        return Err(unsupported(
            "linux.resources.blockIO.leafWeight",
            "cgroup v2 has no leaf weights",
        ));
    }
    for d in b.weight_device().iter().flatten() {
        let dev = format!("{}:{}", d.major(), d.minor());
        if let Some(w) = d.weight() {
            steps.push(Step::Write {
                field: "linux.resources.blockIO.weightDevice",
                controller: "io",
                files: vec![
                    ("io.bfq.weight".into(), format!("{dev} {w}")),
                    (
                        "io.weight".into(),
                        format!("{dev} {}", blkio_weight_to_io_weight(w)),
                    ),
                ],
            });
        }
        if d.leaf_weight().is_some() {
            return Err(unsupported(
                "linux.resources.blockIO.weightDevice[].leafWeight",
                "cgroup v2 has no leaf weights",
            ));
        }
    }
    for (list, _, key) in throttles(b) {
        for t in list.iter().flatten() {
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            let line = format!("{}:{} {key}={rate}", t.major(), t.minor());
            steps.push(write(
                "linux.resources.blockIO.throttle*Device",
                "io",
                "io.max",
                line,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn writes(steps: &[Step]) -> Vec<(String, String)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Write { files, .. } => Some(files[0].clone()),
                _ => None,
            })
            .collect()
    }

    fn w(f: &str, v: &str) -> (String, String) {
        (f.to_string(), v.to_string())
    }

    #[test]
    fn conversions_match_runc() {
        assert_eq!(cpu_shares_to_weight(0), 0);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(memory_swap_to_v2(0, -1).unwrap(), -1);
        assert_eq!(memory_swap_to_v2(-1, 100).unwrap(), -1);
        assert_eq!(memory_swap_to_v2(300, 100).unwrap(), 200);
        assert_eq!(memory_swap_to_v2(100, 100).unwrap(), 0);
        assert!(memory_swap_to_v2(50, 100).is_err());
        assert!(memory_swap_to_v2(50, 0).is_err());
    }

    #[test]
    fn v2_plan() {
        let r = res(r#"{
            "memory": {"limit": 104857600, "swap": 209715200, "reservation": 1048576},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "burst": 1000},
            "pids": {"limit": 32},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
            "unified": {"memory.high": "90000000"}
        }"#);
        let steps = plan_v2(&r, false).unwrap();
        assert_eq!(
            writes(&steps),
            vec![
                w("memory.swap.max", "104857600"),
                w("memory.max", "104857600"),
                w("memory.low", "1048576"),
                w("cpu.weight", "39"),
                w("cpu.max", "50000 100000"),
                w("cpu.max.burst", "1000"),
                w("cpuset.cpus", "0"),
                w("pids.max", "32"),
                w("io.bfq.weight", "500"),
                w("io.max", "8:0 rbps=1048576"),
                w("hugetlb.2MB.max", "0"),
                w("memory.high", "90000000"),
            ]
        );
        match &steps[8] {
            Step::Write { files, .. } => assert_eq!(files[1], w("io.weight", "default 4950")),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn values_the_kernel_would_misread_are_refused() {
        for (json, field) in [
            (r#"{"pids": {"limit": -7}}"#, "pids.limit"),
            (r#"{"cpu": {"period": 0}}"#, "cpu.period"),
            (r#"{"cpu": {"period": 2000000}}"#, "cpu.period"),
            (r#"{"cpu": {"quota": 0}}"#, "cpu.quota"),
            (r#"{"cpu": {"quota": 999}}"#, "cpu.quota"),
            (r#"{"cpu": {"quota": -2}}"#, "cpu.quota"),
            (r#"{"cpu": {"shares": 1}}"#, "cpu.shares"),
            (r#"{"cpu": {"realtimePeriod": 0}}"#, "cpu.realtimePeriod"),
            (r#"{"memory": {"swap": -3}}"#, "memory.swap"),
        ] {
            let e = check(&res(json)).unwrap_err().to_string();
            assert!(e.contains(field), "{json}: {e}");
        }
        for ok in [
            r#"{"pids": {"limit": -1}}"#,
            r#"{"pids": {"limit": 0}}"#,
            r#"{"cpu": {"quota": -1, "period": 100000, "shares": 1024}}"#,
            r#"{"memory": {"limit": -1, "swap": -1}}"#,
        ] {
            assert!(check(&res(ok)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn v2_edge_cases() {
        let s = plan_v2(&res(r#"{"memory": {"limit": -1}}"#), false).unwrap();
        assert_eq!(
            writes(&s),
            vec![w("memory.swap.max", "max"), w("memory.max", "max")]
        );
        let s = plan_v2(&res(r#"{"memory": {"limit": 100, "swap": 100}}"#), false).unwrap();
        assert_eq!(
            writes(&s),
            vec![w("memory.swap.max", "0"), w("memory.max", "100")]
        );
        let s = plan_v2(
            &res(r#"{"cpu": {"period": 20000}, "pids": {"limit": -1}}"#),
            false,
        )
        .unwrap();
        assert_eq!(
            writes(&s),
            vec![w("cpu.max", "max 20000"), w("pids.max", "max")]
        );
        assert!(plan_v2(&res(r#"{"network": {"classID": 1}}"#), false).is_err());
        assert!(plan_v2(&res(r#"{"memory": {"kernel": 1}}"#), false).is_err());
        assert!(plan_v2(&res(r#"{"cpu": {"realtimeRuntime": 5}}"#), false).is_err());
        assert!(plan_v2(&res(r#"{"unified": {"../x": "1"}}"#), false).is_err());
        assert!(plan_v2(
            &res(r#"{"hugepageLimits": [{"pageSize": "2MB/../x", "limit": 1}]}"#),
            false
        )
        .is_err());
        let s = plan_v2(
            &res(r#"{"memory": {"limit": 100, "checkBeforeUpdate": true}}"#),
            true,
        )
        .unwrap();
        assert_eq!(s[0], Step::CheckUsage { limit: 100 });
        let s = plan_v2(
            &res(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#),
            false,
        )
        .unwrap();
        assert!(matches!(&s[0], Step::DevicePrograms(r) if r.len() == 1));
    }

    #[test]
    fn v2_swap_only_update_uses_the_limit_in_force() {
        let r = res(r#"{"memory": {"swap": 300}}"#);
        let filled = with_current_memory_limit(&r, "100\n").unwrap();
        assert_eq!(
            writes(&plan_v2(&filled, true).unwrap()),
            vec![w("memory.swap.max", "200"), w("memory.max", "100")]
        );
        // No limit in force: the plan refuses it by name, as runc does.
        assert!(with_current_memory_limit(&r, "max").is_none());
        let e = plan_v2(&r, true).unwrap_err().to_string();
        assert!(e.contains("linux.resources.memory.swap"), "{e}");
        // A limit given, or no swap: nothing to fill in.
        for json in [
            r#"{"memory": {"swap": 300, "limit": 200}}"#,
            r#"{"memory": {"reservation": 5}}"#,
            r#"{"memory": {"swap": -1}}"#,
            r#"{"pids": {"limit": 5}}"#,
        ] {
            assert!(
                with_current_memory_limit(&res(json), "100").is_none(),
                "{json}"
            );
        }
    }

    #[test]
    fn update_fields_of_runc_update() {
        // What `runc update` sets, on both versions: each field becomes a write of its file.
        let r = res(r#"{
            "cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 5000, "cpus": "0", "mems": "0"},
            "memory": {"reservation": 4096, "swap": 209715200, "limit": 104857600},
            "blockIO": {"weight": 300},
            "pids": {"limit": 20}
        }"#);
        let v1 = plan_v1(&r, true).unwrap();
        assert_eq!(
            writes(&v1),
            vec![
                w("memory.soft_limit_in_bytes", "4096"),
                w("cpuset.cpus", "0"),
                w("cpuset.mems", "0"),
                w("pids.max", "20"),
                w("blkio.weight", "300"),
            ]
        );
        assert!(v1.contains(&Step::V1RtSched {
            period: Some(1_000_000),
            runtime: Some(5000)
        }));
        assert!(v1.contains(&Step::V1MemoryAndSwap {
            limit: 104857600,
            swap: 209715200,
            swap_optional: false
        }));
        // v2 has no RT bandwidth: refused by name; the rest maps to v2 files.
        let e = plan_v2(&r, true).unwrap_err().to_string();
        assert!(e.contains("realtime"), "{e}");
        let mut no_rt = r.clone();
        let mut cpu = no_rt.cpu().clone().unwrap();
        cpu.set_realtime_period(None);
        cpu.set_realtime_runtime(None);
        no_rt.set_cpu(Some(cpu));
        assert_eq!(
            writes(&plan_v2(&no_rt, true).unwrap()),
            vec![
                w("memory.swap.max", "104857600"),
                w("memory.max", "104857600"),
                w("memory.low", "4096"),
                w("cpuset.cpus", "0"),
                w("cpuset.mems", "0"),
                w("pids.max", "20"),
                w("io.bfq.weight", "300"),
            ]
        );
    }

    #[test]
    fn v1_plan() {
        let r = res(r#"{
            "devices": [{"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}],
            "memory": {"limit": 104857600, "swap": 209715200, "swappiness": 10, "kernel": 1000000},
            "cpu": {"shares": 512, "quota": 20000, "period": 100000, "realtimeRuntime": 100, "realtimePeriod": 1000, "mems": "0"},
            "pids": {"limit": 0},
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
            "rdma": {"mlx5_1": {"hcaHandles": 3}}
        }"#);
        let steps = plan_v1(&r, false).unwrap();
        assert_eq!(
            steps[2],
            Step::V1MemoryAndSwap {
                limit: 104857600,
                swap: 209715200,
                swap_optional: false
            }
        );
        assert_eq!(
            writes(&steps),
            vec![
                w("devices.deny", "a"),
                w("devices.allow", "c 1:5 rwm"),
                w("memory.kmem.limit_in_bytes", "1000000"),
                w("memory.swappiness", "10"),
                w("cpu.shares", "512"),
                w("cpu.cfs_period_us", "100000"),
                w("cpu.cfs_quota_us", "20000"),
                w("cpuset.mems", "0"),
                w("net_cls.classid", "1048577"),
                w("net_prio.ifpriomap", "eth0 5"),
                w("rdma.max", "mlx5_1 hca_handle=3"),
            ]
        );
        assert!(steps.contains(&Step::V1RtSched {
            period: Some(1000),
            runtime: Some(100)
        }));
        assert!(plan_v1(&res(r#"{"unified": {"memory.high": "1"}}"#), false).is_err());
        assert!(plan_v1(&res(r#"{"memory": {"swappiness": 101}}"#), false).is_err());
        let s = plan_v1(&res(r#"{"memory": {"limit": -1}}"#), false).unwrap();
        assert_eq!(
            s,
            vec![Step::V1MemoryAndSwap {
                limit: -1,
                swap: -1,
                swap_optional: true
            }]
        );
    }
}

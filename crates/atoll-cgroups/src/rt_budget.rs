//! cgroup v1 realtime bandwidth (CONFIG_RT_GROUP_SCHED): a cgroup may hold RT runtime only out
//! of its parent's, so every cgroup between the hierarchy root and the container's needs a
//! budget of its own first. A new cgroup starts with cpu.rt_runtime_us = 0, which is why writing
//! the container's runtime below a fresh `/atoll` fails with EINVAL.
//!
//! The kernel rule (kernel/sched/rt.c, tg_rt_schedulable): for every group, the sum of its
//! children's runtime/period ratios is at most its own ratio, each ratio computed as
//! `(runtime << 20) / period` (to_ratio, BW_SHIFT 20), RUNTIME_INF (-1) counting as 1 << 20.
//! So the budget is raised top-down, each ancestor to what its children (with the new one) need;
//! nothing is ever lowered, and nothing the host set is undone.

use std::path::{Path, PathBuf};

use crate::error::{CgroupError, Errno};
use crate::fs;

const BW_SHIFT: u32 = 20;

const RUNTIME: &str = "cpu.rt_runtime_us";
const PERIOD: &str = "cpu.rt_period_us";

/// The kernel's to_ratio(period, runtime).
pub(crate) fn ratio(period: u64, runtime: i64) -> u64 {
    if runtime < 0 {
        return 1 << BW_SHIFT;
    }
    if period == 0 {
        return 0;
    }
    ((runtime as u64) << BW_SHIFT) / period
}

/// The smallest runtime whose ratio over `period` is at least `wanted`.
pub(crate) fn runtime_for(wanted: u64, period: u64) -> u64 {
    (u128::from(wanted) * u128::from(period)).div_ceil(1 << BW_SHIFT) as u64
}

/// One ancestor's state: its budget and what its children other than the one on our path hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ancestor {
    pub period: u64,
    pub runtime: i64,
    /// The sum of the ratios of its children that are not on the path to the container.
    pub others: u64,
}

/// For ancestors listed top-down and the ratio the container needs, the runtime to write to each
/// ancestor whose budget is too small (None: leave it as it is).
pub(crate) fn raises(ancestors: &[Ancestor], container_ratio: u64) -> Vec<Option<u64>> {
    // Bottom-up: what each ancestor must hold for its child on the path to fit.
    let mut need = vec![0u64; ancestors.len()];
    let mut child_need = container_ratio;
    for (i, a) in ancestors.iter().enumerate().rev() {
        need[i] = a.others.saturating_add(child_need);
        child_need = need[i].max(ratio(a.period, a.runtime));
    }
    ancestors
        .iter()
        .zip(need)
        .map(|(a, n)| (ratio(a.period, a.runtime) < n).then(|| runtime_for(n, a.period)))
        .collect()
}

fn read_i64(path: &Path) -> Result<i64, CgroupError> {
    let text = fs::read(path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text.clone(),
    })
}

fn budget_of(dir: &Path) -> Result<(u64, i64), CgroupError> {
    let period = read_i64(&dir.join(PERIOD))?.max(0) as u64;
    Ok((period, read_i64(&dir.join(RUNTIME))?))
}

/// The sum of the ratios of `dir`'s child cgroups other than `skip`.
fn others(dir: &Path, skip: &Path) -> Result<u64, CgroupError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CgroupError::Read {
        path: dir.to_path_buf(),
        errno: Errno::of(&e),
    })?;
    let mut sum = 0u64;
    for entry in entries.flatten() {
        let path = entry.path();
        if path == skip || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match budget_of(&path) {
            Ok((p, r)) => sum = sum.saturating_add(ratio(p, r)),
            // Removed since the directory was read.
            Err(e) if e.errno() == Some(Errno(libc::ENOENT)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sum)
}

/// Gives every cgroup between `mount_point` (exclusive, the host's) and `dir` (exclusive) the RT
/// budget that `dir` needs to hold `runtime` per `period` (None: `dir`'s current period).
pub(crate) fn ensure(
    mount_point: &Path,
    dir: &Path,
    period: Option<u64>,
    runtime: i64,
) -> Result<(), CgroupError> {
    let Ok(below) = dir.strip_prefix(mount_point) else {
        return Ok(());
    };
    let mut path: Vec<PathBuf> = Vec::new();
    let mut cur = mount_point.to_path_buf();
    for comp in below.components() {
        cur.push(comp);
        path.push(cur.clone());
    }
    // The last entry is the container's own directory.
    let Some((_, ancestors)) = path.split_last() else {
        return Ok(());
    };
    let mut state = Vec::with_capacity(ancestors.len());
    for (i, a) in ancestors.iter().enumerate() {
        let (p, r) = budget_of(a)?;
        state.push(Ancestor {
            period: p,
            runtime: r,
            others: others(a, &path[i + 1])?,
        });
    }
    let period = match period {
        Some(p) => p,
        None => budget_of(dir)?.0,
    };
    for (a, raise) in ancestors.iter().zip(raises(&state, ratio(period, runtime))) {
        if let Some(r) = raise {
            fs::write(&a.join(RUNTIME), &r.to_string())?;
        }
    }
    Ok(())
}

/// runc's order for the two inter-dependent files: the period first, unless the kernel refuses
/// it (EINVAL: the current runtime does not fit it) while a runtime comes too; then the runtime,
/// then the period again if it was refused.
pub(crate) fn write(
    dir: &Path,
    period: Option<u64>,
    runtime: Option<i64>,
) -> Result<(), CgroupError> {
    let mut retry_period = None;
    if let Some(p) = period {
        let p = p.to_string();
        match fs::write(&dir.join(PERIOD), &p) {
            Err(e) if e.errno() == Some(Errno(libc::EINVAL)) && runtime.is_some() => {
                retry_period = Some(p)
            }
            other => other?,
        }
    }
    if let Some(r) = runtime {
        fs::write(&dir.join(RUNTIME), &r.to_string())?;
    }
    if let Some(p) = retry_period {
        fs::write(&dir.join(PERIOD), &p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_matches_the_kernel() {
        assert_eq!(ratio(1_000_000, 950_000), 996_147);
        assert_eq!(ratio(1_000_000, -1), 1 << 20);
        assert_eq!(ratio(0, 5), 0);
        assert_eq!(ratio(1_000_000, 0), 0);
        // runtime_for is the inverse, rounded up: its ratio is never below what was asked.
        for (p, r) in [(1_000_000u64, 10_000i64), (1_000, 7), (333_333, 12_345)] {
            let want = ratio(p, r);
            let got = runtime_for(want, p);
            assert!(ratio(p, got as i64) >= want);
            assert!(got as i64 <= r);
        }
    }

    #[test]
    fn fresh_parents_get_exactly_what_the_container_needs() {
        // /atoll and /atoll/islands, both fresh (runtime 0): each gets the container's ratio.
        let fresh = Ancestor {
            period: 1_000_000,
            runtime: 0,
            others: 0,
        };
        let c = ratio(1_000_000, 10_000);
        assert_eq!(raises(&[fresh, fresh], c), vec![Some(10_000), Some(10_000)]);
    }

    #[test]
    fn siblings_add_up_and_nothing_is_lowered() {
        let sibling = ratio(1_000_000, 20_000);
        let c = ratio(1_000_000, 10_000);
        // /atoll holds 20 ms for another container: it grows to 30 ms.
        let atoll = Ancestor {
            period: 1_000_000,
            runtime: 20_000,
            others: sibling,
        };
        let got = raises(&[atoll], c)[0].unwrap() as i64;
        assert!(ratio(1_000_000, got) >= sibling + c, "{got}");
        assert!(ratio(1_000_000, got - 1) < sibling + c, "{got}");
        // Enough already (the host gave it more): untouched.
        let rich = Ancestor {
            runtime: 500_000,
            ..atoll
        };
        assert_eq!(raises(&[rich], c), vec![None]);
        // An ancestor with enough of its own still makes its parent keep room for it.
        let top = Ancestor {
            period: 1_000_000,
            runtime: 0,
            others: 0,
        };
        assert_eq!(raises(&[top, rich], c), vec![Some(500_000), None]);
        // A different period keeps the ratio.
        let half = Ancestor {
            period: 500_000,
            runtime: 0,
            others: 0,
        };
        assert_eq!(raises(&[half], c), vec![Some(5_000)]);
    }
}

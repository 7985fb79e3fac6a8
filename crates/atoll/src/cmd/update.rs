//! `update`: new resource limits from -r FILE or runc's individual flags.

use anyhow::{Context, Result};
use atoll_runtime::{container, Store};
use oci_spec::runtime::LinuxResources;

use crate::cli::UpdateArgs;

pub fn update(store: &Store, a: &UpdateArgs) -> Result<()> {
    let mut res: serde_json::Value = match &a.resources {
        Some(p) if p.as_os_str() == "-" => {
            serde_json::from_reader(std::io::stdin()).context("--resources -: bad JSON")?
        }
        Some(p) => {
            let data = std::fs::read(p).with_context(|| format!("--resources {}", p.display()))?;
            serde_json::from_slice(&data)
                .with_context(|| format!("--resources {}: bad JSON", p.display()))?
        }
        None => serde_json::json!({}),
    };
    let obj = res
        .as_object_mut()
        .context("--resources: not a JSON object")?;
    let mut set = |section: &str, key: &str, v: serde_json::Value| {
        let s = obj.entry(section).or_insert_with(|| serde_json::json!({}));
        s[key] = v;
    };
    if let Some(m) = a.memory {
        set("memory", "limit", m.into());
    }
    if let Some(m) = a.memory_swap {
        set("memory", "swap", m.into());
    }
    if let Some(m) = a.memory_reservation {
        set("memory", "reservation", m.into());
    }
    if let Some(v) = a.cpu_shares {
        set("cpu", "shares", v.into());
    }
    if let Some(v) = a.cpu_quota {
        set("cpu", "quota", v.into());
    }
    if let Some(v) = a.cpu_period {
        set("cpu", "period", v.into());
    }
    if let Some(v) = a.cpu_rt_period {
        set("cpu", "realtimePeriod", v.into());
    }
    if let Some(v) = a.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", v.into());
    }
    if let Some(v) = &a.cpuset_cpus {
        set("cpu", "cpus", v.clone().into());
    }
    if let Some(v) = &a.cpuset_mems {
        set("cpu", "mems", v.clone().into());
    }
    if let Some(v) = a.pids_limit {
        set("pids", "limit", v.into());
    }
    if let Some(v) = a.blkio_weight {
        set("blockIO", "weight", v.into());
    }
    let resources: LinuxResources = serde_json::from_value(res)
        .context("resources: not a runtime-spec linux.resources object")?;
    container::update(store, &a.id, &resources)?;
    Ok(())
}

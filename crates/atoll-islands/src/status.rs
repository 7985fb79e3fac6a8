//! `atoll ps`/`status`: what is up, as the kernel sees it now (container state, the host ends of
//! each link, the border guard's counters).

use serde::Serialize;

use atoll_net::{firewall, p2p};
use atoll_runtime::{container, Store};

use crate::plan::Plan;

#[derive(Debug, Serialize)]
pub struct Status {
    pub name: String,
    pub file: String,
    pub islands: Vec<IslandStatus>,
    pub links: Vec<LinkStatus>,
    pub rules: Vec<RuleStatus>,
}

#[derive(Debug, Serialize)]
pub struct IslandStatus {
    pub name: String,
    pub container: String,
    pub status: String,
    pub pid: i64,
    pub uid: u32,
    pub host_uid: u32,
    pub caps: Vec<String>,
    pub addresses: Vec<String>,
    pub guard: String,
}

#[derive(Debug, Serialize)]
pub struct LinkStatus {
    pub between: [String; 2],
    pub subnet: String,
    pub addresses: [String; 2],
    pub host_ifaces: [String; 2],
    pub present: bool,
}

#[derive(Debug, Serialize)]
pub struct RuleStatus {
    pub rule: String,
    pub packets: u64,
    pub bytes: u64,
}

pub fn status(plan: &Plan) -> Status {
    status_of(plan, true)
}

/// The status right after `up`, without the firewall counters (all zero then; reading them is
/// one more nft process).
pub fn status_after_up(plan: &Plan) -> Status {
    status_of(plan, false)
}

fn status_of(plan: &Plan, counters: bool) -> Status {
    let store = Store::new(&plan.runtime_root);
    let islands = plan
        .islands
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let st = container::state(&store, &i.container_id).ok();
            let field = |k: &str| st.as_ref().and_then(|s| s.get(k).cloned());
            IslandStatus {
                name: i.spec.name.clone(),
                container: i.container_id.clone(),
                status: field("status")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "absent".into()),
                pid: field("pid").and_then(|v| v.as_i64()).unwrap_or(0),
                uid: i.spec.uid,
                host_uid: i.host_base + i.spec.uid,
                caps: i.spec.caps.clone(),
                addresses: plan
                    .addresses(n)
                    .into_iter()
                    .map(|(ip, dev)| format!("{ip}@{dev}"))
                    .collect(),
                guard: i.spec.guard.as_str().into(),
            }
        })
        .collect();
    let present: Vec<String> = p2p::group_links(plan.group)
        .map(|v| v.into_iter().map(|l| l.name).collect())
        .unwrap_or_default();
    let links = plan
        .links
        .iter()
        .map(|l| LinkStatus {
            between: [
                plan.islands[l.a].spec.name.clone(),
                plan.islands[l.b].spec.name.clone(),
            ],
            subnet: l.subnet.to_string(),
            addresses: [l.addr_a.to_string(), l.addr_b.to_string()],
            host_ifaces: [l.host_a.clone(), l.host_b.clone()],
            present: present.contains(&l.host_a) && present.contains(&l.host_b),
        })
        .collect();
    let counted = if counters {
        firewall::counters(&plan.table).unwrap_or_default()
    } else {
        Vec::new()
    };
    let rules = counted
        .into_iter()
        .map(|c| RuleStatus {
            rule: c.rule,
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect();
    Status {
        name: plan.name.clone(),
        file: plan.file.display().to_string(),
        islands,
        links,
        rules,
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "project {} ({})", self.name, self.file)?;
        writeln!(
            f,
            "  {:<12} {:<8} {:>7}  {:>5} {:>11}  {:<24} {:<8} ADDRESSES",
            "ISLAND", "STATUS", "PID", "UID", "HOST-UID", "CAPS", "GUARD"
        )?;
        for i in &self.islands {
            let caps = if i.caps.is_empty() {
                "-".to_string()
            } else {
                i.caps.join(",")
            };
            writeln!(
                f,
                "  {:<12} {:<8} {:>7}  {:>5} {:>11}  {:<24} {:<8} {}",
                i.name,
                i.status,
                i.pid,
                i.uid,
                i.host_uid,
                caps,
                i.guard,
                i.addresses.join(" ")
            )?;
        }
        if !self.links.is_empty() {
            writeln!(f, "  links:")?;
        }
        for l in &self.links {
            writeln!(
                f,
                "    {} {} <-> {} {}  {}  via host {}/{}{}",
                l.between[0],
                l.addresses[0],
                l.addresses[1],
                l.between[1],
                l.subnet,
                l.host_ifaces[0],
                l.host_ifaces[1],
                if l.present { "" } else { "  (MISSING)" }
            )?;
        }
        if !self.rules.is_empty() {
            writeln!(f, "  border guard:")?;
        }
        for r in &self.rules {
            writeln!(
                f,
                "    {:>8} pkts {:>10} bytes  {}",
                r.packets, r.bytes, r.rule
            )?;
        }
        Ok(())
    }
}

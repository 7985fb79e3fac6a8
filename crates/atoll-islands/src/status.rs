//! `atoll ps`/`status`: what is up, as the kernel sees it now (container state, the host ends of
//! each link, the border guard's counters).

use serde::Serialize;

use atoll_net::{firewall, p2p};
use atoll_runtime::{container, Store};

use crate::file::Identity;
use crate::plan::Plan;

#[derive(Debug, Serialize)]
pub struct Status {
    pub name: String,
    pub file: String,
    pub islands: Vec<IslandStatus>,
    pub links: Vec<LinkStatus>,
    pub rules: Vec<RuleStatus>,
    pub shares: Vec<ShareStatus>,
}

/// A `[[share]]` and how each island mounts it.
#[derive(Debug, Serialize)]
pub struct ShareStatus {
    pub name: String,
    pub host: String,
    pub owner: String,
    /// "ISLAND:PATH (rw|ro, idmapped|host ids)".
    pub mounts: Vec<String>,
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
    pub limits: Limits,
    /// "private" or "passthrough" (its user is the same uid on the host: weaker isolation).
    pub identity: String,
    /// Device grants, and what cgroups cannot do for a GPU among them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<crate::devices::DeviceStatus>,
    /// The island's image, and the ports its config exposes: shown, never allowed by
    /// themselves (a flow still needs its `[[allow]]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageStatus>,
}

#[derive(Debug, Serialize)]
pub struct ImageStatus {
    pub reference: String,
    pub id: String,
    pub exposed_ports: Vec<String>,
}

/// The limits an island runs under, as `up` wrote them to its cgroup; null (JSON) or "max"
/// (text) where there is none.
#[derive(Debug, Serialize)]
pub struct Limits {
    /// Bytes.
    pub memory: Option<i64>,
    pub pids: Option<i64>,
    /// CPUs (quota / period).
    pub cpu: Option<f64>,
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.memory {
            Some(m) => write!(f, "mem={}", bytes(m))?,
            None => write!(f, "mem=max")?,
        }
        match self.pids {
            Some(p) => write!(f, " pids={p}")?,
            None => write!(f, " pids=max")?,
        }
        match self.cpu {
            Some(c) => write!(f, " cpu={c}"),
            None => write!(f, " cpu=max"),
        }
    }
}

/// 64M, 1G: the largest unit that divides the size, as the file would say it.
fn bytes(n: i64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
        if n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
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
                status: match &i.remote {
                    // It runs on the other host; nothing of it is here but routes and rules.
                    Some(r) => format!("elsewhere (via {} on {})", r.via, r.dev),
                    None => field("status")
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_else(|| "absent".into()),
                },
                pid: field("pid").and_then(|v| v.as_i64()).unwrap_or(0),
                uid: i.spec.uid,
                host_uid: crate::share::host_uid(i),
                caps: i.spec.caps.clone(),
                addresses: plan
                    .addresses(n)
                    .into_iter()
                    .map(|(ip, dev)| format!("{ip}@{dev}"))
                    .collect(),
                guard: i.spec.guard.as_str().into(),
                limits: Limits {
                    memory: i.spec.memory,
                    pids: i.spec.pids,
                    cpu: i.spec.cpu,
                },
                identity: match i.spec.identity {
                    Identity::Private => "private".into(),
                    Identity::Passthrough => "passthrough".into(),
                },
                devices: crate::devices::DeviceStatus::of(&i.spec),
                image: i.spec.image.as_ref().map(|m| ImageStatus {
                    reference: m.reference.clone(),
                    id: m.pulled.as_ref().map(|p| p.id.clone()).unwrap_or_default(),
                    exposed_ports: m
                        .pulled
                        .as_ref()
                        .map(|p| p.exposed_ports.clone())
                        .unwrap_or_default(),
                }),
            }
        })
        .collect();
    let present: Vec<String> = p2p::group_links(plan.group)
        .map(|v| v.into_iter().map(|l| l.name).collect())
        .unwrap_or_default();
    let links = plan
        .links
        .iter()
        .enumerate()
        .map(|(n, l)| LinkStatus {
            between: [
                plan.islands[l.a].spec.name.clone(),
                plan.islands[l.b].spec.name.clone(),
            ],
            subnet: l.subnet.to_string(),
            addresses: [l.addr_a.to_string(), l.addr_b.to_string()],
            host_ifaces: [
                plan.judged_if(n, l.a).to_string(),
                plan.judged_if(n, l.b).to_string(),
            ],
            present: [(l.a, &l.host_a), (l.b, &l.host_b)]
                .iter()
                .all(|(i, h)| plan.islands[*i].remote.is_some() || present.contains(h)),
        })
        .collect();
    let counted = if counters {
        firewall::counters(&plan.table).unwrap_or_default()
    } else {
        Vec::new()
    };
    // `drop` reads as every default-deny drop of the project (the per-link `drop <host_if>`
    // rows say where they entered).
    let (drop_packets, drop_bytes) = firewall::total_drops(&counted);
    let rules = counted
        .into_iter()
        .map(|c| {
            let total = c.rule == firewall::DROP_RULE;
            RuleStatus {
                packets: if total { drop_packets } else { c.packets },
                bytes: if total { drop_bytes } else { c.bytes },
                rule: c.rule,
            }
        })
        .collect();
    Status {
        name: plan.name.clone(),
        file: plan.file.display().to_string(),
        islands,
        links,
        rules,
        shares: shares(plan),
    }
}

fn shares(plan: &Plan) -> Vec<ShareStatus> {
    plan.shares
        .iter()
        .map(|s| ShareStatus {
            name: s.name.clone(),
            host: s.host.display().to_string(),
            owner: format!("{}:{}", s.owner, s.group),
            mounts: s
                .mounts
                .iter()
                .map(|m| {
                    let i = &plan.islands[m.island];
                    format!(
                        "{}:{} ({}, {})",
                        i.spec.name,
                        m.path,
                        if m.read_only { "ro" } else { "rw" },
                        if crate::share::idmapped(s, i) {
                            "idmapped"
                        } else {
                            "host ids"
                        }
                    )
                })
                .collect(),
        })
        .collect()
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "project {} ({})", self.name, self.file)?;
        writeln!(
            f,
            "  {:<12} {:<8} {:>7}  {:>5} {:>11}  {:<24} {:<8} {:<27} ADDRESSES",
            "ISLAND", "STATUS", "PID", "UID", "HOST-UID", "CAPS", "GUARD", "LIMITS"
        )?;
        for i in &self.islands {
            let caps = if i.caps.is_empty() {
                "-".to_string()
            } else {
                i.caps.join(",")
            };
            writeln!(
                f,
                "  {:<12} {:<8} {:>7}  {:>5} {:>11}  {:<24} {:<8} {:<27} {}",
                i.name,
                i.status,
                i.pid,
                i.uid,
                i.host_uid,
                caps,
                i.guard,
                i.limits.to_string(),
                i.addresses.join(" ")
            )?;
        }
        for i in self.islands.iter().filter(|i| i.identity == "passthrough") {
            writeln!(
                f,
                "  identity: {} is host uid {} (passthrough): weaker isolation, the host and its network filesystems see the island's user as that host account",
                i.name, i.host_uid
            )?;
        }
        if !self.shares.is_empty() {
            writeln!(f, "  shares:")?;
        }
        for s in &self.shares {
            writeln!(
                f,
                "    {} {} (owner {}): {}",
                s.name,
                s.host,
                s.owner,
                s.mounts.join(", ")
            )?;
        }
        for i in &self.islands {
            if let Some(m) = &i.image {
                let ports = if m.exposed_ports.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", exposes {} (not allowed unless an [[allow]] says so)",
                        m.exposed_ports.join(" ")
                    )
                };
                writeln!(f, "  image of {}: {}{ports}", i.name, m.reference)?;
            }
        }
        for i in &self.islands {
            if let Some(d) = &i.devices {
                write!(f, "  devices of {}: {d}", i.name)?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_the_file_writes_them() {
        let l = Limits {
            memory: Some(64 << 20),
            pids: Some(2048),
            cpu: None,
        };
        assert_eq!(l.to_string(), "mem=64M pids=2048 cpu=max");
        let l = Limits {
            memory: Some(1000),
            pids: None,
            cpu: Some(0.5),
        };
        assert_eq!(l.to_string(), "mem=1000 pids=max cpu=0.5");
    }
}

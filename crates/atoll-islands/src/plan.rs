//! The plan: everything `up` will create, as plain data, written to the state dir BEFORE the
//! first resource exists. `down` walks the same plan, so a crash at any point of `up` leaves
//! something `down` can clean (the house rule: plan, then apply).

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io, FileError, IslandsError, Result};
use crate::file::{File, Island, LinkNet, Proto, Share};
use crate::net::Subnet;

/// Where atoll keeps the state of running projects (one dir each, with plan.json).
pub const STATE_ROOT: &str = "/run/atoll/islands";
/// Where islands' logs (their stdout and stderr) go: on disk, not in the tmpfs state.
pub const LOG_ROOT: &str = "/var/log/atoll/islands";
pub use crate::file::DATA_ROOT;
/// First host uid handed to islands; each island gets its own 65536 ids above it, so no two
/// islands (of any project) share a host uid, and none is a host account.
pub const UID_BASE: u32 = 1_000_000_000;
pub const UID_RANGE: u32 = 65536;
/// Host-side link group of project slot N is GROUP_BASE + N ("AT" in the top half).
pub const GROUP_BASE: u32 = 0x4154_0000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub name: String,
    pub file: PathBuf,
    pub state_dir: PathBuf,
    /// The runtime's --root: where the islands' containers are kept.
    pub runtime_root: PathBuf,
    pub slot: u32,
    pub group: u32,
    pub table: String,
    pub log_drops: bool,
    pub islands: Vec<IslandPlan>,
    pub links: Vec<LinkPlan>,
    pub allows: Vec<AllowPlan>,
    /// The file's `[[share]]`s (crate::share makes their mounts).
    #[serde(default)]
    pub shares: Vec<Share>,
    /// Where the islands' cgroups go: `<cgroup_parent>/<project>/<island>` (the node file's
    /// `islands.cgroup_parent`).
    #[serde(default = "default_cgroup_parent")]
    pub cgroup_parent: String,
}

fn default_cgroup_parent() -> String {
    atoll_runtime::node::DEFAULT_ISLANDS_CGROUP.into()
}

/// An island of the project that lives on another host: its addresses are routed over the
/// wire to that host, and the border guard names the wire where it would name the island's
/// host end (docs/migrate.md, "Between hosts").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Remote {
    /// The other host's address on the wire: the gateway of the island's addresses.
    pub via: Ipv4Addr,
    /// The wire: this host's interface towards `via`.
    pub dev: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IslandPlan {
    /// What the file says of the island (flattened: plan.json reads as one object).
    #[serde(flatten)]
    pub spec: Island,
    pub container_id: String,
    /// Bundle, rootfs, /etc and log of this island.
    pub dir: PathBuf,
    pub netns: PathBuf,
    pub data_dir: PathBuf,
    /// The island's stdout and stderr.
    pub log: PathBuf,
    /// Host uid (and gid) that uid 0 inside maps to.
    pub host_base: u32,
    /// Names this island resolves (its peers at their link addresses).
    pub hosts: Vec<(Ipv4Addr, String)>,
    /// Set when the island lives on another host (it left, or has not arrived yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Remote>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkPlan {
    pub a: usize,
    pub b: usize,
    pub subnet: Subnet,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
    /// Interface names inside each island: the peer's name.
    pub if_a: String,
    pub if_b: String,
    /// The host-side ends, where the border guard judges every packet.
    pub host_a: String,
    pub host_b: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AllowPlan {
    /// Stable rule id, also the nft comment and counter name.
    pub id: String,
    pub from: usize,
    pub to: usize,
    pub link: usize,
    pub proto: Proto,
    pub ports: Vec<(u16, u16)>,
}

impl Plan {
    pub fn island(&self, name: &str) -> Option<&IslandPlan> {
        self.islands.iter().find(|i| i.spec.name == name)
    }

    pub fn path(&self) -> PathBuf {
        self.state_dir.join("plan.json")
    }

    /// Every host-side interface of the project (the ends of islands that live here).
    pub fn host_ifaces(&self) -> Vec<String> {
        self.links
            .iter()
            .flat_map(|l| [(l.a, &l.host_a), (l.b, &l.host_b)])
            .filter(|(i, _)| self.islands[*i].remote.is_none())
            .map(|(_, h)| h.clone())
            .collect()
    }

    /// Island `idx`'s ends of its links: (link index, whether it is end a, its host end's name).
    pub fn ends_of(&self, idx: usize) -> Vec<(usize, bool, &str)> {
        let mut v = Vec::new();
        for (n, l) in self.links.iter().enumerate() {
            if l.a == idx {
                v.push((n, true, l.host_a.as_str()));
            }
            if l.b == idx {
                v.push((n, false, l.host_b.as_str()));
            }
        }
        v
    }

    /// The interface through which the host sees island `island`'s traffic on link `link`:
    /// its host end, or the wire when the island lives on another host.
    pub fn judged_if(&self, link: usize, island: usize) -> &str {
        let l = &self.links[link];
        match &self.islands[island].remote {
            Some(r) => &r.dev,
            None if l.a == island => &l.host_a,
            None => &l.host_b,
        }
    }

    /// The cgroup dir of island `name` below a hierarchy's root.
    pub fn cgroup_of(&self, name: &str) -> PathBuf {
        Path::new(&self.cgroup_parent).join(&self.name).join(name)
    }

    /// Addresses of an island, one per link.
    pub fn addresses(&self, island: usize) -> Vec<(Ipv4Addr, &str)> {
        let mut v = Vec::new();
        for l in &self.links {
            if l.a == island {
                v.push((l.addr_a, l.if_a.as_str()));
            }
            if l.b == island {
                v.push((l.addr_b, l.if_b.as_str()));
            }
        }
        v
    }

    pub fn save(&self) -> Result<()> {
        std::fs::create_dir_all(&self.state_dir)
            .map_err(io(format!("mkdir {}", self.state_dir.display())))?;
        let tmp = self.state_dir.join(".plan.json.tmp");
        let data = serde_json::to_vec_pretty(self).expect("plans serialise");
        std::fs::write(&tmp, data).map_err(io(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, self.path())
            .map_err(io(format!("rename to {}", self.path().display())))
    }

    pub fn load(state_dir: &Path) -> Result<Plan> {
        let p = state_dir.join("plan.json");
        let data = std::fs::read(&p).map_err(io(format!("read {}", p.display())))?;
        serde_json::from_slice(&data)
            .map_err(|e| IslandsError::Other(format!("{}: not an atoll plan: {e}", p.display())))
    }
}

/// The project's nft table: `inet atoll_<name>` ('-' is not allowed in an nft name).
pub fn table_name(project: &str) -> String {
    format!("atoll_{}", project.replace('-', "_"))
}

/// The table of a migration's hold (firewall::hold): one per project, as migrations of a
/// project take its state lock in turn. Not `atoll_...`: no project's guard table can be it.
pub fn hold_table_name(project: &str) -> String {
    format!("atollhold_{}", project.replace('-', "_"))
}

/// Plans of every project that is up under `state_root`.
pub fn existing(state_root: &Path) -> Vec<Plan> {
    let Ok(rd) = std::fs::read_dir(state_root) else {
        return Vec::new();
    };
    let mut v: Vec<Plan> = rd
        .flatten()
        .filter_map(|e| Plan::load(&e.path()).ok())
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Every link's subnet and addresses: the file's own, and for each link without one the next
/// /30 of the file's pool that no link of the file, and no link of a project that is up (in
/// `others`), uses (.1 for `a`, .2 for `b`). The host routes each island address on its own
/// ends, so two projects on one address would collide there (`RTM_NEWROUTE: EEXIST`): a file's
/// own subnet that overlaps another project's link is refused by name.
fn link_nets(file: &File, others: &[Plan]) -> Result<Vec<LinkNet>, FileError> {
    let elsewhere: Vec<(Subnet, &str)> = others
        .iter()
        .flat_map(|p| p.links.iter().map(|l| (l.subnet, p.name.as_str())))
        .collect();
    for (i, l) in file.links.iter().enumerate() {
        let Some(n) = l.net else { continue };
        if let Some((s, p)) = elsewhere.iter().find(|(s, _)| s.overlaps(&n.subnet)) {
            return Err(FileError {
                path: file.path.clone(),
                line: 0,
                col: 0,
                field: format!("link[{i}].subnet"),
                msg: format!(
                    "{} overlaps {s}, a link of project {p:?} that is up (the host routes both)",
                    n.subnet
                ),
            });
        }
    }
    let mut taken: Vec<Subnet> = file
        .links
        .iter()
        .filter_map(|l| l.net.map(|n| n.subnet))
        .chain(elsewhere.iter().map(|(s, _)| *s))
        .collect();
    let mut next = 0u32;
    let mut nets = Vec::with_capacity(file.links.len());
    for (i, l) in file.links.iter().enumerate() {
        if let Some(n) = l.net {
            nets.push(n);
            continue;
        }
        let subnet = loop {
            let Some(s) = file.pool.nth_30(next) else {
                return Err(FileError {
                    path: file.path.clone(),
                    line: 0,
                    col: 0,
                    field: format!("link[{i}]"),
                    msg: format!(
                        "the pool {} has no free /30 left (set `subnet` at the top of the file)",
                        file.pool
                    ),
                });
            };
            next += 1;
            if !taken.iter().any(|t| t.overlaps(&s)) {
                break s;
            }
        };
        taken.push(subnet);
        nets.push(LinkNet {
            subnet,
            addr_a: subnet.host(1),
            addr_b: subnet.host(2),
        });
    }
    Ok(nets)
}

/// Each island's host uid range: the one its data directory already belongs to when no project
/// that is up uses it (what the island wrote before `down` stays its own: with a new range its
/// files would belong to a stranger, and it could not rewrite them), else the first free one.
fn host_bases(
    file: &File,
    data_root: &Path,
    used: &mut std::collections::BTreeSet<u32>,
) -> Vec<u32> {
    let kept: Vec<Option<u32>> = file
        .islands
        .iter()
        .map(|i| {
            let owner = std::fs::symlink_metadata(data_root.join(&i.name))
                .ok()?
                .uid();
            let k = owner.checked_sub(UID_BASE)? / UID_RANGE;
            Some(UID_BASE + k * UID_RANGE)
        })
        .collect();
    let mut bases: Vec<Option<u32>> = kept
        .into_iter()
        .map(|b| b.filter(|b| used.insert(*b)))
        .collect();
    let mut free = (0u32..)
        .map(|k| UID_BASE + k * UID_RANGE)
        .filter(|b| !used.contains(b));
    for b in bases.iter_mut().filter(|b| b.is_none()) {
        *b = free.next();
    }
    bases.into_iter().map(|b| b.expect("uid ranges")).collect()
}

/// Build the plan for `file`, taking a project slot and host uid ranges that no plan in
/// `others` uses, and a /30 of the pool for each link that names no subnet.
pub fn build(file: &File, state_root: &Path, runtime_root: &Path, others: &[Plan]) -> Result<Plan> {
    let nets = link_nets(file, others)?;
    let node = atoll_runtime::node::IslandsNode::load()
        .map_err(|e| IslandsError::Other(atoll_runtime::error::report(&e)))?;
    let slot = (0u32..)
        .find(|s| others.iter().all(|p| p.slot != *s))
        .expect("a free slot");
    let mut used: std::collections::BTreeSet<u32> = others
        .iter()
        .flat_map(|p| p.islands.iter().map(|i| i.host_base))
        .collect();
    let state_dir = state_root.join(&file.name);
    let data_root = file
        .data_root
        .clone()
        .unwrap_or_else(|| Path::new(DATA_ROOT).join(&file.name));
    let host_bases = host_bases(file, &data_root, &mut used);
    let mut hosts: Vec<Vec<(Ipv4Addr, String)>> = vec![Vec::new(); file.islands.len()];
    let mut links = Vec::new();
    for (n, (l, net)) in file.links.iter().zip(&nets).enumerate() {
        let (a, b) = (&file.islands[l.a], &file.islands[l.b]);
        hosts[l.a].push((net.addr_b, b.name.clone()));
        hosts[l.b].push((net.addr_a, a.name.clone()));
        links.push(LinkPlan {
            a: l.a,
            b: l.b,
            subnet: net.subnet,
            addr_a: net.addr_a,
            addr_b: net.addr_b,
            if_a: b.name.clone(),
            if_b: a.name.clone(),
            host_a: format!("at{slot:x}-{n}a"),
            host_b: format!("at{slot:x}-{n}b"),
        });
    }
    let islands = file
        .islands
        .iter()
        .zip(hosts)
        .zip(host_bases)
        .map(|((i, hosts), host_base)| IslandPlan {
            spec: i.clone(),
            container_id: format!("{}.{}", file.name, i.name),
            dir: state_dir.join("islands").join(&i.name),
            netns: state_dir.join("netns").join(&i.name),
            data_dir: data_root.join(&i.name),
            log: Path::new(LOG_ROOT)
                .join(&file.name)
                .join(format!("{}.log", i.name)),
            host_base,
            hosts,
            remote: None,
        })
        .collect();
    let mut allows = Vec::new();
    for a in &file.allows {
        let dirs = if a.both {
            vec![(a.from, a.to), (a.to, a.from)]
        } else {
            vec![(a.from, a.to)]
        };
        for (from, to) in dirs {
            let ports: Vec<String> = a
                .ports
                .iter()
                .map(|(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
            let proto = match a.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
                Proto::Icmp => "icmp",
            };
            let mut id = format!(
                "allow:{}->{}:{proto}",
                file.islands[from].name, file.islands[to].name
            );
            if !ports.is_empty() {
                id.push('/');
                id.push_str(&ports.join(","));
            }
            allows.push(AllowPlan {
                id,
                from,
                to,
                link: a.link,
                proto: a.proto,
                ports: a.ports.clone(),
            });
        }
    }
    Ok(Plan {
        name: file.name.clone(),
        file: file.path.clone(),
        state_dir,
        runtime_root: runtime_root.to_path_buf(),
        slot,
        group: GROUP_BASE + slot,
        table: table_name(&file.name),
        log_drops: file.log_drops,
        islands,
        links,
        allows,
        shares: file.shares.clone(),
        cgroup_parent: node.cgroup_parent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
name = "p"
[[island]]
name = "db"
command = ["/bin/sh"]
[[island]]
name = "backup"
command = ["/bin/sh"]
[[link]]
between = ["db", "backup"]
[[allow]]
from = "backup"
to = "db"
proto = "tcp"
ports = [5432]
both = true
"#;

    #[test]
    fn plans_take_free_slots_and_uid_ranges() {
        let f = crate::file::parse(Path::new("p.toml"), FILE).unwrap();
        let p1 = build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap();
        assert_eq!(p1.slot, 0);
        assert_eq!(p1.islands[0].host_base, UID_BASE);
        assert_eq!(p1.islands[1].host_base, UID_BASE + UID_RANGE);
        assert_eq!(p1.links[0].host_a, "at0-0a");
        assert_eq!(p1.links[0].if_a, "backup");
        assert_eq!(
            p1.islands[1].hosts,
            vec![(p1.links[0].addr_a, "db".to_string())]
        );
        assert_eq!(p1.allows.len(), 2, "both = true makes two rules");
        assert_eq!(p1.allows[0].id, "allow:backup->db:tcp/5432");
        let mut f2 = f.clone();
        f2.name = "q".into();
        let p2 = build(
            &f2,
            Path::new("/s"),
            Path::new("/r"),
            std::slice::from_ref(&p1),
        )
        .unwrap();
        assert_eq!(p2.slot, 1);
        assert_eq!(p2.group, GROUP_BASE + 1);
        assert_eq!(p2.islands[0].host_base, UID_BASE + 2 * UID_RANGE);
        assert!(
            !p2.links[0].subnet.overlaps(&p1.links[0].subnet),
            "a second project's links take /30s the first one does not use"
        );
        let back: Plan = serde_json::from_slice(&serde_json::to_vec(&p2).unwrap()).unwrap();
        assert_eq!(back, p2);
    }

    #[test]
    fn links_without_a_subnet_take_free_30s_of_the_pool() {
        let text = "subnet = \"10.9.0.0/28\"\n[[island]]\nname = \"a\"\ncommand = [\"/bin/sh\"]\n[[island]]\nname = \"b\"\ncommand = [\"/bin/sh\"]\n[[island]]\nname = \"c\"\ncommand = [\"/bin/sh\"]\n[[link]]\nbetween = [\"a\", \"b\"]\n[[link]]\nbetween = [\"b\", \"c\"]\nsubnet = \"10.9.0.0/30\"\n[[link]]\nbetween = [\"a\", \"c\"]\n";
        let f = crate::file::parse(Path::new("p.toml"), text).unwrap();
        let p = build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap();
        // The explicit 10.9.0.0/30 is skipped; the others take the next ones in order.
        let subnets: Vec<String> = p.links.iter().map(|l| l.subnet.to_string()).collect();
        assert_eq!(subnets, ["10.9.0.4/30", "10.9.0.0/30", "10.9.0.8/30"]);
        assert_eq!(p.links[0].addr_a.to_string(), "10.9.0.5");
        assert_eq!(p.links[0].addr_b.to_string(), "10.9.0.6");
        // A /29 pool holds two /30s: the third link finds none.
        let small = text.replace("10.9.0.0/28", "10.9.0.0/29");
        let f = crate::file::parse(Path::new("p.toml"), &small).unwrap();
        let e = build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("link[2]: the pool 10.9.0.0/29 has no free /30"),
            "{e}"
        );
        // A subnet the file names that another project's link already uses is refused.
        let f = crate::file::parse(Path::new("p.toml"), text).unwrap();
        let mut first = build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap();
        first.name = "other".into();
        let e = build(&f, Path::new("/s"), Path::new("/r"), &[first]).unwrap_err();
        assert!(
            e.to_string().contains(
                "link[1].subnet: 10.9.0.0/30 overlaps 10.9.0.0/30, a link of project \"other\""
            ),
            "{e}"
        );
    }
}

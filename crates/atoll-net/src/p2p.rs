//! Routed point-to-point links between islands. A link A–B is two veth pairs, each with one end
//! in an island and one in the host; the host routes between its two ends, so every packet
//! between islands crosses the host's forward hook, where the firewall judges it:
//!
//! ```text
//!  island A netns                 host netns                       island B netns
//!  [ifname_a] <==veth==> [host_a]  --forwarded, nft filtered-->  [host_b] <==veth==> [ifname_b]
//!  addr_a/32 peer addr_b                                                    addr_b/32 peer addr_a
//! ```
//!
//! Host ends carry no IPv4 address, forward IPv4 (per interface only), and have IPv6 disabled;
//! neighbours are permanent on both sides, so no ARP ever runs on a link.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use pathrs::procfs::ProcfsHandle;

use crate::error::NetError;
pub use crate::netlink::mac_for;
use crate::netlink::{Request, Socket};
use crate::netns::Netns;
use crate::sysctl;

/// One side of a link: the island's namespace and interface, and the host end facing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub netns: PathBuf,
    /// Interface name inside the island (at most 15 bytes).
    pub ifname: String,
    /// Interface name of the host end (at most 15 bytes, unique on the host).
    pub host_ifname: String,
    pub addr: Ipv4Addr,
    /// MAC of the island's interface.
    pub mac: [u8; 6],
    /// MAC of the host end.
    pub host_mac: [u8; 6],
}

/// A link between two islands; `group` (non-zero) is the host link group of both host ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub a: End,
    pub b: End,
    pub group: u32,
}

/// Where a step runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Host,
    Netns(PathBuf),
}

/// One change, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A veth pair made from the host: this end stays in the host, the peer is created directly
    /// inside `peer_netns` (IFLA_NET_NS_FD in VETH_INFO_PEER).
    CreateVeth {
        ifname: String,
        mac: [u8; 6],
        group: u32,
        peer_ifname: String,
        peer_mac: [u8; 6],
        peer_netns: PathBuf,
    },
    /// `net.ipv6.conf.<ifname>.disable_ipv6=1`; `ifname` "default" covers devices created later.
    DisableIpv6 { ifname: String },
    /// Set up; `forwarding` turns on `net.ipv4.conf.<ifname>.forwarding` (that device only).
    LinkUp { ifname: String, forwarding: bool },
    /// `ip addr add <local>/32 peer <peer> dev <ifname>`.
    PeerAddress {
        ifname: String,
        local: Ipv4Addr,
        peer: Ipv4Addr,
    },
    /// `ip route add <dst>/32 dev <ifname> scope link`.
    LinkRoute { ifname: String, dst: Ipv4Addr },
    /// `ip neigh add <addr> lladdr <mac> dev <ifname> nud permanent`.
    Neighbour {
        ifname: String,
        addr: Ipv4Addr,
        mac: [u8; 6],
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub target: Target,
    pub op: Op,
}

/// The ordered steps that realise a set of links. Consecutive netlink steps for one target go
/// to the kernel as one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

/// A host end, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEnd {
    pub name: String,
    pub ifindex: u32,
    pub up: bool,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// Plan `links`. Order matters to the kernel: island namespaces get `default.disable_ipv6`
/// before their veth ends exist (new devices copy the namespace default), host ends get IPv6
/// disabled before they go up (no link-local address is ever configured), and a device must be
/// up before a route through it is accepted (ENETDOWN otherwise).
pub fn plan(links: &[LinkSpec]) -> Plan {
    let ends: Vec<(&End, &End, u32)> = links
        .iter()
        .flat_map(|l| [(&l.a, &l.b, l.group), (&l.b, &l.a, l.group)])
        .collect();
    let mut islands: Vec<&Path> = Vec::new();
    for (end, _, _) in &ends {
        if !islands.contains(&end.netns.as_path()) {
            islands.push(&end.netns);
        }
    }
    let mut steps = Vec::new();
    let host = |op| Step {
        target: Target::Host,
        op,
    };
    for ns in &islands {
        steps.push(Step {
            target: Target::Netns(ns.to_path_buf()),
            op: Op::DisableIpv6 {
                ifname: "default".into(),
            },
        });
    }
    for (end, _, group) in &ends {
        steps.push(host(Op::CreateVeth {
            ifname: end.host_ifname.clone(),
            mac: end.host_mac,
            group: *group,
            peer_ifname: end.ifname.clone(),
            peer_mac: end.mac,
            peer_netns: end.netns.clone(),
        }));
    }
    for (end, _, _) in &ends {
        steps.push(host(Op::DisableIpv6 {
            ifname: end.host_ifname.clone(),
        }));
    }
    for (end, _, _) in &ends {
        let ifname = end.host_ifname.clone();
        steps.push(host(Op::LinkUp {
            ifname: ifname.clone(),
            forwarding: true,
        }));
        steps.push(host(Op::LinkRoute {
            ifname: ifname.clone(),
            dst: end.addr,
        }));
        steps.push(host(Op::Neighbour {
            ifname,
            addr: end.addr,
            mac: end.mac,
        }));
    }
    for ns in &islands {
        let target = Target::Netns(ns.to_path_buf());
        let mut push = |op| {
            steps.push(Step {
                target: target.clone(),
                op,
            })
        };
        push(Op::LinkUp {
            ifname: "lo".into(),
            forwarding: false,
        });
        for (end, peer, _) in ends.iter().filter(|(e, _, _)| e.netns == *ns) {
            push(Op::PeerAddress {
                ifname: end.ifname.clone(),
                local: end.addr,
                peer: peer.addr,
            });
            push(Op::LinkUp {
                ifname: end.ifname.clone(),
                forwarding: false,
            });
            push(Op::Neighbour {
                ifname: end.ifname.clone(),
                addr: peer.addr,
                mac: end.host_mac,
            });
        }
    }
    Plan { steps }
}

impl Plan {
    /// Apply the steps in order: each island netns is opened once with one rtnetlink socket,
    /// and consecutive netlink steps for a target go out as one batch. Not transactional: after
    /// an error, `delete_group` for the plan's groups (and `netns::remove`) clean up.
    pub fn apply(&self) -> Result<(), NetError> {
        let mut applier = Applier::new()?;
        let mut rest = &self.steps[..];
        while let Some(first) = rest.first() {
            let sysctl = matches!(first.op, Op::DisableIpv6 { .. });
            let len = rest
                .iter()
                .take_while(|s| {
                    s.target == first.target && matches!(s.op, Op::DisableIpv6 { .. }) == sysctl
                })
                .count();
            let (run, tail) = rest.split_at(len);
            rest = tail;
            let ops: Vec<&Op> = run.iter().map(|s| &s.op).collect();
            if sysctl {
                applier.sysctls(&first.target, &ops)?;
            } else {
                applier.netlink(&first.target, &ops)?;
            }
        }
        Ok(())
    }

    /// The link groups this plan creates links in, for cleanup after a failed apply.
    pub fn groups(&self) -> Vec<u32> {
        let mut groups: Vec<u32> = self
            .steps
            .iter()
            .filter_map(|s| match s.op {
                Op::CreateVeth { group, .. } => Some(group),
                _ => None,
            })
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }
}

/// A namespace being configured: its socket and, once dumped, its name → ifindex map.
struct Ns {
    netns: Option<Netns>,
    sock: Socket,
    label: String,
    index: Option<HashMap<String, u32>>,
}

struct Applier {
    proc: ProcfsHandle,
    spaces: HashMap<Target, Ns>,
}

impl Applier {
    fn new() -> Result<Applier, NetError> {
        let mut spaces = HashMap::new();
        spaces.insert(
            Target::Host,
            Ns {
                netns: None,
                sock: Socket::open("host")?,
                label: "host".into(),
                index: None,
            },
        );
        Ok(Applier {
            proc: sysctl::procfs()?,
            spaces,
        })
    }

    /// Open an island's netns and its socket on first use; `also` runs in the same visit.
    fn visit(
        &mut self,
        target: &Target,
        also: impl FnOnce(&ProcfsHandle, &str) -> Result<(), NetError>,
    ) -> Result<(), NetError> {
        let Target::Netns(path) = target else {
            return also(&self.proc, "host");
        };
        let label = format!("{path:?}");
        if self.spaces.contains_key(target) {
            let ns = self.spaces[target]
                .netns
                .as_ref()
                .expect("island entries hold their netns");
            return ns.enter(|| also(&self.proc, &label))?;
        }
        let netns = Netns::open(path)?;
        let proc = &self.proc;
        let sock = netns.enter(|| -> Result<Socket, NetError> {
            also(proc, &label)?;
            Ok(Socket::open(&label)?)
        })??;
        self.spaces.insert(
            target.clone(),
            Ns {
                netns: Some(netns),
                sock,
                label,
                index: None,
            },
        );
        Ok(())
    }

    fn sysctls(&mut self, target: &Target, ops: &[&Op]) -> Result<(), NetError> {
        self.visit(target, |proc, label| {
            let conf = sysctl::Ipv6Conf::open(proc, label)?;
            for op in ops {
                if let Op::DisableIpv6 { ifname } = op {
                    conf.disable(ifname)?;
                }
            }
            Ok(())
        })
    }

    fn netlink(&mut self, target: &Target, ops: &[&Op]) -> Result<(), NetError> {
        // Every namespace named here must be open first: ours for the socket, peers for their fd.
        self.visit(target, |_, _| Ok(()))?;
        for op in ops {
            if let Op::CreateVeth { peer_netns, .. } = op {
                let peer = Target::Netns(peer_netns.clone());
                if !self.spaces.contains_key(&peer) {
                    self.visit(&peer, |_, _| Ok(()))?;
                }
            }
        }
        let mut reqs = Vec::with_capacity(ops.len());
        let mut created_in = Vec::new();
        for op in ops {
            let req = match op {
                Op::CreateVeth {
                    ifname,
                    mac,
                    group,
                    peer_ifname,
                    peer_mac,
                    peer_netns,
                } => {
                    let peer = &self.spaces[&Target::Netns(peer_netns.clone())];
                    let fd = peer
                        .netns
                        .as_ref()
                        .expect("island entries hold their netns")
                        .fd();
                    created_in.push(Target::Netns(peer_netns.clone()));
                    Request::new_veth(
                        ifname,
                        *mac,
                        *group,
                        peer_ifname,
                        *peer_mac,
                        fd,
                        &peer.label,
                    )
                }
                Op::LinkUp { ifname, forwarding } => {
                    Request::set_link_up(self.ifindex(target, ifname)?, ifname, *forwarding)
                }
                Op::PeerAddress {
                    ifname,
                    local,
                    peer,
                } => {
                    Request::new_peer_address(self.ifindex(target, ifname)?, ifname, *local, *peer)
                }
                Op::LinkRoute { ifname, dst } => {
                    Request::new_link_route(*dst, self.ifindex(target, ifname)?, ifname)
                }
                Op::Neighbour { ifname, addr, mac } => Request::new_permanent_neighbour(
                    self.ifindex(target, ifname)?,
                    ifname,
                    *addr,
                    *mac,
                ),
                Op::DisableIpv6 { .. } => unreachable!("sysctl steps are run by Applier::sysctls"),
            };
            reqs.push(req);
        }
        let ns = self.spaces.get_mut(target).expect("visited above");
        if !created_in.is_empty() {
            ns.index = None;
        }
        let result = ns.sock.execute(&reqs);
        for t in created_in {
            if let Some(peer) = self.spaces.get_mut(&t) {
                peer.index = None;
            }
        }
        Ok(result?)
    }

    /// Resolve an interface name in `target`, dumping its links once when the name is new.
    fn ifindex(&mut self, target: &Target, ifname: &str) -> Result<u32, NetError> {
        let ns = self.spaces.get_mut(target).expect("visited before use");
        if let Some(&i) = ns.index.as_ref().and_then(|m| m.get(ifname)) {
            return Ok(i);
        }
        let map: HashMap<String, u32> = ns
            .sock
            .dump_links()?
            .iter()
            .filter_map(|l| link_name(l).map(|n| (n.to_owned(), l.header.index)))
            .collect();
        let found = map.get(ifname).copied();
        ns.index = Some(map);
        found.ok_or_else(|| NetError::NoSuchInterface {
            ifname: ifname.to_owned(),
            netns: ns.label.clone(),
        })
    }
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn link_group(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Group(g) => Some(*g),
        _ => None,
    })
}

/// Delete every host link in `group` with one RTM_DELLINK (IFLA_GROUP, no index): the kernel
/// unregisters them together, one synchronize_net for the lot, and each veth takes its island
/// end with it. Ok if the group has no links. Group 0 (every unassigned link) is refused.
pub fn delete_group(group: u32) -> Result<(), NetError> {
    if group == 0 {
        return Err(NetError::GroupZero);
    }
    let mut sock = Socket::open("host")?;
    match sock.execute(&[Request::delete_group(group)]) {
        // rtnl_group_dellink: ENODEV when no link is in the group.
        Err(crate::NetlinkError::Nack {
            errno: rustix::io::Errno::NODEV,
            ..
        }) => Ok(()),
        other => Ok(other?),
    }
}

/// Delete the host links named `names` (each veth takes its island end with it, and the kernel
/// drops the routes through it); names that do not exist are skipped.
pub fn delete_host_links(names: &[String]) -> Result<(), NetError> {
    let mut sock = Socket::open("host")?;
    let links = sock.dump_links()?;
    let reqs: Vec<Request> = links
        .iter()
        .filter_map(|l| {
            let n = link_name(l)?;
            names
                .iter()
                .any(|w| w == n)
                .then(|| Request::delete_link(l.header.index, n))
        })
        .collect();
    Ok(sock.execute(&reqs)?)
}

/// Point each host route `dst/32` at the host link named beside it, whatever link it used
/// before (`ip route replace`): a migrated island's traffic moves to its new ends while the old
/// ends still exist, so their deletion (one synchronize_net each) can wait.
pub fn replace_host_routes(routes: &[(Ipv4Addr, String)]) -> Result<(), NetError> {
    let mut sock = Socket::open("host")?;
    let links = sock.dump_links()?;
    let mut reqs = Vec::with_capacity(routes.len());
    for (dst, name) in routes {
        let index = links
            .iter()
            .find(|l| link_name(l) == Some(name.as_str()))
            .map(|l| l.header.index)
            .ok_or_else(|| NetError::NoSuchInterface {
                ifname: name.clone(),
                netns: "host".into(),
            })?;
        reqs.push(Request::replace_link_route(*dst, index, name));
    }
    Ok(sock.execute(&reqs)?)
}

/// Route each `dst/32` through the gateway beside it (`ip route replace DST via GW`): the
/// addresses of islands that live on another host, reached over the wire to it.
pub fn route_via(routes: &[(Ipv4Addr, Ipv4Addr)]) -> Result<(), NetError> {
    let mut sock = Socket::open("host")?;
    let reqs: Vec<Request> = routes
        .iter()
        .map(|(dst, gw)| Request::replace_gateway_route(*dst, *gw))
        .collect();
    Ok(sock.execute(&reqs)?)
}

/// Delete the host routes `dst/32`, one request each; a route that is not there is skipped
/// (ESRCH), so a teardown can run twice.
pub fn delete_routes(dsts: &[Ipv4Addr]) -> Result<(), NetError> {
    let mut sock = Socket::open("host")?;
    for dst in dsts {
        match sock.execute(&[Request::delete_route(*dst)]) {
            Err(crate::NetlinkError::Nack {
                errno: rustix::io::Errno::SRCH,
                ..
            }) => {}
            other => other?,
        }
    }
    Ok(())
}

/// Delete host links one by one (one RTM_DELLINK each, one synchronize_net each); only for
/// measuring against `delete_group`.
pub fn delete_group_one_by_one(group: u32) -> Result<(), NetError> {
    let mut sock = Socket::open("host")?;
    let links = sock.dump_links()?;
    let reqs: Vec<Request> = links
        .iter()
        .filter(|l| link_group(l) == Some(group))
        .map(|l| Request::delete_link(l.header.index, link_name(l).unwrap_or("?")))
        .collect();
    Ok(sock.execute(&reqs)?)
}

/// The host ends in `group`, for status output.
pub fn group_links(group: u32) -> Result<Vec<HostEnd>, NetError> {
    let mut sock = Socket::open("host")?;
    Ok(sock
        .dump_links()?
        .iter()
        .filter(|l| link_group(l) == Some(group))
        .map(|l| {
            let (rx, tx) = l
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::Stats64(s) => Some((s.rx_packets, s.tx_packets)),
                    _ => None,
                })
                .unwrap_or((0, 0));
            HostEnd {
                name: link_name(l).unwrap_or_default().to_owned(),
                ifindex: l.header.index,
                up: l.header.flags.contains(LinkFlags::Up),
                rx_packets: rx,
                tx_packets: tx,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::fmt_mac;

    /// A hand-edited plan.json naming group 0 is an error, never a delete of every ungrouped host
    /// link (nor a panic): refused before any socket is opened.
    #[test]
    fn group_zero_is_refused() {
        assert!(matches!(delete_group(0), Err(NetError::GroupZero)));
    }

    fn end(ns: &str, ifname: &str, host: &str, x: u8, side: u8) -> End {
        End {
            netns: PathBuf::from(ns),
            ifname: ifname.into(),
            host_ifname: host.into(),
            addr: Ipv4Addr::new(10, 0, 0, x),
            mac: mac_for(7, 1, side),
            host_mac: mac_for(7, 1, side + 1),
        }
    }

    fn ab() -> LinkSpec {
        LinkSpec {
            a: end("/ns/a", "to-b", "ha", 1, 0),
            b: end("/ns/b", "to-a", "hb", 2, 2),
            group: 7,
        }
    }

    #[test]
    fn plan_orders_steps_the_way_the_kernel_needs() {
        let l = ab();
        let p = plan(std::slice::from_ref(&l));
        let host = |op| Step {
            target: Target::Host,
            op,
        };
        let isl = |ns: &str, op| Step {
            target: Target::Netns(ns.into()),
            op,
        };
        let v6 = |i: &str| Op::DisableIpv6 { ifname: i.into() };
        let up = |i: &str, forwarding| Op::LinkUp {
            ifname: i.into(),
            forwarding,
        };
        let want = vec![
            isl("/ns/a", v6("default")),
            isl("/ns/b", v6("default")),
            host(Op::CreateVeth {
                ifname: "ha".into(),
                mac: l.a.host_mac,
                group: 7,
                peer_ifname: "to-b".into(),
                peer_mac: l.a.mac,
                peer_netns: "/ns/a".into(),
            }),
            host(Op::CreateVeth {
                ifname: "hb".into(),
                mac: l.b.host_mac,
                group: 7,
                peer_ifname: "to-a".into(),
                peer_mac: l.b.mac,
                peer_netns: "/ns/b".into(),
            }),
            host(v6("ha")),
            host(v6("hb")),
            host(up("ha", true)),
            host(Op::LinkRoute {
                ifname: "ha".into(),
                dst: l.a.addr,
            }),
            host(Op::Neighbour {
                ifname: "ha".into(),
                addr: l.a.addr,
                mac: l.a.mac,
            }),
            host(up("hb", true)),
            host(Op::LinkRoute {
                ifname: "hb".into(),
                dst: l.b.addr,
            }),
            host(Op::Neighbour {
                ifname: "hb".into(),
                addr: l.b.addr,
                mac: l.b.mac,
            }),
            isl("/ns/a", up("lo", false)),
            isl(
                "/ns/a",
                Op::PeerAddress {
                    ifname: "to-b".into(),
                    local: l.a.addr,
                    peer: l.b.addr,
                },
            ),
            isl("/ns/a", up("to-b", false)),
            isl(
                "/ns/a",
                Op::Neighbour {
                    ifname: "to-b".into(),
                    addr: l.b.addr,
                    mac: l.a.host_mac,
                },
            ),
            isl("/ns/b", up("lo", false)),
            isl(
                "/ns/b",
                Op::PeerAddress {
                    ifname: "to-a".into(),
                    local: l.b.addr,
                    peer: l.a.addr,
                },
            ),
            isl("/ns/b", up("to-a", false)),
            isl(
                "/ns/b",
                Op::Neighbour {
                    ifname: "to-a".into(),
                    addr: l.a.addr,
                    mac: l.b.host_mac,
                },
            ),
        ];
        assert_eq!(p.steps, want);
        assert_eq!(p.groups(), vec![7]);
    }

    #[test]
    fn plan_visits_a_shared_island_once() {
        let mut cb = ab();
        cb.a = end("/ns/c", "to-b", "hc", 5, 0);
        cb.b = end("/ns/b", "to-c", "hb2", 6, 2);
        cb.group = 9;
        let p = plan(&[ab(), cb]);
        let defaults = p
            .steps
            .iter()
            .filter(|s| matches!(&s.op, Op::DisableIpv6 { ifname } if ifname == "default"))
            .count();
        assert_eq!(defaults, 3, "one per island: a, b, c");
        // B's steps are one contiguous run (one batch on B's socket).
        let b_runs = p
            .steps
            .windows(2)
            .filter(|w| w[1].target == Target::Netns("/ns/b".into()) && w[0].target != w[1].target)
            .count()
            + usize::from(p.steps[0].target == Target::Netns("/ns/b".into()));
        assert_eq!(b_runs, 2, "default sysctl run, then configure run");
        assert_eq!(p.groups(), vec![7, 9]);
        assert_eq!(plan(&[]), Plan::default());
    }

    #[test]
    fn macs_are_local_unicast_and_distinct_per_side() {
        for side in 0..4 {
            let m = mac_for(0xdead_beef, 300, side);
            assert_eq!(m[0] & 0x03, 0x02, "locally administered, unicast: {m:x?}");
        }
        assert_ne!(mac_for(1, 1, 0), mac_for(1, 1, 1));
        assert_ne!(mac_for(1, 1, 0), mac_for(1, 2, 0));
        assert_eq!(mac_for(5, 6, 1), mac_for(5, 6, 1));
        assert_eq!(
            fmt_mac(mac_for(0x0001_0002, 0x0304_0506, 1)),
            "06:00:03:04:05:06"
        );
    }
}

//! Layer 3, network: can a packet leave the tenant's netns and reach the peer's, as far as
//! links, addresses, routes and neighbours go (the border guard is the next layer).
//!
//! For an island it checks, in the order a packet meets them: `lo` up; every interface of the
//! island's links present, up, with carrier and its `addr/32 peer` address; towards a target,
//! that a `[[link]]` exists at all, the route the kernel picks (RTM_GETROUTE, as `ip route get`)
//! leaves by that link's interface, and the permanent neighbour entry for the peer holds the
//! host end's MAC; on the host, both host ends of the link up and forwarding, with their /32
//! route and permanent neighbour towards each island address; in the peer, its interface up with
//! its address, and its route and neighbour back. For a plain container: `lo`, its interfaces
//! that carry addresses, and the route to the target (outside addresses are followed, not
//! probed). Evidence reads like `ip` output, each line prefixed with the namespace it came from.
//!
//! A fault's fix is the exact command that repairs it (`nsenter --net=<pinned netns> ip ...` in
//! an island, `ip ...` on the host), or the `[[link]]` to add, and for islands also the rebuild
//! (`atoll down P && atoll up FILE`). Doctor never applies a fix: it only reads, over one
//! rtnetlink socket per namespace and a few /proc/sys reads, and spawns nothing.

use std::net::Ipv4Addr;
use std::path::Path;

use atoll_islands::plan::{LinkPlan, Plan};
use atoll_net::inspect::{errno_name, fmt_mac, Inspector, RouteAnswer, Snapshot};

use crate::report::{Layer, LayerReport};
use crate::subject::{IslandRef, Subject};
use crate::Ctx;

pub fn check(c: &Ctx) -> LayerReport {
    let mut w = Walk::default();
    let outcome = match &c.subject.island {
        Some(me) => {
            w.rebuild = Some(format!(
                "atoll down {} && atoll up {}",
                me.plan.name,
                me.plan.file.display()
            ));
            island(c, me, &mut w)
        }
        None => container(c, &mut w),
    };
    match outcome {
        Ok(summary) => LayerReport::ok(Layer::Network, summary).with_evidence(w.evidence),
        Err(f) => LayerReport::fault(Layer::Network, f.summary, f.fix).with_evidence(w.evidence),
    }
}

/// Whether `addr` is the container's own (loopback, or an address on one of its interfaces):
/// the only addresses doctor probes for a plain container.
pub fn is_own_address(subject: &Subject, addr: Ipv4Addr) -> bool {
    if addr.is_loopback() {
        return true;
    }
    if let Some(me) = &subject.island {
        if me.plan.addresses(me.index).iter().any(|(a, _)| *a == addr) {
            return true;
        }
    }
    let ns = match (&subject.netns, subject.own_netns) {
        (Some(p), true) => Some(p.as_path()),
        (_, false) => None,
        (None, true) => return false,
    };
    Inspector::open(ns)
        .and_then(|mut i| i.addresses())
        .is_ok_and(|v| v.iter().any(|a| a.local == addr))
}

struct Fault {
    summary: String,
    fix: String,
}

#[derive(Default)]
struct Walk {
    evidence: Vec<String>,
    /// For islands: the command that rebuilds everything, offered after the precise fix.
    rebuild: Option<String>,
}

impl Walk {
    fn see(&mut self, ns: &str, what: impl AsRef<str>) {
        self.evidence.push(format!("[{ns}] {}", what.as_ref()));
    }

    fn fault(&self, summary: impl Into<String>, fix: impl Into<String>) -> Fault {
        let mut fix = fix.into();
        if let Some(r) = &self.rebuild {
            fix.push_str(&format!("\n(or rebuild the whole project: {r})"));
        }
        Fault {
            summary: summary.into(),
            fix,
        }
    }
}

/// `nsenter --net=PATH ip ARGS`: `ip -n` only knows /run/netns names, not a pinned path.
fn in_ns(path: &Path, ip_args: &str) -> String {
    format!("nsenter --net={} ip {ip_args}", path.display())
}

fn open(ns: Option<&Path>, label: &str, w: &Walk) -> Result<(Inspector, Snapshot), Fault> {
    let cannot = |e: atoll_net::NetError| {
        w.fault(
            format!("cannot read the network namespace of {label}: {e}"),
            match ns {
                Some(p) => format!("check that {} is a network namespace", p.display()),
                None => "run doctor as root in the host's network namespace".into(),
            },
        )
    };
    let mut i = Inspector::open(ns).map_err(cannot)?;
    let snap = i.snapshot().map_err(cannot)?;
    Ok((i, snap))
}

/// `lo` must be up: local services and 127.0.0.1 live on it (and the kernel drops its
/// 127.0.0.0/8 routes while it is down).
fn check_lo(snap: &Snapshot, ns: &str, fix: String, w: &mut Walk) -> Result<(), Fault> {
    match snap.link("lo") {
        Some(lo) if lo.up => {
            w.see(ns, format!("lo: {}", lo.state()));
            Ok(())
        }
        Some(lo) => {
            w.see(ns, format!("lo: {} <{}>", lo.state(), lo.flags));
            Err(w.fault(format!("lo is down in {ns}"), fix))
        }
        None => Err(w.fault(format!("{ns} has no lo"), fix)),
    }
}

/// One island's view of a link: its own interface and address, the peer's, and the host ends.
struct Side<'a> {
    ifname: &'a str,
    addr: Ipv4Addr,
    host: &'a str,
    peer_ifname: &'a str,
    peer_addr: Ipv4Addr,
    peer_host: &'a str,
}

fn side(l: &LinkPlan, me: usize) -> Side<'_> {
    if l.a == me {
        Side {
            ifname: &l.if_a,
            addr: l.addr_a,
            host: &l.host_a,
            peer_ifname: &l.if_b,
            peer_addr: l.addr_b,
            peer_host: &l.host_b,
        }
    } else {
        Side {
            ifname: &l.if_b,
            addr: l.addr_b,
            host: &l.host_b,
            peer_ifname: &l.if_a,
            peer_addr: l.addr_a,
            peer_host: &l.host_a,
        }
    }
}

fn island_name(plan: &Plan, i: usize) -> &str {
    &plan.islands[i].spec.name
}

/// The host, inspected once on first need.
struct Host {
    ins: Inspector,
    snap: Snapshot,
}

fn island(c: &Ctx, me: &IslandRef, w: &mut Walk) -> Result<String, Fault> {
    let plan = &me.plan;
    let name = island_name(plan, me.index).to_string();
    let Some(path) = c.subject.netns.as_deref() else {
        return Err(w.fault(
            format!("{name} has no network namespace"),
            "bring the project up again",
        ));
    };
    if !path.exists() {
        return Err(w.fault(
            format!(
                "{name} has no network namespace: {} is missing",
                path.display()
            ),
            "the pinned namespace is gone; only a rebuild makes it again",
        ));
    }
    let (mut ins, snap) = open(Some(path), &name, w)?;
    check_lo(&snap, &name, in_ns(path, "link set dev lo up"), w)?;

    let mut host: Option<Host> = None;
    let mine: Vec<usize> = (0..plan.links.len())
        .filter(|&i| plan.links[i].a == me.index || plan.links[i].b == me.index)
        .collect();
    for &li in &mine {
        check_island_iface(plan, li, me.index, path, &snap, &mut host, w)?;
    }
    let Some(t) = c.target else {
        return Ok(format!(
            "lo and {} link interface(s) of {name} up with their addresses",
            mine.len()
        ));
    };

    if t.outside {
        let addr = t.addr.expect("an outside target is an address");
        let found = describe_route(&mut ins, &snap, addr);
        w.see(&name, format!("route get {addr}: {found}"));
        return Err(Fault {
            summary: format!(
                "no route to {addr}: islands reach only the islands they are linked to"
            ),
            fix: format!(
                "islands have no way off the machine by design. Names of linked islands are \
                 in each island's /etc/hosts already; for other names, run a DNS server in an \
                 island and link it:\n[[island]]\nname = \"dns\"\n...\n[[link]]\nbetween = \
                 [\"{name}\", \"dns\"]\n[[allow]]\nfrom = \"{name}\"\nto = \"dns\"\nproto = \
                 \"udp\"\nports = [53]\nthen: {}",
                w.rebuild.as_deref().unwrap_or("atoll up FILE")
            ),
        });
    }
    let Some(peer) = &t.peer else {
        return Ok(format!("{name}: no island target"));
    };
    let peer_name = peer
        .name
        .rsplit('/')
        .next()
        .unwrap_or(&peer.name)
        .to_string();
    let Some(li) = t.link else {
        if peer.island.as_ref().is_some_and(|p| p.index == me.index) {
            return Ok(format!("{peer_name} is {name} itself"));
        }
        return Err(Fault {
            summary: format!("no [[link]] between {name} and {peer_name}"),
            fix: format!(
                "add to {}:\n[[link]]\nbetween = [\"{name}\", \"{peer_name}\"]\nthen: {}",
                plan.file.display(),
                w.rebuild.as_deref().unwrap_or("atoll up FILE")
            ),
        });
    };
    let s = side(&plan.links[li], me.index);
    let addr = t.addr.unwrap_or(s.peer_addr);
    if addr != s.peer_addr {
        return Err(w.fault(
            format!(
                "{addr} is not {peer_name}'s address on its link with {name}: {name} reaches \
                 {peer_name} at {}",
                s.peer_addr
            ),
            format!("ask for {}:{}", s.peer_addr, port_of(t)),
        ));
    }

    // The island's way out: route, then neighbour.
    let my_if = snap.link(s.ifname).expect("checked above");
    let (my_if_index, my_mac) = (my_if.index, my_if.mac);
    let host_mac = host_snapshot(&mut host, w)?
        .snap
        .link(s.host)
        .and_then(|l| l.mac);
    expect_route(
        &mut ins,
        &snap,
        &name,
        addr,
        s.ifname,
        w,
        &in_ns(
            path,
            &format!(
                "route replace {addr}/32 dev {} scope link src {}",
                s.ifname, s.addr
            ),
        ),
    )?;
    expect_neighbour(
        &snap,
        &name,
        my_if_index,
        s.ifname,
        addr,
        host_mac,
        w,
        |mac| {
            in_ns(
                path,
                &format!(
                    "neigh replace {addr} lladdr {mac} dev {} nud permanent",
                    s.ifname
                ),
            )
        },
    )?;

    // A peer on another host: this host's part of the way is its own host end and the wire;
    // the rest is the other host's to check (`atoll doctor` there).
    if let Some(r) = peer.island.as_ref().and_then(|p| p.island().remote.clone()) {
        check_host_end(&mut host, s.host, s.addr, my_mac, &name, w)?;
        check_wire(&mut host, &r, s.peer_addr, &peer_name, w)?;
        return Ok(format!(
            "{name} -> {peer_name}: route by dev {}, host end {} forwarding; {peer_name} lives on \
             another host, reached via {} on the wire {} (its side is that host's to check)",
            s.ifname, s.host, r.via, r.dev
        ));
    }

    // The peer's side, read now: the host's neighbour towards it needs its interface's MAC.
    let peer_path = peer.netns.as_deref();
    let peer_view = match peer_path {
        Some(p) if p.exists() => Some(open(Some(p), &peer_name, w)?),
        _ => None,
    };
    let peer_mac = peer_view
        .as_ref()
        .and_then(|(_, ps)| ps.link(s.peer_ifname))
        .and_then(|l| l.mac);

    // The host: both ends of the link.
    for (h, a, mac, owner) in [
        (s.host, s.addr, my_mac, name.as_str()),
        (s.peer_host, s.peer_addr, peer_mac, peer_name.as_str()),
    ] {
        check_host_end(&mut host, h, a, mac, owner, w)?;
    }

    // The peer: its interface on the link, and its way back.
    let (Some(peer_path), Some((mut pins, psnap))) = (peer_path, peer_view) else {
        return Err(w.fault(
            format!("{peer_name} has no network namespace"),
            format!("bring {peer_name} up again"),
        ));
    };
    let peer_host_mac = host_snapshot(&mut host, w)?
        .snap
        .link(s.peer_host)
        .and_then(|l| l.mac);
    let pif = check_iface_present(
        &psnap,
        &peer_name,
        s.peer_ifname,
        s.peer_addr,
        s.addr,
        peer_host_mac,
        peer_path,
        w,
    )?;
    if !pif.lower_up {
        return Err(w.fault(
            format!("{peer_name}'s interface {} has no carrier", s.peer_ifname),
            "the veth pair is broken; a rebuild recreates it",
        ));
    }
    expect_route(
        &mut pins,
        &psnap,
        &peer_name,
        s.addr,
        s.peer_ifname,
        w,
        &in_ns(
            peer_path,
            &format!(
                "route replace {}/32 dev {} scope link src {}",
                s.addr, s.peer_ifname, s.peer_addr
            ),
        ),
    )?;
    expect_neighbour(
        &psnap,
        &peer_name,
        pif.index,
        s.peer_ifname,
        s.addr,
        peer_host_mac,
        w,
        |mac| {
            in_ns(
                peer_path,
                &format!(
                    "neigh replace {} lladdr {mac} dev {} nud permanent",
                    s.addr, s.peer_ifname
                ),
            )
        },
    )?;
    Ok(format!(
        "{name} -> {peer_name}: route by dev {}, host ends {} and {} forwarding, {peer_name}'s interface \
         {} up with its way back",
        s.ifname, s.host, s.peer_host, s.peer_ifname
    ))
}

fn port_of(t: &crate::Resolved) -> String {
    match t.target.port {
        Some(p) => p.to_string(),
        None => t.target.proto.as_str().to_string(),
    }
}

fn host_snapshot<'h>(host: &'h mut Option<Host>, w: &Walk) -> Result<&'h mut Host, Fault> {
    if host.is_none() {
        let (ins, snap) = open(None, "the host", w)?;
        *host = Some(Host { ins, snap });
    }
    Ok(host.as_mut().expect("set above"))
}

/// An island interface of link `li`: present, up, its address, and carrier (a veth has none
/// while its host end is down).
#[allow(clippy::too_many_arguments)]
fn check_island_iface(
    plan: &Plan,
    li: usize,
    me: usize,
    path: &Path,
    snap: &Snapshot,
    host: &mut Option<Host>,
    w: &mut Walk,
) -> Result<(), Fault> {
    let s = side(&plan.links[li], me);
    let name = island_name(plan, me).to_string();
    let host_mac = host_snapshot(host, w)?
        .snap
        .link(s.host)
        .and_then(|l| l.mac);
    let link = check_iface_present(
        snap,
        &name,
        s.ifname,
        s.addr,
        s.peer_addr,
        host_mac,
        path,
        w,
    )?;
    if link.lower_up {
        return Ok(());
    }
    // No carrier: the other end of the veth, the host end, is down or gone.
    let mac = link.mac;
    check_host_end(host, s.host, s.addr, mac, &name, w)?;
    Err(w.fault(
        format!(
            "{name}'s interface {} has no carrier though its host end {} is up",
            s.ifname, s.host
        ),
        "the veth pair is broken; a rebuild recreates it",
    ))
}

/// `ifname` exists in the namespace at `path`, is up and carries `addr/32 peer peer_addr`;
/// `host_mac` is the MAC of the host end facing it, for the permanent neighbour in a fix.
#[allow(clippy::too_many_arguments)]
fn check_iface_present(
    snap: &Snapshot,
    ns: &str,
    ifname: &str,
    addr: Ipv4Addr,
    peer_addr: Ipv4Addr,
    host_mac: Option<[u8; 6]>,
    path: &Path,
    w: &mut Walk,
) -> Result<atoll_net::inspect::Link, Fault> {
    let Some(link) = snap.link(ifname) else {
        let present: Vec<&str> = snap.links.iter().map(|l| l.name.as_str()).collect();
        w.see(ns, format!("links: {}", present.join(", ")));
        return Err(w.fault(
            format!("{ns} has no interface {ifname}"),
            "the veth pair is gone; a rebuild recreates it",
        ));
    };
    let addrs: Vec<String> = snap
        .addresses_of(link.index)
        .map(ToString::to_string)
        .collect();
    w.see(
        ns,
        format!(
            "{ifname}: {} {}",
            link.state(),
            if addrs.is_empty() {
                "no IPv4 address".to_string()
            } else {
                addrs.join(", ")
            }
        ),
    );
    if !link.up {
        // Setting a device down flushes its routes and its neighbours, permanent ones too
        // (neigh_ifdown); up brings back the address's own route only.
        let mac = host_mac.map_or_else(|| "<MAC of the host end>".to_string(), fmt_mac);
        return Err(w.fault(
            format!("{ns}'s interface {ifname} is down"),
            format!(
                "{} && {}",
                in_ns(path, &format!("link set dev {ifname} up")),
                in_ns(
                    path,
                    &format!("neigh replace {peer_addr} lladdr {mac} dev {ifname} nud permanent")
                )
            ),
        ));
    }
    if !snap
        .addresses_of(link.index)
        .any(|a| a.local == addr && a.peer == Some(peer_addr))
    {
        return Err(w.fault(
            format!("{ifname} in {ns} lacks its address {addr} peer {peer_addr}"),
            in_ns(
                path,
                &format!("addr replace {addr}/32 peer {peer_addr} dev {ifname}"),
            ),
        ));
    }
    Ok(link.clone())
}

/// A namespace label as the subject of a sentence.
fn who(ns: &str) -> String {
    if ns == "host" {
        "the host".into()
    } else {
        ns.into()
    }
}

fn describe_route(ins: &mut Inspector, snap: &Snapshot, addr: Ipv4Addr) -> String {
    match ins.route_to(addr) {
        Ok(RouteAnswer::Route(r)) => r.describe(|i| snap.name_of(i)),
        Ok(RouteAnswer::Unreachable(e)) => errno_name(e),
        Err(e) => format!("cannot ask: {e}"),
    }
}

/// The kernel's route to `addr` leaves by `ifname`.
#[allow(clippy::too_many_arguments)]
fn expect_route(
    ins: &mut Inspector,
    snap: &Snapshot,
    ns: &str,
    addr: Ipv4Addr,
    ifname: &str,
    w: &mut Walk,
    fix: &str,
) -> Result<(), Fault> {
    let answer = ins.route_to(addr).map_err(|e| {
        w.fault(
            format!("cannot ask {ns} for its route to {addr}: {e}"),
            "run doctor as root",
        )
    })?;
    match answer {
        RouteAnswer::Route(r) => {
            let text = r.describe(|i| snap.name_of(i));
            w.see(ns, format!("route {text}"));
            let dev = r.oif.and_then(|i| snap.name_of(i));
            if r.kind == "unicast" && dev.as_deref() == Some(ifname) {
                Ok(())
            } else {
                Err(w.fault(
                    format!(
                        "{}'s route to {addr} is \"{text}\", not by dev {ifname}",
                        who(ns)
                    ),
                    fix,
                ))
            }
        }
        RouteAnswer::Unreachable(e) => {
            w.see(ns, format!("route get {addr}: {}", errno_name(e)));
            Err(w.fault(
                format!("{} has no route to {addr} ({})", who(ns), errno_name(e)),
                fix,
            ))
        }
    }
}

/// The neighbour entry for `addr` on `ifname` is usable and holds `want` (the MAC of the other
/// end of the veth), when known.
#[allow(clippy::too_many_arguments)]
fn expect_neighbour(
    snap: &Snapshot,
    ns: &str,
    index: u32,
    ifname: &str,
    addr: Ipv4Addr,
    want: Option<[u8; 6]>,
    w: &mut Walk,
    fix: impl Fn(&str) -> String,
) -> Result<(), Fault> {
    let want_text = want.map_or_else(|| "<MAC of the other end>".to_string(), fmt_mac);
    let Some(n) = snap.neighbour(index, addr) else {
        w.see(ns, format!("neighbour {addr} dev {ifname}: none"));
        return Err(w.fault(
            format!(
                "{} has no neighbour entry for {addr} on {ifname} (no ARP runs on a link)",
                who(ns)
            ),
            fix(&want_text),
        ));
    };
    w.see(
        ns,
        format!(
            "neighbour {addr} dev {ifname} lladdr {} {}",
            n.lladdr_text(),
            n.state
        ),
    );
    let right_mac = want.is_none_or(|m| n.lladdr.as_deref() == Some(&m[..]));
    if n.usable && right_mac {
        return Ok(());
    }
    Err(w.fault(
        format!(
            "{}'s neighbour entry for {addr} is {} {} (want {want_text} PERMANENT)",
            who(ns),
            n.lladdr_text(),
            n.state
        ),
        fix(&want_text),
    ))
}

/// The wire to the host where island `owner` lives: up, forwarding (its packets come in by
/// it), and the host's route to `addr` goes through `r.via` on it.
fn check_wire(
    host: &mut Option<Host>,
    r: &atoll_islands::plan::Remote,
    addr: Ipv4Addr,
    owner: &str,
    w: &mut Walk,
) -> Result<(), Fault> {
    let (dev, via) = (r.dev.as_str(), r.via);
    let route_fix = format!("ip route replace {addr}/32 via {via}");
    let hs = host_snapshot(host, w)?;
    let Some(link) = hs.snap.link(dev).cloned() else {
        w.see("host", format!("wire {dev}: missing"));
        return Err(w.fault(
            format!("the wire {dev} to the host where {owner} lives is missing"),
            format!("bring the wire to {via} back (the host's own network), then: {route_fix}"),
        ));
    };
    let fwd = hs.ins.ipv4_conf(dev, "forwarding");
    w.see(
        "host",
        format!(
            "wire {dev}: {} forwarding={}",
            link.state(),
            fwd.as_deref().unwrap_or("?")
        ),
    );
    if !link.up {
        return Err(w.fault(
            format!("the wire {dev} to the host where {owner} lives is down"),
            format!("ip link set dev {dev} up && {route_fix}"),
        ));
    }
    if fwd.as_deref().ok() != Some("1") {
        return Err(w.fault(
            format!("the wire {dev} does not forward IPv4: {owner}'s replies stop at it"),
            format!("sysctl -w net.ipv4.conf.{dev}.forwarding=1"),
        ));
    }
    match hs.ins.route_to(addr) {
        Ok(RouteAnswer::Route(rt)) => {
            let text = rt.describe(|i| hs.snap.name_of(i));
            w.see("host", format!("route {text}"));
            let out = rt.oif.and_then(|i| hs.snap.name_of(i));
            if rt.gateway == Some(via) && out.as_deref() == Some(dev) {
                return Ok(());
            }
            Err(w.fault(
                format!(
                    "the host's route to {owner}'s {addr} is \"{text}\", not via {via} on {dev}"
                ),
                route_fix,
            ))
        }
        Ok(RouteAnswer::Unreachable(e)) => Err(w.fault(
            format!(
                "the host has no route to {owner}'s {addr} ({})",
                errno_name(e)
            ),
            route_fix,
        )),
        Err(e) => Err(w.fault(
            format!("cannot ask the host for its route to {addr}: {e}"),
            "run doctor as root",
        )),
    }
}

/// A host end: present, up, forwarding, with its /32 route and permanent neighbour towards the
/// island address behind it (`mac`: that island interface's MAC, when known).
fn check_host_end(
    host: &mut Option<Host>,
    h: &str,
    addr: Ipv4Addr,
    mac: Option<[u8; 6]>,
    owner: &str,
    w: &mut Walk,
) -> Result<(), Fault> {
    let mac_text = mac.map_or_else(|| "<MAC of the island end>".to_string(), fmt_mac);
    let route_fix = format!("ip route replace {addr}/32 dev {h} scope link proto static");
    let neigh_fix = format!("ip neigh replace {addr} lladdr {mac_text} dev {h} nud permanent");
    let hs = host_snapshot(host, w)?;
    let Some(link) = hs.snap.link(h).cloned() else {
        w.see("host", format!("{h}: missing"));
        return Err(w.fault(
            format!("host end {h} of {owner}'s link is missing"),
            "the veth pair is gone; a rebuild recreates it",
        ));
    };
    if !link.up {
        w.see(
            "host",
            format!("host end {h}: {} <{}>", link.state(), link.flags),
        );
        // Down flushed the end's route and neighbour (fib_disable_ip, neigh_ifdown): up alone
        // does not bring them back.
        return Err(w.fault(
            format!("host end {h} of {owner}'s link is down"),
            format!("ip link set dev {h} up && {route_fix} && {neigh_fix}"),
        ));
    }
    let fwd = hs.ins.ipv4_conf(h, "forwarding");
    let rp = hs.ins.ipv4_conf(h, "rp_filter");
    let show = |r: &Result<String, atoll_net::NetError>| match r {
        Ok(v) => v.clone(),
        Err(e) => format!("? ({e})"),
    };
    w.see(
        "host",
        format!(
            "host end {h}: {} forwarding={} rp_filter={}",
            link.state(),
            show(&fwd),
            show(&rp)
        ),
    );
    // ip_route_input_slow refuses to forward what arrives on a device without forwarding.
    if let Err(e) = &fwd {
        return Err(w.fault(
            format!("cannot read net.ipv4.conf.{h}.forwarding: {e}"),
            "run doctor as root in the host's namespaces",
        ));
    }
    if fwd.as_deref().ok() != Some("1") {
        return Err(w.fault(
            format!("host end {h} does not forward IPv4"),
            format!("sysctl -w net.ipv4.conf.{h}.forwarding=1"),
        ));
    }
    expect_route(&mut hs.ins, &hs.snap, "host", addr, h, w, &route_fix)?;
    expect_neighbour(&hs.snap, "host", link.index, h, addr, mac, w, |m| {
        format!("ip neigh replace {addr} lladdr {m} dev {h} nud permanent")
    })
}

fn container(c: &Ctx, w: &mut Walk) -> Result<String, Fault> {
    let s = c.subject;
    let Some(path) = s.netns.as_deref() else {
        return Err(w.fault(
            format!(
                "{} has no network namespace to inspect: it is not running",
                s.name
            ),
            format!("start it (atoll start {}), then ask again", s.container_id),
        ));
    };
    let label = if s.own_netns { "container" } else { "host" };
    if !s.own_netns {
        w.see(
            label,
            "shares the host's network namespace (no network namespace of its own)",
        );
    }
    let ns = s.own_netns.then_some(path);
    let (mut ins, snap) = open(ns, &s.name, w)?;
    let enter = |args: &str| match ns {
        Some(p) => in_ns(p, args),
        None => format!("ip {args}"),
    };
    check_lo(&snap, label, enter("link set dev lo up"), w)?;
    for l in snap.links.iter().filter(|l| l.name != "lo") {
        let addrs: Vec<String> = snap.addresses_of(l.index).map(|a| a.to_string()).collect();
        if addrs.is_empty() {
            continue;
        }
        w.see(
            label,
            format!("{}: {} {}", l.name, l.state(), addrs.join(", ")),
        );
        if !l.up {
            return Err(w.fault(
                format!("{} is down (it carries {})", l.name, addrs.join(", ")),
                enter(&format!("link set dev {} up", l.name)),
            ));
        }
    }
    let Some(t) = c.target else {
        return Ok("lo and the interfaces with addresses are up".into());
    };
    let Some(addr) = t.addr else {
        return Ok("no address to route to".into());
    };
    match ins.route_to(addr).map_err(|e| {
        w.fault(
            format!("cannot ask for the route to {addr}: {e}"),
            "run doctor as root",
        )
    })? {
        RouteAnswer::Route(r) => {
            let text = r.describe(|i| snap.name_of(i));
            w.see(label, format!("route {text}"));
            if t.outside {
                Ok(format!(
                    "{addr} is outside; on the way there: {text} (not probed)"
                ))
            } else {
                Ok(format!("{addr} is the container's own: {text}"))
            }
        }
        RouteAnswer::Unreachable(e) => {
            w.see(label, format!("route get {addr}: {}", errno_name(e)));
            let dev = snap
                .links
                .iter()
                .find(|l| l.name != "lo" && l.up && snap.addresses_of(l.index).next().is_some())
                .map(|l| l.name.clone());
            let Some(dev) = dev else {
                return Err(w.fault(
                    format!(
                        "no route to {addr} ({}): the container has no interface but lo",
                        errno_name(e)
                    ),
                    "it was started without a network (an OCI network namespace with nothing \
                     in it, podman's --network=none): recreate it with a network, e.g. podman \
                     run --network=bridge",
                ));
            };
            Err(w.fault(
                format!("no route to {addr} ({})", errno_name(e)),
                format!(
                    "{} (the container's network manager, e.g. podman's, sets this route; \
                     recreating its network restores it)",
                    enter(&format!("route add default via <gateway> dev {dev}"))
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_islands::net::Subnet;

    fn link() -> LinkPlan {
        LinkPlan {
            a: 0,
            b: 2,
            subnet: Subnet::parse("10.77.0.0/30").unwrap(),
            addr_a: Ipv4Addr::new(10, 77, 0, 1),
            addr_b: Ipv4Addr::new(10, 77, 0, 2),
            if_a: "db".into(),
            if_b: "web".into(),
            host_a: "at0-0a".into(),
            host_b: "at0-0b".into(),
        }
    }

    #[test]
    fn each_island_sees_its_own_end_of_a_link() {
        let l = link();
        let s = side(&l, 0);
        assert_eq!((s.ifname, s.addr, s.host), ("db", l.addr_a, "at0-0a"));
        assert_eq!(
            (s.peer_ifname, s.peer_addr, s.peer_host),
            ("web", l.addr_b, "at0-0b")
        );
        let s = side(&l, 2);
        assert_eq!((s.ifname, s.addr, s.host), ("web", l.addr_b, "at0-0b"));
        assert_eq!(s.peer_addr, l.addr_a);
    }

    #[test]
    fn fixes_name_the_pinned_path_and_offer_the_rebuild() {
        assert_eq!(
            in_ns(
                Path::new("/run/atoll/islands/p/netns/a"),
                "link set dev lo up"
            ),
            "nsenter --net=/run/atoll/islands/p/netns/a ip link set dev lo up"
        );
        let w = Walk {
            evidence: Vec::new(),
            rebuild: Some("atoll down p && atoll up /p.toml".into()),
        };
        let f = w.fault("lo is down in a", "ip link set dev lo up");
        assert_eq!(
            f.fix,
            "ip link set dev lo up\n(or rebuild the whole project: atoll down p && atoll up /p.toml)"
        );
        assert_eq!(who("host"), "the host");
        assert_eq!(who("a"), "a");
    }
}

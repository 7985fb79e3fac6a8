//! Read-only views of a network namespace, for diagnosis: its links, IPv4 addresses, neighbour
//! entries, the route the kernel would pick for a destination (what `ip route get` asks), and
//! per-interface sysctls. Nothing here changes a link, a route or a setting, and no packet
//! leaves: a route lookup is a question to the FIB, not a probe.
//!
//! One `Inspector` holds one rtnetlink socket, opened inside the namespace (a socket stays in
//! the netns it was created in, socket(2)), so every query after `open` runs from the calling
//! thread's own namespace; only sysctl reads enter the namespace again, because /proc/sys/net
//! shows the netns of the task that looks a file up.

use std::net::Ipv4Addr;
use std::path::Path;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, State};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle};
use rustix::io::Errno;

use crate::error::{ErrnoName, NetError};
pub use crate::netlink::fmt_mac;
use crate::netlink::Socket;
use crate::netns::Netns;

/// A link as `ip link` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// IFF_UP: set up by an administrator.
    pub up: bool,
    /// IFF_LOWER_UP: the carrier is there (for a veth: its peer is up too).
    pub lower_up: bool,
    /// IFLA_OPERSTATE (RFC 2863), as `ip link` prints it.
    pub oper: String,
    /// The IFF_* flags, comma separated as `ip link` prints them between < >.
    pub flags: String,
    pub mac: Option<[u8; 6]>,
    pub group: u32,
}

impl Link {
    /// "UP", "DOWN", or "UP, NO-CARRIER" (up, but the other end of the wire is down).
    pub fn state(&self) -> &'static str {
        match (self.up, self.lower_up) {
            (false, _) => "DOWN",
            (true, true) => "UP",
            (true, false) => "UP, NO-CARRIER",
        }
    }
}

/// One IPv4 address. On a point-to-point address (`ip addr add A peer B`) IFA_LOCAL is our
/// end and IFA_ADDRESS the peer's (rtnetlink(7)); otherwise both are the local address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub local: Ipv4Addr,
    pub peer: Option<Ipv4Addr>,
    pub prefix_len: u8,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.local)?;
        match self.peer {
            Some(p) => write!(f, " peer {p}/{}", self.prefix_len),
            None => write!(f, "/{}", self.prefix_len),
        }
    }
}

/// One IPv4 neighbour (ARP) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub index: u32,
    pub addr: Ipv4Addr,
    pub lladdr: Option<Vec<u8>>,
    /// The NUD state as `ip neigh` prints it (PERMANENT, REACHABLE, FAILED, ...).
    pub state: String,
    /// Whether a packet to `addr` can be sent with this entry: it has a link-layer address that
    /// is known (PERMANENT, NOARP) or being confirmed (REACHABLE, STALE, DELAY, PROBE).
    /// INCOMPLETE and FAILED entries hold packets or drop them.
    pub usable: bool,
}

impl Neighbour {
    pub fn lladdr_text(&self) -> String {
        match &self.lladdr {
            Some(l) => l
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            None => "(none)".into(),
        }
    }
}

/// The kernel's answer to "how would a packet to `dst` leave?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAnswer {
    Route(Route),
    /// No route: ENETUNREACH (no route matches), EHOSTUNREACH (an unreachable route), EACCES
    /// (prohibit), EINVAL (blackhole).
    Unreachable(Errno),
}

impl RouteAnswer {
    pub fn route(&self) -> Option<&Route> {
        match self {
            RouteAnswer::Route(r) => Some(r),
            RouteAnswer::Unreachable(_) => None,
        }
    }
}

/// The route the kernel picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    /// RTN_* as `ip route` names it: "unicast", "local", "unreachable", ...
    pub kind: &'static str,
    pub oif: Option<u32>,
    pub gateway: Option<Ipv4Addr>,
    pub prefsrc: Option<Ipv4Addr>,
    pub table: u32,
}

impl Route {
    /// As `ip route get` prints it: "local 127.0.0.1 dev lo src 127.0.0.1",
    /// "10.0.0.2 via 10.0.0.1 dev eth0 src 10.0.0.3". `dev` names an ifindex.
    pub fn describe(&self, dev: impl Fn(u32) -> Option<String>) -> String {
        let mut s = String::new();
        if self.kind != "unicast" {
            s.push_str(self.kind);
            s.push(' ');
        }
        s.push_str(&self.dst.to_string());
        if let Some(g) = self.gateway {
            s.push_str(&format!(" via {g}"));
        }
        if let Some(i) = self.oif {
            let name = dev(i).unwrap_or_else(|| format!("if{i}"));
            s.push_str(&format!(" dev {name}"));
        }
        if let Some(src) = self.prefsrc {
            s.push_str(&format!(" src {src}"));
        }
        s
    }
}

/// Errno as its symbolic name (ENETUNREACH), the way `ip` users read it.
pub fn errno_name(e: Errno) -> String {
    ErrnoName(e).to_string()
}

/// Everything one namespace shows, from three dumps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub neighbours: Vec<Neighbour>,
}

impl Snapshot {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub fn name_of(&self, index: u32) -> Option<String> {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
    }

    /// The IPv4 addresses on the link `index`.
    pub fn addresses_of(&self, index: u32) -> impl Iterator<Item = &Address> {
        self.addresses.iter().filter(move |a| a.index == index)
    }

    /// Whether `addr` is an address of this namespace (on any link).
    pub fn has_address(&self, addr: Ipv4Addr) -> bool {
        self.addresses.iter().any(|a| a.local == addr)
    }

    /// The neighbour entry for `addr` on the link `index`.
    pub fn neighbour(&self, index: u32, addr: Ipv4Addr) -> Option<&Neighbour> {
        self.neighbours
            .iter()
            .find(|n| n.index == index && n.addr == addr)
    }
}

/// One namespace under inspection: its socket, and the namespace itself for sysctl reads.
pub struct Inspector {
    netns: Option<Netns>,
    sock: Socket,
    label: String,
    proc: Option<ProcfsHandle>,
}

impl Inspector {
    /// Inspect the namespace at `netns` (a pinned netns, or `/proc/PID/ns/net`), or with None the
    /// calling thread's own (the host's, for doctor).
    pub fn open(netns: Option<&Path>) -> Result<Inspector, NetError> {
        let Some(path) = netns else {
            return Ok(Inspector {
                netns: None,
                sock: Socket::open("host")?,
                label: "host".into(),
                proc: None,
            });
        };
        let ns = Netns::open(path)?;
        let label = format!("{path:?}");
        let sock = ns.enter(|| Socket::open(&label))??;
        Ok(Inspector {
            netns: Some(ns),
            sock,
            label,
            proc: None,
        })
    }

    /// The namespace's name in errors: "host" or its path.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn links(&mut self) -> Result<Vec<Link>, NetError> {
        Ok(self.sock.dump_links()?.iter().map(link_from).collect())
    }

    pub fn addresses(&mut self) -> Result<Vec<Address>, NetError> {
        Ok(self
            .sock
            .dump_addresses()?
            .iter()
            .filter_map(address_from)
            .collect())
    }

    pub fn neighbours(&mut self) -> Result<Vec<Neighbour>, NetError> {
        Ok(self
            .sock
            .dump_neighbours()?
            .iter()
            .filter_map(neighbour_from)
            .collect())
    }

    /// Links, addresses and neighbours, from one dump each.
    pub fn snapshot(&mut self) -> Result<Snapshot, NetError> {
        Ok(Snapshot {
            links: self.links()?,
            addresses: self.addresses()?,
            neighbours: self.neighbours()?,
        })
    }

    /// The route the kernel would pick for a packet to `dst` (`ip route get DST`).
    pub fn route_to(&mut self, dst: Ipv4Addr) -> Result<RouteAnswer, NetError> {
        Ok(match self.sock.get_route(dst)? {
            Ok(msg) => RouteAnswer::Route(route_from(dst, &msg)),
            Err(errno) => RouteAnswer::Unreachable(errno),
        })
    }

    /// `net.ipv4.conf.<ifname>.<key>` of this namespace ("all" and "default" are names too).
    pub fn ipv4_conf(&mut self, ifname: &str, key: &str) -> Result<String, NetError> {
        self.conf("ipv4", ifname, key)
    }

    /// `net.ipv6.conf.<ifname>.<key>` of this namespace.
    pub fn ipv6_conf(&mut self, ifname: &str, key: &str) -> Result<String, NetError> {
        self.conf("ipv6", ifname, key)
    }

    fn conf(&mut self, family: &str, ifname: &str, key: &str) -> Result<String, NetError> {
        let sub = conf_path(family, ifname, key).ok_or_else(|| NetError::SysctlRead {
            key: format!("sys/net/{family}/conf/{ifname:?}/{key:?}"),
            netns: self.label.clone(),
            source: std::io::ErrorKind::InvalidInput.into(),
        })?;
        if self.proc.is_none() {
            self.proc = Some(crate::sysctl::procfs()?);
        }
        let proc = self.proc.as_ref().expect("set above");
        let read = || read_proc(proc, &sub);
        let out = match &self.netns {
            Some(ns) => ns.enter(read)?,
            None => read(),
        };
        out.map_err(|source| NetError::SysctlRead {
            key: sub,
            netns: self.label.clone(),
            source,
        })
    }
}

/// `sys/net/<family>/conf/<ifname>/<key>`, or None for a name that is not one path component
/// (an interface name never holds '/', dev_valid_name; "." and ".." would leave the directory).
fn conf_path(family: &str, ifname: &str, key: &str) -> Option<String> {
    let component = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0']);
    (component(ifname) && component(key)).then(|| format!("sys/net/{family}/conf/{ifname}/{key}"))
}

fn read_proc(proc: &ProcfsHandle, sub: &str) -> Result<String, std::io::Error> {
    let mut f = proc
        .open(
            ProcfsBase::ProcRoot,
            sub,
            OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
        )
        .map_err(std::io::Error::other)?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut f, &mut s)?;
    Ok(s.trim().to_owned())
}

/// The IFF_* names `ip link` prints, in its order.
const FLAG_NAMES: [(LinkFlags, &str); 10] = [
    (LinkFlags::Loopback, "LOOPBACK"),
    (LinkFlags::Broadcast, "BROADCAST"),
    (LinkFlags::Pointopoint, "POINTOPOINT"),
    (LinkFlags::Multicast, "MULTICAST"),
    (LinkFlags::Noarp, "NOARP"),
    (LinkFlags::Promisc, "PROMISC"),
    (LinkFlags::Up, "UP"),
    (LinkFlags::LowerUp, "LOWER_UP"),
    (LinkFlags::Dormant, "DORMANT"),
    (LinkFlags::Running, "RUNNING"),
];

fn link_from(m: &LinkMessage) -> Link {
    let f = m.header.flags;
    let mut name = String::new();
    let mut oper = "UNKNOWN".to_string();
    let mut mac = None;
    let mut group = 0;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::OperState(s) => oper = oper_text(*s),
            LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::Group(g) => group = *g,
            _ => {}
        }
    }
    Link {
        index: m.header.index,
        name,
        up: f.contains(LinkFlags::Up),
        lower_up: f.contains(LinkFlags::LowerUp),
        oper,
        flags: FLAG_NAMES
            .iter()
            .filter(|(flag, _)| f.contains(*flag))
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(","),
        mac,
        group,
    }
}

fn oper_text(s: State) -> String {
    match s {
        State::Other(n) => format!("OPER{n}"),
        s => s.to_string(),
    }
}

fn address_from(m: &AddressMessage) -> Option<Address> {
    let v4 = |ip: &std::net::IpAddr| match ip {
        std::net::IpAddr::V4(a) => Some(*a),
        std::net::IpAddr::V6(_) => None,
    };
    let mut local = None;
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = v4(ip),
            AddressAttribute::Address(ip) => address = v4(ip),
            _ => {}
        }
    }
    let local = local.or(address)?;
    Some(Address {
        index: m.header.index,
        local,
        peer: address.filter(|a| *a != local),
        prefix_len: m.header.prefix_len,
    })
}

fn neighbour_from(m: &NeighbourMessage) -> Option<Neighbour> {
    let mut addr = None;
    let mut lladdr = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => addr = Some(*ip),
            NeighbourAttribute::LinkLayerAddress(l) => lladdr = Some(l.clone()),
            _ => {}
        }
    }
    let (state, usable) = nud(m.header.state);
    Some(Neighbour {
        index: m.header.ifindex,
        addr: addr?,
        lladdr,
        state,
        usable,
    })
}

/// The NUD state's name and whether a packet can go out with it (linux/neighbour.h NUD_VALID
/// is PERMANENT|NOARP|REACHABLE|PROBE|STALE|DELAY).
fn nud(s: NeighbourState) -> (String, bool) {
    let (name, valid) = match s {
        NeighbourState::Permanent => ("PERMANENT", true),
        NeighbourState::Noarp => ("NOARP", true),
        NeighbourState::Reachable => ("REACHABLE", true),
        NeighbourState::Stale => ("STALE", true),
        NeighbourState::Delay => ("DELAY", true),
        NeighbourState::Probe => ("PROBE", true),
        NeighbourState::Incomplete => ("INCOMPLETE", false),
        NeighbourState::Failed => ("FAILED", false),
        NeighbourState::None => ("NONE", false),
        NeighbourState::Other(n) => return (format!("NUD{n:#x}"), false),
        _ => ("UNKNOWN", false),
    };
    (name.to_string(), valid)
}

fn route_from(dst: Ipv4Addr, m: &RouteMessage) -> Route {
    let v4 = |a: &RouteAddress| match a {
        RouteAddress::Inet(ip) => Some(*ip),
        _ => None,
    };
    let mut r = Route {
        dst,
        kind: route_kind(m.header.kind),
        oif: None,
        gateway: None,
        prefsrc: None,
        table: u32::from(m.header.table),
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => r.dst = v4(d).unwrap_or(dst),
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            RouteAttribute::Gateway(g) => r.gateway = v4(g),
            RouteAttribute::PrefSource(s) => r.prefsrc = v4(s),
            RouteAttribute::Table(t) => r.table = *t,
            _ => {}
        }
    }
    r
}

fn route_kind(k: RouteType) -> &'static str {
    match k {
        RouteType::Unicast => "unicast",
        RouteType::Local => "local",
        RouteType::Broadcast => "broadcast",
        RouteType::Anycast => "anycast",
        RouteType::Multicast => "multicast",
        RouteType::BlackHole => "blackhole",
        RouteType::Unreachable => "unreachable",
        RouteType::Prohibit => "prohibit",
        RouteType::Throw => "throw",
        RouteType::Nat => "nat",
        _ => "unspec",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{encode, route_get_message};
    use netlink_packet_core::NLM_F_REQUEST;
    use netlink_packet_route::AddressFamily;

    #[test]
    fn route_get_asks_for_one_ipv4_destination_without_a_dump() {
        let dst = Ipv4Addr::new(10, 9, 8, 7);
        let b = encode(route_get_message(dst), NLM_F_REQUEST, 42);
        // nlmsghdr: len, type RTM_GETROUTE (26), flags NLM_F_REQUEST only, seq 42.
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 26);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), NLM_F_REQUEST);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 42);
        // rtmsg: AF_INET, dst_len 32, src_len 0, tos 0, table 0, protocol 0, scope 0, type 0.
        assert_eq!(&b[16..24], &[2, 32, 0, 0, 0, 0, 0, 0]);
        // One attribute: RTA_DST (1), 4 bytes of address.
        assert_eq!(u16::from_ne_bytes([b[28], b[29]]), 8);
        assert_eq!(u16::from_ne_bytes([b[30], b[31]]), 1);
        assert_eq!(&b[32..36], &[10, 9, 8, 7]);
        assert_eq!(b.len(), 36);
    }

    #[test]
    fn links_read_as_ip_link_prints_them() {
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.flags = LinkFlags::Up | LinkFlags::Broadcast | LinkFlags::Multicast;
        m.attributes = vec![
            LinkAttribute::IfName("at0-1a".into()),
            LinkAttribute::OperState(State::LowerLayerDown),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9]),
            LinkAttribute::Group(0x4154_0000),
        ];
        let l = link_from(&m);
        assert_eq!(l.name, "at0-1a");
        assert_eq!((l.up, l.lower_up), (true, false));
        assert_eq!(l.state(), "UP, NO-CARRIER");
        assert_eq!(l.oper, "LOWERLAYERDOWN");
        assert_eq!(l.flags, "BROADCAST,MULTICAST,UP");
        assert_eq!(fmt_mac(l.mac.unwrap()), "02:00:00:00:00:09");
        assert_eq!(l.group, 0x4154_0000);
        m.header.flags = LinkFlags::empty();
        assert_eq!(link_from(&m).state(), "DOWN");
    }

    #[test]
    fn a_peer_address_keeps_both_ends_and_ipv6_is_skipped() {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.index = 3;
        m.header.prefix_len = 32;
        m.attributes = vec![
            AddressAttribute::Address("10.0.0.2".parse().unwrap()),
            AddressAttribute::Local("10.0.0.1".parse().unwrap()),
        ];
        let a = address_from(&m).unwrap();
        assert_eq!(a.local, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(a.peer, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(a.to_string(), "10.0.0.1 peer 10.0.0.2/32");
        m.attributes = vec![AddressAttribute::Address("127.0.0.1".parse().unwrap())];
        m.header.prefix_len = 8;
        let a = address_from(&m).unwrap();
        assert_eq!((a.peer, a.to_string().as_str()), (None, "127.0.0.1/8"));
        m.attributes = vec![AddressAttribute::Address("::1".parse().unwrap())];
        assert_eq!(address_from(&m), None);
    }

    #[test]
    fn neighbours_say_whether_a_packet_can_use_them() {
        let mut m = NeighbourMessage::default();
        m.header.ifindex = 4;
        m.header.state = NeighbourState::Permanent;
        m.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 0, 0, 2))),
            NeighbourAttribute::LinkLayerAddress(vec![6, 1, 2, 3, 4, 5]),
        ];
        let n = neighbour_from(&m).unwrap();
        assert_eq!((n.state.as_str(), n.usable), ("PERMANENT", true));
        assert_eq!(n.lladdr_text(), "06:01:02:03:04:05");
        m.header.state = NeighbourState::Failed;
        m.attributes.truncate(1);
        let n = neighbour_from(&m).unwrap();
        assert_eq!((n.state.as_str(), n.usable), ("FAILED", false));
        assert_eq!(n.lladdr_text(), "(none)");
        let snap = Snapshot {
            neighbours: vec![n],
            ..Snapshot::default()
        };
        assert!(snap.neighbour(4, Ipv4Addr::new(10, 0, 0, 2)).is_some());
        assert!(snap.neighbour(5, Ipv4Addr::new(10, 0, 0, 2)).is_none());
    }

    #[test]
    fn a_route_answer_reads_like_ip_route_get() {
        let mut m = RouteMessage::default();
        m.header.kind = RouteType::Unicast;
        m.header.table = 254;
        m.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 0, 0, 2))),
            RouteAttribute::Oif(3),
            RouteAttribute::PrefSource(RouteAddress::Inet(Ipv4Addr::new(10, 0, 0, 1))),
        ];
        let r = route_from(Ipv4Addr::new(10, 0, 0, 2), &m);
        let dev = |i| (i == 3).then(|| "b".to_string());
        assert_eq!(r.describe(dev), "10.0.0.2 dev b src 10.0.0.1");
        m.header.kind = RouteType::Local;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                10, 0, 0, 9,
            ))));
        let r = route_from(Ipv4Addr::new(10, 0, 0, 2), &m);
        assert_eq!(
            r.describe(|_| None),
            "local 10.0.0.2 via 10.0.0.9 dev if3 src 10.0.0.1"
        );
        assert_eq!(errno_name(Errno::NETUNREACH), "ENETUNREACH");
        assert_eq!(errno_name(Errno::HOSTUNREACH), "EHOSTUNREACH");
    }

    #[test]
    fn sysctl_names_stay_one_path_component() {
        assert_eq!(
            conf_path("ipv4", "at0-1a", "forwarding").as_deref(),
            Some("sys/net/ipv4/conf/at0-1a/forwarding")
        );
        for bad in ["", ".", "..", "a/b", "x\0"] {
            assert_eq!(conf_path("ipv4", bad, "forwarding"), None, "{bad:?}");
            assert_eq!(conf_path("ipv4", "lo", bad), None, "{bad:?}");
        }
    }
}

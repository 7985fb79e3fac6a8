//! A typed, synchronous rtnetlink socket bound to the netns it was opened in. Requests go out in
//! batches (many messages per sendmsg); each carries NLM_F_ACK and its own sequence number, and
//! every ACK is matched to its request so a NACK names the operation and operand that failed.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet, AfSpecUnspec, InetDevConf, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rustix::io::Errno;
use rustix::net::{AddressFamily as SockFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::error::NetlinkError;

/// Requests per sendmsg. The kernel queues one ACK skb per request on our receive buffer before
/// we read any (the whole batch runs inside our sendmsg); past the buffer it drops them and
/// reports ENOBUFS, so the batch is sized well under the receive buffer we ask for.
const BATCH: usize = 256;
/// SO_RCVBUFFORCE size: ~1 KiB of truesize per small ACK skb, for a full batch with room to spare.
const RCVBUF: usize = 1 << 20;
/// NLMSGERR_ATTR_MSG (linux/netlink.h): the extended ACK's text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// NLM_F_ACK_TLVS in an error message's flags: TLVs follow the echoed header.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// Size of `struct nlmsghdr`, the only part of a request an ACK echoes under NETLINK_CAP_ACK.
const NLMSG_HDRLEN: usize = 16;

/// One rtnetlink request and how to name it in an error.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub op: &'static str,
    pub operand: String,
    flags: u16,
    msg: RouteNetlinkMessage,
}

/// An rtnetlink socket; the namespace is fixed when it is opened (socket(2) takes the caller's).
pub(crate) struct Socket {
    fd: OwnedFd,
    seq: u32,
    netns: String,
    buf: Vec<u8>,
}

impl Socket {
    /// Open in the calling thread's current netns; `netns` names it in errors.
    pub fn open(netns: &str) -> Result<Socket, NetlinkError> {
        let sock_err = |op, errno| NetlinkError::Socket {
            op,
            netns: netns.to_owned(),
            errno,
        };
        let fd = rustix::net::socket_with(
            SockFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| sock_err("socket(AF_NETLINK, NETLINK_ROUTE)", e))?;
        for opt in [
            atoll_sys::netlink::NETLINK_CAP_ACK,
            atoll_sys::netlink::NETLINK_EXT_ACK,
        ] {
            atoll_sys::netlink::setsockopt_netlink_bool(fd.as_fd(), opt, true).map_err(|e| {
                sock_err(
                    "setsockopt(SOL_NETLINK)",
                    Errno::from_io_error(&e).unwrap_or(Errno::INVAL),
                )
            })?;
        }
        // Root only (we are); without it a large batch loses ACKs to ENOBUFS.
        rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, RCVBUF)
            .or_else(|_| rustix::net::sockopt::set_socket_recv_buffer_size(&fd, RCVBUF))
            .map_err(|e| sock_err("setsockopt(SO_RCVBUF)", e))?;
        Ok(Socket {
            fd,
            seq: 0,
            netns: netns.to_owned(),
            buf: vec![0; 64 * 1024],
        })
    }

    /// Send `reqs` in order, in batches, and wait for every ACK. Within a batch the kernel keeps
    /// going after a failure, so the first NACK is returned once the batch is drained.
    pub fn execute(&mut self, reqs: &[Request]) -> Result<(), NetlinkError> {
        for chunk in reqs.chunks(BATCH) {
            let first_seq = self.seq.wrapping_add(1);
            let mut out = Vec::with_capacity(chunk.len() * 128);
            for req in chunk {
                self.seq = self.seq.wrapping_add(1);
                append(
                    &mut out,
                    req.msg.clone(),
                    req.flags | NLM_F_REQUEST | NLM_F_ACK,
                    self.seq,
                );
            }
            self.send(&out)?;
            let mut acked = vec![false; chunk.len()];
            let mut pending = chunk.len();
            let mut first_err = None;
            while pending > 0 {
                let n = self.recv()?;
                let mut off = 0;
                while off < n {
                    let (len, reply) = self.parse(off, n)?;
                    off += len;
                    let idx = reply.header.sequence_number.wrapping_sub(first_seq) as usize;
                    if idx >= chunk.len() || acked[idx] {
                        return Err(self.protocol(format!(
                            "unexpected sequence number {} (expected {}..{})",
                            reply.header.sequence_number,
                            first_seq,
                            first_seq.wrapping_add(chunk.len() as u32)
                        )));
                    }
                    let NetlinkPayload::Error(err) = reply.payload else {
                        return Err(self.protocol(format!(
                            "message type {} where an ACK was expected",
                            reply.header.message_type
                        )));
                    };
                    acked[idx] = true;
                    pending -= 1;
                    if let (Some(code), None) = (err.code, &first_err) {
                        let req = &chunk[idx];
                        first_err = Some(NetlinkError::Nack {
                            op: req.op,
                            operand: req.operand.clone(),
                            netns: self.netns.clone(),
                            errno: Errno::from_raw_os_error(-code.get()),
                            reason: ext_ack_text(reply.header.flags, &err.header),
                        });
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(())
    }

    /// RTM_GETLINK dump of every link in this netns.
    pub fn dump_links(&mut self) -> Result<Vec<LinkMessage>, NetlinkError> {
        let msg = RouteNetlinkMessage::GetLink(LinkMessage::default());
        self.dump(msg, "RTM_GETLINK")?
            .into_iter()
            .map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Ok(link),
                other => Err(self.unexpected("RTM_GETLINK", &other)),
            })
            .collect()
    }

    /// RTM_GETADDR dump of every IPv4 address in this netns.
    pub fn dump_addresses(&mut self) -> Result<Vec<AddressMessage>, NetlinkError> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        self.dump(RouteNetlinkMessage::GetAddress(req), "RTM_GETADDR")?
            .into_iter()
            .map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Ok(a),
                other => Err(self.unexpected("RTM_GETADDR", &other)),
            })
            .collect()
    }

    /// RTM_GETNEIGH dump of the IPv4 neighbour table (ARP) of this netns.
    pub fn dump_neighbours(&mut self) -> Result<Vec<NeighbourMessage>, NetlinkError> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Inet;
        self.dump(RouteNetlinkMessage::GetNeighbour(req), "RTM_GETNEIGH")?
            .into_iter()
            .map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => Ok(n),
                other => Err(self.unexpected("RTM_GETNEIGH", &other)),
            })
            .collect()
    }

    /// The route the kernel would pick for a packet from this netns to `dst`, as `ip route get`
    /// asks it: RTM_GETROUTE with RTA_DST and no NLM_F_DUMP runs the output lookup
    /// (inet_rtm_getroute) and answers one RTM_NEWROUTE, or an error: ENETUNREACH when no route
    /// matches, EHOSTUNREACH/EACCES/EINVAL for unreachable, prohibit and blackhole routes.
    /// Nothing is sent on the wire.
    pub fn get_route(
        &mut self,
        dst: Ipv4Addr,
    ) -> Result<Result<RouteMessage, Errno>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut out = Vec::new();
        append(&mut out, route_get_message(dst), NLM_F_REQUEST, seq);
        self.send(&out)?;
        // Without NLM_F_ACK the answer is one datagram: the route, or an NLMSG_ERROR.
        let n = self.recv()?;
        let (_, reply) = self.parse(0, n)?;
        if reply.header.sequence_number != seq {
            return Err(self.protocol(format!(
                "RTM_GETROUTE reply with sequence number {} (expected {seq})",
                reply.header.sequence_number
            )));
        }
        match reply.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => Ok(Ok(r)),
            NetlinkPayload::Error(err) if err.code.is_some() => {
                Ok(Err(Errno::from_raw_os_error(-err.raw_code())))
            }
            other => {
                Err(self.protocol(format!("unexpected reply to RTM_GETROUTE {dst}: {other:?}")))
            }
        }
    }

    /// Send one dump request and collect its multipart answer up to NLMSG_DONE.
    fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &'static str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut out = Vec::new();
        append(&mut out, msg, NLM_F_REQUEST | NLM_F_DUMP, seq);
        self.send(&out)?;
        let mut items = Vec::new();
        loop {
            let n = self.recv()?;
            let mut off = 0;
            while off < n {
                let (len, reply) = self.parse(off, n)?;
                off += len;
                if reply.header.sequence_number != seq {
                    return Err(self.protocol(format!(
                        "{op} dump reply with sequence number {} (expected {seq})",
                        reply.header.sequence_number
                    )));
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => items.push(m),
                    NetlinkPayload::Done(_) => return Ok(items),
                    NetlinkPayload::Error(err) if err.code.is_some() => {
                        return Err(NetlinkError::Nack {
                            op,
                            operand: "dump".into(),
                            netns: self.netns.clone(),
                            errno: Errno::from_raw_os_error(-err.raw_code()),
                            reason: ext_ack_text(reply.header.flags, &err.header),
                        })
                    }
                    other => {
                        return Err(
                            self.protocol(format!("unexpected message in {op} dump: {other:?}"))
                        )
                    }
                }
            }
        }
    }

    fn unexpected(&self, op: &str, m: &RouteNetlinkMessage) -> NetlinkError {
        self.protocol(format!("unexpected message in {op} dump: {m:?}"))
    }

    fn send(&self, out: &[u8]) -> Result<(), NetlinkError> {
        let n = rustix::net::send(&self.fd, out, SendFlags::empty()).map_err(|errno| {
            NetlinkError::Socket {
                op: "sendmsg",
                netns: self.netns.clone(),
                errno,
            }
        })?;
        if n != out.len() {
            return Err(self.protocol(format!("short send: {n} of {} bytes", out.len())));
        }
        Ok(())
    }

    /// One datagram into `self.buf`; a datagram larger than the buffer is an error, not a loss.
    fn recv(&mut self) -> Result<usize, NetlinkError> {
        loop {
            match rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::TRUNC) {
                Ok((_, n)) if n > self.buf.len() => {
                    return Err(self.protocol(format!("datagram of {n} bytes truncated")))
                }
                Ok((_, n)) => return Ok(n),
                Err(Errno::INTR) => continue,
                Err(errno) => {
                    return Err(NetlinkError::Socket {
                        op: "recvmsg",
                        netns: self.netns.clone(),
                        errno,
                    })
                }
            }
        }
    }

    /// Parse the message at `off` in `self.buf[..end]`; returns its aligned length and itself.
    fn parse(
        &self,
        off: usize,
        end: usize,
    ) -> Result<(usize, NetlinkMessage<RouteNetlinkMessage>), NetlinkError> {
        let bytes = &self.buf[off..end];
        if bytes.len() < NLMSG_HDRLEN {
            return Err(self.protocol(format!("{} trailing bytes", bytes.len())));
        }
        let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < NLMSG_HDRLEN || len > bytes.len() {
            return Err(self.protocol(format!("message length {len} of {} available", bytes.len())));
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..len])
            .map_err(|e| self.protocol(format!("decode: {e}")))?;
        Ok((align4(len).min(bytes.len()), msg))
    }

    fn protocol(&self, what: String) -> NetlinkError {
        NetlinkError::Protocol {
            netns: self.netns.clone(),
            what,
        }
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn append(out: &mut Vec<u8>, msg: RouteNetlinkMessage, flags: u16, seq: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    nl.finalize();
    let start = out.len();
    out.resize(start + align4(nl.buffer_len()), 0);
    nl.serialize(&mut out[start..start + nl.buffer_len()]);
}

/// The NLMSGERR_ATTR_MSG text of an extended ACK: TLVs follow the echoed (capped) header.
fn ext_ack_text(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSG_HDRLEN {
        return None;
    }
    NlasIterator::new(&payload[NLMSG_HDRLEN..])
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            String::from_utf8_lossy(nla.value())
                .trim_end_matches('\0')
                .to_owned()
        })
}

/// Request builders: one per kind of rtnetlink change atoll makes.
impl Request {
    /// `ip link set lo up` (lo is always ifindex 1, LOOPBACK_IFINDEX).
    pub fn loopback_up() -> Request {
        Request::set_link_up(1, "lo", false)
    }

    /// RTM_NEWLINK type veth: `host` in this netns, `peer` created directly in `peer_netns`.
    #[allow(clippy::too_many_arguments)]
    pub fn new_veth(
        host: &str,
        host_mac: [u8; 6],
        group: u32,
        peer: &str,
        peer_mac: [u8; 6],
        peer_netns: std::os::fd::BorrowedFd<'_>,
        peer_netns_name: &str,
    ) -> Request {
        use std::os::fd::AsRawFd;
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = vec![
            LinkAttribute::IfName(peer.to_owned()),
            LinkAttribute::Address(peer_mac.to_vec()),
            LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
        ];
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(host.to_owned()),
            LinkAttribute::Address(host_mac.to_vec()),
            LinkAttribute::Group(group),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ]),
        ];
        Request {
            op: "RTM_NEWLINK",
            operand: format!("veth {host:?} peer {peer:?} in {peer_netns_name}"),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            msg: RouteNetlinkMessage::NewLink(msg),
        }
    }

    /// RTM_SETLINK up; with `forwarding`, also IPv4 forwarding on this interface only
    /// (IFLA_AF_SPEC/AF_INET/IFLA_INET_CONF, the per-device `conf.<if>.forwarding`).
    pub fn set_link_up(index: u32, name: &str, forwarding: bool) -> Request {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        if forwarding {
            let mut conf = InetDevConf::default();
            conf.forwarding = 1;
            msg.attributes = vec![LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
                AfSpecInet::DevConfRequest(conf),
            ])])];
        }
        Request {
            op: "RTM_SETLINK",
            operand: format!(
                "{name:?} up{}",
                if forwarding { " forwarding=1" } else { "" }
            ),
            flags: 0,
            msg: RouteNetlinkMessage::SetLink(msg),
        }
    }

    /// RTM_NEWADDR `local/32 peer peer`: a point-to-point address (`ip addr add L peer P dev X`).
    pub fn new_peer_address(index: u32, name: &str, local: Ipv4Addr, peer: Ipv4Addr) -> Request {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = 32;
        msg.header.index = index;
        msg.attributes = vec![
            AddressAttribute::Local(local.into()),
            AddressAttribute::Address(peer.into()),
        ];
        Request {
            op: "RTM_NEWADDR",
            operand: format!("{local}/32 peer {peer} dev {name:?}"),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            msg: RouteNetlinkMessage::NewAddress(msg),
        }
    }

    /// A static unicast `dst/32` route of the main table, with `scope` and its next hop.
    fn host_route(dst: Ipv4Addr, scope: RouteScope, next: RouteAttribute) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 32;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = scope;
        msg.header.kind = RouteType::Unicast;
        msg.attributes = vec![RouteAttribute::Destination(RouteAddress::Inet(dst)), next];
        msg
    }

    /// RTM_NEWROUTE `dst/32 dev X scope link` in the main table.
    pub fn new_link_route(dst: Ipv4Addr, index: u32, name: &str) -> Request {
        Request {
            op: "RTM_NEWROUTE",
            operand: format!("{dst}/32 dev {name:?}"),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            msg: RouteNetlinkMessage::NewRoute(Request::host_route(
                dst,
                RouteScope::Link,
                RouteAttribute::Oif(index),
            )),
        }
    }

    /// `ip route replace <dst>/32 dev <ifname> scope link`: one message moves a host route to
    /// another link (the kernel matches the old route by table, destination and metric).
    pub fn replace_link_route(dst: Ipv4Addr, index: u32, name: &str) -> Request {
        let mut r = Request::new_link_route(dst, index, name);
        r.op = "RTM_NEWROUTE (replace)";
        r.flags = NLM_F_CREATE | NLM_F_REPLACE;
        r
    }

    /// `ip route replace <dst>/32 via <gateway>`: an island that lives on another host, reached
    /// over the wire to that host (the kernel picks the device the gateway is on).
    pub fn replace_gateway_route(dst: Ipv4Addr, gateway: Ipv4Addr) -> Request {
        Request {
            op: "RTM_NEWROUTE (replace)",
            operand: format!("{dst}/32 via {gateway}"),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            msg: RouteNetlinkMessage::NewRoute(Request::host_route(
                dst,
                RouteScope::Universe,
                RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            )),
        }
    }

    /// `ip route del <dst>/32` (main table, whatever it goes through).
    pub fn delete_route(dst: Ipv4Addr) -> Request {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 32;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.scope = RouteScope::NoWhere;
        msg.attributes = vec![RouteAttribute::Destination(RouteAddress::Inet(dst))];
        Request {
            op: "RTM_DELROUTE",
            operand: format!("{dst}/32"),
            flags: 0,
            msg: RouteNetlinkMessage::DelRoute(msg),
        }
    }

    /// RTM_NEWNEIGH permanent `addr lladdr mac dev X`: no ARP on a link whose ends we both know.
    pub fn new_permanent_neighbour(
        index: u32,
        name: &str,
        addr: Ipv4Addr,
        mac: [u8; 6],
    ) -> Request {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(addr)),
            NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        ];
        Request {
            op: "RTM_NEWNEIGH",
            operand: format!("{addr} lladdr {} dev {name:?}", fmt_mac(mac)),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            msg: RouteNetlinkMessage::NewNeighbour(msg),
        }
    }

    /// RTM_DELLINK with IFLA_GROUP and no index: the kernel deletes every link of the group in
    /// one unregister_netdevice_many (rtnl_group_dellink), veth peers included.
    pub fn delete_group(group: u32) -> Request {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::Group(group)];
        Request {
            op: "RTM_DELLINK",
            operand: format!("group {group}"),
            flags: 0,
            msg: RouteNetlinkMessage::DelLink(msg),
        }
    }

    /// RTM_DELLINK of one link by index.
    pub fn delete_link(index: u32, name: &str) -> Request {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        Request {
            op: "RTM_DELLINK",
            operand: format!("{name:?}"),
            flags: 0,
            msg: RouteNetlinkMessage::DelLink(msg),
        }
    }
}

/// A deterministic, locally administered unicast MAC: byte 0 is `0x02 | side << 2` (bit 1 set:
/// local; bit 0 clear: unicast), bytes 1–2 fold `group`, bytes 3–5 are the low 24 bits of `link`.
/// Uniqueness only matters within one veth pair (each pair is its own Ethernet segment), so
/// the two ends of a pair differ by `side`.
pub fn mac_for(group: u32, link: u32, side: u8) -> [u8; 6] {
    let g = ((group >> 16) ^ group) as u16;
    let [_, l1, l2, l3] = link.to_be_bytes();
    let [g0, g1] = g.to_be_bytes();
    [0x02 | ((side & 0x3f) << 2), g0, g1, l1, l2, l3]
}

/// A MAC as `ip` prints it (lower-case hex, colon separated).
pub fn fmt_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// RTM_GETROUTE for one IPv4 destination, the request `ip route get DST` sends: a /32 RTA_DST,
/// every other header field zero (any table, any scope, no input interface: an output lookup).
pub(crate) fn route_get_message(dst: Ipv4Addr) -> RouteNetlinkMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = 32;
    msg.attributes = vec![RouteAttribute::Destination(RouteAddress::Inet(dst))];
    RouteNetlinkMessage::GetRoute(msg)
}

/// A request as it goes on the wire, for tests of the message layout.
#[cfg(test)]
pub(crate) fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    append(&mut out, msg, flags, seq);
    out
}

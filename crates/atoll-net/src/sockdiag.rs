//! Listening sockets of a network namespace, from the kernel's socket diagnostics (sock_diag(7),
//! NETLINK_SOCK_DIAG with inet_diag requests) rather than by parsing `ss`: TCP sockets in LISTEN
//! and bound UDP sockets, IPv4 and IPv6 (a `::` socket also takes IPv4 unless it is v6-only).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, TCP_CLOSE, TCP_LISTEN,
};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use rustix::io::Errno;
use rustix::net::{netlink, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::error::NetError;
use crate::firewall::Proto;
use crate::netns::Netns;

/// A socket that takes new flows on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    /// The owner's uid as the kernel sees it (the host's view of an island's user).
    pub uid: u32,
    /// The socket's inode (`socket:[N]` in /proc/PID/fd), to find its process.
    pub inode: u32,
}

/// Every socket in `netns` that listens for `proto` (TCP: LISTEN; UDP: bound and not
/// connected, state TCP_CLOSE in inet_diag's terms). ICMP has no sockets to list: empty.
pub fn listeners(netns: &Netns, proto: Proto) -> Result<Vec<Listener>, NetError> {
    let (protocol, state) = match proto {
        Proto::Tcp => (IPPROTO_TCP, TCP_LISTEN),
        Proto::Udp => (IPPROTO_UDP, TCP_CLOSE),
        Proto::Icmp => return Ok(Vec::new()),
    };
    let err = |op, errno| socket_error(netns, op, errno);
    let fd = diag_socket(netns)?;
    let mut out = Vec::new();
    for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
        dump(&fd, seq, family, protocol, 1 << state, &mut out).map_err(|(op, e)| err(op, e))?;
    }
    Ok(out
        .into_iter()
        .map(|s| Listener {
            addr: s.local.ip(),
            port: s.local.port(),
            uid: s.uid,
            inode: s.inode,
        })
        .collect())
}

/// A TCP socket as inet_diag reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel's TCP state number (include/net/tcp_states.h: 1 ESTABLISHED, 10 LISTEN).
    pub state: u8,
    pub uid: u32,
    pub inode: u32,
}

/// TCP_ESTABLISHED in include/net/tcp_states.h.
pub const TCP_ESTABLISHED: u8 = 1;

/// Every TCP socket of `netns`, in any state, IPv4 and IPv6.
pub fn tcp_sockets(netns: &Netns) -> Result<Vec<TcpSocket>, NetError> {
    let err = |op, errno| socket_error(netns, op, errno);
    let fd = diag_socket(netns)?;
    let mut out = Vec::new();
    for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
        dump(&fd, seq, family, IPPROTO_TCP, 0xfff, &mut out).map_err(|(op, e)| err(op, e))?;
    }
    Ok(out)
}

/// The TCP state of each connection (local, remote) in `netns`, None where there is no such
/// socket. One exact lookup per connection (a request without NLM_F_DUMP: the kernel looks the
/// 4-tuple up in its hash, inet_diag_find_one_icsk) instead of a dump, which walks the whole
/// established hash table, shared by every netns (262144 buckets here, about 1 ms per family).
pub fn tcp_states(
    netns: &Netns,
    conns: &[(SocketAddr, SocketAddr)],
) -> Result<Vec<Option<u8>>, NetError> {
    let err = |op, errno| socket_error(netns, op, errno);
    let fd = diag_socket(netns)?;
    let mut states = Vec::with_capacity(conns.len());
    for (i, (local, remote)) in conns.iter().enumerate() {
        let id = SocketId {
            source_port: local.port(),
            destination_port: remote.port(),
            source_address: local.ip(),
            destination_address: remote.ip(),
            interface_id: 0,
            // INET_DIAG_NOCOOKIE: any socket with this 4-tuple.
            cookie: [0xff; 8],
        };
        let family = if local.is_ipv4() { AF_INET } else { AF_INET6 };
        let mut found = Vec::new();
        match query(
            &fd,
            i as u32 + 1,
            NLM_F_REQUEST,
            family,
            IPPROTO_TCP,
            0xfff,
            id,
            &mut found,
        ) {
            Ok(()) => states.push(found.first().map(|s| s.state)),
            Err((_, Errno::NOENT)) => states.push(None),
            Err((op, e)) => return Err(err(op, e)),
        }
    }
    Ok(states)
}

fn dump(
    fd: &OwnedFd,
    seq: u32,
    family: u8,
    protocol: u8,
    states: u32,
    out: &mut Vec<TcpSocket>,
) -> Result<(), (&'static str, Errno)> {
    let any = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    query(
        fd,
        seq,
        NLM_F_REQUEST | NLM_F_DUMP,
        family,
        protocol,
        states,
        any,
        out,
    )
}

/// One inet_diag request; its replies go to `out`. A dump ends with NLMSG_DONE; an exact
/// lookup (no NLM_F_DUMP) with its one reply, or an error (ENOENT: no such socket).
#[allow(clippy::too_many_arguments)]
fn query(
    fd: &OwnedFd,
    seq: u32,
    flags: u16,
    family: u8,
    protocol: u8,
    states: u32,
    socket_id: SocketId,
    out: &mut Vec<TcpSocket>,
) -> Result<(), (&'static str, Errno)> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::from_bits_truncate(states),
            socket_id,
        })
        .into(),
    );
    msg.finalize();
    let mut req = vec![0; msg.buffer_len()];
    msg.serialize(&mut req);
    rustix::net::send(fd, &req, SendFlags::empty()).map_err(|e| ("sendmsg", e))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match rustix::net::recv(fd, &mut buf[..], RecvFlags::empty()) {
            Ok((n, _)) => n.min(buf.len()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(("recvmsg", e)),
        };
        let mut off = 0;
        while off + 16 <= n {
            let len =
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            if len < 16 || off + len > n {
                return Err(("decode the reply of", Errno::PROTO));
            }
            let reply = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[off..off + len])
                .map_err(|_| ("decode the reply of", Errno::PROTO))?;
            off += (len + 3) & !3;
            if reply.header.sequence_number != seq {
                continue;
            }
            match reply.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let id = &r.header.socket_id;
                    out.push(TcpSocket {
                        local: SocketAddr::new(id.source_address, id.source_port),
                        remote: SocketAddr::new(id.destination_address, id.destination_port),
                        state: r.header.state,
                        uid: r.header.uid,
                        inode: r.header.inode,
                    });
                    if flags & NLM_F_DUMP == 0 {
                        return Ok(());
                    }
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    let code = e.raw_code();
                    // A kernel without inet_diag for this protocol (udp_diag is a module).
                    return Err(("SOCK_DIAG_BY_FAMILY", Errno::from_raw_os_error(-code)));
                }
                _ => {}
            }
        }
    }
}

/// A NETLINK_SOCK_DIAG socket made inside `netns`: the namespace of a netlink socket is the
/// one it was created in (netlink(7)), and inet_diag answers about that one.
fn diag_socket(netns: &Netns) -> Result<OwnedFd, NetError> {
    netns
        .enter(|| {
            rustix::net::socket_with(
                AddressFamily::NETLINK,
                SocketType::RAW,
                SocketFlags::CLOEXEC,
                Some(netlink::SOCK_DIAG),
            )
        })?
        .map_err(|e| socket_error(netns, "socket(AF_NETLINK, NETLINK_SOCK_DIAG)", e))
}

fn socket_error(netns: &Netns, op: &'static str, errno: Errno) -> NetError {
    NetError::Socket {
        op,
        operand: "NETLINK_SOCK_DIAG".into(),
        netns: format!("{:?}", netns.path()),
        errno,
    }
}

/// Whether a listener on `l` takes a flow to `addr` (its own address, or any).
pub fn takes(l: &Listener, addr: IpAddr) -> bool {
    l.addr.is_unspecified() || l.addr == addr || mapped(l.addr) == Some(addr)
}

fn mapped(a: IpAddr) -> Option<IpAddr> {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn a_wildcard_or_the_same_address_takes_the_flow() {
        let l = |addr: IpAddr| Listener {
            addr,
            port: 5432,
            uid: 0,
            inode: 1,
        };
        let a: IpAddr = Ipv4Addr::new(10, 1, 0, 2).into();
        assert!(takes(&l(Ipv4Addr::UNSPECIFIED.into()), a));
        assert!(takes(&l(Ipv6Addr::UNSPECIFIED.into()), a));
        assert!(takes(&l(a), a));
        assert!(takes(
            &l(Ipv4Addr::new(10, 1, 0, 2).to_ipv6_mapped().into()),
            a
        ));
        assert!(!takes(&l(Ipv4Addr::LOCALHOST.into()), a));
    }
}

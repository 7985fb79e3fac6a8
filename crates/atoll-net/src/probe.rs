//! One probe packet sent from inside a network namespace, with a short timeout: a TCP connect,
//! a UDP datagram, or an ICMP echo. The socket is created inside the namespace (socket(2) takes
//! the calling thread's netns, and the socket keeps it), then used from the caller's own.
//!
//! The outcome separates what a firewall does from what a peer does: an answer or a refusal
//! (TCP RST, ICMP port unreachable) came back from the peer's kernel, so the packet crossed
//! every guard on the way; silence is what a drop looks like (and what a UDP service that does
//! not answer looks like: the caller reads the guard's counters to tell them apart).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{ipproto, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::error::{ErrnoName, NetError};
use crate::firewall::Proto;
use crate::netns::Netns;

/// What came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// TCP: the handshake completed; UDP: a datagram came back; ICMP: an echo reply.
    Answered,
    /// TCP RST or ICMP port unreachable: the peer's kernel answered that nothing listens there.
    Refused,
    /// Nothing within the timeout: dropped on the way, or a UDP service that stays silent.
    Silent,
    /// The probe never got an answer from the peer: the kernel refused to send it (no route,
    /// ENETUNREACH) or a router answered host unreachable (EHOSTUNREACH).
    Unreachable(Errno),
}

impl Outcome {
    /// Whether the packet reached the peer's kernel (and so passed every guard on the way).
    pub fn reached_peer(self) -> bool {
        matches!(self, Outcome::Answered | Outcome::Refused)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Answered => f.write_str("answered"),
            Outcome::Refused => f.write_str("refused (nothing listens, the packet got there)"),
            Outcome::Silent => f.write_str("no answer"),
            // A local nftables/iptables drop on the output hook fails the send with EPERM.
            Outcome::Unreachable(Errno::PERM) => {
                f.write_str("not sent: a rule of its own netns refused it (EPERM)")
            }
            Outcome::Unreachable(e) => write!(f, "unreachable ({})", ErrnoName(*e)),
        }
    }
}

/// Send one probe for `proto` to `addr:port` (port ignored for ICMP) from inside `netns`, and
/// wait at most `timeout` for what comes back.
pub fn probe(
    netns: &Netns,
    proto: Proto,
    addr: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> Result<Outcome, NetError> {
    let label = format!("{:?}", netns.path());
    let to = SocketAddrV4::new(addr, port);
    let err = |op, errno| NetError::Socket {
        op,
        operand: match proto {
            Proto::Icmp => addr.to_string(),
            _ => to.to_string(),
        },
        netns: label.clone(),
        errno,
    };
    let (ty, protocol) = match proto {
        Proto::Tcp => (SocketType::STREAM, None),
        Proto::Udp => (SocketType::DGRAM, None),
        // An unprivileged ping socket (icmp(7)): the kernel fills in the id and hands back only
        // our own replies. Where ping_group_range leaves us out, a raw socket (we hold
        // CAP_NET_RAW) does the same by hand.
        Proto::Icmp => (SocketType::DGRAM, Some(ipproto::ICMP)),
    };
    let open = |ty, protocol| {
        netns.enter(|| {
            rustix::net::socket_with(
                AddressFamily::INET,
                ty,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
                protocol,
            )
        })
    };
    let fd = match (open(ty, protocol)?, proto) {
        (Ok(fd), _) => fd,
        (Err(Errno::ACCESS | Errno::PERM), Proto::Icmp) => {
            let fd = open(SocketType::RAW, Some(ipproto::ICMP))?
                .map_err(|e| err("socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) for", e))?;
            return icmp_raw(&fd, addr, timeout).map_err(|(op, e)| err(op, e));
        }
        (Err(e), _) => return Err(err("socket for", e)),
    };
    match proto {
        Proto::Tcp => tcp(&fd, to, timeout),
        Proto::Udp => udp(&fd, to, timeout),
        Proto::Icmp => icmp_dgram(&fd, addr, timeout),
    }
    .map_err(|(op, e)| err(op, e))
}

type Step<T> = Result<T, (&'static str, Errno)>;

fn tcp(fd: &OwnedFd, to: SocketAddrV4, timeout: Duration) -> Step<Outcome> {
    // Close with RST, not FIN: the probe leaves no TIME_WAIT behind and the peer's application
    // sees at most a connection reset (SO_LINGER 0, socket(7)).
    rustix::net::sockopt::set_socket_linger(fd, Some(Duration::ZERO))
        .map_err(|e| ("setsockopt(SO_LINGER) for", e))?;
    match rustix::net::connect(fd, &to) {
        Ok(()) => return Ok(Outcome::Answered),
        Err(Errno::INPROGRESS) => {}
        Err(e) => return Ok(connect_error(e)),
    }
    if !wait(fd, PollFlags::OUT, timeout).map_err(|e| ("poll", e))? {
        return Ok(Outcome::Silent);
    }
    match rustix::net::sockopt::socket_error(fd).map_err(|e| ("getsockopt(SO_ERROR) for", e))? {
        Ok(()) => Ok(Outcome::Answered),
        Err(e) => Ok(connect_error(e)),
    }
}

fn connect_error(e: Errno) -> Outcome {
    match e {
        Errno::CONNREFUSED => Outcome::Refused,
        Errno::TIMEDOUT => Outcome::Silent,
        e => Outcome::Unreachable(e),
    }
}

fn udp(fd: &OwnedFd, to: SocketAddrV4, timeout: Duration) -> Step<Outcome> {
    // On a connected UDP socket an ICMP port unreachable for our datagram is reported by the
    // next receive as ECONNREFUSED (udp(7)). An empty datagram asks no service for anything.
    rustix::net::connect(fd, &to).map_err(|e| ("connect", e))?;
    if let Err(e) = rustix::net::send(fd, &[], SendFlags::empty()) {
        return Ok(connect_error(e));
    }
    recv_outcome(fd, timeout)
}

fn recv_outcome(fd: &OwnedFd, timeout: Duration) -> Step<Outcome> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if !wait(fd, PollFlags::IN, left).map_err(|e| ("poll", e))? {
            return Ok(Outcome::Silent);
        }
        match rustix::net::recv(fd, &mut buf[..], RecvFlags::empty()) {
            Ok(_) => return Ok(Outcome::Answered),
            Err(Errno::AGAIN | Errno::INTR) => continue,
            Err(e) => return Ok(connect_error(e)),
        }
    }
}

/// ICMP echo request, type 8 code 0 (RFC 792); on a ping socket the kernel sets the id and
/// the checksum.
fn echo_request(id: u16, seq: u16) -> [u8; 8] {
    let mut p = [8, 0, 0, 0, 0, 0, 0, 0];
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn icmp_dgram(fd: &OwnedFd, addr: Ipv4Addr, timeout: Duration) -> Step<Outcome> {
    rustix::net::connect(fd, &SocketAddrV4::new(addr, 0)).map_err(|e| ("connect", e))?;
    if let Err(e) = rustix::net::send(fd, &echo_request(0, 1), SendFlags::empty()) {
        return Ok(connect_error(e));
    }
    recv_outcome(fd, timeout)
}

fn icmp_raw(fd: &OwnedFd, addr: Ipv4Addr, timeout: Duration) -> Step<Outcome> {
    let id = (std::process::id() & 0xffff) as u16;
    let to = SocketAddrV4::new(addr, 0);
    if let Err(e) = rustix::net::sendto(fd, &echo_request(id, 1), SendFlags::empty(), &to) {
        return Ok(connect_error(e));
    }
    // A raw socket sees every ICMP message of the namespace, IP header included (raw(7)):
    // keep only an echo reply from `addr` with our id.
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if !wait(fd, PollFlags::IN, left).map_err(|e| ("poll", e))? {
            return Ok(Outcome::Silent);
        }
        let n = match rustix::net::recv(fd, &mut buf[..], RecvFlags::empty()) {
            Ok((n, _)) => n,
            Err(Errno::AGAIN | Errno::INTR) => continue,
            Err(e) => return Ok(connect_error(e)),
        };
        if is_echo_reply(&buf[..n.min(buf.len())], addr, id) {
            return Ok(Outcome::Answered);
        }
    }
}

fn is_echo_reply(packet: &[u8], from: Ipv4Addr, id: u16) -> bool {
    let Some(&vihl) = packet.first() else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    let Some(icmp) = packet.get(ihl..ihl + 8) else {
        return false;
    };
    packet.len() >= 20
        && packet[12..16] == from.octets()
        && icmp[0] == 0
        && u16::from_be_bytes([icmp[4], icmp[5]]) == id
}

/// Wait until `fd` is ready for `what` (or has an error); false on timeout.
fn wait(fd: &OwnedFd, what: PollFlags, timeout: Duration) -> Result<bool, Errno> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(fd, what)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let p = echo_request(0x1234, 1);
        assert_eq!(p[0], 8);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
    }

    #[test]
    fn only_our_echo_reply_from_the_peer_counts() {
        let from = Ipv4Addr::new(10, 1, 0, 2);
        let mut pkt = vec![0x45u8; 28];
        pkt[12..16].copy_from_slice(&from.octets());
        pkt[20] = 0;
        pkt[24..26].copy_from_slice(&7u16.to_be_bytes());
        assert!(is_echo_reply(&pkt, from, 7));
        assert!(!is_echo_reply(&pkt, from, 8));
        assert!(!is_echo_reply(&pkt, Ipv4Addr::new(10, 1, 0, 1), 7));
        pkt[20] = 8;
        assert!(!is_echo_reply(&pkt, from, 7), "our own request is no reply");
        assert!(!is_echo_reply(&pkt[..22], from, 7));
    }
}

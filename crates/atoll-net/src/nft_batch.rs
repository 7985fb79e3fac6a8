//! The migration lock's nf_tables transactions, sent as netlink batches from this process
//! instead of through an `nft` run: they fall inside a migration's outage, where starting `nft`
//! (its libraries, its ruleset cache) costs some milliseconds a time and the messages
//! themselves a few microseconds. Only the fixed lock and hold tables of `firewall` are built
//! here (the border guard's rulesets stay nft scripts); a test holds the lock to the same
//! ruleset, as `nft list` prints it.
//!
//! Wire format (linux/netfilter/nfnetlink.h, nf_tables.h): a batch is BATCH_BEGIN, the
//! messages, BATCH_END, in one sendmsg, applied as one transaction; each message is an
//! nlmsghdr of type (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*), an nfgenmsg, then attributes;
//! integer attributes are big-endian, register data is in host order.

use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::error::NetError;

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFPROTO_INET: u8 = 1;
pub(crate) const NFPROTO_IPV4: u8 = 2;
pub(crate) const NFPROTO_IPV6: u8 = 10;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_TARGET_NAME: u16 = 1;
const NFTA_TARGET_REV: u16 = 2;
const NFTA_TARGET_INFO: u16 = 3;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_CMP_EQ: u32 = 0;
const NFT_META_IIF: u32 = 4;
const NFT_META_OIF: u32 = 5;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
const NFT_REJECT_ICMPX_HOST_UNREACH: u8 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_LOCAL_OUT: u32 = 3;
/// The loopback device's index in every network namespace (LOOPBACK_IFINDEX).
const LOOPBACK_IFINDEX: u32 = 1;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const ICMP_DEST_UNREACH: u8 = 3;
/// The lock chains' priority: before any other table's (firewall::LOCK_TABLE).
const LOCK_PRIORITY: i32 = -300;

/// Attributes being written into a message body.
pub(crate) struct Attrs<'a>(pub(crate) &'a mut Vec<u8>);

impl Attrs<'_> {
    pub(crate) fn put(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.pad();
        self
    }

    fn str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(kind, &v)
    }

    fn be32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.put(kind, &v.to_be_bytes())
    }

    fn nest(&mut self, kind: u16, inner: impl FnOnce(&mut Attrs<'_>)) -> &mut Self {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        inner(&mut Attrs(self.0));
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self.0[at + 2..at + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }
}

/// One expression of a rule.
enum Expr {
    Meta {
        key: u32,
    },
    Cmp {
        data: Vec<u8>,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    Verdict(u32),
    RejectIcmpxHostUnreach,
    /// An x_tables target through nft_compat (this kernel family has no nft `queue`
    /// expression, CONFIG_NFT_QUEUE, while xt_NFQUEUE is common): what iptables-nft sends.
    Target {
        name: &'static str,
        rev: u32,
        info: Vec<u8>,
    },
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Payload { .. } => "payload",
            Expr::Verdict(_) => "immediate",
            Expr::RejectIcmpxHostUnreach => "reject",
            Expr::Target { .. } => "target",
        }
    }

    fn data(&self, a: &mut Attrs<'_>) {
        match self {
            Expr::Meta { key } => {
                a.be32(NFTA_META_KEY, *key).be32(NFTA_META_DREG, NFT_REG_1);
            }
            Expr::Cmp { data } => {
                a.be32(NFTA_CMP_SREG, NFT_REG_1)
                    .be32(NFTA_CMP_OP, NFT_CMP_EQ)
                    .nest(NFTA_CMP_DATA, |d| {
                        d.put(NFTA_DATA_VALUE, data);
                    });
            }
            Expr::Payload { base, offset, len } => {
                a.be32(NFTA_PAYLOAD_DREG, NFT_REG_1)
                    .be32(NFTA_PAYLOAD_BASE, *base)
                    .be32(NFTA_PAYLOAD_OFFSET, *offset)
                    .be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Verdict(code) => {
                a.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
                    .nest(NFTA_IMMEDIATE_DATA, |d| {
                        d.nest(NFTA_DATA_VERDICT, |v| {
                            v.be32(NFTA_VERDICT_CODE, *code);
                        });
                    });
            }
            Expr::RejectIcmpxHostUnreach => {
                a.be32(NFTA_REJECT_TYPE, NFT_REJECT_ICMPX_UNREACH)
                    .put(NFTA_REJECT_ICMP_CODE, &[NFT_REJECT_ICMPX_HOST_UNREACH]);
            }
            Expr::Target { name, rev, info } => {
                a.str(NFTA_TARGET_NAME, name)
                    .be32(NFTA_TARGET_REV, *rev)
                    .put(NFTA_TARGET_INFO, info);
            }
        }
    }

    fn write(&self, a: &mut Attrs<'_>) {
        a.nest(NFTA_LIST_ELEM, |e| {
            e.str(NFTA_EXPR_NAME, self.name())
                .nest(NFTA_EXPR_DATA, |d| self.data(d));
        });
    }
}

/// A batch under construction.
struct Batch {
    buf: Vec<u8>,
    seq: u32,
    /// The nfgenmsg family of every nf_tables message (NFPROTO_*).
    family: u8,
    /// The sequence numbers that expect an ACK, and what each did (for errors).
    acks: Vec<(u32, &'static str)>,
}

impl Batch {
    fn new() -> Batch {
        Batch::of(NFPROTO_INET)
    }

    /// A batch on tables of `family` (NFPROTO_INET, _IPV4, _IPV6).
    fn of(family: u8) -> Batch {
        let mut b = Batch {
            buf: Vec::with_capacity(2048),
            seq: 0,
            family,
            acks: Vec::new(),
        };
        b.message(NFNL_MSG_BATCH_BEGIN, 0, 0, NFNL_SUBSYS_NFTABLES, |_| {});
        b
    }

    /// Append one message; `res_id` is the nfgenmsg's (the subsystem, for batch markers).
    fn message(
        &mut self,
        kind: u16,
        flags: u16,
        family: u8,
        res_id: u16,
        attrs: impl FnOnce(&mut Attrs<'_>),
    ) -> u32 {
        self.seq += 1;
        nfnl_message(&mut self.buf, kind, flags, self.seq, family, res_id, attrs);
        self.seq
    }

    fn nft(
        &mut self,
        msg: u16,
        flags: u16,
        what: &'static str,
        attrs: impl FnOnce(&mut Attrs<'_>),
    ) {
        let seq = self.message(
            NFNL_SUBSYS_NFTABLES << 8 | msg,
            flags | NLM_F_ACK,
            self.family,
            0,
            attrs,
        );
        self.acks.push((seq, what));
    }

    fn table(&mut self, msg: u16, name: &str) {
        self.nft(msg, NLM_F_CREATE, "table", |a| {
            a.str(NFTA_TABLE_NAME, name);
        });
    }

    /// A filter chain on `hook` at priority -300 (LOCK_PRIORITY) with `policy`.
    fn base_chain(&mut self, table: &str, chain: &str, hook: u32, policy: u32) {
        self.nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, "chain", |a| {
            a.str(NFTA_CHAIN_TABLE, table)
                .str(NFTA_CHAIN_NAME, chain)
                .nest(NFTA_CHAIN_HOOK, |h| {
                    h.be32(NFTA_HOOK_HOOKNUM, hook)
                        .be32(NFTA_HOOK_PRIORITY, LOCK_PRIORITY as u32);
                })
                .be32(NFTA_CHAIN_POLICY, policy)
                .str(NFTA_CHAIN_TYPE, "filter");
        });
    }

    /// A rule at the end of `chain` (`append`) or at its start.
    fn rule(&mut self, table: &str, chain: &str, append: bool, exprs: &[Expr]) {
        let flags = NLM_F_CREATE | if append { NLM_F_APPEND } else { 0 };
        self.nft(NFT_MSG_NEWRULE, flags, "rule", |a| {
            a.str(NFTA_RULE_TABLE, table)
                .str(NFTA_RULE_CHAIN, chain)
                .nest(NFTA_RULE_EXPRESSIONS, |l| {
                    for e in exprs {
                        e.write(l);
                    }
                });
        });
    }

    /// Remove every rule of `chain` (`flush chain`): its hook stays registered, so unlike a
    /// table's delete the commit does not wait for a synchronize_net.
    fn flush(&mut self, table: &str, chain: &str) {
        self.nft(NFT_MSG_DELRULE, 0, "flush", |a| {
            a.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
        });
    }

    fn finish(mut self) -> Batch {
        self.message(NFNL_MSG_BATCH_END, 0, 0, NFNL_SUBSYS_NFTABLES, |_| {});
        self
    }
}

/// The lock table's contents (firewall::lock_table, the same rules). `replace`: the table may
/// exist (a killed migration's lock, perhaps opened): its chains are emptied first, in the same
/// transaction.
fn lock_table(b: &mut Batch, table: &str, replace: bool) {
    b.table(NFT_MSG_NEWTABLE, table);
    b.base_chain(table, "input", NF_INET_LOCAL_IN, NF_DROP);
    b.base_chain(table, "output", NF_INET_LOCAL_OUT, NF_DROP);
    if replace {
        b.flush(table, "input");
        b.flush(table, "output");
    }
    let lo = LOOPBACK_IFINDEX.to_ne_bytes().to_vec();
    b.rule(
        table,
        "input",
        true,
        &[
            Expr::Meta { key: NFT_META_IIF },
            Expr::Cmp { data: lo.clone() },
            Expr::Verdict(NF_ACCEPT),
        ],
    );
    b.rule(
        table,
        "input",
        true,
        &[
            Expr::Meta {
                key: NFT_META_L4PROTO,
            },
            Expr::Cmp {
                data: vec![IPPROTO_TCP],
            },
            Expr::RejectIcmpxHostUnreach,
        ],
    );
    b.rule(
        table,
        "output",
        true,
        &[
            Expr::Meta { key: NFT_META_OIF },
            Expr::Cmp { data: lo },
            Expr::Verdict(NF_ACCEPT),
        ],
    );
    b.rule(
        table,
        "output",
        true,
        &[
            Expr::Meta {
                key: NFT_META_NFPROTO,
            },
            Expr::Cmp {
                data: vec![NFPROTO_IPV4],
            },
            Expr::Meta {
                key: NFT_META_L4PROTO,
            },
            Expr::Cmp {
                data: vec![IPPROTO_ICMP],
            },
            Expr::Payload {
                base: NFT_PAYLOAD_TRANSPORT_HEADER,
                offset: 0,
                len: 1,
            },
            Expr::Cmp {
                data: vec![ICMP_DEST_UNREACH],
            },
            Expr::Verdict(NF_ACCEPT),
        ],
    );
}

/// The lock table in the calling thread's netns, as one transaction. `replace`: a table of
/// that name (a killed migration's lock) takes the new rules only. Its chains are flushed, not
/// the table deleted: a delete unregisters hooks, and the commit then waits for a
/// synchronize_net (12-16 ms measured here), while the source's packets wait.
pub(crate) fn lock(table: &str, replace: bool) -> Result<(), NetError> {
    let mut b = Batch::new();
    lock_table(&mut b, table, replace);
    send(b.finish(), table, "lock")
}

/// An accept rule at the top of both lock chains (firewall::open).
pub(crate) fn open(table: &str) -> Result<(), NetError> {
    let mut b = Batch::new();
    for chain in ["input", "output"] {
        b.rule(table, chain, false, &[Expr::Verdict(NF_ACCEPT)]);
    }
    send(b.finish(), table, "open")
}

/// The hold table (firewall::hold) for the addresses of one family (NFPROTO_IPV4 or _IPV6):
/// a prerouting chain at priority -300 (before conntrack) whose rule per address hands the
/// packet to netfilter queue `queue` (`ip daddr A queue num Q`, as iptables-nft writes
/// `-j NFQUEUE`: xt target NFQUEUE revision 3, no bypass). With no listener on the queue the
/// kernel drops the packet: a hold left by a killed process fails closed. A table of that
/// name (a killed holder's) keeps its chain, emptied first in the same transaction (as `lock`:
/// no synchronize_net while the island's packets already wait).
pub(crate) fn hold(table: &str, family: u8, queue: u16, addrs: &[Vec<u8>]) -> Result<(), NetError> {
    let (offset, len) = if family == NFPROTO_IPV6 {
        (24, 16)
    } else {
        (16, 4)
    };
    // struct xt_NFQ_info_v3 { u16 queuenum, queues_total, flags }, host order, padded to
    // XT_ALIGN (8) as x_tables checks the size.
    let mut info = Vec::with_capacity(8);
    info.extend_from_slice(&queue.to_ne_bytes());
    info.extend_from_slice(&1u16.to_ne_bytes());
    info.extend_from_slice(&0u16.to_ne_bytes());
    info.extend_from_slice(&[0, 0]);
    let mut b = Batch::of(family);
    b.table(NFT_MSG_NEWTABLE, table);
    b.base_chain(table, "prerouting", NF_INET_PRE_ROUTING, NF_ACCEPT);
    b.flush(table, "prerouting");
    for addr in addrs {
        b.rule(
            table,
            "prerouting",
            true,
            &[
                Expr::Payload {
                    base: NFT_PAYLOAD_NETWORK_HEADER,
                    offset,
                    len,
                },
                Expr::Cmp { data: addr.clone() },
                Expr::Target {
                    name: "NFQUEUE",
                    rev: 3,
                    info: info.clone(),
                },
            ],
        );
    }
    send(b.finish(), table, "hold")
}

/// An accept rule at the top of the hold chain: what arrives now passes (firewall::Hold::pass).
pub(crate) fn pass(table: &str, family: u8) -> Result<(), NetError> {
    let mut b = Batch::of(family);
    b.rule(table, "prerouting", false, &[Expr::Verdict(NF_ACCEPT)]);
    send(b.finish(), table, "pass")
}

/// Delete table `table` of `family`; Ok if it is not there.
pub(crate) fn delete(table: &str, family: u8) -> Result<(), NetError> {
    let mut b = Batch::of(family);
    b.table(NFT_MSG_NEWTABLE, table);
    b.table(NFT_MSG_DELTABLE, table);
    send(b.finish(), table, "delete")
}

/// Whether table `table` of `family` exists in the calling thread's netns: NFT_MSG_GETTABLE,
/// a read outside any transaction. (A delete of an absent table, `add` then `delete` in one
/// batch, commits a transaction that waits for a synchronize_net: 12-16 ms for nothing.)
pub(crate) fn table_exists(table: &str, family: u8) -> Result<bool, NetError> {
    let err = |detail: String| NetError::Nft {
        what: "get",
        table: table.to_owned(),
        detail,
    };
    let sock = socket().map_err(err)?;
    let mut buf = Vec::with_capacity(64);
    nfnl_message(
        &mut buf,
        NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE,
        NLM_F_ACK,
        1,
        family,
        0,
        |a| {
            a.str(NFTA_TABLE_NAME, table);
        },
    );
    let kernel = rustix::net::netlink::SocketAddrNetlink::new(0, 0);
    rustix::net::sendto(&sock, &buf, SendFlags::empty(), &kernel)
        .map_err(|e| err(format!("sendto (NFT_MSG_GETTABLE): {e}")))?;
    let mut rbuf = vec![0u8; 8192];
    loop {
        let n = match rustix::net::recv(&sock, &mut rbuf, RecvFlags::empty()) {
            Ok((n, _)) => n.min(rbuf.len()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(err(format!("recv (NFT_MSG_GETTABLE): {e}"))),
        };
        for r in replies(&rbuf[..n]).map_err(err)? {
            return match r.error() {
                None => continue, // the table itself
                Some(0) => Ok(true),
                Some(c) if c == -Errno::NOENT.raw_os_error() => Ok(false),
                Some(c) => Err(err(format!(
                    "the kernel refused NFT_MSG_GETTABLE: {}",
                    Errno::from_raw_os_error(-c)
                ))),
            };
        }
    }
}

/// One netlink message of a reply: its type, sequence number and body (after the nlmsghdr).
pub(crate) struct Reply<'a> {
    pub(crate) kind: u16,
    pub(crate) seq: u32,
    pub(crate) body: &'a [u8],
}

impl Reply<'_> {
    /// An NLMSG_ERROR's code (0: an ACK; else minus the errno); None for any other message.
    pub(crate) fn error(&self) -> Option<i32> {
        (self.kind == NLMSG_ERROR && self.body.len() >= 4)
            .then(|| i32::from_ne_bytes(self.body[..4].try_into().expect("4")))
    }
}

/// The netlink messages in `buf` (what one recv returned), in order.
pub(crate) fn replies(buf: &[u8]) -> Result<Vec<Reply<'_>>, String> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4")) as usize;
        if len < 16 || off + len > buf.len() {
            return Err(format!(
                "a truncated netlink message ({len} bytes at {off})"
            ));
        }
        out.push(Reply {
            kind: u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2")),
            seq: u32::from_ne_bytes(buf[off + 8..off + 12].try_into().expect("4")),
            body: &buf[off + 16..off + len],
        });
        off += (len + 3) & !3;
    }
    Ok(out)
}

/// Append one netfilter netlink message to `buf`: nlmsghdr, nfgenmsg (`family`, NFNETLINK_V0,
/// `res_id` big-endian), then the attributes.
pub(crate) fn nfnl_message(
    buf: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: impl FnOnce(&mut Attrs<'_>),
) {
    let at = buf.len();
    buf.extend_from_slice(&[0; 16]); // nlmsghdr, filled below
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
    attrs(&mut Attrs(buf));
    let len = (buf.len() - at) as u32;
    let h = &mut buf[at..at + 16];
    h[0..4].copy_from_slice(&len.to_ne_bytes());
    h[4..6].copy_from_slice(&kind.to_ne_bytes());
    h[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    h[8..12].copy_from_slice(&seq.to_ne_bytes());
}

/// A NETLINK_NETFILTER socket in the calling thread's netns, CLOEXEC, with a receive timeout.
pub(crate) fn socket() -> Result<OwnedFd, String> {
    let sock: OwnedFd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(rustix::net::Protocol::from_raw(
            std::num::NonZeroU32::new(NETLINK_NETFILTER as u32).expect("nonzero"),
        )),
    )
    .map_err(|e| format!("socket(AF_NETLINK, NETLINK_NETFILTER): {e}"))?;
    // A reply that never comes (a batch the kernel replays after loading a module, say) must
    // not hold a migration's outage for ever.
    rustix::net::sockopt::set_socket_timeout(
        &sock,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(5)),
    )
    .map_err(|e| format!("setsockopt(SO_RCVTIMEO): {e}"))?;
    Ok(sock)
}

/// Send `b` on a NETLINK_NETFILTER socket made in the calling thread's netns; wait for every
/// ACK. The kernel applies all of it or nothing; the first error names the message.
fn send(b: Batch, table: &str, what: &'static str) -> Result<(), NetError> {
    let err = |detail: String| NetError::Nft {
        what,
        table: table.to_owned(),
        detail,
    };
    let sock = socket().map_err(err)?;
    let kernel = rustix::net::netlink::SocketAddrNetlink::new(0, 0);
    let sent = rustix::net::sendto(&sock, &b.buf, SendFlags::empty(), &kernel)
        .map_err(|e| err(format!("sendto (nf_tables batch): {e}")))?;
    if sent != b.buf.len() {
        return Err(err(format!("sendto sent {sent} of {} bytes", b.buf.len())));
    }
    let mut pending: Vec<(u32, &str)> = b.acks;
    let mut buf = vec![0u8; 16 * 1024];
    while !pending.is_empty() {
        let n = match rustix::net::recv(&sock, &mut buf, RecvFlags::empty()) {
            Ok((n, _)) => n,
            Err(Errno::INTR) => continue,
            Err(e) => {
                return Err(err(format!(
                    "recv (nf_tables ACKs, {} of them still due): {e}",
                    pending.len()
                )))
            }
        };
        for r in replies(&buf[..n]).map_err(err)? {
            let Some(code) = r.error() else { continue };
            let seq = r.seq;
            let Some(i) = pending.iter().position(|(s, _)| *s == seq) else {
                return Err(err(format!("an ACK for unknown sequence number {seq}")));
            };
            let (_, item) = pending.remove(i);
            if code != 0 {
                return Err(err(format!(
                    "the kernel refused the {item} (message {seq}): {}",
                    Errno::from_raw_os_error(-code)
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nests_sized() {
        let mut v = Vec::new();
        Attrs(&mut v).str(1, "abc").nest(2, |a| {
            a.be32(3, 7);
        });
        // "abc\0": 4+4 bytes; the nest: 4 + (4+4).
        assert_eq!(v.len(), 8 + 12);
        assert_eq!(u16::from_ne_bytes([v[8], v[9]]), 12);
        assert_eq!(u16::from_ne_bytes([v[10], v[11]]), 2 | NLA_F_NESTED);
        assert_eq!(&v[16..20], &7u32.to_be_bytes());
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end() {
        let mut b = Batch::new();
        b.rule("t", "input", false, &[Expr::Verdict(NF_ACCEPT)]);
        let b = b.finish();
        let kind = |at: usize| u16::from_ne_bytes([b.buf[at + 4], b.buf[at + 5]]);
        assert_eq!(kind(0), NFNL_MSG_BATCH_BEGIN);
        let first = u32::from_ne_bytes(b.buf[0..4].try_into().unwrap()) as usize;
        assert_eq!(kind(first), NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE);
        assert_eq!(b.acks.len(), 1);
        let last = b.buf.len() - 20;
        assert_eq!(kind(last), NFNL_MSG_BATCH_END);
    }
}

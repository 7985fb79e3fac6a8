//! A netfilter queue (nfnetlink_queue) that holds packets and gives them back: the listener of
//! `firewall::hold`. While it is bound, the kernel keeps each packet that a rule sends to the
//! queue and tells us its id; a batch verdict accepts every packet up to an id, and each one
//! goes on from the hook where it waited (so through routing as it is then).
//!
//! Wire format (linux/netfilter/nfnetlink_queue.h): NFQNL_MSG_CONFIG with NFQA_CFG_CMD (BIND)
//! binds queue number N of the socket's netns to this socket (EPERM if another socket has it)
//! and NFQA_CFG_PARAMS asks for metadata only; the kernel then sends one NFQNL_MSG_PACKET per
//! queued packet, its id (big-endian) first in NFQA_PACKET_HDR; NFQNL_MSG_VERDICT_BATCH with
//! NFQA_VERDICT_HDR {verdict, id} answers every queued packet whose id is not after `id`.
//! Closing the socket unbinds the queue and the kernel drops whatever it still held. So does
//! any hook unregistered in the netns meanwhile (nf_queue_nf_hook_drop flushes every queue of
//! the netns: an nft table with base chains deleted, as a border-guard rewrite does); the batch
//! verdict then finds nothing to accept (ENOENT) and those packets count as not delivered.

use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

use crate::error::NetError;
use crate::nft_batch::{nfnl_message, replies, socket};

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQNL_MSG_VERDICT_BATCH: u16 = 3;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;
const NLM_F_ACK: u16 = 0x4;
/// nla_type's flag bits (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A bound queue. Dropping it unbinds the queue (the kernel drops what is still held).
pub(crate) struct Queue {
    sock: OwnedFd,
    num: u16,
    seq: u32,
    /// The newest packet id the kernel announced, and how many announced packets await a
    /// verdict.
    last: u32,
    waiting: usize,
}

/// What one read from the socket brought.
enum Read {
    Nothing,
    Messages,
    Ack { seq: u32, errno: Option<Errno> },
}

impl Queue {
    /// Bind queue `num` of the calling thread's netns; None if another socket holds it (the
    /// kernel answers EPERM: the queue belongs to another netlink port).
    pub(crate) fn bind(num: u16) -> Result<Option<Queue>, NetError> {
        let sock = socket().map_err(|detail| err(num, "socket", detail))?;
        let mut q = Queue {
            sock,
            num,
            seq: 0,
            last: 0,
            waiting: 0,
        };
        let seq = q.send(NFQNL_MSG_CONFIG, "bind", |a| {
            // struct nfqnl_msg_config_cmd { u8 command; u8 pad; be16 pf; }
            a.put(NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0]);
            // struct nfqnl_msg_config_params { be32 copy_range; u8 copy_mode; } (packed)
            a.put(NFQA_CFG_PARAMS, &[0, 0, 0, 0, NFQNL_COPY_META]);
        })?;
        match q.await_ack(seq, "bind") {
            Ok(()) => Ok(Some(q)),
            Err(NetError::Nfqueue {
                errno: Some(Errno::PERM | Errno::BUSY),
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn num(&self) -> u16 {
        self.num
    }

    /// Accept every packet held so far, and those that come while this runs; returns how many
    /// were delivered (not those the kernel flushed, see the module's comment).
    pub(crate) fn release(&mut self) -> Result<usize, NetError> {
        let mut total = 0;
        loop {
            while !matches!(self.read(RecvFlags::DONTWAIT)?, Read::Nothing) {}
            if self.waiting == 0 {
                return Ok(total);
            }
            let (id, n) = (self.last, self.waiting);
            self.waiting = 0;
            let seq = self.send(NFQNL_MSG_VERDICT_BATCH, "verdict", |a| {
                // struct nfqnl_msg_verdict_hdr { be32 verdict; be32 id; }
                let mut v = NF_ACCEPT.to_be_bytes().to_vec();
                v.extend_from_slice(&id.to_be_bytes());
                a.put(NFQA_VERDICT_HDR, &v);
            })?;
            match self.await_ack(seq, "verdict") {
                Ok(()) => total += n,
                // Nothing up to `id` is queued any more: the kernel flushed it.
                Err(NetError::Nfqueue {
                    errno: Some(Errno::NOENT),
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn send(
        &mut self,
        msg: u16,
        op: &'static str,
        attrs: impl FnOnce(&mut crate::nft_batch::Attrs<'_>),
    ) -> Result<u32, NetError> {
        self.seq += 1;
        let mut buf = Vec::with_capacity(64);
        let kind = NFNL_SUBSYS_QUEUE << 8 | msg;
        nfnl_message(&mut buf, kind, NLM_F_ACK, self.seq, 0, self.num, attrs);
        let kernel = rustix::net::netlink::SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&self.sock, &buf, SendFlags::empty(), &kernel)
            .map_err(|e| err(self.num, op, format!("sendto: {e}")))?;
        Ok(self.seq)
    }

    /// Read until the kernel answers message `seq` (packets announced meanwhile are counted).
    fn await_ack(&mut self, seq: u32, op: &'static str) -> Result<(), NetError> {
        loop {
            match self.read(RecvFlags::empty())? {
                Read::Ack { seq: s, errno } if s == seq => {
                    return match errno {
                        None => Ok(()),
                        Some(e) => Err(NetError::Nfqueue {
                            queue: self.num,
                            op,
                            errno: Some(e),
                            detail: format!("the kernel refused it: {e}"),
                        }),
                    };
                }
                _ => continue,
            }
        }
    }

    /// One recv; packet announcements update `last` and `waiting`.
    fn read(&mut self, flags: RecvFlags) -> Result<Read, NetError> {
        let mut buf = [0u8; 8192];
        let n = match rustix::net::recv(&self.sock, &mut buf, flags) {
            Ok((n, _)) => n,
            Err(Errno::AGAIN) => return Ok(Read::Nothing),
            Err(Errno::INTR) => return Ok(Read::Messages),
            // The socket overran: the kernel dropped the packets it could not announce (it
            // queues a packet only once its announcement is delivered), so none waits unseen.
            Err(Errno::NOBUFS) => return Ok(Read::Messages),
            Err(e) => return Err(err(self.num, "recv", e.to_string())),
        };
        let mut got = Read::Messages;
        for r in replies(&buf[..n]).map_err(|detail| err(self.num, "recv", detail))? {
            if let Some(code) = r.error() {
                let errno = (code != 0).then(|| Errno::from_raw_os_error(-code));
                got = Read::Ack { seq: r.seq, errno };
            } else if r.kind == NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_PACKET {
                let id = packet_id(r.body).ok_or_else(|| {
                    err(
                        self.num,
                        "recv",
                        "a packet message without NFQA_PACKET_HDR".into(),
                    )
                })?;
                self.last = id;
                self.waiting += 1;
            }
        }
        Ok(got)
    }
}

/// The id in a NFQNL_MSG_PACKET body (after its nfgenmsg).
fn packet_id(body: &[u8]) -> Option<u32> {
    let mut off = 4;
    while off + 4 <= body.len() {
        let len = u16::from_ne_bytes([body[off], body[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([body[off + 2], body[off + 3]]) & NLA_TYPE_MASK;
        if len < 4 || off + len > body.len() {
            return None;
        }
        if kind == NFQA_PACKET_HDR && len >= 8 {
            return Some(u32::from_be_bytes(
                body[off + 4..off + 8].try_into().expect("4"),
            ));
        }
        off += (len + 3) & !3;
    }
    None
}

fn err(queue: u16, op: &'static str, detail: String) -> NetError {
    NetError::Nfqueue {
        queue,
        op,
        errno: None,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_message_gives_its_id() {
        // nfgenmsg, then NFQA_PACKET_HDR { be32 id = 7, be16 proto, u8 hook } (+ pad).
        let mut body = vec![0u8, 0, 0, 5];
        body.extend_from_slice(&11u16.to_ne_bytes());
        body.extend_from_slice(&NFQA_PACKET_HDR.to_ne_bytes());
        body.extend_from_slice(&7u32.to_be_bytes());
        body.extend_from_slice(&[0x08, 0x00, 0, 0]);
        assert_eq!(packet_id(&body), Some(7));
        assert_eq!(packet_id(&body[..6]), None);
    }
}

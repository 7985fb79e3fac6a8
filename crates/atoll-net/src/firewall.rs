//! The border guard: one nftables table (family inet) owned by atoll, replaced atomically by one
//! `nft -f -` transaction. Packets to or from atoll's host link ends are judged (default deny);
//! all other traffic of the host passes through untouched, and no other table is touched.
//!
//! Priority `filter - 10` in the forward and input hooks: after conntrack (-200), so `ct state`
//! is known, and before the usual `filter` (0) chains of other tables, so our drop is final
//! whatever they do. Our accept only ends our chain; another table may still drop, which can
//! only make things stricter.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::error::NetError;

const NFT: &str = "/usr/sbin/nft";
/// Comment of the default-deny counter in the forward judgement.
pub const DROP_RULE: &str = "drop";
/// Comment of the input-hook drop for packets from islands to the host.
pub const HOST_INPUT_DROP_RULE: &str = "host-input-drop";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

/// One allowed flow direction: new connections from `saddr` on `from_if` to `daddr` on `to_if`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// Stable rule id, the rule's comment and its counter's name.
    pub id: String,
    pub from_if: String,
    pub to_if: String,
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub proto: Proto,
    /// Destination port ranges (inclusive); empty: any port (and always empty for ICMP).
    pub ports: Vec<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Table name in family inet, e.g. "atoll_demo".
    pub table: String,
    /// Every host-side link end atoll owns; traffic in or out of these is judged.
    pub host_ifaces: Vec<String>,
    pub allows: Vec<Allow>,
    /// Log default-deny drops with prefix "atoll drop: ".
    pub log_drops: bool,
}

/// A rule's counter, by its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub rule: String,
    pub packets: u64,
    pub bytes: u64,
}

impl Ruleset {
    /// The nft script that replaces the whole table's contents in one transaction: the table
    /// and its set are made if absent, then emptied (`flush`), then declared afresh. Not a
    /// `delete table`: that unregisters the base chains' hooks, and the kernel then waits for a
    /// synchronize_net before the commit returns (12-16 ms here) and drops every packet held
    /// in a netfilter queue of the netns (a migration's hold, `hold`).
    pub fn render(&self) -> String {
        let t = &self.table;
        let mut s = String::new();
        let _ = writeln!(s, "add table inet {t}");
        let _ = writeln!(s, "add set inet {t} host_ifaces {{ type ifname; }}");
        let _ = writeln!(s, "flush set inet {t} host_ifaces");
        let _ = writeln!(s, "flush table inet {t}");
        let _ = writeln!(s, "table inet {t} {{");
        let _ = writeln!(s, "\tset host_ifaces {{");
        let _ = writeln!(s, "\t\ttype ifname");
        if !self.host_ifaces.is_empty() {
            let names: Vec<String> = self
                .host_ifaces
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect();
            let _ = writeln!(s, "\t\telements = {{ {} }}", names.join(", "));
        }
        let _ = writeln!(s, "\t}}");
        let _ = writeln!(s, "\tchain forward {{");
        let _ = writeln!(
            s,
            "\t\ttype filter hook forward priority filter - 10; policy accept;"
        );
        let _ = writeln!(s, "\t\tiifname @host_ifaces jump judge");
        let _ = writeln!(s, "\t\toifname @host_ifaces jump judge");
        let _ = writeln!(s, "\t}}");
        let _ = writeln!(s, "\tchain judge {{");
        let _ = writeln!(s, "\t\tct state established,related accept");
        let _ = writeln!(s, "\t\tct state invalid drop");
        for a in &self.allows {
            let _ = writeln!(s, "\t\t{}", allow_rule(a));
        }
        let log = if self.log_drops {
            "log prefix \"atoll drop: \" "
        } else {
            ""
        };
        // One default-deny rule per host end, so the drops of each link are counted apart
        // (doctor's evidence, the graph's "drops per link"); the catch-all after them counts
        // what entered from elsewhere (a packet routed out towards an island).
        for i in &self.host_ifaces {
            let _ = writeln!(
                s,
                "\t\tiifname \"{i}\" {log}counter drop comment \"{}\"",
                link_drop_rule(i)
            );
        }
        let _ = writeln!(s, "\t\t{log}counter drop comment \"{DROP_RULE}\"");
        let _ = writeln!(s, "\t}}");
        let _ = writeln!(s, "\tchain input {{");
        let _ = writeln!(
            s,
            "\t\ttype filter hook input priority filter - 10; policy accept;"
        );
        let _ = writeln!(
            s,
            "\t\tiifname @host_ifaces counter drop comment \"{HOST_INPUT_DROP_RULE}\""
        );
        let _ = writeln!(s, "\t}}");
        let _ = writeln!(s, "}}");
        s
    }

    /// Replace the table in one atomic transaction (idempotent).
    pub fn apply(&self) -> Result<(), NetError> {
        self.validate()?;
        run_nft(&self.table, "apply", &["-f", "-"], Some(&self.render())).map(drop)
    }

    /// Names and comments end up inside double quotes and as table/chain identifiers: refuse
    /// anything nft would parse differently from what the caller meant.
    fn validate(&self) -> Result<(), NetError> {
        let bad = |what: String| NetError::InvalidRuleset {
            table: self.table.clone(),
            what,
        };
        if !is_identifier(&self.table) {
            return Err(bad("table name must be [A-Za-z_][A-Za-z0-9_]*".into()));
        }
        let ifnames = self
            .host_ifaces
            .iter()
            .chain(self.allows.iter().flat_map(|a| [&a.from_if, &a.to_if]));
        for i in ifnames {
            if i.is_empty()
                || i.len() > 15
                || !i
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                return Err(bad(format!("interface name {i:?}")));
            }
        }
        for a in &self.allows {
            if a.id.is_empty()
                || !a
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                return Err(bad(format!(
                    "allow id {:?} (printable ASCII, no quotes or spaces)",
                    a.id
                )));
            }
            if a.id == DROP_RULE || a.id == HOST_INPUT_DROP_RULE {
                return Err(bad(format!("allow id {:?} is reserved", a.id)));
            }
            if a.proto == Proto::Icmp && !a.ports.is_empty() {
                return Err(bad(format!("allow {:?}: ICMP has no ports", a.id)));
            }
            if let Some((lo, hi)) = a.ports.iter().find(|(lo, hi)| lo > hi) {
                return Err(bad(format!("allow {:?}: port range {lo}-{hi}", a.id)));
            }
        }
        Ok(())
    }
}

fn allow_rule(a: &Allow) -> String {
    let proto = match a.proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => "icmp",
    };
    let ports = if a.ports.is_empty() {
        format!("meta l4proto {proto}")
    } else {
        format!("{proto} dport {{ {} }}", port_ranges(&a.ports).join(", "))
    };
    format!(
        "iifname \"{}\" oifname \"{}\" ip saddr {} ip daddr {} {ports} ct state new counter accept comment \"{}\"",
        a.from_if, a.to_if, a.saddr, a.daddr, a.id
    )
}

/// A table name that goes into an nft script or a netlink message: an identifier.
fn check_table_name(table: &str) -> Result<(), NetError> {
    if is_identifier(table) {
        return Ok(());
    }
    Err(NetError::InvalidRuleset {
        table: table.to_owned(),
        what: "table name must be [A-Za-z_][A-Za-z0-9_]*".into(),
    })
}

fn is_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && s.len() <= 64
}

/// Inclusive port ranges as nft and the islands file write them: "5432", "8000-8080".
pub fn port_ranges(ports: &[(u16, u16)]) -> Vec<String> {
    ports
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect()
}

/// Delete table `inet <table>`; Ok if absent (the same add-then-delete transaction).
pub fn delete(table: &str) -> Result<(), NetError> {
    check_table_name(table)?;
    let script = format!("add table inet {table}\ndelete table inet {table}\n");
    run_nft(table, "delete", &["-f", "-"], Some(&script)).map(drop)
}

/// Comment (and counter name) of the default-deny drop of packets that entered from the host
/// end `host_if`: `drop <host_if>`.
pub fn link_drop_rule(host_if: &str) -> String {
    format!("{DROP_RULE} {host_if}")
}

/// Every default-deny drop of the forward judgement: the per-link counters and the catch-all
/// (`drop`) together, as (packets, bytes).
pub fn total_drops(counters: &[Counter]) -> (u64, u64) {
    counters
        .iter()
        .filter(|c| {
            c.rule == DROP_RULE
                || c.rule
                    .strip_prefix(DROP_RULE)
                    .is_some_and(|r| r.starts_with(' '))
        })
        .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes))
}

/// Counters of the table's rules, by comment: one per allow id, one per host end
/// (`drop <host_if>`), plus `drop` and `host-input-drop`. Reads `nft -j list table inet <table>`.
pub fn counters(table: &str) -> Result<Vec<Counter>, NetError> {
    let json = run_nft(
        table,
        "list counters",
        &["-j", "list", "table", "inet", table],
        None,
    )?;
    parse_counters(&json).map_err(|detail| NetError::Nft {
        what: "list counters",
        table: table.to_owned(),
        detail,
    })
}

/// Pick `{"rule": {"comment": C, "expr": [.., {"counter": {"packets", "bytes"}}, ..]}}` out of
/// nft's JSON (libnftables-json(5)).
fn parse_counters(json: &str) -> Result<Vec<Counter>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("JSON: {e}"))?;
    let items = v["nftables"].as_array().ok_or("no \"nftables\" array")?;
    let mut out = Vec::new();
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let Some(comment) = rule["comment"].as_str() else {
            continue;
        };
        let counter = rule["expr"]
            .as_array()
            .and_then(|e| e.iter().find_map(|x| x.get("counter")));
        if let Some(c) = counter {
            out.push(Counter {
                rule: comment.to_owned(),
                packets: c["packets"].as_u64().unwrap_or(0),
                bytes: c["bytes"].as_u64().unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// One `nft` process; the script (if any) on stdin. Returns stdout.
/// The table that locks a network namespace during a migration: nothing but loopback passes,
/// in or out. A TCP segment that reached a netns whose socket is gone (dumped source) or not
/// yet restored (target) would be answered with an RST, and the peer's connection would die
/// (RFC 793, "reset generation"). Inbound TCP is answered with ICMP host-unreachable instead
/// of being dropped silently: a peer retransmitting under an exponential backoff takes that
/// as a connectivity disruption and reverts the backoff (RFC 6069, Linux tcp_ld_RTO_revert),
/// so it retries every RTO and its first retransmission after the unlock comes soon; for an
/// ESTABLISHED socket that does not set IP_RECVERR such an ICMP is only a soft error (tcp(7)).
pub const LOCK_TABLE: &str = "atoll_lock";

/// The lock as an nft script: one transaction. Priority -300: before any other table. `lock`
/// sends this ruleset as a netlink batch (crate::nft_batch); this text is its definition for
/// people and the oracle of the test that holds the two equal (tests/islands.rs).
pub fn lock_script() -> String {
    // `add` makes the `flush` valid when the table is absent: a lock taken again (a killed
    // migration's) is replaced, not doubled, and keeps its hooks (see `Ruleset::render`).
    format!(
        "add table inet {LOCK_TABLE}\n\
         flush table inet {LOCK_TABLE}\n{}",
        lock_table()
    )
}

fn lock_table() -> String {
    format!(
        "table inet {LOCK_TABLE} {{\n\
         \tchain input {{ type filter hook input priority -300; policy drop; iif \"lo\" accept; \
         meta l4proto tcp reject with icmpx type host-unreachable; }}\n\
         \tchain output {{ type filter hook output priority -300; policy drop; oif \"lo\" accept; \
         icmp type destination-unreachable accept; }}\n\
         }}\n"
    )
}

/// Drop all non-loopback traffic of `netns` (see `LOCK_TABLE`): `lock_script`'s ruleset, sent
/// as one nf_tables netlink batch from a socket made inside the netns (crate::nft_batch: this
/// runs inside a migration's outage, where an `nft` run costs milliseconds).
pub fn lock(netns: &crate::netns::Netns) -> Result<(), NetError> {
    netns.enter(|| crate::nft_batch::lock(LOCK_TABLE, true))?
}

/// `lock` for a namespace made moments ago, which holds no table: without the replace
/// preamble (`lock_table`'s ruleset).
pub fn lock_fresh(netns: &crate::netns::Netns) -> Result<(), NetError> {
    netns.enter(|| crate::nft_batch::lock(LOCK_TABLE, false))?
}

/// Let everything through `lock`'s table again without removing it: an accept rule at the top
/// of both chains (`insert rule inet atoll_lock input accept`, and output), one batch.
/// Deleting the table unregisters its hooks, and the kernel then waits for a synchronize_net
/// (about 12 ms here, measured) before the commit returns; adding rules does not. `unlock`
/// removes the opened table later, out of the outage.
pub fn open(netns: &crate::netns::Netns) -> Result<(), NetError> {
    netns.enter(|| crate::nft_batch::open(LOCK_TABLE))?
}

/// Remove `lock`'s table from `netns`; Ok if it is not there.
pub fn unlock(netns: &crate::netns::Netns) -> Result<(), NetError> {
    let script = format!("add table inet {LOCK_TABLE}\ndelete table inet {LOCK_TABLE}\n");
    netns.enter(|| run_nft(LOCK_TABLE, "unlock", &["-f", "-"], Some(&script)).map(drop))?
}

/// While an island migrates, the packets its peers send it wait on the host instead of being
/// dropped at the locked namespaces: a hold table (families ip and ip6, named by the caller)
/// sends every packet to the island's addresses, in prerouting at priority -300, to a
/// netfilter queue this process listens on (crate::nfqueue). `Hold::pass` (at the unlock)
/// lets new packets through and accepts the held ones; they go on through routing, which by
/// then names the new namespace. Without a hold, a peer's segment sent in the outage is lost
/// and the peer retransmits after its RTO, at least TCP_RTO_MIN (200 ms) after the send: the
/// outage a peer saw could not go under that.
///
/// Fails closed: if the holding process dies, the kernel drops what it held and every later
/// packet to the addresses (a queue without listener), as the locked namespaces would; the
/// table stays until `unhold` (a later migrate's recovery, `down`). Traffic that the host
/// itself sends to the island (output, not prerouting) is not held.
pub struct Hold {
    table: String,
    families: Vec<u8>,
    queue: crate::nfqueue::Queue,
    passed: bool,
    ended: bool,
}

/// Start holding the packets to `addrs` (see `Hold`) in the calling thread's netns, with a
/// table named `table` (an identifier) in each family that has an address (a killed holder's
/// table of that name is taken over). The queue number is the first free one from a number
/// derived from the name.
pub fn hold(table: &str, addrs: &[std::net::IpAddr]) -> Result<Hold, NetError> {
    check_table_name(table)?;
    let base = table
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let mut queue = None;
    for i in 0..64u32 {
        let num = (0x8000 + (base.wrapping_add(i) % 0x7000)) as u16;
        if let Some(q) = crate::nfqueue::Queue::bind(num)? {
            queue = Some(q);
            break;
        }
    }
    let queue = queue.ok_or_else(|| NetError::Nfqueue {
        queue: 0x8000 + (base % 0x7000) as u16,
        op: "bind",
        errno: Some(rustix::io::Errno::PERM),
        detail: "this and the next 63 queue numbers are taken by other listeners (or this \
                 process lacks CAP_NET_ADMIN)"
            .into(),
    })?;
    let mut h = Hold {
        table: table.to_owned(),
        families: Vec::new(),
        queue,
        passed: false,
        ended: false,
    };
    use crate::nft_batch::{NFPROTO_IPV4, NFPROTO_IPV6};
    for (family, bytes) in [
        (NFPROTO_IPV4, addr_bytes(addrs, false)),
        (NFPROTO_IPV6, addr_bytes(addrs, true)),
    ] {
        if bytes.is_empty() {
            continue;
        }
        // Recorded first: a failed batch is then deleted by `end` (a no-op if it made nothing).
        h.families.push(family);
        crate::nft_batch::hold(table, family, h.queue.num(), &bytes)?;
    }
    Ok(h)
}

/// The addresses of one family (`v6` or not) as the bytes of their headers' field.
fn addr_bytes(addrs: &[std::net::IpAddr], v6: bool) -> Vec<Vec<u8>> {
    addrs
        .iter()
        .filter_map(|a| match a {
            std::net::IpAddr::V4(v4) if !v6 => Some(v4.octets().to_vec()),
            std::net::IpAddr::V6(a6) if v6 => Some(a6.octets().to_vec()),
            _ => None,
        })
        .collect()
}

impl Hold {
    /// Let what arrives now pass (an accept rule at the top of each hold chain: no hook is
    /// unregistered, so no synchronize_net inside the outage), then accept every held packet;
    /// returns how many were held.
    pub fn pass(&mut self) -> Result<usize, NetError> {
        if !self.passed {
            for &family in &self.families {
                crate::nft_batch::pass(&self.table, family)?;
            }
            self.passed = true;
        }
        self.queue.release()
    }

    /// `pass` (again: what came since the last one is accepted too), then remove the tables
    /// and unbind; returns how many packets were delivered since the last `pass`.
    pub fn end(mut self) -> Result<usize, NetError> {
        self.ended = true;
        self.finish()
    }

    fn finish(&mut self) -> Result<usize, NetError> {
        let mut errors = Vec::new();
        let mut held = 0;
        match self.pass() {
            Ok(n) => held += n,
            Err(e) => errors.push(e),
        }
        // Only after the last release: deleting the tables unregisters their hook, and the
        // kernel then drops whatever is still queued (nfqueue.rs).
        for &family in &self.families {
            if let Err(e) = crate::nft_batch::delete(&self.table, family) {
                errors.push(e);
            }
        }
        NetError::collect(errors).map(|()| held)
    }
}

impl Drop for Hold {
    /// A hold its owner did not end (an error path) ends here: its packets are let go and its
    /// tables removed, best effort (`end` reports errors).
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.finish();
        }
    }
}

/// Remove a hold's tables (both families) that a killed process left; Ok if absent.
pub fn unhold(table: &str) -> Result<(), NetError> {
    check_table_name(table)?;
    use crate::nft_batch::{NFPROTO_IPV4, NFPROTO_IPV6};
    // Asked first: `down` and every migration's recovery call this, and there is seldom a hold
    // to remove (a delete of nothing still costs a synchronize_net).
    let errors = [NFPROTO_IPV4, NFPROTO_IPV6]
        .into_iter()
        .filter_map(
            |family| match crate::nft_batch::table_exists(table, family) {
                Ok(true) => crate::nft_batch::delete(table, family).err(),
                Ok(false) => None,
                Err(e) => Some(e),
            },
        )
        .collect();
    NetError::collect(errors)
}

/// Whether `netns` holds `lock`'s table.
pub fn locked(netns: &crate::netns::Netns) -> Result<bool, NetError> {
    netns.enter(|| {
        run_nft(LOCK_TABLE, "list", &["list", "tables"], None).map(|out| {
            out.lines()
                .any(|l| l.trim() == format!("table inet {LOCK_TABLE}"))
        })
    })?
}

fn run_nft(
    table: &str,
    what: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, NetError> {
    let err = |detail: String| NetError::Nft {
        what,
        table: table.to_owned(),
        detail,
    };
    let mut child = Command::new(NFT)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("spawn {NFT}: {e}")))?;
    if let Some(script) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(script.as_bytes())
            .map_err(|e| err(format!("write script to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("wait for nft: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    String::from_utf8(out.stdout).map_err(|e| err(format!("output is not UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Ruleset {
        Ruleset {
            table: "atoll_demo".into(),
            host_ifaces: vec!["atab1a".into(), "atab1b".into()],
            allows: vec![
                Allow {
                    id: "web-to-db".into(),
                    from_if: "atab1a".into(),
                    to_if: "atab1b".into(),
                    saddr: Ipv4Addr::new(10, 0, 0, 1),
                    daddr: Ipv4Addr::new(10, 0, 0, 2),
                    proto: Proto::Tcp,
                    ports: vec![(5432, 5432), (8000, 8080)],
                },
                Allow {
                    id: "ping".into(),
                    from_if: "atab1a".into(),
                    to_if: "atab1b".into(),
                    saddr: Ipv4Addr::new(10, 0, 0, 1),
                    daddr: Ipv4Addr::new(10, 0, 0, 2),
                    proto: Proto::Icmp,
                    ports: vec![],
                },
            ],
            log_drops: true,
        }
    }

    #[test]
    fn render_refills_the_table_and_denies_by_default() {
        let s = demo().render();
        let lines: Vec<&str> = s.lines().map(str::trim).collect();
        assert_eq!(
            &lines[..5],
            [
                "add table inet atoll_demo",
                "add set inet atoll_demo host_ifaces { type ifname; }",
                "flush set inet atoll_demo host_ifaces",
                "flush table inet atoll_demo",
                "table inet atoll_demo {"
            ]
        );
        assert!(lines.contains(&"elements = { \"atab1a\", \"atab1b\" }"));
        assert!(lines.contains(&"type filter hook forward priority filter - 10; policy accept;"));
        assert!(lines.contains(&"iifname @host_ifaces jump judge"));
        assert!(lines.contains(&"oifname @host_ifaces jump judge"));
        assert!(lines.contains(
            &"iifname \"atab1a\" oifname \"atab1b\" ip saddr 10.0.0.1 ip daddr 10.0.0.2 tcp dport { 5432, 8000-8080 } ct state new counter accept comment \"web-to-db\""
        ));
        assert!(lines.contains(
            &"iifname \"atab1a\" oifname \"atab1b\" ip saddr 10.0.0.1 ip daddr 10.0.0.2 meta l4proto icmp ct state new counter accept comment \"ping\""
        ));
        let judge: Vec<&&str> = lines
            .iter()
            .skip_while(|l| **l != "chain judge {")
            .collect();
        assert_eq!(*judge[1], "ct state established,related accept");
        assert_eq!(*judge[2], "ct state invalid drop");
        assert_eq!(
            *judge[5],
            "iifname \"atab1a\" log prefix \"atoll drop: \" counter drop comment \"drop atab1a\""
        );
        assert_eq!(
            *judge[6],
            "iifname \"atab1b\" log prefix \"atoll drop: \" counter drop comment \"drop atab1b\""
        );
        assert_eq!(
            *judge[7],
            "log prefix \"atoll drop: \" counter drop comment \"drop\""
        );
        assert!(lines.contains(&"iifname @host_ifaces counter drop comment \"host-input-drop\""));
    }

    #[test]
    fn render_without_interfaces_declares_an_empty_set() {
        let mut r = demo();
        r.host_ifaces.clear();
        r.log_drops = false;
        let s = r.render();
        assert!(!s.contains("elements"));
        assert!(!s.contains("iifname \"atab1a\" counter drop"));
        assert!(s.contains("\t\tcounter drop comment \"drop\"\n"));
    }

    #[test]
    fn validate_refuses_what_would_escape_quotes() {
        let mut r = demo();
        r.allows[0].id = "x\" accept #".into();
        assert!(matches!(r.validate(), Err(NetError::InvalidRuleset { .. })));
        let mut r = demo();
        r.table = "t; flush ruleset".into();
        assert!(r.validate().is_err());
        let mut r = demo();
        r.allows[1].ports = vec![(1, 1)];
        assert!(r.validate().is_err());
        let mut r = demo();
        r.allows[0].id = "drop".into();
        assert!(r.validate().is_err());
        assert!(demo().validate().is_ok());
    }

    #[test]
    fn total_drops_adds_the_per_link_drops_to_the_catch_all() {
        let c = |rule: &str, packets| Counter {
            rule: rule.into(),
            packets,
            bytes: packets * 60,
        };
        let counters = [
            c("allow:a->b:tcp/80", 5),
            c(&link_drop_rule("at0-0a"), 2),
            c(&link_drop_rule("at0-0b"), 3),
            c(DROP_RULE, 1),
            c(HOST_INPUT_DROP_RULE, 7),
            c("dropper", 11),
        ];
        assert_eq!(total_drops(&counters), (6, 360));
    }

    #[test]
    fn counters_are_read_by_comment() {
        let json = r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "inet", "name": "t"}},
          {"rule": {"chain": "judge", "expr": [{"match": {}}, {"counter": {"packets": 3, "bytes": 180}}, {"accept": null}], "comment": "web-to-db"}},
          {"rule": {"chain": "judge", "expr": [{"accept": null}]}},
          {"rule": {"chain": "judge", "expr": [{"counter": {"packets": 7, "bytes": 420}}, {"drop": null}], "comment": "drop"}}]}"#;
        let c = parse_counters(json).unwrap();
        assert_eq!(
            c,
            vec![
                Counter {
                    rule: "web-to-db".into(),
                    packets: 3,
                    bytes: 180
                },
                Counter {
                    rule: "drop".into(),
                    packets: 7,
                    bytes: 420
                },
            ]
        );
    }
}

//! Layer 4, border guard. For an island: the plan says which `[[allow]]` should let the flow
//! from the subject to its peer through; one probe sent from inside the subject's netns, between
//! two reads of the project table's counters, shows live which rule the packet met (the allow's
//! counter, or the default deny of the subject's host end, `drop <host_if>`). For a plain
//! container: the rules inside its own netns (`nft -j list ruleset` there), and the same probe.
//!
//! Evidence: the plan's verdict, the probe's outcome, the counters that moved. Fixes: the exact
//! `[[allow]]` to add (no allow; one on other ports; only the reverse direction), re-applying
//! the plan when the live table differs from it, or the `nsenter ... nft delete rule` that
//! removes a container's own rule (doctor never runs it).

use std::net::Ipv4Addr;
use std::time::Duration;

use atoll_islands::file::Proto as FileProto;
use atoll_islands::plan::{AllowPlan, Plan};
use atoll_net::firewall::{self, Counter, Proto as NetProto};
use atoll_net::netns::Netns;
use atoll_net::nft_netns::{self, Flow};
use atoll_net::probe;

use crate::report::{Layer, LayerReport};
use crate::subject::IslandRef;
use crate::target::Proto;
use crate::{Ctx, Resolved};

/// Long enough for any answer between namespaces of one machine (microseconds), short enough
/// that a dropped probe does not slow doctor down; one SYN, never retransmitted (the first
/// retransmission is 1 s later, RFC 6298).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(100);

pub fn check(c: &Ctx) -> LayerReport {
    let Some(r) = c.target else {
        return LayerReport::not_checked(Layer::Guard, "no --to");
    };
    if r.outside {
        return LayerReport::not_checked(
            Layer::Guard,
            "outside: doctor sends nothing off the machine",
        );
    }
    match &c.subject.island {
        Some(me) => island(c, me, r),
        None => container(c, r),
    }
}

/// Which `[[allow]]` of the plan the flow from island `from` to island `to` meets.
#[derive(Debug, PartialEq)]
pub enum PlanMatch<'a> {
    /// This allow lets it through.
    Allowed(&'a AllowPlan),
    /// Allows of the same direction and protocol exist, on other ports.
    OtherPorts(Vec<&'a AllowPlan>),
    /// Only the reverse direction is allowed: replies pass, new connections this way do not.
    ReverseOnly(&'a AllowPlan),
    /// No allow between them for this protocol.
    Nothing,
}

/// Match the flow against the plan's allows. `port` None (a question about the link, not a
/// port) matches any allow of that protocol; ICMP has no ports.
pub fn plan_match(
    plan: &Plan,
    from: usize,
    to: usize,
    proto: FileProto,
    port: Option<u16>,
) -> PlanMatch<'_> {
    let covers = |a: &AllowPlan| match (proto, port) {
        (FileProto::Icmp, _) | (_, None) => true,
        (_, Some(p)) => a.ports.is_empty() || a.ports.iter().any(|&(lo, hi)| lo <= p && p <= hi),
    };
    let way = |f: usize, t: usize| {
        plan.allows
            .iter()
            .filter(move |a| a.from == f && a.to == t && a.proto == proto)
    };
    if let Some(a) = way(from, to).find(|a| covers(a)) {
        return PlanMatch::Allowed(a);
    }
    let others: Vec<&AllowPlan> = way(from, to).collect();
    if !others.is_empty() {
        return PlanMatch::OtherPorts(others);
    }
    match way(to, from).find(|a| covers(a)) {
        Some(a) => PlanMatch::ReverseOnly(a),
        None => PlanMatch::Nothing,
    }
}

/// How to apply a changed islands file: `atoll up` refuses a project that is already up, so the
/// project goes down and up again (data directories are kept).
pub fn reapply(plan: &Plan) -> String {
    format!(
        "atoll down {} && atoll up {}",
        plan.name,
        plan.file.display()
    )
}

/// The `[[allow]]` block that lets `from` open `proto`/`port` flows to `to`.
pub fn allow_block(from: &str, to: &str, proto: FileProto, port: Option<u16>) -> String {
    let mut s = format!(
        "[[allow]]\nfrom = \"{from}\"\nto = \"{to}\"\nproto = \"{}\"",
        file_proto_str(proto)
    );
    match (proto, port) {
        (FileProto::Icmp, _) => {}
        (_, Some(p)) => s.push_str(&format!("\nports = [{p}]")),
        (_, None) => s.push_str("\nports = [PORT]"),
    }
    s
}

fn ports_str(ports: &[(u16, u16)]) -> String {
    if ports.is_empty() {
        return "any port".into();
    }
    // The file writes a range as a string ("8000-8080") and a single port as a number.
    firewall::port_ranges(ports)
        .into_iter()
        .map(|p| {
            if p.contains('-') {
                format!("\"{p}\"")
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plan's verdict as a summary and fix, for a flow the plan does not allow. None: allowed.
pub fn plan_fault(
    plan: &Plan,
    from: usize,
    to: usize,
    proto: FileProto,
    port: Option<u16>,
) -> Option<(String, String)> {
    let name = |i: usize| plan.islands[i].spec.name.as_str();
    let (a, b) = (name(from), name(to));
    let flow = match port {
        Some(p) => format!("{}/{p}", file_proto_str(proto)),
        None => file_proto_str(proto).to_string(),
    };
    let file = plan.file.display();
    let apply = reapply(plan);
    match plan_match(plan, from, to, proto, port) {
        PlanMatch::Allowed(_) => None,
        PlanMatch::Nothing => Some((
            format!("no [[allow]] lets {a} open {flow} to {b}: the border guard drops it"),
            format!(
                "add to {file}:\n{}\nthen apply it: {apply}",
                allow_block(a, b, proto, port)
            ),
        )),
        PlanMatch::OtherPorts(others) => {
            let o = others[0];
            let p = port.map_or("PORT".to_string(), |p| p.to_string());
            let mut now: Vec<(u16, u16)> = o.ports.clone();
            if let Some(p) = port {
                now.push((p, p));
            }
            Some((
                format!(
                    "{} lets {a} reach {b} on {} {} only, not {flow}: the border guard drops it",
                    o.id,
                    file_proto_str(proto),
                    ports_str(&o.ports)
                ),
                format!(
                    "in {file}, add {p} to the ports of the [[allow]] from \"{a}\" to \"{b}\" \
                     (proto \"{}\"): ports = [{}]\nthen apply it: {apply}",
                    file_proto_str(proto),
                    ports_str(&now)
                ),
            ))
        }
        PlanMatch::ReverseOnly(r) => Some((
            format!(
                "{b} may open connections to {a} ({}); replies pass as established, but {a} \
                 may not open one to {b}",
                r.id
            ),
            format!(
                "add the reverse allow to {file} (or set both = true on the existing one):\n{}\n\
                 then apply it: {apply}",
                allow_block(a, b, proto, port)
            ),
        )),
    }
}

fn file_proto(p: Proto) -> FileProto {
    match p {
        Proto::Tcp => FileProto::Tcp,
        Proto::Udp => FileProto::Udp,
        Proto::Icmp => FileProto::Icmp,
    }
}

fn file_proto_str(p: FileProto) -> &'static str {
    match p {
        FileProto::Tcp => "tcp",
        FileProto::Udp => "udp",
        FileProto::Icmp => "icmp",
    }
}

pub(crate) fn net_proto(p: Proto) -> NetProto {
    match p {
        Proto::Tcp => NetProto::Tcp,
        Proto::Udp => NetProto::Udp,
        Proto::Icmp => NetProto::Icmp,
    }
}

/// "10.1.0.2:5432 (tcp)" or "10.1.0.2 (icmp)".
pub(crate) fn dest(addr: Ipv4Addr, proto: Proto, port: Option<u16>) -> String {
    match port {
        Some(p) if proto != Proto::Icmp => format!("{addr}:{p} ({})", proto.as_str()),
        _ => format!("{addr} ({})", proto.as_str()),
    }
}

fn island(c: &Ctx, me: &IslandRef, r: &Resolved) -> LayerReport {
    let plan = &me.plan;
    let Some(peer) = r.peer.as_ref().and_then(|p| p.island.as_ref()) else {
        return LayerReport::not_checked(Layer::Guard, "the target is no island");
    };
    let (from, to) = (me.index, peer.index);
    let (a, b) = (
        plan.islands[from].spec.name.as_str(),
        plan.islands[to].spec.name.as_str(),
    );
    let (Some(li), Some(addr)) = (r.link, r.addr) else {
        return LayerReport::fault(
            Layer::Guard,
            format!("no [[link]] between {a} and {b}: no allow can apply"),
            format!(
                "add to {}:\n[[link]]\nbetween = [\"{a}\", \"{b}\"]\n{}\nthen apply it: {}",
                plan.file.display(),
                allow_block(a, b, file_proto(r.target.proto), r.target.port),
                reapply(plan)
            ),
        );
    };
    let link = &plan.links[li];
    let host_if = if link.a == from {
        &link.host_a
    } else {
        &link.host_b
    };
    let proto = r.target.proto;
    let port = r.target.port;
    let fproto = file_proto(proto);
    let mut evidence = Vec::new();
    let allowed = match plan_match(plan, from, to, fproto, port) {
        PlanMatch::Allowed(al) => {
            evidence.push(format!("plan: {} lets it through", al.id));
            Some(al.id.clone())
        }
        _ => {
            evidence.push(format!(
                "plan: no [[allow]] from {a} to {b} for {}",
                match port {
                    Some(p) => format!("{}/{p}", proto.as_str()),
                    None => proto.as_str().into(),
                }
            ));
            None
        }
    };
    let before = match firewall::counters(&plan.table) {
        Ok(v) => v,
        Err(e) => return table_unreadable(plan, e),
    };
    if let Some(id) = &allowed {
        if !before.iter().any(|c| &c.rule == id) {
            return LayerReport::fault(
                Layer::Guard,
                format!(
                    "the live table differs from the plan: inet {} has no rule {id}",
                    plan.table
                ),
                format!("re-apply the plan: {}", reapply(plan)),
            )
            .with_evidence(evidence);
        }
    }
    // Without a port there is nothing to probe for tcp or udp: the plan answers alone.
    if port.is_none() && proto != Proto::Icmp {
        return match plan_fault(plan, from, to, fproto, port) {
            None => LayerReport::ok(Layer::Guard, "the plan allows it (no port given: no probe)")
                .with_evidence(evidence),
            Some((summary, fix)) => {
                LayerReport::fault(Layer::Guard, summary, fix).with_evidence(evidence)
            }
        };
    }
    let outcome = match Netns::open(&plan.islands[from].netns)
        .and_then(|ns| probe_once(c, &ns, proto, addr, port))
    {
        Ok(o) => o,
        Err(e) => return probe_failed(e, evidence),
    };
    evidence.push(format!(
        "probe from {a} to {}: {outcome}",
        dest(addr, proto, port)
    ));
    let after = match firewall::counters(&plan.table) {
        Ok(v) => v,
        Err(e) => return table_unreadable(plan, e),
    };
    let moved = |rule: &str| delta(&before, &after, rule);
    let link_drop = firewall::link_drop_rule(host_if);
    let dropped = moved(&link_drop) + moved(firewall::DROP_RULE);
    for (rule, d) in after
        .iter()
        .map(|c| (c.rule.as_str(), moved(&c.rule)))
        .filter(|(_, d)| *d > 0)
    {
        evidence.push(format!("counter {rule:?} of inet {}: +{d}", plan.table));
    }
    let passed = allowed.as_deref().is_some_and(|id| moved(id) > 0);
    match (&allowed, outcome.reached_peer() || passed, dropped > 0) {
        (Some(id), true, _) => {
            LayerReport::ok(Layer::Guard, format!("allowed by {id}")).with_evidence(evidence)
        }
        (Some(id), false, true) => LayerReport::fault(
            Layer::Guard,
            format!(
                "the live table differs from the plan: {id} should let it through, but the \
                 probe was dropped ({link_drop:?} moved)"
            ),
            format!("re-apply the plan: {}", reapply(plan)),
        )
        .with_evidence(evidence),
        (Some(id), false, false) => LayerReport::not_checked(
            Layer::Guard,
            format!("the plan allows it ({id}), but the probe did not reach the border guard"),
        )
        .with_evidence(evidence),
        (None, true, _) => LayerReport::fault(
            Layer::Guard,
            "the live table differs from the plan: it let through a flow no [[allow]] names",
            format!("re-apply the plan: {}", reapply(plan)),
        )
        .with_evidence(evidence),
        (None, false, _) => {
            let (summary, fix) = plan_fault(plan, from, to, fproto, port)
                .expect("a flow the plan does not allow has a plan fault");
            LayerReport::fault(Layer::Guard, summary, fix).with_evidence(evidence)
        }
    }
}

/// The one probe the guard layer sends, kept for the peer layer's evidence.
fn probe_once(
    c: &Ctx,
    ns: &Netns,
    proto: Proto,
    addr: Ipv4Addr,
    port: Option<u16>,
) -> Result<probe::Outcome, atoll_net::NetError> {
    let outcome = probe::probe(ns, net_proto(proto), addr, port.unwrap_or(0), PROBE_TIMEOUT)?;
    // Set once per walk: the guard layer runs once.
    let _ = c.probe.set(outcome);
    Ok(outcome)
}

fn probe_failed(e: atoll_net::NetError, mut evidence: Vec<String>) -> LayerReport {
    evidence.push(format!("probe: {e}"));
    LayerReport::not_checked(Layer::Guard, "the probe could not be sent").with_evidence(evidence)
}

fn delta(before: &[Counter], after: &[Counter], rule: &str) -> u64 {
    let get = |v: &[Counter]| v.iter().find(|c| c.rule == rule).map_or(0, |c| c.packets);
    get(after).saturating_sub(get(before))
}

/// The table cannot be listed: absent (the guard is gone, and with it every allow), or nft
/// itself failed.
fn table_unreadable(plan: &Plan, e: atoll_net::NetError) -> LayerReport {
    let text = e.to_string();
    if text.contains("No such file or directory") {
        return LayerReport::fault(
            Layer::Guard,
            format!(
                "the project's table inet {} is missing: the live guard differs from the plan",
                plan.table
            ),
            format!("re-apply the plan: {}", reapply(plan)),
        )
        .with_evidence(vec![text]);
    }
    LayerReport::not_checked(Layer::Guard, "the table's counters could not be read")
        .with_evidence(vec![text])
}

/// A plain container: the rules inside its own netns, and a probe from there.
fn container(c: &Ctx, r: &Resolved) -> LayerReport {
    let s = c.subject;
    if !s.own_netns {
        return LayerReport::not_checked(Layer::Guard, "it shares the host's network namespace");
    }
    let (Some(ns_path), Some(pid), Some(addr)) = (&s.netns, s.pid, r.addr) else {
        return LayerReport::not_checked(Layer::Guard, "not running");
    };
    let ns = match Netns::open(ns_path) {
        Ok(n) => n,
        Err(e) => {
            return LayerReport::not_checked(Layer::Guard, "its netns could not be opened")
                .with_evidence(vec![e.to_string()])
        }
    };
    let proto = r.target.proto;
    let port = r.target.port;
    let mut evidence = Vec::new();
    // Doctor probes only the container's own addresses: the packet leaves by `lo` (output
    // hook) and comes back in by `lo` (input hook).
    let flow = Flow {
        proto: net_proto(proto),
        saddr: if addr.is_loopback() {
            Ipv4Addr::LOCALHOST
        } else {
            addr
        },
        daddr: addr,
        dport: port.filter(|_| proto != Proto::Icmp),
        iif: Some("lo".into()),
        oif: Some("lo".into()),
    };
    let blocker = match nft_netns::ruleset(&ns) {
        Ok(rs) => ["output", "input"]
            .iter()
            .find_map(|h| nft_netns::blocker(&rs, h, &flow)),
        Err(e) => {
            evidence.push(format!("rules in its netns: {e}"));
            None
        }
    };
    let outcome = match probe_once(c, &ns, proto, addr, port) {
        Ok(o) => o,
        Err(e) => return probe_failed(e, evidence),
    };
    evidence.push(format!(
        "probe inside {} to {}: {outcome}",
        s.name,
        dest(addr, proto, port)
    ));
    let Some(b) = blocker else {
        evidence.push("no rule in its netns drops it".into());
        return LayerReport::ok(Layer::Guard, "no rule in the container's netns drops it")
            .with_evidence(evidence);
    };
    let text = nft_netns::rule_text(&ns, &b).unwrap_or_else(|e| e.to_string());
    let place = format!(
        "table {} {}, chain {} (hook {})",
        b.family, b.table, b.chain, b.hook
    );
    if outcome.reached_peer() {
        evidence.push(format!(
            "{place} handle {:?} ({text}) may match, but the probe passed",
            b.handle
        ));
        return LayerReport::ok(Layer::Guard, "the probe passed the rules of its netns")
            .with_evidence(evidence);
    }
    let what = match port {
        Some(p) if proto != Proto::Icmp => format!("{}/{p}", proto.as_str()),
        _ => proto.as_str().to_string(),
    };
    let nsenter = format!("nsenter --net=/proc/{pid}/ns/net nft");
    let (summary, fix) = match b.handle {
        Some(h) => (
            format!("{place}, rule handle {h} `{text}` {}s {what}", b.verdict),
            format!(
                "{nsenter} delete rule {} {} {} handle {h}",
                b.family, b.table, b.chain
            ),
        ),
        // A policy has no handle to delete: accept the flow ahead of it, and its replies (on
        // `lo` they cross the same hooks back).
        None => {
            let chain = format!("{} {} {}", b.family, b.table, b.chain);
            let flow = match port {
                Some(p) if proto != Proto::Icmp => format!("{} dport {p}", proto.as_str()),
                _ => format!("meta l4proto {}", proto.as_str()),
            };
            (
                format!("{place}: policy {} {}s {what}", b.verdict, b.verdict),
                format!(
                    "{nsenter} insert rule {chain} {flow} accept
                     {nsenter} insert rule {chain} ct state established,related accept"
                ),
            )
        }
    };
    if !b.certain {
        evidence.push("the rule has a match doctor cannot evaluate; the probe was dropped".into());
    }
    LayerReport::fault(Layer::Guard, summary, fix).with_evidence(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const FILE: &str = r#"
name = "p"
[[island]]
name = "db"
command = ["/bin/sh"]
[[island]]
name = "backup"
command = ["/bin/sh"]
[[island]]
name = "web"
command = ["/bin/sh"]
[[link]]
between = ["db", "backup"]
[[link]]
between = ["web", "db"]
[[allow]]
from = "db"
to = "backup"
proto = "tcp"
ports = [873]
[[allow]]
from = "web"
to = "db"
proto = "tcp"
ports = [80, "6000-6010"]
"#;

    fn plan() -> Plan {
        let f = atoll_islands::file::parse(Path::new("/etc/p.toml"), FILE).unwrap();
        atoll_islands::plan::build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap()
    }

    const DB: usize = 0;
    const BACKUP: usize = 1;
    const WEB: usize = 2;

    #[test]
    fn an_allow_on_the_port_matches() {
        let p = plan();
        let m = plan_match(&p, WEB, DB, FileProto::Tcp, Some(6005));
        assert!(matches!(m, PlanMatch::Allowed(a) if a.id == "allow:web->db:tcp/80,6000-6010"));
        assert_eq!(plan_fault(&p, WEB, DB, FileProto::Tcp, Some(80)), None);
        assert!(matches!(
            plan_match(&p, WEB, DB, FileProto::Tcp, None),
            PlanMatch::Allowed(_)
        ));
    }

    #[test]
    fn no_allow_prints_the_block_to_add() {
        let p = plan();
        assert_eq!(
            plan_match(&p, BACKUP, WEB, FileProto::Udp, Some(53)),
            PlanMatch::Nothing
        );
        let (summary, fix) = plan_fault(&p, WEB, DB, FileProto::Udp, Some(53)).unwrap();
        assert_eq!(
            summary,
            "no [[allow]] lets web open udp/53 to db: the border guard drops it"
        );
        assert!(
            fix.contains("[[allow]]\nfrom = \"web\"\nto = \"db\"\nproto = \"udp\"\nports = [53]\n"),
            "{fix}"
        );
        assert!(
            fix.ends_with("atoll down p && atoll up /etc/p.toml"),
            "{fix}"
        );
        let (_, fix) = plan_fault(&p, WEB, DB, FileProto::Icmp, None).unwrap();
        assert!(fix.contains("proto = \"icmp\"\nthen"), "{fix}");
    }

    #[test]
    fn an_allow_on_other_ports_is_named_with_the_port_to_add() {
        let p = plan();
        assert!(matches!(
            plan_match(&p, WEB, DB, FileProto::Tcp, Some(5432)),
            PlanMatch::OtherPorts(v) if v.len() == 1
        ));
        let (summary, fix) = plan_fault(&p, WEB, DB, FileProto::Tcp, Some(5432)).unwrap();
        assert!(
            summary.starts_with(
                "allow:web->db:tcp/80,6000-6010 lets web reach db on tcp 80, \"6000-6010\" only, not tcp/5432"
            ),
            "{summary}"
        );
        assert!(
            fix.contains("add 5432 to the ports of the [[allow]] from \"web\" to \"db\""),
            "{fix}"
        );
        assert!(fix.contains("ports = [80, \"6000-6010\", 5432]"), "{fix}");
    }

    #[test]
    fn the_reverse_direction_is_told_apart() {
        let p = plan();
        assert!(matches!(
            plan_match(&p, BACKUP, DB, FileProto::Tcp, Some(873)),
            PlanMatch::ReverseOnly(a) if a.id == "allow:db->backup:tcp/873"
        ));
        let (summary, fix) = plan_fault(&p, BACKUP, DB, FileProto::Tcp, Some(873)).unwrap();
        assert_eq!(
            summary,
            "db may open connections to backup (allow:db->backup:tcp/873); replies pass as \
             established, but backup may not open one to db"
        );
        assert!(
            fix.contains(
                "[[allow]]\nfrom = \"backup\"\nto = \"db\"\nproto = \"tcp\"\nports = [873]"
            ),
            "{fix}"
        );
    }
}

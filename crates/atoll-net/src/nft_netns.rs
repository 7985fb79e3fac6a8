//! The nftables rules inside a network namespace that is not atoll's to manage (a container's
//! own): list them (`nft -j list ruleset` run inside it), and find the rule or chain policy
//! that would drop a given new flow on the input and output hooks.
//!
//! Only reads: nothing here changes a rule. The evaluation understands the matches a person
//! writes to block a port (protocol, ports, addresses, loopback interface, conntrack state);
//! a match it does not understand makes the rule "may match", never a certain verdict.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::NetError;
use crate::firewall::Proto;
use crate::netns::Netns;

const NFT: &str = "/usr/sbin/nft";

/// A new flow as the rules of one hook see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub proto: Proto,
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    /// None for ICMP.
    pub dport: Option<u16>,
    /// The interface the packet enters by (input hook) or leaves by (output hook).
    pub iif: Option<String>,
    pub oif: Option<String>,
}

/// Where a flow stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub hook: String,
    /// The rule's handle; None when the chain's policy drops.
    pub handle: Option<u64>,
    /// "drop" or "reject".
    pub verdict: String,
    /// False when the rule has a match this evaluation cannot decide (it may not apply).
    pub certain: bool,
}

/// `nft -j list ruleset` run inside `netns`: a child forked while the calling thread is in the
/// namespace inherits it (setns(2) acts per thread, and fork copies the caller's namespaces).
pub fn ruleset(netns: &Netns) -> Result<Value, NetError> {
    let out = run_in(netns, &["-j", "list", "ruleset"])?;
    serde_json::from_str(&out).map_err(|e| nft_err(netns, "list ruleset", format!("JSON: {e}")))
}

/// The text of one rule as `nft -a list chain` prints it, without its handle comment.
pub fn rule_text(netns: &Netns, b: &Blocker) -> Result<String, NetError> {
    let Some(handle) = b.handle else {
        return Ok(format!("policy {}", b.verdict));
    };
    let out = run_in(
        netns,
        &["-a", "list", "chain", &b.family, &b.table, &b.chain],
    )?;
    let tail = format!(" # handle {handle}");
    out.lines()
        .find_map(|l| l.trim().strip_suffix(&tail).map(str::to_string))
        .ok_or_else(|| nft_err(netns, "list chain", format!("no rule with handle {handle}")))
}

fn run_in(netns: &Netns, args: &[&str]) -> Result<String, NetError> {
    let what = "list";
    let child = netns
        .enter(|| {
            Command::new(NFT)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })?
        .map_err(|e| nft_err(netns, what, format!("spawn {NFT}: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| nft_err(netns, what, format!("wait for nft: {e}")))?;
    if !out.status.success() {
        return Err(nft_err(
            netns,
            what,
            format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| nft_err(netns, what, format!("not UTF-8: {e}")))
}

fn nft_err(netns: &Netns, what: &'static str, detail: String) -> NetError {
    NetError::Nft {
        what,
        table: format!("ruleset in {:?}", netns.path()),
        detail,
    }
}

/// The first rule (or policy) that drops `flow` on `hook` ("input" or "output") among the base
/// chains of the ip and inet tables, in priority order. A certain drop wins over a "may match"
/// one found earlier; an accept only ends its own chain (another table may still drop).
pub fn blocker(ruleset: &Value, hook: &str, flow: &Flow) -> Option<Blocker> {
    let items = ruleset["nftables"].as_array()?;
    let mut bases: Vec<&Value> = items
        .iter()
        .filter_map(|i| i.get("chain"))
        .filter(|c| c["hook"] == hook && matches!(c["family"].as_str(), Some("ip" | "inet")))
        .collect();
    bases.sort_by_key(|c| c["prio"].as_i64().unwrap_or(0));
    let mut maybe = None;
    for c in bases {
        let mut ev = Eval {
            items,
            flow,
            hook,
            maybe: None,
        };
        let fam = c["family"].as_str().unwrap_or_default();
        let table = c["table"].as_str().unwrap_or_default();
        let name = c["name"].as_str().unwrap_or_default();
        match ev.chain(fam, table, name, 0) {
            Step::Stop(Some(b)) => return Some(b),
            Step::Stop(None) => {}
            Step::Continue if c["policy"] == "drop" => {
                return Some(Blocker {
                    family: fam.into(),
                    table: table.into(),
                    chain: name.into(),
                    hook: hook.into(),
                    handle: None,
                    verdict: "drop".into(),
                    certain: true,
                });
            }
            Step::Continue => {}
        }
        maybe = maybe.or(ev.maybe);
    }
    maybe
}

enum Step {
    /// A verdict: Some(drop) or None (accept).
    Stop(Option<Blocker>),
    /// End of chain or `return`.
    Continue,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Maybe,
}

struct Eval<'a> {
    items: &'a [Value],
    flow: &'a Flow,
    hook: &'a str,
    maybe: Option<Blocker>,
}

impl Eval<'_> {
    fn chain(&mut self, fam: &str, table: &str, name: &str, depth: usize) -> Step {
        // nft refuses loops, and the kernel's jump stack is 16 deep (NFT_JUMP_STACK_SIZE).
        if depth > 16 {
            return Step::Continue;
        }
        let rules = self
            .items
            .iter()
            .filter_map(|i| i.get("rule"))
            .filter(|r| r["family"] == fam && r["table"] == table && r["chain"] == name);
        for r in rules {
            let exprs = r["expr"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let m = exprs
                .iter()
                .filter_map(|e| e.get("match"))
                .map(|m| self.matches(m))
                .fold(Tri::Yes, |acc, t| match (acc, t) {
                    (Tri::No, _) | (_, Tri::No) => Tri::No,
                    (Tri::Maybe, _) | (_, Tri::Maybe) => Tri::Maybe,
                    _ => Tri::Yes,
                });
            if m == Tri::No {
                continue;
            }
            let blocker = |verdict: &str| Blocker {
                family: fam.into(),
                table: table.into(),
                chain: name.into(),
                hook: self.hook.into(),
                handle: r["handle"].as_u64(),
                verdict: verdict.into(),
                certain: m == Tri::Yes,
            };
            for e in exprs {
                let drop = if e.get("drop").is_some() {
                    Some("drop")
                } else if e.get("reject").is_some() {
                    Some("reject")
                } else {
                    None
                };
                if let Some(v) = drop {
                    if m == Tri::Yes {
                        return Step::Stop(Some(blocker(v)));
                    }
                    self.maybe.get_or_insert_with(|| blocker(v));
                    break;
                }
                if m == Tri::Maybe {
                    continue;
                }
                if e.get("accept").is_some() {
                    return Step::Stop(None);
                }
                if e.get("return").is_some() {
                    return Step::Continue;
                }
                for kind in ["jump", "goto"] {
                    if let Some(t) = e[kind]["target"].as_str() {
                        let step = self.chain(fam, table, t, depth + 1);
                        if matches!(step, Step::Stop(_)) || kind == "goto" {
                            return step;
                        }
                    }
                }
            }
        }
        Step::Continue
    }

    fn matches(&self, m: &Value) -> Tri {
        let op = m["op"].as_str().unwrap_or("==");
        let negate = match op {
            "==" | "in" => false,
            "!=" => true,
            _ => return Tri::Maybe,
        };
        let t = self
            .value_of(&m["left"])
            .map_or(Tri::Maybe, |v| contains(&m["right"], &v));
        match (t, negate) {
            (Tri::Yes, true) => Tri::No,
            (Tri::No, true) => Tri::Yes,
            (t, _) => t,
        }
    }

    /// What the flow's packet holds for a match's left side; None: this evaluation cannot say.
    fn value_of(&self, left: &Value) -> Option<Field> {
        let f = self.flow;
        let proto = match f.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        };
        if let Some(p) = left.get("payload") {
            let (l4, field) = (p["protocol"].as_str()?, p["field"].as_str()?);
            return match (l4, field) {
                ("ip", "saddr") => Some(Field::Addr(f.saddr)),
                ("ip", "daddr") => Some(Field::Addr(f.daddr)),
                ("ip", "protocol") => Some(Field::Name(proto.into())),
                ("tcp" | "udp", "dport") if l4 == proto => f.dport.map(Field::Num),
                ("th", "dport") => f.dport.map(Field::Num),
                // A transport header match on another protocol never matches.
                ("tcp" | "udp" | "icmp", _) if l4 != proto => Some(Field::Never),
                _ => None,
            };
        }
        if let Some(k) = left["meta"]["key"].as_str() {
            return match k {
                "l4proto" => Some(Field::Name(proto.into())),
                "protocol" => Some(Field::Name("ip".into())),
                "nfproto" => Some(Field::Name("ipv4".into())),
                "iifname" => f.iif.clone().map(Field::Name),
                "oifname" => f.oif.clone().map(Field::Name),
                _ => None,
            };
        }
        if left["ct"]["key"] == "state" {
            return Some(Field::Name("new".into()));
        }
        None
    }
}

enum Field {
    Addr(Ipv4Addr),
    Num(u16),
    Name(String),
    /// The packet has no such header: the match is false whatever its right side.
    Never,
}

/// Whether `right` (a value, a list, a set, a range or a prefix) holds `v`.
fn contains(right: &Value, v: &Field) -> Tri {
    if matches!(v, Field::Never) {
        return Tri::No;
    }
    if let Some(list) = right.as_array().or_else(|| right["set"].as_array()) {
        let mut any = Tri::No;
        for r in list {
            match contains(r, v) {
                Tri::Yes => return Tri::Yes,
                Tri::Maybe => any = Tri::Maybe,
                Tri::No => {}
            }
        }
        return any;
    }
    let yes = |b: bool| if b { Tri::Yes } else { Tri::No };
    match v {
        Field::Num(n) => {
            if let Some(r) = right.get("range").and_then(Value::as_array) {
                return match (
                    r.first().and_then(Value::as_u64),
                    r.get(1).and_then(Value::as_u64),
                ) {
                    (Some(lo), Some(hi)) => yes((lo..=hi).contains(&u64::from(*n))),
                    _ => Tri::Maybe,
                };
            }
            right
                .as_u64()
                .map_or(Tri::Maybe, |r| yes(r == u64::from(*n)))
        }
        Field::Addr(a) => {
            if let Some(p) = right.get("prefix") {
                let (Some(net), Some(len)) = (
                    p["addr"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()),
                    p["len"].as_u64(),
                ) else {
                    return Tri::Maybe;
                };
                let mask = u32::MAX.checked_shl(32 - len.min(32) as u32).unwrap_or(0);
                return yes(u32::from(*a) & mask == u32::from(net) & mask);
            }
            right
                .as_str()
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
                .map_or(Tri::Maybe, |r| yes(r == *a))
        }
        Field::Name(n) => right.as_str().map_or(Tri::Maybe, |r| yes(r == n)),
        Field::Never => Tri::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list ruleset` of a table with the usual ways to block a port.
    const RULESET: &str = r#"{"nftables": [{"metainfo": {}},
    {"table": {"family": "inet", "name": "t", "handle": 1}},
    {"chain": {"family": "inet", "table": "t", "name": "in", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
    {"chain": {"family": "inet", "table": "t", "name": "sub", "handle": 2}},
    {"chain": {"family": "inet", "table": "t", "name": "out", "handle": 3, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}},
    {"rule": {"family": "inet", "table": "t", "chain": "in", "handle": 4, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]}},
    {"rule": {"family": "inet", "table": "t", "chain": "in", "handle": 5, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 5555}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
    {"rule": {"family": "inet", "table": "t", "chain": "in", "handle": 7, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [80, 443, {"range": [1000, 2000]}]}}}, {"reject": {"type": "tcp reset"}}]}},
    {"rule": {"family": "inet", "table": "t", "chain": "in", "handle": 8, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}}, {"drop": null}]}},
    {"rule": {"family": "inet", "table": "t", "chain": "in", "handle": 10, "expr": [{"jump": {"target": "sub"}}]}},
    {"rule": {"family": "inet", "table": "t", "chain": "sub", "handle": 11, "expr": [{"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.0.0.1"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 9}}, {"drop": null}]}},
    {"rule": {"family": "inet", "table": "t", "chain": "out", "handle": 12, "expr": [{"match": {"op": "==", "left": {"socket": {"key": "transparent"}}, "right": 1}}, {"drop": null}]}}
    ]}"#;

    fn flow(proto: Proto, dport: u16) -> Flow {
        Flow {
            proto,
            saddr: Ipv4Addr::LOCALHOST,
            daddr: Ipv4Addr::LOCALHOST,
            dport: Some(dport),
            iif: Some("lo".into()),
            oif: Some("lo".into()),
        }
    }

    fn handle(hook: &str, f: &Flow) -> Option<(Option<u64>, bool)> {
        let v: Value = serde_json::from_str(RULESET).unwrap();
        blocker(&v, hook, f).map(|b| (b.handle, b.certain))
    }

    #[test]
    fn the_rule_that_drops_a_port_is_named() {
        assert_eq!(
            handle("input", &flow(Proto::Tcp, 5555)),
            Some((Some(5), true))
        );
        assert_eq!(
            handle("input", &flow(Proto::Tcp, 1500)),
            Some((Some(7), true))
        );
        assert_eq!(
            handle("input", &flow(Proto::Udp, 53)),
            Some((Some(8), true))
        );
        // Through the jump, and a negated address.
        assert_eq!(
            handle("input", &flow(Proto::Tcp, 9)),
            Some((Some(11), true))
        );
        assert_eq!(handle("input", &flow(Proto::Tcp, 8080)), None);
        assert_eq!(handle("input", &flow(Proto::Udp, 5555)), None);
    }

    #[test]
    fn a_match_not_understood_is_only_a_may_match() {
        assert_eq!(
            handle("output", &flow(Proto::Tcp, 80)),
            Some((Some(12), false))
        );
    }

    #[test]
    fn a_policy_drop_is_named_with_its_chain() {
        let v: Value = serde_json::from_str(
            r#"{"nftables": [{"chain": {"family": "ip", "table": "f", "name": "OUTPUT", "hook": "output", "prio": 0, "policy": "drop"}}]}"#,
        )
        .unwrap();
        let b = blocker(&v, "output", &flow(Proto::Tcp, 80)).unwrap();
        assert_eq!(
            (b.chain.as_str(), b.handle, b.certain),
            ("OUTPUT", None, true)
        );
        assert_eq!(blocker(&v, "input", &flow(Proto::Tcp, 80)), None);
    }
}

//! `atoll graph`: a project as a picture. [`build`] turns a plan and what was observed live (rule
//! counters, container states, guard alerts) into a [`Graph`], plain data unit-tested without
//! root; [`dot`] writes it as Graphviz DOT (laid out by `dot -Tsvg` where Graphviz is installed)
//! and [`svg`] lays it out and draws it without Graphviz. Only [`observe`] touches the system:
//! one `nft` process for the counters, the runtime's state files, the project's alert log.

pub mod dot;
pub mod svg;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use atoll_net::firewall::{self, Counter};
use atoll_runtime::{container, Store};

use crate::file::Proto;
use crate::plan::{AllowPlan, Plan};

/// Prefix of the judge chain's per-interface drop rules: `drop <host_if>` counts what the
/// default deny dropped that came in on that host-side link end.
pub const LINK_DROP_PREFIX: &str = "drop ";

/// One project, as drawn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    pub project: String,
    pub islands: Vec<Node>,
    pub links: Vec<Edge>,
    pub flows: Vec<Flow>,
    /// Drops of the catch-all rule (packets no per-link rule counted), when counters were read.
    pub other_drops: Option<u64>,
    /// What could not be observed (shown under the title).
    pub notes: Vec<String>,
}

/// An island.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    /// The container's state ("running", "stopped", ...; "absent" when there is none).
    pub status: String,
    pub uid: u32,
    pub host_uid: u32,
    pub caps: Vec<String>,
    pub guard: String,
    /// Devices handed to the island. Islands get none today; the field keeps the box's row.
    pub devices: Vec<String>,
    /// Lines of the guard's alert log about this island's container.
    pub alerts: u64,
}

/// A link: a routed veth pair through the host, one address at each end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub a: usize,
    pub b: usize,
    pub subnet: String,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
    pub host_a: String,
    pub host_b: String,
    /// Packets the border guard dropped that came in on either host end (None: not read).
    pub drops: Option<u64>,
}

/// An allowed flow direction (one `[[allow]]`, or one of the two of `both = true`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flow {
    /// The rule id (the nft rule's comment).
    pub id: String,
    pub from: usize,
    pub to: usize,
    pub link: usize,
    /// "tcp/5432", "udp/53,5353", "icmp", "tcp/any".
    pub rule: String,
    /// New connections the rule let through (None: not read).
    pub packets: Option<u64>,
}

/// What was seen on the system, apart from the plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// The project table's counters; None when they could not be read.
    pub counters: Option<Vec<Counter>>,
    /// Container status per island, in plan order ("absent" when there is none).
    pub states: Vec<String>,
    /// Alert lines per container id.
    pub alerts: BTreeMap<String, u64>,
    pub notes: Vec<String>,
}

impl Edge {
    /// "db 10.77.0.1", "backup 10.77.0.2", "drops 3": the link's label, one line each.
    pub fn label_lines(&self, g: &Graph) -> Vec<String> {
        let drops = match self.drops {
            Some(n) => format!("drops {n}"),
            None => "drops ?".into(),
        };
        vec![
            format!("{} {}", g.islands[self.a].name, self.addr_a),
            format!("{} {}", g.islands[self.b].name, self.addr_b),
            drops,
        ]
    }
}

impl Flow {
    /// "tcp/5432 · 12 pkts", "tcp/80 · 1 pkt".
    pub fn label(&self) -> String {
        match self.packets {
            Some(1) => format!("{} · 1 pkt", self.rule),
            Some(n) => format!("{} · {n} pkts", self.rule),
            None => format!("{} · ? pkts", self.rule),
        }
    }
}

impl Node {
    /// The box's lines below the name.
    pub fn detail_lines(&self) -> Vec<String> {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut out = vec![
            format!(
                "{} · uid {} (host {})",
                self.status, self.uid, self.host_uid
            ),
            format!("caps: {}", list(&self.caps)),
            format!("guard: {}", self.guard),
            format!("devices: {}", list(&self.devices)),
        ];
        if self.alerts > 0 {
            out.push(alert_line(self.alerts));
        }
        out
    }
}

fn alert_line(n: u64) -> String {
    format!("⚠ {n} guard alert{}", if n == 1 { "" } else { "s" })
}

/// "tcp/5432", "tcp/8000-8080,9000", "icmp", "udp/any".
fn rule_text(a: &AllowPlan) -> String {
    let proto = match a.proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => return "icmp".into(),
    };
    if a.ports.is_empty() {
        return format!("{proto}/any");
    }
    format!(
        "{proto}/{}",
        atoll_net::firewall::port_ranges(&a.ports).join(",")
    )
}

/// The graph of `plan` with what `live` saw.
pub fn build(plan: &Plan, live: &Live) -> Graph {
    let count = |rule: &str| -> Option<u64> {
        live.counters.as_ref().map(|cs| {
            cs.iter()
                .filter(|c| c.rule == rule)
                .map(|c| c.packets)
                .sum()
        })
    };
    let islands = plan
        .islands
        .iter()
        .enumerate()
        .map(|(n, i)| Node {
            name: i.spec.name.clone(),
            status: live
                .states
                .get(n)
                .cloned()
                .unwrap_or_else(|| "absent".into()),
            uid: i.spec.uid,
            host_uid: crate::share::host_uid(i),
            caps: i.spec.caps.clone(),
            guard: i.spec.guard.as_str().into(),
            devices: Vec::new(),
            alerts: live.alerts.get(&i.container_id).copied().unwrap_or(0),
        })
        .collect();
    let links = plan
        .links
        .iter()
        .map(|l| Edge {
            a: l.a,
            b: l.b,
            subnet: l.subnet.to_string(),
            addr_a: l.addr_a,
            addr_b: l.addr_b,
            host_a: l.host_a.clone(),
            host_b: l.host_b.clone(),
            drops: count(&format!("{LINK_DROP_PREFIX}{}", l.host_a))
                .zip(count(&format!("{LINK_DROP_PREFIX}{}", l.host_b)))
                .map(|(x, y)| x + y),
        })
        .collect();
    let flows = plan
        .allows
        .iter()
        .map(|a| Flow {
            id: a.id.clone(),
            from: a.from,
            to: a.to,
            link: a.link,
            rule: rule_text(a),
            packets: count(&a.id),
        })
        .collect();
    Graph {
        project: plan.name.clone(),
        islands,
        links,
        flows,
        other_drops: count(firewall::DROP_RULE),
        notes: live.notes.clone(),
    }
}

/// Read what is live for `plan`: the border guard's counters (one `nft` process), each island's
/// container state, and the project's guard alert log.
pub fn observe(plan: &Plan) -> Live {
    let mut notes = Vec::new();
    let counters = match firewall::counters(&plan.table) {
        Ok(c) => Some(c),
        Err(e) => {
            notes.push(format!("border guard counters not read: {e}"));
            None
        }
    };
    let store = Store::new(&plan.runtime_root);
    let states = plan
        .islands
        .iter()
        .map(|i| {
            container::state(&store, &i.container_id)
                .ok()
                .and_then(|s| s.get("status").and_then(|v| v.as_str().map(str::to_string)))
                .unwrap_or_else(|| "absent".into())
        })
        .collect();
    let log = crate::guard::alerts(plan);
    let alerts = match std::fs::read_to_string(&log) {
        Ok(text) => count_alerts(&text),
        // No alert yet (the guard creates the log on its first line), or no guard at all.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => {
            notes.push(format!("guard alerts not read: {}: {e}", log.display()));
            BTreeMap::new()
        }
    };
    Live {
        counters,
        states,
        alerts,
        notes,
    }
}

/// The graph of a plan that is not up (an islands file previewed): no counters, no states.
pub fn offline(plan: &Plan) -> Graph {
    build(
        plan,
        &Live {
            counters: Some(Vec::new()),
            states: vec!["not up".into(); plan.islands.len()],
            alerts: BTreeMap::new(),
            notes: vec!["not up: a preview of the file (no live counters)".into()],
        },
    )
}

/// Alert lines per tenant (container id) of a guard alert log.
pub fn count_alerts(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for a in atoll_guard::parse_lines(text) {
        *m.entry(a.tenant).or_insert(0) += 1;
    }
    m
}

/// XML text escaping, for SVG and Graphviz HTML-like labels.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    /// The demo file's plan (4 islands, 3 links, 2 allows).
    pub(crate) fn demo_plan() -> Plan {
        let f = crate::file::parse(Path::new("demo.toml"), crate::DEMO).unwrap();
        crate::plan::build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap()
    }

    /// A generated plan: `n` islands, a chain of links plus a few cross links, an allow on each.
    pub(crate) fn generated_plan(n: usize) -> Plan {
        let mut t = String::from("name = \"gen\"\nsubnet = \"10.200.0.0/16\"\n");
        for i in 0..n {
            t += &format!("[[island]]\nname = \"island{i}\"\ncommand = [\"/bin/sh\"]\n");
        }
        let mut pairs: Vec<(usize, usize)> = (1..n).map(|i| (i - 1, i)).collect();
        pairs.extend((0..n.saturating_sub(7)).step_by(7).map(|i| (i, i + 7)));
        for (a, b) in pairs {
            t += &format!("[[link]]\nbetween = [\"island{a}\", \"island{b}\"]\n");
            t += &format!(
                "[[allow]]\nfrom = \"island{a}\"\nto = \"island{b}\"\nproto = \"tcp\"\nports = [{}]\n",
                5000 + b
            );
        }
        let f = crate::file::parse(Path::new("gen.toml"), &t).unwrap();
        crate::plan::build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap()
    }

    fn counter(rule: &str, packets: u64) -> Counter {
        Counter {
            rule: rule.into(),
            packets,
            bytes: packets * 60,
        }
    }

    #[test]
    fn counters_alerts_and_states_land_on_their_island_link_and_flow() {
        let plan = demo_plan();
        // Made up: the per-link drop rules ("drop <host_if>") of db-intruder (link 1, both
        // ends) and backup-web (link 2, one end), the catch-all, one allow.
        let live = Live {
            counters: Some(vec![
                counter("allow:backup->db:tcp/5432", 12),
                counter("drop at0-1a", 2),
                counter("drop at0-1b", 5),
                counter("drop at0-2b", 1),
                counter("drop", 4),
                counter("host-input-drop", 9),
            ]),
            states: vec!["running".into(); 4],
            alerts: count_alerts(concat!(
                r#"{"time":"t","rule":"r","tenant":"demo.intruder","pid":1,"uid":0,"syscall":"setns","decision":"deny"}"#,
                "\nnot json\n",
                r#"{"time":"t","rule":"r","tenant":"demo.intruder","pid":1,"uid":0,"syscall":"unshare","decision":"deny"}"#,
                "\n",
                r#"{"time":"t","rule":"r","tenant":"other.db","pid":1,"uid":0,"syscall":"setns","decision":"deny"}"#,
            )),
            notes: vec![],
        };
        let g = build(&plan, &live);
        let names: Vec<&str> = g.islands.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["db", "backup", "web", "intruder"]);
        let alerts: Vec<u64> = g.islands.iter().map(|i| i.alerts).collect();
        assert_eq!(alerts, [0, 0, 0, 2], "alerts are counted per container id");
        let drops: Vec<Option<u64>> = g.links.iter().map(|l| l.drops).collect();
        assert_eq!(
            drops,
            [Some(0), Some(7), Some(1)],
            "both host ends of a link"
        );
        assert_eq!(g.other_drops, Some(4));
        assert_eq!(g.flows[0].rule, "tcp/5432");
        assert_eq!(g.flows[0].label(), "tcp/5432 · 12 pkts");
        assert_eq!(g.flows[1].label(), "tcp/80 · 0 pkts");
        let one = Flow {
            packets: Some(1),
            ..g.flows[1].clone()
        };
        assert_eq!(one.label(), "tcp/80 · 1 pkt");
        assert_eq!((g.flows[0].from, g.flows[0].to), (1, 0));
        let web = &g.islands[2];
        assert_eq!(
            web.detail_lines(),
            [
                "running · uid 1000 (host 1000132072)",
                "caps: CAP_NET_BIND_SERVICE",
                "guard: enforce",
                "devices: none"
            ]
        );
        assert_eq!(g.islands[3].detail_lines()[4], "⚠ 2 guard alerts");
        assert_eq!(
            g.links[0].label_lines(&g),
            [
                format!("db {}", plan.links[0].addr_a),
                format!("backup {}", plan.links[0].addr_b),
                "drops 0".into()
            ]
        );
    }

    #[test]
    fn unread_counters_show_as_unknown_not_zero() {
        let plan = demo_plan();
        let g = build(
            &plan,
            &Live {
                counters: None,
                notes: vec!["border guard counters not read: no table".into()],
                ..Live::default()
            },
        );
        assert_eq!(g.links[0].drops, None);
        assert_eq!(g.flows[0].label(), "tcp/5432 · ? pkts");
        assert_eq!(g.islands[0].status, "absent");
        assert_eq!(g.notes.len(), 1);
    }

    #[test]
    fn rule_text_names_proto_and_ports() {
        let mut a = demo_plan().allows[0].clone();
        a.ports = vec![(8000, 8080), (9000, 9000)];
        assert_eq!(rule_text(&a), "tcp/8000-8080,9000");
        a.ports.clear();
        assert_eq!(rule_text(&a), "tcp/any");
        a.proto = Proto::Icmp;
        assert_eq!(rule_text(&a), "icmp");
    }
}

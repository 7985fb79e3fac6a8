//! Layer 5, peer: in the peer's netns (an island's pinned one; for a container asked about its
//! own address, the container's), is anything listening on the port: a TCP socket in LISTEN or
//! a bound UDP socket, from the kernel's socket diagnostics (sock_diag(7)); and does a probe
//! from the peer's own netns to its own address and port get an answer.
//!
//! Evidence: the listening sockets (address, port, owner uid), the guard layer's probe, the
//! peer's own probe. Fixes: the island's command that should listen (and where its log is), or
//! the address to bind when it listens on another one.

use std::net::{IpAddr, Ipv4Addr};

use atoll_net::netns::Netns;
use atoll_net::probe::{self, Outcome};
use atoll_net::sockdiag::{self, Listener};

use crate::guard::{dest, net_proto, PROBE_TIMEOUT};
use crate::report::{Layer, LayerReport};
use crate::target::Proto;
use crate::Ctx;

pub fn check(c: &Ctx) -> LayerReport {
    let Some(r) = c.target else {
        return LayerReport::not_checked(Layer::Peer, "no --to");
    };
    if r.outside {
        return LayerReport::not_checked(
            Layer::Peer,
            "outside: doctor sends nothing off the machine",
        );
    }
    let Some(addr) = r.addr else {
        return LayerReport::not_checked(Layer::Peer, "no link to the peer");
    };
    // The peer: an island of the project, or the container itself (its own address).
    let (name, netns, fix_hint) = match &r.peer {
        Some(p) => {
            let Some(i) = &p.island else {
                return LayerReport::not_checked(Layer::Peer, "no island");
            };
            let island = i.island();
            if let Some(rm) = &island.remote {
                // Its sockets are the other host's to list; the guard layer's probe crossed the
                // wire to it.
                let probe = c.probe.get().map(|o| {
                    format!(
                        "the guard layer's probe to {}: {o}",
                        dest(addr, r.target.proto, r.target.port)
                    )
                });
                return LayerReport::not_checked(
                    Layer::Peer,
                    format!(
                        "{} lives on another host (via {} on {}): run `atoll doctor {}/{}` there",
                        island.spec.name, rm.via, rm.dev, i.plan.name, island.spec.name
                    ),
                )
                .with_evidence(probe.into_iter().collect());
            }
            let hint = format!(
                "its command in {} ([[island]] name = \"{}\": {:?}) must listen there; \
                 see what it says: atoll island logs {}/{}",
                i.plan.file.display(),
                island.spec.name,
                island.spec.command,
                i.plan.name,
                island.spec.name
            );
            (island.spec.name.clone(), island.netns.clone(), hint)
        }
        None => {
            let s = c.subject;
            let Some(ns) = s.netns.clone().filter(|_| s.own_netns) else {
                return LayerReport::not_checked(Layer::Peer, "no netns of its own");
            };
            let hint = format!(
                "start the service in container {} (its log: where its manager keeps the \
                 container's output, e.g. podman logs {})",
                s.container_id, s.container_id
            );
            (s.name.clone(), ns, hint)
        }
    };
    let proto = r.target.proto;
    let mut evidence = Vec::new();
    if let Some(o) = c.probe.get() {
        evidence.push(format!(
            "the guard layer's probe to {}: {o}",
            dest(addr, proto, r.target.port)
        ));
    }
    let ns = match Netns::open(&netns) {
        Ok(n) => n,
        Err(e) => {
            return LayerReport::fault(
                Layer::Peer,
                format!("{name}'s network namespace cannot be opened"),
                fix_hint,
            )
            .with_evidence(vec![e.to_string()])
        }
    };
    if proto == Proto::Icmp {
        return echo(&ns, &name, addr, evidence);
    }
    let Some(port) = r.target.port else {
        return LayerReport::not_checked(Layer::Peer, "no port given").with_evidence(evidence);
    };
    let what = format!("{}/{port}", proto.as_str());
    let all = match sockdiag::listeners(&ns, net_proto(proto)) {
        Ok(v) => v,
        Err(e) => {
            evidence.push(e.to_string());
            return LayerReport::not_checked(Layer::Peer, "its sockets could not be listed")
                .with_evidence(evidence);
        }
    };
    let on_port: Vec<&Listener> = all.iter().filter(|l| l.port == port).collect();
    for l in &on_port {
        evidence.push(format!(
            "{} socket on {} port {} (uid {}, inode {})",
            proto.as_str(),
            l.addr,
            l.port,
            l.uid,
            l.inode
        ));
    }
    if on_port.is_empty() {
        return LayerReport::fault(
            Layer::Peer,
            format!("nothing listens on {what} in {name}"),
            fix_hint,
        )
        .with_evidence(evidence);
    }
    if !on_port.iter().any(|l| sockdiag::takes(l, IpAddr::V4(addr))) {
        let at: Vec<String> = on_port.iter().map(|l| l.addr.to_string()).collect();
        return LayerReport::fault(
            Layer::Peer,
            format!(
                "{what} in {name} listens only on {}, not on {addr}",
                at.join(", ")
            ),
            format!("listen on 0.0.0.0:{port} or {addr}:{port}; {fix_hint}"),
        )
        .with_evidence(evidence);
    }
    let own = probe::probe(&ns, net_proto(proto), addr, port, PROBE_TIMEOUT);
    let own = match own {
        Ok(o) => o,
        Err(e) => {
            evidence.push(format!("probe: {e}"));
            return LayerReport::not_checked(Layer::Peer, "the probe could not be sent")
                .with_evidence(evidence);
        }
    };
    evidence.push(format!(
        "probe from {name}'s own netns to {}: {own}",
        dest(addr, proto, Some(port))
    ));
    match (proto, own) {
        (_, Outcome::Answered) | (Proto::Udp, Outcome::Silent) => LayerReport::ok(
            Layer::Peer,
            format!("{name} listens on {what} and takes a probe from its own netns"),
        )
        .with_evidence(evidence),
        _ => LayerReport::fault(
            Layer::Peer,
            format!("{name} listens on {what} but a probe from its own netns got: {own}"),
            format!(
                "the service is stuck or overloaded (a full accept queue drops SYNs); {fix_hint}"
            ),
        )
        .with_evidence(evidence),
    }
}

/// ICMP: the peer's kernel answers echo requests itself (unless icmp_echo_ignore_all is set).
fn echo(ns: &Netns, name: &str, addr: Ipv4Addr, mut evidence: Vec<String>) -> LayerReport {
    match probe::probe(ns, atoll_net::firewall::Proto::Icmp, addr, 0, PROBE_TIMEOUT) {
        Ok(Outcome::Answered) => {
            evidence.push(format!("echo from {name}'s own netns to {addr}: answered"));
            LayerReport::ok(Layer::Peer, format!("{name} answers ICMP echo"))
                .with_evidence(evidence)
        }
        Ok(o) => {
            evidence.push(format!("echo from {name}'s own netns to {addr}: {o}"));
            LayerReport::fault(
                Layer::Peer,
                format!("{name} does not answer ICMP echo at {addr}"),
                format!(
                    "check that {name}'s netns does not ignore echo requests: \
                     nsenter --net={} sysctl net.ipv4.icmp_echo_ignore_all",
                    ns.path().display()
                ),
            )
            .with_evidence(evidence)
        }
        Err(e) => {
            evidence.push(format!("probe: {e}"));
            LayerReport::not_checked(Layer::Peer, "the probe could not be sent")
                .with_evidence(evidence)
        }
    }
}

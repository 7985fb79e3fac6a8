//! atoll doctor: with namespaces a failure has an address. Walk the layers atoll built for a
//! tenant, in the order a careful engineer would (process, files, network, border guard, peer),
//! stop at the first at fault, and say why, with the evidence and one concrete fix.
//!
//! Doctor only reads, and probes only between namespaces atoll made (or a container's own):
//! it never changes a link, a rule or a file, and never sends a packet off the machine.

mod error;
pub mod files;
pub mod guard;
pub mod network;
pub mod peer;
pub mod process;
pub mod report;
pub mod subject;
pub mod target;

use std::net::Ipv4Addr;

pub use error::DoctorError;
pub use report::{Layer, LayerReport, Report, Verdict};
pub use subject::{find, IslandRef, Subject};
pub use target::{Peer, Proto, Target};

/// The `--to` question resolved against the subject's project.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub target: Target,
    /// The address a packet goes to: the peer's address on the link to the subject, or the
    /// address asked for. None: the peer is an island with no link to the subject.
    pub addr: Option<Ipv4Addr>,
    /// The peer, when it is an island of the same project.
    pub peer: Option<Subject>,
    /// Index in `plan.links` of the link between subject and peer.
    pub link: Option<usize>,
    /// The address is not one of the namespaces atoll made (nor the container's own): doctor
    /// follows the way there but sends nothing ("not checked (outside)").
    pub outside: bool,
}

/// Everything a layer may look at.
pub struct Ctx<'a> {
    pub subject: &'a Subject,
    pub target: Option<&'a Resolved>,
    pub dns: Option<&'a str>,
    /// What the guard layer's probe (from the subject's netns to the target) got back, for the
    /// peer layer's evidence: one probe per diagnosis.
    pub probe: std::cell::OnceCell<atoll_net::probe::Outcome>,
}

/// Diagnose `subject`, optionally towards `target` and for the name `dns`.
pub fn diagnose(
    subject: &Subject,
    target: Option<&Target>,
    dns: Option<&str>,
) -> Result<Report, DoctorError> {
    let mut resolved = target.map(|t| resolve(subject, t)).transpose()?;
    let mut report = Report {
        subject: subject.name.clone(),
        target: target.map(|t| describe(t, resolved.as_ref())),
        dns: dns.map(str::to_string),
        layers: Vec::with_capacity(Layer::ALL.len()),
    };
    // An island that lives on another host has nothing here to look at but routes and rules:
    // its process, files and netns are that host's to diagnose.
    if let Some(r) = subject
        .island
        .as_ref()
        .and_then(|i| i.island().remote.as_ref())
    {
        let why = format!(
            "{} lives on another host (via {} on {}): run `atoll doctor {}` there",
            subject.name, r.via, r.dev, subject.name
        );
        for l in Layer::ALL {
            report.layers.push(LayerReport::not_checked(l, why.clone()));
        }
        return Ok(report);
    }
    // Alerts decide the verdict only when the question is the tenant itself.
    report
        .layers
        .push(process::check(subject, target.is_none() && dns.is_none()));
    if stopped(&report) {
        return Ok(finish(report));
    }

    let files = files::check(&Ctx {
        subject,
        target: resolved.as_ref(),
        dns,
        probe: Default::default(),
    });
    report.layers.push(files.report);
    if stopped(&report) {
        return Ok(finish(report));
    }
    // A name that only a DNS server can answer: follow the way to that server.
    if resolved.is_none() {
        if let Some(ns) = files.nameserver {
            let t = Target {
                peer: Peer::Address(ns),
                port: Some(53),
                proto: Proto::Udp,
            };
            report.target = Some(format!("nameserver {ns} udp/53"));
            resolved = Some(resolve(subject, &t)?);
        }
    }
    let c = Ctx {
        subject,
        target: resolved.as_ref(),
        dns,
        probe: Default::default(),
    };

    report.layers.push(network::check(&c));
    if stopped(&report) {
        return Ok(finish(report));
    }
    report.layers.push(guard::check(&c));
    if stopped(&report) {
        return Ok(finish(report));
    }
    report.layers.push(peer_layer(&c));
    Ok(finish(report))
}

/// The peer layer starts with the peer's own process: a peer that is not running (OOM-killed,
/// exited) answers nothing, whatever the path.
fn peer_layer(c: &Ctx) -> LayerReport {
    // A peer on another host has no process here; the probe still crosses the wire to it.
    let here = |p: &Subject| {
        p.island
            .as_ref()
            .is_none_or(|i| i.island().remote.is_none())
    };
    if let Some(p) = c.target.and_then(|t| t.peer.as_ref()).filter(|p| here(p)) {
        let proc = process::check(p, false);
        if proc.verdict == Verdict::Fault {
            return LayerReport {
                layer: Layer::Peer,
                verdict: Verdict::Fault,
                summary: format!("{}: {}", p.name, proc.summary),
                evidence: proc.evidence,
                fix: proc.fix,
            };
        }
    }
    peer::check(c)
}

fn stopped(r: &Report) -> bool {
    r.fault().is_some()
}

/// Layers after the first fault are listed as not checked, so every report has all five.
fn finish(mut r: Report) -> Report {
    let seen = r.layers.len();
    for l in &Layer::ALL[seen..] {
        r.layers
            .push(LayerReport::not_checked(*l, "an earlier layer is at fault"));
    }
    r
}

fn describe(t: &Target, r: Option<&Resolved>) -> String {
    match r.and_then(|r| r.addr) {
        Some(a) if !matches!(t.peer, Peer::Address(_)) => format!("{t} ({a})"),
        _ => t.to_string(),
    }
}

/// Where `target` is for `subject`: an island of its project (and the link between them), an
/// address atoll made, or outside.
fn resolve(subject: &Subject, t: &Target) -> Result<Resolved, DoctorError> {
    let Some(me) = &subject.island else {
        let Peer::Address(addr) = t.peer else {
            return Err(DoctorError::Usage(format!(
                "--to {t}: a container has no islands file; give ADDRESS:PORT"
            )));
        };
        return Ok(Resolved {
            target: t.clone(),
            addr: Some(addr),
            peer: None,
            link: None,
            outside: !network::is_own_address(subject, addr),
        });
    };
    let plan = &me.plan;
    let peer_index = match &t.peer {
        Peer::Island(name) => Some(
            plan.islands
                .iter()
                .position(|i| &i.spec.name == name)
                .ok_or_else(|| {
                    DoctorError::NotFound(format!(
                        "--to {t}: no island {name:?} in project {}",
                        plan.name
                    ))
                })?,
        ),
        Peer::Address(a) => plan.links.iter().find_map(|l| {
            (l.addr_a == *a)
                .then_some(l.a)
                .or((l.addr_b == *a).then_some(l.b))
        }),
    };
    let Some(pi) = peer_index else {
        let Peer::Address(addr) = t.peer else {
            unreachable!("an island name was found or returned an error")
        };
        return Ok(Resolved {
            target: t.clone(),
            addr: Some(addr),
            peer: None,
            link: None,
            outside: true,
        });
    };
    let link = plan
        .links
        .iter()
        .position(|l| (l.a == me.index && l.b == pi) || (l.b == me.index && l.a == pi));
    let addr = match (&t.peer, link) {
        (Peer::Address(a), _) => Some(*a),
        (_, Some(li)) => {
            let l = &plan.links[li];
            Some(if l.a == pi { l.addr_a } else { l.addr_b })
        }
        (_, None) => None,
    };
    Ok(Resolved {
        target: t.clone(),
        addr,
        peer: Some(Subject::island(plan, pi)),
        link,
        outside: false,
    })
}

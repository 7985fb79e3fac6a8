//! `atoll doctor`, layer 3 (network), on real islands: each test breaks one thing the way an
//! operator or a stray script could (`lo` down, a host veth down, a route or a neighbour entry
//! removed, a missing `[[link]]`), asserts that doctor names the network layer with the right
//! interface and command, then runs that command and asserts the layer is ok again: a fix that
//! does not repair is a wrong fix.

mod common;

use std::process::Command;

use common::project::{Project, BB};
use common::{can_run, decode, Bundle};
use serde_json::Value;

/// a and b linked, a may reach b on tcp/5432 where b listens; c is linked to nobody.
fn three_islands() -> Project {
    Project::started(
        "dnet",
        &format!(
            r#"[[island]]
name = "a"
command = ["{BB}", "sleep", "1000"]
[[island]]
name = "b"
command = ["{BB}", "nc", "-ll", "-p", "5432", "-e", "{BB}", "echo", "b"]
[[island]]
name = "c"
command = ["{BB}", "sleep", "1000"]
[[link]]
between = ["a", "b"]
[[allow]]
from = "a"
to = "b"
proto = "tcp"
ports = [5432]
"#
        ),
    )
}

/// The a–b link of plan.json (a is its `a` side: the file names a first).
fn link(p: &Project) -> Value {
    p.plan().expect("plan")["links"][0].clone()
}

/// `atoll doctor PROJECT/from --to to --json`: exit code and the report.
fn ask(p: &Project, from: &str, to: &str) -> (i32, Value) {
    let (code, v, _) = p.doctor(from, &["--to", to]);
    (code, v)
}

fn sh(cmd: &str) {
    let (code, out, err) = decode(Command::new("sh").args(["-c", cmd]).output().unwrap());
    assert_eq!(code, 0, "{cmd}: {out}{err}");
}

/// Doctor exits 1, blames layer 3 and no layer before it, and its fix holds every `want`.
/// Returns the fix's first line: the command itself (the next line offers the rebuild).
fn network_fault(code: i32, v: &Value, want: &[&str]) -> String {
    let layers = v["layers"].as_array().expect("layers");
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(layers[2]["layer"], "network", "{v:#}");
    assert_eq!(layers[2]["verdict"], "fault", "{v:#}");
    for l in &layers[..2] {
        assert_ne!(l["verdict"], "fault", "an earlier layer: {v:#}");
    }
    let fix = layers[2]["fix"].as_str().expect("a fault has a fix");
    for w in want {
        assert!(fix.contains(w), "fix lacks {w:?}: {v:#}");
    }
    assert!(
        fix.contains(&format!(
            "atoll down {}",
            v["subject"].as_str().unwrap().split('/').next().unwrap()
        )),
        "an island's fix offers the rebuild: {v:#}"
    );
    fix.lines().next().unwrap().to_string()
}

fn network_ok(p: &Project) {
    let (_, v) = ask(p, "a", "b:5432");
    assert_eq!(v["layers"][2]["verdict"], "ok", "{v:#}");
}

#[test]
fn a_healthy_link_passes_the_network_layer() {
    if !can_run() {
        return;
    }
    let p = three_islands();
    let (code, v) = ask(&p, "a", "b:5432");
    let l = &v["layers"][2];
    assert_eq!(l["verdict"], "ok", "{v:#}");
    assert_eq!(l["fix"], Value::Null);
    let link = link(&p);
    let ev = l["evidence"].to_string();
    for want in [
        "[a] lo: UP".to_string(),
        format!("[a] route {} dev b", link["addr_b"].as_str().unwrap()),
        format!(
            "[host] host end {}: UP forwarding=1",
            link["host_a"].as_str().unwrap()
        ),
        format!(
            "[host] host end {}: UP forwarding=1",
            link["host_b"].as_str().unwrap()
        ),
        "PERMANENT".to_string(),
        format!("[b] route {} dev a", link["addr_a"].as_str().unwrap()),
    ] {
        assert!(ev.contains(&want), "evidence lacks {want:?}: {v:#}");
    }
    for l in v["layers"].as_array().unwrap() {
        assert_ne!(l["verdict"], "fault", "{v:#}");
    }
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn lo_down_in_the_island() {
    if !can_run() {
        return;
    }
    let p = three_islands();
    let ns = p.netns("a");
    sh(&format!("nsenter --net={ns} ip link set dev lo down"));
    let (code, v) = ask(&p, "a", "b:5432");
    assert_eq!(v["layers"][2]["summary"], "lo is down in a", "{v:#}");
    let fix = network_fault(
        code,
        &v,
        &[&format!("nsenter --net={ns} ip link set dev lo up")],
    );
    sh(&fix);
    network_ok(&p);
}

#[test]
fn a_host_veth_down() {
    if !can_run() {
        return;
    }
    let p = three_islands();
    let host_a = link(&p)["host_a"].as_str().unwrap().to_string();
    sh(&format!("ip link set dev {host_a} down"));
    let (code, v) = ask(&p, "a", "b:5432");
    let fix = network_fault(code, &v, &[&format!("ip link set dev {host_a} up")]);
    assert!(
        v["layers"][2]["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("host end {host_a}")),
        "{v:#}"
    );
    // Down flushed the host end's route and neighbour: the fix puts them back too.
    sh(&fix);
    network_ok(&p);
}

#[test]
fn the_islands_route_to_its_peer_removed() {
    if !can_run() {
        return;
    }
    let p = three_islands();
    let ns = p.netns("a");
    let peer = link(&p)["addr_b"].as_str().unwrap().to_string();
    sh(&format!("nsenter --net={ns} ip route del {peer} dev b"));
    let (code, v) = ask(&p, "a", "b:5432");
    let fix = network_fault(
        code,
        &v,
        &[&format!(
            "nsenter --net={ns} ip route replace {peer}/32 dev b"
        )],
    );
    assert!(
        v["layers"][2]["evidence"]
            .to_string()
            .contains(&format!("route get {peer}: ENETUNREACH")),
        "{v:#}"
    );
    sh(&fix);
    network_ok(&p);
}

#[test]
fn the_islands_neighbour_entry_removed() {
    if !can_run() {
        return;
    }
    let p = three_islands();
    let ns = p.netns("a");
    let peer = link(&p)["addr_b"].as_str().unwrap().to_string();
    sh(&format!("nsenter --net={ns} ip neigh del {peer} dev b"));
    let (code, v) = ask(&p, "a", "b:5432");
    let fix = network_fault(
        code,
        &v,
        &[&format!(
            "nsenter --net={ns} ip neigh replace {peer} lladdr "
        )],
    );
    assert!(fix.ends_with("dev b nud permanent"), "{fix}");
    sh(&fix);
    network_ok(&p);
}

#[test]
fn no_link_and_outside_addresses_are_named_with_what_to_add() {
    if !can_run() {
        return;
    }
    let p = three_islands();
    // A peer with no link has no address a's files could name: the walk stops at layer 2, which
    // gives the same [[link]] to add.
    let (code, v) = ask(&p, "a", "c:80");
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["layers"][1]["verdict"], "fault", "{v:#}");
    assert_eq!(
        v["layers"][1]["summary"], "c is not in /etc/hosts: no [[link]] joins a and c",
        "{v:#}"
    );
    let fix = v["layers"][1]["fix"].as_str().unwrap();
    assert!(fix.contains("[[link]]\nbetween = [\"a\", \"c\"]"), "{v:#}");
    let (code, v) = ask(&p, "a", "1.1.1.1:53/udp");
    assert!(
        v["layers"][2]["summary"]
            .as_str()
            .unwrap()
            .starts_with("no route to 1.1.1.1: islands reach only"),
        "{v:#}"
    );
    network_fault(code, &v, &["proto = \"udp\"\nports = [53]"]);
}

/// A plain container (no islands file): its own netns with only `lo` has no way to an outside
/// address; loopback is its own.
#[test]
fn a_container_without_a_network() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("doctor-net");
    b.set_args(&["sleep", "1000"]);
    let id = b.id("dnet");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    let doctor = |to: &str| {
        let (code, out, err) = b.cmd(&["doctor", &id, "--to", to, "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        (code, v)
    };
    let (_, v) = doctor("127.0.0.1:80");
    assert_eq!(v["layers"][2]["verdict"], "ok", "{v:#}");
    let (code, v) = doctor("10.255.1.2:80");
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["layers"][2]["verdict"], "fault", "{v:#}");
    assert!(
        v["layers"][2]["summary"]
            .as_str()
            .unwrap()
            .contains("no route to 10.255.1.2 (ENETUNREACH)"),
        "{v:#}"
    );
}

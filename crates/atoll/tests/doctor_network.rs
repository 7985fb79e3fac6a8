//! `atoll doctor`, layer 3 (network), on real islands: each test breaks one thing the way an
//! operator or a stray script could (`lo` down, a host veth down, a route or a neighbour entry
//! removed, a missing `[[link]]`), asserts that doctor names the network layer with the right
//! interface and command, then runs that command and asserts the layer is ok again: a fix that
//! does not repair is a wrong fix.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{can_run, decode, Bundle, ATOLL};
use serde_json::Value;

static N: AtomicUsize = AtomicUsize::new(0);
const BB: &str = "/bin/busybox";

/// A project brought up from a file; dropping it runs `atoll down` and removes its files.
struct Project {
    name: String,
    dir: PathBuf,
    file: PathBuf,
}

impl Project {
    /// a and b linked, a may reach b on tcp/5432 where b listens; c is linked to nobody.
    fn up() -> Project {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}dnet{n}", std::process::id() % 10000);
        let dir = PathBuf::from(format!("/tmp/atoll-tests/doctor-net-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("islands.toml");
        std::fs::write(
            &file,
            format!(
                r#"name = "{name}"
data_root = "{data}"
subnet = "10.{o2}.{o3}.0/24"
[[island]]
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
"#,
                data = dir.join("data").display(),
                // A pool of its own: equal host routes of projects up at the same time collide.
                o2 = 96 + n % 32,
                o3 = std::process::id() % 256,
            ),
        )
        .unwrap();
        let p = Project { name, dir, file };
        let (code, out, err) = p.atoll(&["up", p.file.to_str().unwrap()]);
        assert_eq!(code, 0, "up: {out}{err}");
        p
    }

    fn atoll(&self, args: &[&str]) -> (i32, String, String) {
        decode(Command::new(ATOLL).args(args).output().unwrap())
    }

    fn plan(&self) -> Value {
        let p = Path::new("/run/atoll/islands")
            .join(&self.name)
            .join("plan.json");
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    /// The pinned netns of `island`, as plan.json records it.
    fn netns(&self, island: &str) -> String {
        let plan = self.plan();
        plan["islands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == island)
            .map(|i| i["netns"].as_str().unwrap().to_string())
            .unwrap()
    }

    /// The a–b link of plan.json (a is its `a` side: the file names a first).
    fn link(&self) -> Value {
        self.plan()["links"][0].clone()
    }

    /// `atoll doctor PROJECT/from --to to --json`: exit code and the report.
    fn doctor(&self, from: &str, to: &str) -> (i32, Value) {
        let what = format!("{}/{from}", self.name);
        let (code, out, err) = self.atoll(&["doctor", &what, "--to", to, "--json"]);
        let v = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("doctor {what} --to {to}: {e}\n{out}{err}"));
        (code, v)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new(ATOLL).args(["down", &self.name]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(Path::new("/var/log/atoll/islands").join(&self.name));
    }
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
    let (_, v) = p.doctor("a", "b:5432");
    assert_eq!(v["layers"][2]["verdict"], "ok", "{v:#}");
}

#[test]
fn a_healthy_link_passes_the_network_layer() {
    if !can_run() {
        return;
    }
    let p = Project::up();
    let (code, v) = p.doctor("a", "b:5432");
    let l = &v["layers"][2];
    assert_eq!(l["verdict"], "ok", "{v:#}");
    assert_eq!(l["fix"], Value::Null);
    let link = p.link();
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
    let p = Project::up();
    let ns = p.netns("a");
    sh(&format!("nsenter --net={ns} ip link set dev lo down"));
    let (code, v) = p.doctor("a", "b:5432");
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
    let p = Project::up();
    let host_a = p.link()["host_a"].as_str().unwrap().to_string();
    sh(&format!("ip link set dev {host_a} down"));
    let (code, v) = p.doctor("a", "b:5432");
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
    let p = Project::up();
    let ns = p.netns("a");
    let peer = p.link()["addr_b"].as_str().unwrap().to_string();
    sh(&format!("nsenter --net={ns} ip route del {peer} dev b"));
    let (code, v) = p.doctor("a", "b:5432");
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
    let p = Project::up();
    let ns = p.netns("a");
    let peer = p.link()["addr_b"].as_str().unwrap().to_string();
    sh(&format!("nsenter --net={ns} ip neigh del {peer} dev b"));
    let (code, v) = p.doctor("a", "b:5432");
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
    let p = Project::up();
    // A peer with no link has no address a's files could name: the walk stops at layer 2, which
    // gives the same [[link]] to add.
    let (code, v) = p.doctor("a", "c:80");
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["layers"][1]["verdict"], "fault", "{v:#}");
    assert_eq!(
        v["layers"][1]["summary"], "c is not in /etc/hosts: no [[link]] joins a and c",
        "{v:#}"
    );
    let fix = v["layers"][1]["fix"].as_str().unwrap();
    assert!(fix.contains("[[link]]\nbetween = [\"a\", \"c\"]"), "{v:#}");
    let (code, v) = p.doctor("a", "1.1.1.1:53/udp");
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

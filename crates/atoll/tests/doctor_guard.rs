//! `atoll doctor`, layers 4 (border guard) and 5 (peer), on real islands: one deliberate fault
//! per test (a missing `[[allow]]`, an allow on the wrong port, the reverse direction of a
//! one-way flow, a peer that does not listen, a rule inside a plain container's own netns), and
//! the healthy flow. Each asserts the exit code, the layer at fault in `--json` (the layers
//! before it not at fault), the evidence and the fix.

mod common;

use std::process::Command;
use std::time::Duration;

use common::project::{doctor, Project, BB};
use common::{can_run, decode, Bundle};
use serde_json::Value;

/// A project brought up from `body` (the file without name and data_root).
fn up(body: &str) -> Project {
    Project::started("dgrd", body)
}

/// `atoll doctor PROJECT/FROM --to TO --json`: (exit code, the report, the text for messages).
fn ask(p: &Project, from: &str, to: &str) -> (i32, Value, String) {
    p.doctor(from, &["--to", to])
}

/// The report of `layer`.
fn layer<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == name)
        .unwrap_or_else(|| panic!("no layer {name} in {v}"))
}

/// `name` is the first layer at fault: every layer before it is not.
fn assert_fault_at(v: &Value, name: &str, text: &str) {
    for l in v["layers"].as_array().unwrap() {
        if l["layer"] == name {
            assert_eq!(l["verdict"], "fault", "{text}");
            return;
        }
        assert_ne!(
            l["verdict"], "fault",
            "{} before {name}: {text}",
            l["layer"]
        );
    }
    panic!("no layer {name}: {text}");
}

fn fix(v: &Value, name: &str) -> String {
    layer(v, name)["fix"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn evidence(v: &Value, name: &str) -> String {
    layer(v, name)["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

const TWO: &str = r#"
[[island]]
name = "a"
command = ["/bin/busybox", "nc", "-ll", "-p", "5432", "-e", "/bin/busybox", "true"]
[[island]]
name = "b"
command = ["/bin/busybox", "nc", "-ll", "-p", "5432", "-e", "/bin/busybox", "true"]
[[link]]
between = ["a", "b"]
"#;

#[test]
fn a_missing_allow_is_the_guards_fault_with_the_block_to_add() {
    if !can_run() {
        return;
    }
    let p = up(TWO);
    let (code, v, text) = ask(&p, "a", "b:5432");
    assert_eq!(code, 1, "{text}");
    assert_fault_at(&v, "guard", &text);
    let g = layer(&v, "guard");
    assert_eq!(
        g["summary"], "no [[allow]] lets a open tcp/5432 to b: the border guard drops it",
        "{text}"
    );
    // Confirmed live: the probe was counted by the default deny of a's host end.
    assert!(
        evidence(&v, "guard").contains("counter \"drop at"),
        "{text}"
    );
    let f = fix(&v, "guard");
    assert!(
        f.contains("[[allow]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nports = [5432]\n"),
        "{f}"
    );
    assert!(
        f.ends_with(&format!(
            "atoll down {} && atoll up {}",
            p.name,
            p.file.display()
        )),
        "{f}"
    );
    assert_eq!(layer(&v, "peer")["verdict"], "not_checked", "{text}");
}

#[test]
fn an_allow_on_the_wrong_port_names_the_allow_and_the_port_to_add() {
    if !can_run() {
        return;
    }
    let p = up(&format!(
        "{TWO}[[allow]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nports = [80]\n"
    ));
    let (code, v, text) = ask(&p, "a", "b:5432");
    assert_eq!(code, 1, "{text}");
    assert_fault_at(&v, "guard", &text);
    let s = layer(&v, "guard")["summary"].as_str().unwrap().to_string();
    assert!(
        s.starts_with("allow:a->b:tcp/80 lets a reach b on tcp 80 only, not tcp/5432"),
        "{text}"
    );
    let f = fix(&v, "guard");
    assert!(
        f.contains("add 5432 to the ports of the [[allow]] from \"a\" to \"b\""),
        "{f}"
    );
    assert!(f.contains("ports = [80, 5432]"), "{f}");
}

#[test]
fn the_reverse_of_a_one_way_flow_is_told_apart() {
    if !can_run() {
        return;
    }
    let p = up(&format!(
        "{TWO}[[allow]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nports = [5432]\n"
    ));
    let (code, v, text) = ask(&p, "b", "a:5432");
    assert_eq!(code, 1, "{text}");
    assert_fault_at(&v, "guard", &text);
    assert_eq!(
        layer(&v, "guard")["summary"],
        "a may open connections to b (allow:a->b:tcp/5432); replies pass as established, \
         but b may not open one to a",
        "{text}"
    );
    let f = fix(&v, "guard");
    assert!(
        f.contains("[[allow]]\nfrom = \"b\"\nto = \"a\"\nproto = \"tcp\"\nports = [5432]"),
        "{f}"
    );
    assert!(f.contains("both = true"), "{f}");
}

#[test]
fn a_peer_that_does_not_listen_is_the_peers_fault() {
    if !can_run() {
        return;
    }
    let p = up(r#"
[[island]]
name = "a"
command = ["/bin/busybox", "sleep", "1000"]
[[island]]
name = "b"
command = ["/bin/busybox", "sleep", "1000"]
[[link]]
between = ["a", "b"]
[[allow]]
from = "a"
to = "b"
proto = "tcp"
ports = [5432]
"#);
    let (code, v, text) = ask(&p, "a", "b:5432");
    assert_eq!(code, 1, "{text}");
    assert_eq!(layer(&v, "guard")["verdict"], "ok", "{text}");
    assert!(
        evidence(&v, "guard").contains("counter \"allow:a->b:tcp/5432\""),
        "the allow's counter moved: {text}"
    );
    assert_fault_at(&v, "peer", &text);
    assert_eq!(
        layer(&v, "peer")["summary"],
        "nothing listens on tcp/5432 in b",
        "{text}"
    );
    let f = fix(&v, "peer");
    assert!(
        f.contains(&format!("atoll island logs {}/b", p.name)),
        "{f}"
    );
    assert!(f.contains(&p.file.display().to_string()), "{f}");
}

#[test]
fn a_healthy_flow_is_ok_at_the_guard_and_the_peer() {
    if !can_run() {
        return;
    }
    let p = up(&format!(
        "{TWO}[[allow]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nports = [5432]\n"
    ));
    // b's nc may still be starting: wait for its socket (at most 5 s), not a fixed time.
    let mut last = None;
    for _ in 0..50 {
        let r = ask(&p, "a", "b:5432");
        if r.0 == 0 {
            last = Some(r);
            break;
        }
        last = Some(r);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, v, text) = last.unwrap();
    assert_eq!(code, 0, "{text}");
    assert_eq!(layer(&v, "guard")["verdict"], "ok", "{text}");
    assert_eq!(layer(&v, "peer")["verdict"], "ok", "{text}");
    assert_eq!(
        layer(&v, "guard")["summary"],
        "allowed by allow:a->b:tcp/5432",
        "{text}"
    );
    assert!(
        evidence(&v, "peer").contains("port 5432"),
        "the listening socket is shown: {text}"
    );
}

#[test]
fn a_rule_inside_a_containers_netns_is_named_with_the_command_that_removes_it() {
    if !can_run() {
        return;
    }
    let port = 20000 + (std::process::id() % 10000) as u16;
    let mut b = Bundle::new("doctor-guard");
    b.set_args(&[BB, "nc", "-ll", "-p", &port.to_string(), "-e", BB, "true"]);
    let id = b.id("guard");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "atoll run -d: {err}");
    let (_, state, _) = b.cmd(&["state", &id]);
    let st: Value = serde_json::from_str(&state).unwrap();
    let pid = st["pid"].as_i64().unwrap();
    let ns = format!("--net=/proc/{pid}/ns/net");
    let script = format!(
        "add table inet guardtest\n\
         add chain inet guardtest in {{ type filter hook input priority 0; }}\n\
         add rule inet guardtest in tcp dport {port} drop\n"
    );
    let mut nft = Command::new("nsenter")
        .args([ns.as_str(), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(nft.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    drop(nft.stdin.take());
    assert!(
        nft.wait().unwrap().success(),
        "nft inside the container's netns"
    );

    let to = format!("127.0.0.1:{port}");
    let (code, v, text) = doctor(&[&id, "--to", &to], Some(&b.root));
    assert_eq!(code, 1, "{text}");
    assert_fault_at(&v, "guard", &text);
    let s = layer(&v, "guard")["summary"].as_str().unwrap().to_string();
    assert!(
        s.contains("table inet guardtest, chain in (hook input)"),
        "{text}"
    );
    assert!(s.contains(&format!("`tcp dport {port} drop`")), "{text}");
    let f = fix(&v, "guard");
    assert!(
        f.starts_with(&format!(
            "nsenter --net=/proc/{pid}/ns/net nft delete rule inet guardtest in handle "
        )),
        "{f}"
    );
    assert!(
        evidence(&v, "guard").contains("no answer"),
        "the probe was dropped: {text}"
    );
}

/// `nft` on the host, asserting success; returns stdout.
fn nft(args: &[&str]) -> String {
    let (code, out, err) = decode(Command::new("nft").args(args).output().unwrap());
    assert_eq!(code, 0, "nft {args:?}: {err}");
    out
}

#[test]
fn a_live_table_that_differs_from_the_plan_is_named_with_the_reapply() {
    if !can_run() {
        return;
    }
    let p = up(&format!(
        "{TWO}[[allow]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nports = [5432]\n"
    ));
    // Someone edits the live table: the allow now names port 1. The plan still says 5432.
    let table = format!("atoll_{}", p.name);
    let chain = nft(&["-a", "list", "chain", "inet", &table, "judge"]);
    let line = chain
        .lines()
        .find(|l| l.contains("comment \"allow:a->b:tcp/5432\""))
        .unwrap_or_else(|| panic!("no allow rule in {chain}"))
        .trim();
    let (rule, handle) = line.rsplit_once(" # handle ").unwrap();
    let edited = rule
        .replace("tcp dport 5432", "tcp dport 1")
        .replace("counter packets 0 bytes 0", "counter");
    assert_ne!(edited, rule, "{line}");
    let script = format!("replace rule inet {table} judge handle {handle} {edited}\n");
    let mut c = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success(), "nft {script}");

    let (code, v, text) = ask(&p, "a", "b:5432");
    assert_eq!(code, 1, "{text}");
    assert_fault_at(&v, "guard", &text);
    let s = layer(&v, "guard")["summary"].as_str().unwrap().to_string();
    assert!(
        s.starts_with(
            "the live table differs from the plan: allow:a->b:tcp/5432 should let it through"
        ),
        "{text}"
    );
    assert!(
        evidence(&v, "guard").contains("counter \"drop at"),
        "{text}"
    );
    assert_eq!(
        fix(&v, "guard"),
        format!(
            "re-apply the plan: atoll down {} && atoll up {}",
            p.name,
            p.file.display()
        )
    );
}

#[test]
fn a_missing_table_is_the_guards_fault() {
    if !can_run() {
        return;
    }
    let p = up(&format!(
        "{TWO}[[allow]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nports = [5432]\n"
    ));
    let table = format!("atoll_{}", p.name);
    nft(&["delete", "table", "inet", &table]);
    let (code, v, text) = ask(&p, "a", "b:5432");
    assert_eq!(code, 1, "{text}");
    assert_fault_at(&v, "guard", &text);
    assert_eq!(
        layer(&v, "guard")["summary"],
        format!(
            "the project's table inet {table} is missing: the live guard differs from the plan"
        ),
        "{text}"
    );
    assert!(
        fix(&v, "guard").contains(&format!("atoll down {}", p.name)),
        "{text}"
    );
}

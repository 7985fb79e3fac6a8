//! `atoll doctor` as a whole, on real islands: the healthy case walks all five layers to "ok"
//! and exits 0, doctor changes nothing it looks at (links, addresses, routes, neighbours, the
//! border guard's rules), and a question it cannot ask exits 2 with the reason. Each layer's
//! faults are in doctor_process.rs, doctor_network.rs and doctor_guard.rs.

mod common;

use std::process::Command;

use common::project::{listener, Project, BB};
use common::{can_run, decode, ATOLL};

fn two_islands(tag: &str) -> Project {
    let body = format!(
        "[[island]]\nname = \"a\"\ncommand = [\"{BB}\", \"sleep\", \"1000\"]\n\
         [[island]]\nname = \"b\"\ncommand = {}\n\
         [[link]]\nbetween = [\"a\", \"b\"]\n\
         [[allow]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nports = [5432]\n",
        listener(5432, "b")
    );
    let mut p = Project::new(tag, &body);
    let (code, out, err) = p.up();
    assert_eq!(code, 0, "up: {out}{err}");
    p
}

fn doctor(args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut a = vec!["doctor", "--json"];
    a.extend_from_slice(args);
    let (code, out, err) = decode(Command::new(ATOLL).args(&a).output().unwrap());
    let v = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (code, v, format!("{out}{err}"))
}

fn verdicts(v: &serde_json::Value) -> Vec<(String, String)> {
    v["layers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    (
                        l["layer"].as_str().unwrap_or("?").to_string(),
                        l["verdict"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_healthy_flow_is_ok_at_every_layer() {
    if !can_run() {
        return;
    }
    let p = two_islands("dok");
    let (code, v, all) = doctor(&[&format!("{}/a", p.name), "--to", "b:5432"]);
    let want: Vec<(String, String)> = ["process", "files", "network", "guard", "peer"]
        .iter()
        .map(|l| (l.to_string(), "ok".to_string()))
        .collect();
    assert_eq!(verdicts(&v), want, "{all}");
    assert_eq!(code, 0, "{all}");
    // The text form says the same, layer by layer.
    let (code, out, err) = decode(
        Command::new(ATOLL)
            .args(["doctor", &format!("{}/a", p.name), "--to", "b:5432"])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{out}{err}");
    for l in [
        "1. process",
        "2. files",
        "3. network",
        "4. guard",
        "5. peer",
    ] {
        assert!(out.contains(l), "{l} missing in:\n{out}");
    }
    assert!(out.contains("no fault found"), "{out}");
}

/// What doctor looks at, as `ip` and `nft` print it without counters: links, addresses, routes
/// and neighbours in the host and in each island's netns, and the project's rules.
fn snapshot(p: &Project) -> String {
    let plan = p.plan().expect("plan");
    let mut out = String::new();
    let run = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    out += &run(&[
        "nft",
        "-s",
        "list",
        "table",
        "inet",
        &format!("atoll_{}", p.name),
    ]);
    for i in plan["islands"].as_array().unwrap() {
        let ns = format!("--net={}", i["netns"].as_str().unwrap());
        for what in [&["link"][..], &["addr"], &["route"], &["neigh"]] {
            let mut a = vec!["nsenter", ns.as_str(), "ip", "-d"];
            a.extend_from_slice(what);
            // Packet and byte statistics move with the probes; the state must not.
            out += &run(&a);
        }
    }
    out += &run(&[
        "ip",
        "-d",
        "link",
        "show",
        "group",
        &p.group.unwrap().to_string(),
    ]);
    out += &run(&["ip", "route"]);
    out += &run(&["ip", "neigh"]);
    out
}

#[test]
fn doctor_changes_nothing_it_looks_at() {
    if !can_run() {
        return;
    }
    let p = two_islands("dsame");
    let before = snapshot(&p);
    for q in [
        vec!["--to", "b:5432"],
        vec!["--to", "b:6000"],
        vec!["--dns", "b"],
        vec![],
    ] {
        let mut a = vec![format!("{}/a", p.name)];
        a.extend(q.iter().map(|s| s.to_string()));
        let args: Vec<&str> = a.iter().map(String::as_str).collect();
        let (code, _, all) = doctor(&args);
        assert!(
            code == 0 || code == 1,
            "doctor {args:?} could not run: {all}"
        );
    }
    let (_, _, all) = doctor(&[&format!("{}/b", p.name), "--to", "a:5432"]);
    assert!(!all.is_empty());
    assert_eq!(
        snapshot(&p),
        before,
        "doctor changed the state it looked at"
    );
}

#[test]
fn a_question_doctor_cannot_ask_exits_2_and_says_why() {
    if !can_run() {
        return;
    }
    let p = two_islands("duse");
    for (args, why) in [
        (vec!["no-such-island-or-container"], "no island"),
        (
            vec![&format!("{}/a", p.name) as &str, "--to", "b:0"],
            "--to \"b:0\"",
        ),
        (
            vec![&format!("{}/a", p.name) as &str, "--to", "nobody:80"],
            "no island \"nobody\"",
        ),
    ] {
        let (code, out, err) = decode(
            Command::new(ATOLL)
                .arg("doctor")
                .args(&args)
                .output()
                .unwrap(),
        );
        assert_eq!(code, 2, "doctor {args:?}: {out}{err}");
        assert!(
            err.contains(why),
            "doctor {args:?} should say {why:?}: {err}"
        );
    }
}

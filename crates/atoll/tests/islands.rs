//! Islands on real namespaces: `atoll up` a file, prove from inside the islands what the file
//! promises (separate stacks, links, the border guard, least privilege, backup), and check that
//! `down` leaves nothing behind, also after `up` was killed half-way.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::project::{listener, state_dir, Project, BB};
use common::{can_run, decode, ATOLL};

/// Everything a project can leave on the host; empty when `down` did its job.
fn leftovers(name: &str, group: Option<u32>) -> Vec<String> {
    let mut left = Vec::new();
    if state_dir(name).exists() {
        left.push(format!("state dir {}", state_dir(name).display()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    if mounts.contains(&format!("/run/atoll/islands/{name}/")) {
        left.push("a netns mount".into());
    }
    let table = format!("atoll_{name}");
    let nft = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    if nft.success() {
        left.push(format!("nft table {table}"));
    }
    if let Some(g) = group {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "group", &g.to_string()])
            .output()
            .unwrap();
        if !out.stdout.is_empty() {
            left.push(format!("links: {}", String::from_utf8_lossy(&out.stdout)));
        }
    }
    let (_, list, _) = decode(Command::new(ATOLL).args(["list", "-q"]).output().unwrap());
    for id in list.lines().filter(|l| l.starts_with(&format!("{name}."))) {
        left.push(format!("container {id}"));
    }
    // No process (an island, the project's guard) still names the project's state dir.
    let needle = format!("/run/atoll/islands/{name}/");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(&needle) {
            left.push(format!("process {:?}", e.file_name()));
        }
    }
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let d = h.path().join("atoll/islands").join(name);
        if d.exists() {
            left.push(format!("cgroup {}", d.display()));
        }
    }
    left
}

/// A runc verb looks its id up in `--root` only: a shim or script driving atoll as runc, with its
/// own `--root`, cannot reach a tenant's island by naming it. `atoll island VERB` reaches it.
#[test]
fn runc_verbs_never_reach_an_island_by_its_name() {
    if !can_run() {
        return;
    }
    let body = format!("[[island]]\nname = \"x\"\ncommand = [\"{BB}\", \"sleep\", \"1000\"]\n");
    let mut p = Project::new("verb", &body);
    let (code, out, err) = p.up();
    assert_eq!(code, 0, "up: {out}{err}");
    let root = p.dir.join("runc-root");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.to_str().unwrap();
    let qualified = format!("{}/x", p.name);
    // PROJECT.ISLAND is also the island's container id in the root `up` used
    let container_id = format!("{}.x", p.name);
    for id in ["x", qualified.as_str(), container_id.as_str()] {
        let verbs: [&[&str]; 6] = [
            &["exec", id, BB, "true"],
            &["ps", id],
            &["events", "--stats", id],
            &["events", "--alerts", id],
            &["update", "--pids-limit", "10", id],
            &["pause", id],
        ];
        for verb in verbs {
            let mut args = vec!["--root", root];
            args.extend_from_slice(verb);
            let (code, out, err) = p.atoll(&args);
            // PROJECT/ISLAND is not even a valid container id
            let refused = if id == qualified {
                format!("invalid container id \"{id}\"")
            } else {
                format!("container \"{id}\" does not exist")
            };
            assert!(
                code != 0 && err.contains(&refused),
                "atoll {}: exit {code}\n{out}{err}",
                args.join(" ")
            );
        }
    }
    let (code, out) = p.exec("x", &[BB, "cat", "/proc/1/cmdline"]);
    assert_eq!((code, out.as_str()), (0, "/bin/busybox\0sleep\x001000\0"));
    let (code, out, err) = p.atoll(&["island", "ps", "--format", "json", &qualified]);
    assert_eq!(code, 0, "island ps: {out}{err}");
    let pids: Vec<i32> = serde_json::from_str(&out).unwrap();
    assert_eq!(pids.len(), 1, "{out}");
    let (code, out, err) = p.atoll(&["island", "events", "--stats", &qualified]);
    assert!(
        code == 0 && out.contains("\"type\":\"stats\""),
        "island events: {out}{err}"
    );
    let (code, out, err) = p.atoll(&["--root", root, "island", "exec", &qualified, BB, "true"]);
    assert_eq!(code, 0, "island exec ignores --root: {out}{err}");
}

#[test]
fn islands_are_separate_and_the_border_guard_passes_only_named_flows() {
    if !can_run() {
        return;
    }
    // a and c are both linked to b; only a may reach b, on tcp/5432. Every island listens on
    // 5432 (the same port in three network namespaces); b also on 5433.
    let body = format!(
        r#"
[[island]]
name = "a"
command = {la}
[[island]]
name = "b"
command = ["{BB}", "sh", "-c", "{BB} nc -ll -p 5433 -e {BB} echo b-5433 & exec {BB} nc -ll -p 5432 -e {BB} echo b-5432"]
[[island]]
name = "c"
command = {lc}
user = 0
[[link]]
between = ["a", "b"]
[[link]]
between = ["c", "b"]
[[allow]]
from = "a"
to = "b"
proto = "tcp"
ports = [5432]
"#,
        la = listener(5432, "a-5432"),
        lc = listener(5432, "c-5432"),
    );
    let mut p = Project::new("net", &body);
    let (code, out, err) = p.up();
    assert_eq!(code, 0, "up: {out}{err}");
    assert!(out.contains("running"), "{out}");
    std::thread::sleep(Duration::from_millis(200));

    // 1. Own loopback, addresses and process tree; the same port in three islands.
    let (_, a_addrs) = p.exec("a", &[BB, "ip", "-o", "-4", "addr"]);
    assert!(
        a_addrs.contains("127.0.0.1") && a_addrs.contains(&p.addr("a", "b")),
        "{a_addrs}"
    );
    assert!(
        !a_addrs.contains(&p.addr("c", "b")),
        "a sees c's address: {a_addrs}"
    );
    for isl in ["a", "b", "c"] {
        let (_, ns) = p.exec(isl, &[BB, "netstat", "-ltn"]);
        assert!(ns.contains(":5432"), "{isl} does not listen on 5432: {ns}");
    }
    let (_, ps) = p.exec("a", &[BB, "ps", "-o", "pid,args"]);
    assert!(
        !ps.contains("b-5432") && !ps.contains("c-5432"),
        "a sees other islands' processes: {ps}"
    );
    let (_, ls) = p.exec("a", &[BB, "ls", "/data/.."]);
    assert!(!ls.contains("c-5432"), "{ls}");

    // 2-3. The allowed flow passes; other port, reverse direction, other island: dropped.
    let (b_for_a, a_for_b, b_for_c) = (p.addr("b", "a"), p.addr("a", "b"), p.addr("b", "c"));
    let drops_before = p.counter("drop");
    let (c, out) = p.nc("a", &b_for_a, 5432);
    assert!(
        c == 0 && out.contains("b-5432"),
        "a -> b:5432 must pass: {c} {out}"
    );
    let (c, out) = p.nc("a", &b_for_a, 5433);
    assert!(
        c != 0 && !out.contains("b-5433"),
        "a -> b:5433 must drop: {out}"
    );
    assert!(
        !out.contains("refused"),
        "b:5433 answered (RST), so the packet crossed: {out}"
    );
    let (c, out) = p.nc("b", &a_for_b, 5432);
    assert!(
        c != 0 && !out.contains("a-5432"),
        "b -> a (reverse) must drop: {out}"
    );
    let (c, out) = p.nc("c", &b_for_c, 5432);
    assert!(
        c != 0 && !out.contains("b-5432"),
        "c -> b:5432 must drop: {out}"
    );
    // A third island cannot reach the a-b link at all: it has no route there.
    let (c, out) = p.nc("c", &b_for_a, 5432);
    assert!(
        c != 0 && !out.contains("b-5432"),
        "c reached the a-b link: {out}"
    );
    assert!(
        p.counter("allow:a->b:tcp/5432") > 0,
        "the allow counter did not move"
    );
    assert!(
        p.counter("drop") >= drops_before + 3,
        "the drop counter did not move"
    );

    // 4. No vsock, in any island.
    if Path::new("/usr/bin/python3").exists() {
        let (c, out) = p.exec(
            "c",
            &[
                "/usr/bin/python3",
                "-c",
                "import socket; socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)",
            ],
        );
        assert!(
            c != 0 && out.contains("Operation not permitted"),
            "vsock: {out}"
        );
    }
    // Root inside (island c) holds no CAP_NET_ADMIN over its own network: the host owns it.
    let (c, out) = p.exec("c", &[BB, "ip", "link", "set", "lo", "down"]);
    assert!(
        c != 0 && out.contains("ermitted"),
        "root in an island changed its links: {out}"
    );

    // The guard lives in atoll's own table: flushing another table leaves it whole.
    let other = format!("other_{}", p.name);
    let nft = |script: &str| {
        let ok = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                use std::io::Write;
                ch.stdin.take().unwrap().write_all(script.as_bytes())?;
                ch.wait()
            });
        assert!(ok.unwrap().success(), "nft {script}");
    };
    nft(&format!(
        "table inet {other} {{\n chain f {{\n  type filter hook forward priority 0; policy accept;\n  counter\n }}\n}}\nflush table inet {other}\n"
    ));
    let (c, out) = p.nc("a", &b_for_a, 5432);
    nft(&format!("delete table inet {other}\n"));
    assert!(
        c == 0 && out.contains("b-5432"),
        "after another table's flush: {out}"
    );
    let (c, _) = p.nc("c", &b_for_c, 5432);
    assert_ne!(c, 0, "after another table's flush c got through");

    // 8. down removes every netns, link, table, container, cgroup and state file.
    let (code, out, err) = p.atoll(&["down", &p.name]);
    assert_eq!(code, 0, "down: {out}{err}");
    let left = leftovers(&p.name, p.group);
    assert!(left.is_empty(), "left after down: {left:?}");
}

#[test]
fn least_privilege_web_island_and_host_side_backup() {
    if !can_run() {
        return;
    }
    let body = format!(
        r#"
[[island]]
name = "web"
command = ["{BB}", "sh", "-c", "echo hi > /data/index.html; ln -s /etc/shadow /data/secret; mkdir /data/sub; ln -s / /data/sub/root; exec {BB} httpd -f -p 80 -h /data"]
caps = ["CAP_NET_BIND_SERVICE"]
memory = "32M"
pids = 32
[[island]]
name = "nocap"
command = ["{BB}", "sleep", "3600"]
"#
    );
    let mut p = Project::new("priv", &body);
    let (code, out, err) = p.up();
    assert_eq!(code, 0, "up: {out}{err}");
    std::thread::sleep(Duration::from_millis(300));

    // 5. uid 1000 with exactly CAP_NET_BIND_SERVICE binds port 80; without it, no.
    let (_, s) = p.exec("web", &[BB, "cat", "/proc/1/status"]);
    let line = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or("")
            .to_string()
    };
    assert!(line("CapEff:").ends_with("0000000000000400"), "{s}");
    assert!(
        line("Uid:").split_whitespace().nth(1) == Some("1000"),
        "{s}"
    );
    // 6. no_new_privs, a seccomp filter, and root inside = an unprivileged host uid.
    assert!(
        line("NoNewPrivs:").ends_with('1') && line("Seccomp:").ends_with('2'),
        "{s}"
    );
    let (_, ns) = p.exec("web", &[BB, "netstat", "-ltn"]);
    assert!(ns.contains(":80 "), "web is not listening on 80: {ns}");
    let (c, out) = p.exec("nocap", &[BB, "timeout", "2", BB, "nc", "-l", "-p", "80"]);
    assert!(
        c == 1 && out.contains("ermission denied"),
        "bound 80 without the cap: {c} {out}"
    );
    let (_, map) = p.exec("nocap", &[BB, "cat", "/proc/self/uid_map"]);
    let host_root: u64 = map.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        host_root >= 1_000_000_000,
        "root inside maps to host uid {host_root}"
    );
    let plan = p.plan().unwrap();
    let web_pid = {
        let (_, o, _) = p.atoll(&["status", "--json", &p.name]);
        let v: serde_json::Value = serde_json::from_str(&o).unwrap();
        v[0]["islands"][0]["pid"].as_i64().unwrap()
    };
    let host_status = std::fs::read_to_string(format!("/proc/{web_pid}/status")).unwrap();
    let host_uid = host_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let base = plan["islands"][0]["host_base"].as_u64().unwrap();
    assert!(host_uid.contains(&(base + 1000).to_string()), "{host_uid}");
    // The memory limit is the kernel's (v1 memory controller, or cgroup v2's memory.max).
    let cg = Path::new("/sys/fs/cgroup/memory/atoll/islands")
        .join(&p.name)
        .join("web");
    let limit = std::fs::read_to_string(cg.join("memory.limit_in_bytes")).or_else(|_| {
        std::fs::read_to_string(
            Path::new("/sys/fs/cgroup/atoll/islands")
                .join(&p.name)
                .join("web/memory.max"),
        )
    });
    assert_eq!(
        limit.expect("the island's memory cgroup").trim(),
        (32u64 << 20).to_string()
    );

    // The escape guard watches every island: a host netns fd handed in from outside (fd 3 of
    // `atoll island exec --preserve-fds 1`) cannot be entered, and the attempt is an alert naming the
    // island, the namespace and its owner.
    if Path::new("/usr/bin/python3").exists() {
        let py = "import ctypes, os; c = ctypes.CDLL(None, use_errno=True); r = c.setns(3, 0x40000000); print('setns', r, os.strerror(ctypes.get_errno()))";
        let script = format!(
            "exec 3</proc/self/ns/net; exec {ATOLL} island exec --preserve-fds 1 {}/nocap /usr/bin/python3 -c \"{py}\"",
            p.name
        );
        let out = Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let (_, o, e) = decode(out);
        assert!(o.contains("setns -1 Operation not permitted"), "{o}{e}");
        std::thread::sleep(Duration::from_millis(100));
        let alerts =
            std::fs::read_to_string(state_dir(&p.name).join("alerts.jsonl")).unwrap_or_default();
        let line = alerts
            .lines()
            .find(|l| l.contains("atoll.setns.foreign-namespace"))
            .unwrap_or_else(|| panic!("no alert in {alerts:?}"));
        let a: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(a["tenant"], format!("{}.nocap", p.name));
        assert_eq!(a["owner"], "host");
        assert_eq!(a["nstype"], "net");
        assert_eq!(a["decision"], "deny");
        // `atoll island events --alerts ISLAND` follows the same alerts (runc's events stream).
        let mut ev = Command::new(ATOLL)
            .args(["island", "events", "--alerts", &format!("{}/nocap", p.name)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        {
            use std::io::BufRead;
            let mut r = std::io::BufReader::new(ev.stdout.take().unwrap());
            r.read_line(&mut first).unwrap();
        }
        let _ = ev.kill();
        let _ = ev.wait();
        assert!(
            first.contains("atoll.setns.foreign-namespace"),
            "events --alerts: {first}"
        );
        // Its own namespaces raise nothing.
        let own = "import ctypes; c = ctypes.CDLL(None); f = open('/proc/self/ns/uts'); c.setns(f.fileno(), 0)";
        let _ = p.exec("nocap", &["/usr/bin/python3", "-c", own]);
        std::thread::sleep(Duration::from_millis(100));
        let after =
            std::fs::read_to_string(state_dir(&p.name).join("alerts.jsonl")).unwrap_or_default();
        assert_eq!(
            after.lines().count(),
            alerts.lines().count(),
            "own-namespace setns alerted: {after}"
        );
    }

    // 7. Backup from the host side while web runs; the planted symlinks stay links.
    let dest = p.dir.join("backup");
    let (code, out, err) = p.atoll(&["backup", &format!("{}/web", p.name), dest.to_str().unwrap()]);
    assert_eq!(code, 0, "backup: {out}{err}");
    assert_eq!(
        std::fs::read_to_string(dest.join("index.html")).unwrap(),
        "hi\n"
    );
    let secret = std::fs::symlink_metadata(dest.join("secret")).unwrap();
    assert!(
        secret.file_type().is_symlink(),
        "the tenant's symlink was followed"
    );
    assert!(
        out.contains("secret -> /etc/shadow kept as a link, not followed"),
        "{out}"
    );
    assert!(std::fs::symlink_metadata(dest.join("sub/root"))
        .unwrap()
        .file_type()
        .is_symlink());
    let (code, _, err) = p.atoll(&["backup", &format!("{}/web", p.name), dest.to_str().unwrap()]);
    assert!(code != 0 && err.contains("already exists"), "{err}");
    let frozen = p.dir.join("backup2");
    let (code, out, err) = p.atoll(&[
        "backup",
        "--freeze",
        &format!("{}/web", p.name),
        frozen.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "backup --freeze: {out}{err}");
    let (_, st, _) = p.atoll(&["status", &p.name]);
    assert!(
        st.contains("running"),
        "the island stays up after a frozen backup: {st}"
    );
}

#[test]
fn bad_files_get_clear_errors_and_create_nothing() {
    if !can_run() {
        return;
    }
    let cases: &[(&str, &str)] = &[
        (
            "[[island]]\nname = \"a\"\ncommand = [\"/bin/busybox\"]\n[[link]]\nbetween = [\"a\", \"zz\"]\n",
            "link[0].between: no island is named \"zz\"",
        ),
        (
            "[[island]]\nname = \"a\"\n",
            "missing field `command`",
        ),
        (
            "[[island]]\nname = \"a\"\ncommand = [\"/bin/busybox\"]\n[[island]]\nname = \"b\"\ncommand = [\"/bin/busybox\"]\n[[link]]\nbetween = [\"a\", \"b\"]\n[[allow]]\nfrom = \"a\"\nto = \"b\"\nproto = \"tcp\"\nports = [0]\n",
            "port 0 is out of range",
        ),
        (
            "[[island]]\nname = \"a\"\ncommand = [\"/bin/busybox\"]\ncaps = [\"CAP_NET_ADMIN\"]\n",
            "CAP_NET_ADMIN is never granted",
        ),
    ];
    for (body, want) in cases {
        let p = Project::new("bad", body);
        let (code, out, err) = p.atoll(&["up", p.file.to_str().unwrap()]);
        assert_ne!(code, 0, "{body}: {out}");
        assert!(
            err.contains(want) && err.contains("islands.toml:"),
            "want {want:?} with file:line, got {err}"
        );
        assert!(leftovers(&p.name, None).is_empty());
    }
}

#[test]
fn an_up_that_fails_half_way_removes_what_it_made() {
    if !can_run() {
        return;
    }
    // The second island's program exists on the host but not in an island (/etc/shadow is
    // never copied in): netns, links and the table exist before the island fails to start.
    let body = format!(
        "[[island]]\nname = \"ok\"\ncommand = [\"{BB}\", \"sleep\", \"60\"]\n[[island]]\nname = \"broken\"\ncommand = [\"/etc/shadow\"]\n[[link]]\nbetween = [\"ok\", \"broken\"]\n"
    );
    let mut p = Project::new("half", &body);
    let (code, out, err) = p.up();
    assert_ne!(code, 0, "up of a broken island succeeded: {out}");
    assert!(err.contains("broken"), "the error names the island: {err}");
    let left = leftovers(&p.name, None);
    assert!(left.is_empty(), "a failed up left: {left:?}");
}

#[test]
fn down_after_kill_9_of_up_removes_everything() {
    if !can_run() {
        return;
    }
    let mut body = String::new();
    for i in 0..6 {
        body.push_str(&format!(
            "[[island]]\nname = \"i{i}\"\ncommand = [\"{BB}\", \"sleep\", \"60\"]\n"
        ));
    }
    for i in 0..5 {
        body.push_str(&format!("[[link]]\nbetween = [\"i{i}\", \"i{}\"]\n", i + 1));
    }
    body.push_str("[[allow]]\nfrom = \"i0\"\nto = \"i1\"\nproto = \"tcp\"\nports = [1]\n");
    for delay_ms in [5u64, 20, 60, 150] {
        let p = Project::new("kill", &body);
        let mut up = Command::new(ATOLL)
            .args(["up", p.file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = up.kill();
        let _ = up.wait();
        let group = p.plan().and_then(|v| v["group"].as_u64()).map(|g| g as u32);
        let (code, out, err) = p.atoll(&["down", &p.name]);
        assert_eq!(code, 0, "down after kill -9 at {delay_ms} ms: {out}{err}");
        let left = leftovers(&p.name, group);
        assert!(
            left.is_empty(),
            "after kill -9 at {delay_ms} ms and down: {left:?}"
        );
    }
}

#[test]
fn a_bind_under_a_directory_the_island_cannot_reach_is_opened_by_the_runtime() {
    if !can_run() {
        return;
    }
    // The island's init is an unprivileged host uid: a bind source under a 0700 directory is
    // out of its reach, so the runtime opens the source for it (as runc does for a container
    // with a user namespace); the island sees the bound directory, and only it.
    let hidden = PathBuf::from(format!("/tmp/atoll-tests/hidden-{}", std::process::id()));
    std::fs::create_dir_all(hidden.join("sub")).unwrap();
    std::fs::write(hidden.join("sub/seen"), "bound\n").unwrap();
    std::fs::set_permissions(
        hidden.join("sub/seen"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&hidden, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let body = format!(
        "[[island]]\nname = \"x\"\ncommand = [\"{BB}\", \"sleep\", \"60\"]\nbinds = [\"{}:/opt/sub\"]\n",
        hidden.join("sub").display()
    );
    let mut p = Project::new("bind", &body);
    let (code, out, err) = p.up();
    let seen = p.exec("x", &[BB, "cat", "/opt/sub/seen"]);
    drop(p);
    let _ = std::fs::remove_dir_all(&hidden);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(seen, (0, "bound\n".to_string()));
}

#[test]
fn a_bind_whose_source_is_missing_is_named_in_the_error() {
    if !can_run() {
        return;
    }
    let missing = format!("/tmp/atoll-tests/missing-{}/sub", std::process::id());
    let body = format!(
        "[[island]]\nname = \"x\"\ncommand = [\"{BB}\", \"sleep\", \"60\"]\nbinds = [\"{missing}:/opt/sub\"]\n"
    );
    let mut p = Project::new("bmiss", &body);
    let (code, out, err) = p.up();
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains(&missing),
        "the error names the missing source: {err}"
    );
    assert!(leftovers(&p.name, None).is_empty());
}

/// A file of an island's cgroup: in the controller's v1 hierarchy where the host has one, else in
/// cgroup v2 (the whole tree, or the unified hierarchy of a hybrid host).
fn cgroup_file(project: &str, island: &str, v1: (&str, &str), v2: &str) -> String {
    let rel = Path::new("atoll/islands").join(project).join(island);
    let candidates = [
        Path::new("/sys/fs/cgroup").join(v1.0).join(&rel).join(v1.1),
        Path::new("/sys/fs/cgroup").join(&rel).join(v2),
        Path::new("/sys/fs/cgroup/unified").join(&rel).join(v2),
    ];
    candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| panic!("none of {candidates:?} is readable"))
        .trim()
        .to_string()
}

#[test]
fn islands_get_a_pids_limit_unless_raised_and_status_shows_the_limits() {
    if !can_run() {
        return;
    }
    let body = format!(
        "memory = \"48M\"\n\
         [[island]]\nname = \"plain\"\ncommand = [\"{BB}\", \"sleep\", \"60\"]\n\
         [[island]]\nname = \"own\"\ncommand = [\"{BB}\", \"sleep\", \"60\"]\npids = 100\nmemory = \"64M\"\n\
         [[island]]\nname = \"raised\"\ncommand = [\"{BB}\", \"sleep\", \"60\"]\npids = \"max\"\n"
    );
    let mut p = Project::new("lim", &body);
    let (code, out, err) = p.up();
    assert_eq!(code, 0, "{out}{err}");
    let pids = |i: &str| cgroup_file(&p.name, i, ("pids", "pids.max"), "pids.max");
    let mem = |i: &str| {
        cgroup_file(
            &p.name,
            i,
            ("memory", "memory.limit_in_bytes"),
            "memory.max",
        )
    };
    // No `pids` in the island or the project: the default, not the host's whole pid space.
    assert_eq!(pids("plain"), "2048");
    // The project's memory default applies; an island's own values win.
    assert_eq!(mem("plain"), (48u64 << 20).to_string());
    assert_eq!(pids("own"), "100");
    assert_eq!(mem("own"), (64u64 << 20).to_string());
    // Raised explicitly: no pids limit.
    assert_eq!(pids("raised"), "max");

    let (_, json, _) = p.atoll(&["status", "--json", &p.name]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let limits = |k: usize| v[0]["islands"][k]["limits"].clone();
    assert_eq!(
        limits(0),
        serde_json::json!({"memory": 48 << 20, "pids": 2048, "cpu": null})
    );
    assert_eq!(limits(1)["pids"], 100);
    assert_eq!(limits(2)["pids"], serde_json::Value::Null);
    let (_, text, _) = p.atoll(&["status", &p.name]);
    assert!(text.contains("LIMITS"), "{text}");
    assert!(text.contains("mem=48M pids=2048 cpu=max"), "{text}");
    assert!(text.contains("mem=64M pids=100 cpu=max"), "{text}");
}

#[test]
fn a_relative_data_root_is_refused_before_anything_is_made() {
    if !can_run() {
        return;
    }
    let dir = PathBuf::from(format!(
        "/tmp/atoll-tests/islands-relroot-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("t{}rel", std::process::id() % 10000);
    std::fs::write(
        dir.join("islands.toml"),
        format!("name = \"{name}\"\ndata_root = \"rel/data\"\n[[island]]\nname = \"a\"\ncommand = [\"{BB}\", \"sleep\", \"60\"]\n"),
    )
    .unwrap();
    let out = Command::new(ATOLL)
        .args(["up", "islands.toml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let (code, _, err) = decode(out);
    let made = dir.join("rel").exists();
    let _ = Command::new(ATOLL).args(["down", &name]).output();
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(code, 0);
    assert!(
        err.contains("islands.toml:2:13: data_root: "),
        "the error names file, line and field: {err}"
    );
    assert!(!made, "a refused file created ./rel");
    assert!(leftovers(&name, None).is_empty());
}

/// `up` and `down` with the default --root, in a mount namespace of the test's own with a fresh
/// tmpfs on /run/atoll: no other project or container shares the root, so what `down` leaves
/// there is this project's.
#[test]
fn down_removes_the_seccomp_cache_under_the_default_root() {
    if !can_run() {
        return;
    }
    let p = Project::new(
        "cache",
        &format!("[[island]]\nname = \"a\"\ncommand = [\"{BB}\", \"sleep\", \"60\"]\n"),
    );
    let script = format!(
        "mount -t tmpfs -o mode=0755 atoll-test /run/atoll || exit 90\n\
         {ATOLL} up {file} >/dev/null || {{ {ATOLL} down {name}; exit 91; }}\n\
         echo cached: $(ls /run/atoll/.cache/seccomp)\n\
         {ATOLL} down {name} >/dev/null || exit 92\n\
         echo left: $(ls -A /run/atoll)\n",
        file = p.file.display(),
        name = p.name
    );
    std::fs::create_dir_all("/run/atoll").unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(".bpf"), "up compiles into the cache: {out}");
    assert!(
        out.contains("left: \n") || out.ends_with("left:\n"),
        "down leaves nothing in the root: {out}"
    );
}

/// ICMP echo over an unprivileged ICMP datagram socket (icmp(7), what iputils ping uses without
/// CAP_NET_RAW), run with the host's python3 inside an island: prints "reply", "timeout" or the
/// socket error. Debian's busybox 1.35 ping opens only a raw socket, so it needs CAP_NET_RAW
/// whatever ping_group_range says.
const PY_PING: &str = "import socket,sys
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
except OSError as e:
    print('socket:', e); sys.exit(2)
s.settimeout(2)
s.sendto(bytes([8, 0, 0, 0, 0, 0, 0, 1]) + b'atoll', (sys.argv[1], 0))
try:
    data, peer = s.recvfrom(128)
    print('reply' if data[0] == 0 else 'other', peer[0])
except socket.timeout:
    print('timeout'); sys.exit(1)";

/// Unprivileged ping between islands: the islands' netns lets their gids open ICMP datagram
/// sockets (net.ipv4.ping_group_range), so a non-root island pings a peer over an allowed `icmp`
/// flow; where no flow allows it the border guard drops it (no reply), and the socket is never
/// refused (EACCES before: the kernel's default range "1 0" allows no gid).
#[test]
fn unprivileged_ping_follows_the_icmp_flows() {
    if !can_run() {
        return;
    }
    // A pool of its own: projects brought up at the same time by other tests (or test binaries)
    // take /30s from the default pool, and equal host routes collide (EEXIST).
    let pool = format!("10.213.{}.0/24", std::process::id() % 256);
    let body = format!(
        r#"subnet = "{pool}"
[[island]]
name = "a"
command = ["{BB}", "sleep", "1000"]
[[island]]
name = "b"
command = ["{BB}", "sleep", "1000"]
[[island]]
name = "c"
command = ["{BB}", "sleep", "1000"]
[[link]]
between = ["a", "b"]
[[link]]
between = ["c", "b"]
[[allow]]
from = "a"
to = "b"
proto = "icmp"
"#
    );
    let mut p = Project::new("ping", &body);
    let (code, out, err) = p.up();
    assert_eq!(code, 0, "up: {out}{err}");
    let (_, id) = p.exec("a", &[BB, "id"]);
    assert!(
        id.contains("uid=1000"),
        "a is not the unprivileged user: {id}"
    );
    let ping = |from: &str, to: String| p.exec(from, &["/usr/bin/python3", "-c", PY_PING, &to]);
    let b_for_a = p.addr("b", "a");
    let (c, out) = ping("a", b_for_a.clone());
    assert!(
        c == 0 && out.trim() == format!("reply {b_for_a}"),
        "a -> b ping (allowed icmp flow) must pass: {c} {out}"
    );
    let (c, out) = ping("c", p.addr("b", "c"));
    assert!(
        c == 1 && out.trim() == "timeout",
        "c -> b ping (no flow) must be dropped by the guard, not refused: {c} {out}"
    );
}

/// An island's data stays its own across `down` and `up`: `up` gives it the host uid range its
/// data directory belongs to when no project that is up holds that range. With another range
/// its earlier files would belong to a stranger (unmapped: `nobody`), and it could not rewrite
/// them.
#[test]
fn an_island_keeps_the_uid_range_its_data_belongs_to() {
    if !can_run() {
        return;
    }
    // A range no test project takes first (each takes the lowest free ones).
    const UID_BASE: u32 = 1_000_000_000;
    let base = UID_BASE + 37 * 65536;
    let body = format!(
        "[[island]]\nname = \"w\"\ncommand = [\"{BB}\", \"sh\", \"-c\", \"echo two > /data/f && exec {BB} sleep 1000\"]\n"
    );
    let mut p = Project::new("keep", &body);
    let data = p.dir.join("data/w");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "one\n").unwrap();
    // Owned as `up` leaves it: by the island's user (uid 1000 inside unless the file says).
    for f in [&data, &data.join("f")] {
        std::os::unix::fs::chown(f, Some(base + 1000), Some(base + 1000)).unwrap();
    }
    let (code, out, err) = p.up();
    assert_eq!(code, 0, "up: {out}{err}");
    let plan = p.plan().unwrap();
    assert_eq!(plan["islands"][0]["host_base"], base, "{plan}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(data.join("f")).unwrap() != "two\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "the island could not rewrite its own file: {}",
            std::fs::read_to_string(data.join("f")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! `atoll doctor`, layers 1 (process) and 2 (files), on real islands and containers: one
//! deliberate fault each (an island stopped, paused, OOM-killed as a peer; a name missing from
//! the hosts file; a resolv.conf without a nameserver), a podman container diagnosed by its id,
//! and the one-line verdict `atoll status` prints for a broken island and not for a healthy one.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::podman::Podman;
use common::project::{Project, BB};
use common::{can_run, can_run_also, decode, Bundle, ATOLL};
use serde_json::Value;

/// The status of `island` in `atoll status --json`.
fn island_status(p: &Project, island: &str) -> Value {
    p.status()[0]["islands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == island)
        .cloned()
        .unwrap()
}

/// Waits until `island`'s status is `want` (the kernel acts on its own time).
fn wait_status(p: &Project, island: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = island_status(p, island);
        if s["status"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{island} did not become {want}: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `atoll doctor PROJECT/ISLAND ARGS --json`: the exit code and the report.
fn ask(p: &Project, island: &str, args: &[&str]) -> (i32, Value) {
    let (code, v, _) = p.doctor(island, args);
    (code, v)
}

/// Layer `i` (0-based) of a report.
fn layer(r: &Value, i: usize) -> &Value {
    &r["layers"][i]
}

/// Layer `i` is at fault, the layers before it are not, and its fix is given.
fn assert_fault_at(r: &Value, i: usize, name: &str) {
    for before in 0..i {
        assert_ne!(
            layer(r, before)["verdict"],
            "fault",
            "layer {before}: {r:#}"
        );
    }
    assert_eq!(layer(r, i)["layer"], name, "{r:#}");
    assert_eq!(layer(r, i)["verdict"], "fault", "{r:#}");
    assert!(
        layer(r, i)["fix"].as_str().is_some_and(|f| !f.is_empty()),
        "{r:#}"
    );
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn evidence(v: &Value) -> String {
    v["evidence"]
        .as_array()
        .map(|e| e.iter().map(text).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

const SLEEPER: &str =
    r#"command = ["/bin/busybox", "sh", "-c", "echo started; exec /bin/busybox sleep 1000"]"#;

/// A stopped island and a paused one are process faults with the way back; a healthy island
/// is ok; `status` prints the doctor's one line for the broken two and nothing for the third.
#[test]
fn stopped_and_paused_islands_are_process_faults_and_status_says_so() {
    if !can_run() {
        return;
    }
    let body = format!(
        "[[island]]\nname = \"gone\"\n{SLEEPER}\n[[island]]\nname = \"frozen\"\n{SLEEPER}\n\
         [[island]]\nname = \"fine\"\n{SLEEPER}\n\
         [[island]]\nname = \"full\"\npids = 4\n\
         command = [\"{BB}\", \"sh\", \"-c\", \"{BB} sleep 1000 & {BB} sleep 1000 & {BB} sleep 1000 & exec {BB} sleep 1000\"]\n\
         [[island]]\nname = \"esc\"\n{SLEEPER}\n"
    );
    let p = Project::started("st", &body);

    // healthy: exit 0, every layer checked is ok or not checked.
    let (code, r) = ask(&p, "fine", &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(layer(&r, 0)["verdict"], "ok", "{r:#}");
    assert!(
        text(&layer(&r, 0)["summary"]).starts_with("running"),
        "{r:#}"
    );
    assert!(evidence(layer(&r, 0)).contains("oom_kill"), "{r:#}");
    assert_eq!(layer(&r, 1)["verdict"], "ok", "{r:#}");
    assert!(
        evidence(layer(&r, 1)).contains("hosts: files"),
        "the island's nsswitch.conf is quoted: {r:#}"
    );

    // stopped: the init killed from outside (no OOM kill counted).
    let pid = island_status(&p, "gone")["pid"].as_i64().unwrap();
    assert!(pid > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_status(&p, "gone", "stopped");
    let (code, r) = ask(&p, "gone", &[]);
    assert_eq!(code, 1, "{r:#}");
    assert_fault_at(&r, 0, "process");
    let l = layer(&r, 0);
    assert!(
        text(&l["summary"]).starts_with("stopped: its init exited"),
        "{r:#}"
    );
    let ev = evidence(l);
    assert!(ev.contains("state: stopped"), "{r:#}");
    assert!(
        ev.contains(": started"),
        "the log's last line is quoted: {r:#}"
    );
    assert!(
        ev.contains("OOM kills 0"),
        "the cgroup outlives the init: {r:#}"
    );
    let fix = text(&l["fix"]);
    assert!(
        fix.contains(&format!("atoll island logs {}/gone", p.name))
            && fix.contains(&format!("atoll down {} && atoll up", p.name)),
        "{fix}"
    );
    for later in 1..5 {
        assert_eq!(layer(&r, later)["verdict"], "not_checked", "{r:#}");
    }

    // paused: `atoll pause` on the island's container.
    let (c, o) = p.runtime("pause", "frozen");
    assert_eq!(c, 0, "pause: {o}");
    let (code, r) = ask(&p, "frozen", &[]);
    assert_eq!(code, 1, "{r:#}");
    assert_fault_at(&r, 0, "process");
    assert!(
        text(&layer(&r, 0)["summary"]).starts_with("paused"),
        "{r:#}"
    );
    let fix = text(&layer(&r, 0)["fix"]);
    assert!(
        fix.starts_with("atoll --root ") && fix.contains(" resume "),
        "{fix}"
    );

    // running at its pids limit: every fork fails, a fault with the live fix.
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let (code, r) = ask(&p, "full", &[]);
        if code == 1 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_fault_at(&r, 0, "process");
    assert!(
        text(&layer(&r, 0)["summary"]).starts_with("running, but at its pids limit (4 of 4)"),
        "{r:#}"
    );
    let fix = text(&layer(&r, 0)["fix"]);
    assert!(
        fix.contains(" update --pids-limit 64 ") && fix.contains("raise `pids` of [[island]] full"),
        "{fix}"
    );

    // A guard alert: a host netns fd handed in from outside cannot be entered (as in
    // tests/islands.rs); the attempt makes the running island a process fault.
    let py = "/usr/bin/python3";
    assert!(
        Path::new(py).exists() || std::env::var_os("ATOLL_TESTS_MUST_RUN").is_none(),
        "{py} is needed"
    );
    if Path::new(py).exists() {
        let code = "import ctypes; c = ctypes.CDLL(None, use_errno=True); c.setns(3, 0x40000000)";
        let script = format!(
            "exec 3</proc/self/ns/net; exec {ATOLL} island exec --preserve-fds 1 {}/esc {py} -c \"{code}\"",
            p.name
        );
        let out = Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = loop {
            let (code, r) = ask(&p, "esc", &[]);
            if code == 1 || Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_fault_at(&r, 0, "process");
        assert_eq!(
            text(&layer(&r, 0)["summary"]),
            "running, but the escape guard denied it 1 time (latest: atoll.setns.foreign-namespace in setns)",
            "{r:#}"
        );
        assert!(evidence(layer(&r, 0)).contains("guard alerts in "), "{r:#}");
        assert!(
            text(&layer(&r, 0)["fix"])
                .contains(&format!("atoll island events --alerts {}/esc", p.name)),
            "{r:#}"
        );
        // Asked about a name (or a flow), the alert is evidence and the walk goes on: a denied
        // setns() does not explain a lookup or a packet.
        let (_, r) = ask(&p, "esc", &["--dns", "localhost"]);
        assert_eq!(layer(&r, 0)["verdict"], "ok", "{r:#}");
        assert!(
            text(&layer(&r, 0)["summary"]).contains("the escape guard denied it 1 time"),
            "{r:#}"
        );
    }

    // status: the one line for the broken islands, null for the healthy one.
    let s = p.status();
    let by = |n: &str| {
        s[0]["islands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == n)
            .unwrap()["doctor"]
            .clone()
    };
    assert!(text(&by("gone")).starts_with("process: stopped"), "{s:#}");
    assert!(text(&by("frozen")).starts_with("process: paused"), "{s:#}");
    assert!(by("fine").is_null(), "{s:#}");
    let (code, out, err) = p.atoll(&["status", &p.name]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("doctor:"), "{out}");
    let lines = |n: &str| {
        out.lines()
            .filter(|l| l.contains(&format!("atoll doctor {}/{n}", p.name)))
            .count()
    };
    assert_eq!(
        (lines("gone"), lines("frozen"), lines("fine")),
        (1, 1, 0),
        "{out}"
    );
    let (c, o) = p.runtime("resume", "frozen");
    assert_eq!(c, 0, "resume: {o}");
}

/// A peer killed by the OOM killer: `doctor a --to peer:PORT` puts the fault in layer 5 and
/// names the OOM kill; `doctor peer` puts it in layer 1, with the limit to raise.
#[test]
fn an_oom_killed_peer_is_named_by_the_peer_and_process_layers() {
    if !can_run() {
        return;
    }
    // The shell doubles a string until its cgroup's 16M are spent; the kernel then kills it.
    let body = format!(
        "[[island]]\nname = \"a\"\n{SLEEPER}\n\
         [[island]]\nname = \"peer\"\nmemory = \"16M\"\n\
         command = [\"{BB}\", \"sh\", \"-c\", \"x=0123456789; while :; do x=$x$x; done\"]\n\
         [[link]]\nbetween = [\"a\", \"peer\"]\n\
         [[allow]]\nfrom = \"a\"\nto = \"peer\"\nproto = \"tcp\"\nports = [5432]\n"
    );
    let p = Project::started("oom", &body);
    wait_status(&p, "peer", "stopped");

    let (code, r) = ask(&p, "a", &["--to", "peer:5432"]);
    assert_eq!(code, 1, "{r:#}");
    assert_fault_at(&r, 4, "peer");
    let l = layer(&r, 4);
    let summary = text(&l["summary"]);
    // "<project>/peer: ...": the peer's own process layer, named.
    assert!(
        summary.starts_with(&format!("{}/peer: stopped: OOM-killed (1 OOM kill", p.name)),
        "{r:#}"
    );
    assert!(summary.contains("16M"), "{r:#}");
    assert!(
        text(&l["fix"]).contains("raise `memory` of [[island]] peer"),
        "{r:#}"
    );

    let (code, r) = ask(&p, "peer", &[]);
    assert_eq!(code, 1, "{r:#}");
    assert_fault_at(&r, 0, "process");
    assert!(
        text(&layer(&r, 0)["summary"]).starts_with("stopped: OOM-killed"),
        "{r:#}"
    );
    assert!(evidence(layer(&r, 0)).contains("OOM kills 1"), "{r:#}");
    let s = island_status(&p, "peer");
    assert!(
        text(&s["doctor"]).starts_with("process: stopped: OOM-killed"),
        "{s:#}"
    );
}

/// `--to` an island with no [[link]] to the subject: its name is not in the subject's
/// /etc/hosts, and the fix is the [[link]] to add. A linked island's name is found.
#[test]
fn a_name_missing_from_hosts_is_a_files_fault_with_the_link_to_add() {
    if !can_run() {
        return;
    }
    let body = format!(
        "[[island]]\nname = \"a\"\n{SLEEPER}\n[[island]]\nname = \"b\"\n{SLEEPER}\n\
         [[island]]\nname = \"c\"\n{SLEEPER}\n[[link]]\nbetween = [\"a\", \"b\"]\n"
    );
    let p = Project::started("ho", &body);

    let (code, r) = ask(&p, "a", &["--to", "c"]);
    assert_eq!(code, 1, "{r:#}");
    assert_fault_at(&r, 1, "files");
    let l = layer(&r, 1);
    assert_eq!(
        text(&l["summary"]),
        "c is not in /etc/hosts: no [[link]] joins a and c",
        "{r:#}"
    );
    assert!(evidence(l).contains("/etc/hosts: no entry for c"), "{r:#}");
    let fix = text(&l["fix"]);
    assert!(
        fix.contains("[[link]]\nbetween = [\"a\", \"c\"]")
            && fix.contains(p.file.to_str().unwrap()),
        "{fix}"
    );

    let (_, r) = ask(&p, "a", &["--to", "b"]);
    assert_eq!(layer(&r, 0)["verdict"], "ok", "{r:#}");
    assert_eq!(layer(&r, 1)["verdict"], "ok", "{r:#}");
    assert!(
        text(&layer(&r, 1)["summary"]).starts_with("b resolves to 10."),
        "{r:#}"
    );
    assert!(
        evidence(layer(&r, 1)).contains(&format!("\tb b.{}", p.name)),
        "{r:#}"
    );
}

/// A container whose resolv.conf has no nameserver, with nsswitch asking DNS: `--dns NAME`
/// is a files fault "no nameserver"; a name in its hosts file is ok. Also finds the container
/// by a unique prefix of its id.
#[test]
fn no_nameserver_in_resolv_conf_is_a_files_fault() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("doctor-dns");
    let etc = b.rootfs().join("etc");
    std::fs::write(
        etc.join("resolv.conf"),
        "# no server here\nsearch example\n",
    )
    .unwrap();
    std::fs::write(etc.join("nsswitch.conf"), "hosts: files dns\n").unwrap();
    std::fs::write(
        etc.join("hosts"),
        "127.0.0.1 localhost\n10.9.9.9 known.example known\n",
    )
    .unwrap();
    b.set_args(&["sleep", "1000"]);
    let id = b.id("dns");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");

    let doctor = |what: &str, args: &[&str]| {
        let mut a = vec!["doctor", what, "--json"];
        a.extend_from_slice(args);
        let (code, out, err) = b.cmd(&a);
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("doctor {a:?}: exit {code} {e}: {out}{err}"));
        (code, v)
    };
    let (code, r) = doctor(&id, &["--dns", "some.name"]);
    assert_eq!(code, 1, "{r:#}");
    assert_fault_at(&r, 1, "files");
    let l = layer(&r, 1);
    assert!(
        text(&l["summary"]).starts_with("no nameserver in /etc/resolv.conf"),
        "{r:#}"
    );
    let ev = evidence(l);
    assert!(ev.contains("/etc/nsswitch.conf: hosts: files dns"), "{ev}");
    assert!(ev.contains("/etc/resolv.conf: no nameserver line"), "{ev}");
    assert!(text(&l["fix"]).contains("nameserver"), "{r:#}");

    // A unique prefix of the id finds the same container; a name in /etc/hosts is ok.
    let prefix = &id[..id.len() - 2];
    let (code, r) = doctor(prefix, &["--dns", "known"]);
    assert_eq!(r["subject"], id.as_str(), "{r:#}");
    assert_eq!(layer(&r, 1)["verdict"], "ok", "{r:#}");
    assert!(
        evidence(layer(&r, 1)).contains("/etc/hosts: 10.9.9.9 known.example known"),
        "{r:#}"
    );
    assert_ne!(code, 2, "{r:#}");
}

/// The tenant's files are read inside its root: an absolute symlink with `..` above `/` stays
/// in the tenant's tree (its own /etc/hostname, not the host's), and a FIFO planted as
/// /etc/resolv.conf is refused unopened (opening it would block doctor).
#[test]
fn the_tenants_files_never_lead_out_of_its_root() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("doctor-escape");
    let etc = b.rootfs().join("etc");
    // The host has an /etc/hostname too: only the tenant's own names "tenant-own".
    std::fs::write(etc.join("hostname"), "10.5.5.5 tenant-own\n").unwrap();
    std::os::unix::fs::symlink("/../../../../etc/hostname", etc.join("hosts")).unwrap();
    std::os::unix::fs::symlink("../../../../etc/passwd", etc.join("nsswitch.conf")).unwrap();
    nix::unistd::mkfifo(
        &etc.join("resolv.conf"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    b.set_args(&["sleep", "1000"]);
    let id = b.id("esc");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");

    let started = Instant::now();
    let (code, out, err) = b.cmd(&["doctor", &id, "--json"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "doctor waited on the FIFO"
    );
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(code, 1, "{r:#}");
    assert_fault_at(&r, 1, "files");
    let l = layer(&r, 1);
    assert_eq!(
        text(&l["summary"]),
        "/etc/resolv.conf cannot be read: not a regular file (Fifo)",
        "{r:#}"
    );
    assert!(
        !evidence(l).contains("/etc/hosts: absent"),
        "the tenant's own hostname file: {r:#}"
    );

    // With a regular resolv.conf: /etc/hosts -> /../../../../etc/hostname is the tenant's own
    // hostname file, where "tenant-own" is (the host's names the host).
    std::fs::remove_file(etc.join("resolv.conf")).unwrap();
    std::fs::write(etc.join("resolv.conf"), "nameserver 10.1.2.3\n").unwrap();
    let (code, out, err) = b.cmd(&["doctor", &id, "--json", "--dns", "tenant-own"]);
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_ne!(code, 2, "{r:#}");
    let l = layer(&r, 1);
    assert_eq!(l["verdict"], "ok", "{r:#}");
    assert_eq!(
        text(&l["summary"]),
        "tenant-own is in /etc/hosts: 10.5.5.5",
        "{r:#}"
    );
}

// ---- podman -------------------------------------------------------------------------------------

/// podman runs the container with `--runtime atoll`, passing the runtime `--root /run/<the
/// runtime's file name>`: /run/atoll, atoll's own default. `atoll doctor ID` finds it there by
/// the 64-hex id podman prints (and by podman's 12-digit short id, with --root), and reads its
/// process and files layers through its init.
#[test]
fn a_podman_container_is_diagnosed_by_its_id() {
    let missing = ["/usr/bin/podman", "/usr/bin/conmon"]
        .iter()
        .find(|t| !Path::new(t).exists())
        .map(|t| format!("{t} is not installed (scripts/setup.sh installs it)"));
    if !can_run_also(missing) {
        return;
    }
    let p = Podman::new(
        "doctor",
        &["sh", "sleep"],
        &[
            ("etc/nsswitch.conf", "hosts: files dns\n"),
            // With --network none podman writes no resolv.conf of its own: the image's is
            // seen.
            ("etc/resolv.conf", "nameserver 10.99.0.53\n"),
        ],
    );
    let parent = format!("/{}", p.cgroup);
    let (code, out, err) = p.podman(&[
        "run",
        "-d",
        "--network",
        "none",
        "--cgroup-parent",
        &parent,
        &p.image,
        "sleep",
        "1000",
    ]);
    assert_eq!(code, 0, "podman run -d: {out}{err}");
    let id = out.trim().to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{out}"
    );

    let doctor = |args: &[&str]| {
        let mut c = Command::new(ATOLL);
        c.args(args);
        let (code, out, err) = decode(c.output().unwrap());
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("doctor {args:?}: exit {code} {e}: {out}{err}"));
        (code, v)
    };
    // The full id, in atoll's default root (where podman put it).
    let (code, r) = doctor(&["doctor", &id, "--json", "--dns", "db.example"]);
    assert_ne!(code, 2, "{r:#}");
    assert_eq!(r["subject"], id.as_str(), "{r:#}");
    assert_eq!(layer(&r, 0)["verdict"], "ok", "{r:#}");
    assert!(
        evidence(layer(&r, 0)).contains(&format!("cgroup /{}/", p.cgroup)),
        "{r:#}"
    );
    let l = layer(&r, 1);
    assert_eq!(l["verdict"], "ok", "{r:#}");
    assert_eq!(
        text(&l["summary"]),
        "db.example is not in /etc/hosts; DNS asks nameserver 10.99.0.53",
        "{r:#}"
    );
    assert!(
        evidence(l).contains("/etc/resolv.conf: nameserver 10.99.0.53"),
        "{r:#}"
    );

    // podman's short id, with --root named.
    let (code, r) = doctor(&["--root", "/run/atoll", "doctor", &id[..12], "--json"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["subject"], id.as_str(), "{r:#}");

    // Stopped by podman: podman's cleanup (`podman container cleanup`, run before `stop`
    // returns) deletes the container from the runtime, so nothing of it is left for doctor to
    // read: it says so and exits 2 (podman keeps the exit status: `podman ps -a`).
    let (code, _, err) = p.podman(&["stop", "--time", "0", &id]);
    assert_eq!(code, 0, "podman stop: {err}");
    let (c, out, err) = decode(Command::new(ATOLL).args(["doctor", &id]).output().unwrap());
    assert_eq!(c, 2, "doctor of a container podman stopped: {out}{err}");
    assert!(
        err.contains(&format!("no container {id:?} in /run/atoll")),
        "{err}"
    );
}

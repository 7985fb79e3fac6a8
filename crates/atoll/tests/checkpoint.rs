//! `checkpoint` and `restore` with real CRIU on real containers: a counter that carries on after
//! restore, --leave-running, an ESTABLISHED TCP connection to a peer in a test-made netns that
//! keeps exchanging lines across the checkpoint, and bad input that changes nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::podman::Podman;
use common::Bundle;

/// The CRIU atoll uses (docs/checkpoint.md): it must pass `criu check`.
fn missing_criu() -> Option<String> {
    let criu = std::env::var("ATOLL_CRIU").unwrap_or_else(|_| {
        if Path::new("/usr/local/sbin/criu").exists() {
            "/usr/local/sbin/criu".into()
        } else {
            "criu".into()
        }
    });
    match Command::new(&criu)
        .arg("check")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(_) => Some(format!(
            "`{criu} check` fails (scripts/criu.sh installs a working CRIU)"
        )),
        Err(e) => Some(format!("{criu}: {e} (scripts/criu.sh installs CRIU)")),
    }
}

fn can_run() -> bool {
    common::can_run_also(missing_criu())
}

/// A bundle whose container counts into /data/count every 50 ms.
fn counter() -> Bundle {
    let mut b = Bundle::new("criu-count");
    b.set_args(&[
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /data/count; sleep 0.05; done",
    ]);
    b
}

fn count(b: &Bundle) -> u64 {
    std::fs::read_to_string(b.rootfs().join("data/count"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

fn wait_count_above(b: &Bundle, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = count(b);
        if c > n {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "the counter stayed at {c} (<= {n})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(b: &Bundle, id: &str) -> String {
    let (code, out, err) = b.cmd(&["state", id]);
    if code != 0 {
        return format!("error: {err}");
    }
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["status"].as_str().unwrap().to_string()
}

fn images(b: &Bundle) -> PathBuf {
    b.dir.parent().unwrap().join("images")
}

fn checkpoint(b: &Bundle, id: &str, extra: &[&str]) -> (i32, String) {
    let img = images(b);
    let mut args = vec!["checkpoint", "--image-path", img.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(id);
    let (code, _, err) = b.cmd(&args);
    (code, err)
}

fn restore(b: &Bundle, id: &str, extra: &[&str]) -> (i32, String) {
    let img = images(b);
    let bundle = b.dir.to_str().unwrap().to_string();
    let mut args = vec![
        "restore",
        "-d",
        "--image-path",
        img.to_str().unwrap(),
        "--bundle",
        &bundle,
    ];
    args.extend_from_slice(extra);
    args.push(id);
    // The restored container inherits our stdio: never wait on pipes for it.
    b.detached(&args)
}

fn cgroup_exists(id: &str) -> bool {
    Path::new("/sys/fs/cgroup/atoll").join(id).exists()
        || Path::new("/sys/fs/cgroup/unified/atoll").join(id).exists()
        || Path::new("/sys/fs/cgroup/pids/atoll").join(id).exists()
}

#[test]
fn counter_continues_after_restore() {
    if !can_run() {
        return;
    }
    let mut b = counter();
    let id = b.id("count");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    wait_count_above(&b, 3);
    let (code, err) = checkpoint(&b, &id, &[]);
    assert_eq!(code, 0, "checkpoint: {err}");
    // As with runc, the checkpointed container is gone: no state, no cgroup, no counting.
    assert!(status(&b, &id).starts_with("error"), "{}", status(&b, &id));
    assert!(
        !cgroup_exists(&id),
        "the cgroup of {id} is left after checkpoint"
    );
    let frozen = count(&b);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&b), frozen, "the counter moved after checkpoint");

    let (code, err) = restore(&b, &id, &[]);
    assert_eq!(code, 0, "restore: {err}");
    assert_eq!(status(&b, &id), "running");
    // Its memory came back: it counts on from where it stopped, not from 1.
    let after = wait_count_above(&b, frozen);
    assert!(
        after > frozen && after < frozen + 40,
        "counter {frozen} -> {after}"
    );
    let (_, out, _) = b.cmd(&["ps", "--format", "json", &id]);
    assert!(
        out.contains(','),
        "restored container has its processes: {out}"
    );
    let (code, _, err) = b.cmd(&["kill", &id, "KILL"]);
    assert_eq!(code, 0, "kill the restored container: {err}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&b, &id) != "stopped" {
        assert!(Instant::now() < deadline, "still {}", status(&b, &id));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _, err) = b.cmd(&["delete", &id]);
    assert_eq!(code, 0, "delete: {err}");
    assert!(!cgroup_exists(&id));
}

/// The guard is on by default, and its listener lives in the supervisor, which CRIU cannot
/// dump: restored as CRIU leaves them, the tasks' trapped calls would fail with ENOSYS and raise
/// no alert. atoll puts the guard's layer back on every restored thread, so a process the
/// restored init forks after the restore is still judged: EPERM and an alert, as before.
#[test]
fn a_restored_container_is_still_judged_by_the_guard() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("criu-guard");
    b.set_args(&[
        "sh",
        "-c",
        "while true; do if [ -f /data/go ]; then unshare -U true 2>/data/out; rm /data/go; fi; \
         sleep 0.05; done",
    ]);
    let id = b.id("guarded");
    let alerts = b.root.join(".guard/alerts.jsonl");
    let go = b.rootfs().join("data/go");
    let out = b.rootfs().join("data/out");
    // Ask the container's own shell (not an exec, which gets a fresh filter) to unshare a user
    // namespace; its error, and the number of alerts about it.
    let trap = || {
        let _ = std::fs::remove_file(&out);
        std::fs::write(&go, "").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while go.exists() {
            assert!(
                Instant::now() < deadline,
                "the container did not run unshare"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        let n = std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("atoll.userns.create") && l.contains(&id))
            .count();
        (std::fs::read_to_string(&out).unwrap_or_default(), n)
    };
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    let (msg, n) = trap();
    assert!(msg.contains("Operation not permitted"), "before: {msg}");
    assert_eq!(n, 1, "one alert before the checkpoint");
    let (code, err) = checkpoint(&b, &id, &[]);
    assert_eq!(code, 0, "checkpoint: {err}");
    let (code, err) = restore(&b, &id, &[]);
    assert_eq!(code, 0, "restore: {err}");
    assert_eq!(status(&b, &id), "running");
    let (msg, n) = trap();
    assert!(
        msg.contains("Operation not permitted"),
        "after the restore the guard judged nothing: {msg}"
    );
    assert_eq!(n, 2, "an alert after the restore");
}

/// A checkpoint restored under another id, so into another cgroup path: CRIU's cgroup root
/// puts the tasks in the new container's cgroup (where its limits apply), not back into the
/// dumped one (what restoring an island on a second "host" of one machine needs).
#[test]
fn restore_under_another_id_goes_into_its_own_cgroup() {
    if !can_run() {
        return;
    }
    let mut b = counter();
    let from = b.id("mg2cgfrom");
    let to = b.id("mg2cgto");
    let (code, err) = b.run_detached(&from);
    assert_eq!(code, 0, "run -d: {err}");
    wait_count_above(&b, 3);
    let (code, err) = checkpoint(&b, &from, &[]);
    assert_eq!(code, 0, "checkpoint: {err}");
    let frozen = count(&b);
    let (code, err) = restore(&b, &to, &[]);
    assert_eq!(code, 0, "restore as {to}: {err}");
    assert_eq!(status(&b, &to), "running");
    let after = wait_count_above(&b, frozen);
    assert!(after < frozen + 40, "counter {frozen} -> {after}");
    let (_, out, _) = b.cmd(&["state", &to]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let pid = v["pid"].as_u64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.lines().all(|l| !l.contains(&from)) && cg.contains(&format!("/atoll/{to}")),
        "the restored init (pid {pid}) is in {cg}"
    );
    assert!(!cgroup_exists(&from), "the dumped cgroup was made again");
    let (code, _, err) = b.cmd(&["kill", &to, "KILL"]);
    assert_eq!(code, 0, "kill: {err}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&b, &to) != "stopped" {
        assert!(Instant::now() < deadline, "still {}", status(&b, &to));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _, err) = b.cmd(&["delete", &to]);
    assert_eq!(code, 0, "delete: {err}");
    assert!(!cgroup_exists(&to));
}

/// `features` says checkpoint works (runc's annotation) and names the CRIU it drives; with a
/// --criu that does not exist, it says it does not.
#[test]
fn features_report_checkpoint() {
    if !can_run() {
        return;
    }
    let b = Bundle::new("criu-feat");
    let (code, out, err) = b.cmd(&["features"]);
    assert_eq!(code, 0, "{err}");
    let f: serde_json::Value = serde_json::from_str(&out).unwrap();
    let a = &f["annotations"];
    assert_eq!(
        a["org.opencontainers.runc.checkpoint.enabled"], "true",
        "{f}"
    );
    assert!(
        a["io.github.atoll.criu"]
            .as_str()
            .unwrap()
            .ends_with("criu"),
        "{f}"
    );
    let (code, out, err) = b.cmd(&["--criu", "/nonexistent/criu", "features"]);
    assert_eq!(code, 0, "{err}");
    let f: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        f["annotations"]["org.opencontainers.runc.checkpoint.enabled"],
        "false"
    );
    // And checkpoint with that CRIU is refused before anything is frozen.
    let mut b = counter();
    let id = b.id("nocriu");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    let img = images(&b);
    let (code, _, err) = b.cmd(&[
        "--criu",
        "/nonexistent/criu",
        "checkpoint",
        "--image-path",
        img.to_str().unwrap(),
        &id,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/criu"), "{err}");
    assert_eq!(status(&b, &id), "running");
    wait_count_above(&b, count(&b));
}

#[test]
fn leave_running_keeps_the_container() {
    if !can_run() {
        return;
    }
    let mut b = counter();
    let id = b.id("leave");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    wait_count_above(&b, 2);
    let (code, err) = checkpoint(&b, &id, &["--leave-running"]);
    assert_eq!(code, 0, "checkpoint --leave-running: {err}");
    assert_eq!(status(&b, &id), "running");
    let then = count(&b);
    wait_count_above(&b, then + 3);
    assert!(images(&b).join("inventory.img").exists());
    // The images restore a second copy once the first is gone.
    let (code, _, err) = b.cmd(&["delete", "--force", &id]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = restore(&b, &id, &[]);
    assert_eq!(code, 0, "restore: {err}");
    assert_eq!(status(&b, &id), "running");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    if !can_run() {
        return;
    }
    let mut b = counter();
    let id = b.id("bad");
    // A checkpoint that was never made.
    let (code, err) = restore(&b, &id, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("images") && err.contains("not a directory"),
        "{err}"
    );
    assert!(!b.root.join(&id).exists() && !cgroup_exists(&id));
    // A wrong id.
    let (code, err) = checkpoint(&b, "no-such-container", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("no-such-container"), "{err}");
    assert!(!images(&b).join("inventory.img").exists());

    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    wait_count_above(&b, 2);
    // What this kernel cannot do is refused, not ignored; the container runs on.
    let (code, err) = checkpoint(&b, &id, &["--pre-dump"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--pre-dump") && err.contains("soft-dirty"),
        "{err}"
    );
    let (code, err) = checkpoint(&b, &id, &["--empty-ns", "ipc"]);
    assert_ne!(code, 0);
    assert!(err.contains("--empty-ns"), "{err}");
    assert_eq!(status(&b, &id), "running");
    wait_count_above(&b, count(&b));
    // Restoring over a container that exists.
    let (code, err) = checkpoint(&b, &id, &["--leave-running"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = restore(&b, &id, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("exists"), "{err}");
    assert_eq!(status(&b, &id), "running");

    // A corrupt image directory: CRIU fails, atoll removes what it made.
    let (code, _, err) = b.cmd(&["delete", "--force", &id]);
    assert_eq!(code, 0, "{err}");
    // (Good images, but a cgroup mode that would leave the tasks outside their limits.)
    let (code, err) = restore(&b, &id, &["--manage-cgroups-mode", "ignore"]);
    assert_ne!(code, 0);
    assert!(err.contains("ignore") && err.contains("limits"), "{err}");
    assert!(!b.root.join(&id).exists() && !cgroup_exists(&id));
    for f in std::fs::read_dir(images(&b)).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if name.starts_with("pstree") || name.starts_with("core-") {
            std::fs::write(f.path(), b"garbage").unwrap();
        }
    }
    let (code, err) = restore(&b, &id, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("criu restore failed") && err.contains("restore.log"),
        "{err}"
    );
    assert!(
        !b.root.join(&id).exists(),
        "state of a failed restore is left"
    );
    assert!(!cgroup_exists(&id), "cgroup of a failed restore is left");
}

/// Two network namespaces made by this test, joined by a veth pair: the container's (its config
/// names it by path) and the peer's. Removed on drop.
struct Netns {
    container: String,
    peer: String,
}

impl Netns {
    fn new() -> Netns {
        let pid = std::process::id();
        let n = Netns {
            container: format!("criu-c-{pid}"),
            peer: format!("criu-p-{pid}"),
        };
        let va = format!("vcc{}", pid % 1_000_000);
        let vb = format!("vcp{}", pid % 1_000_000);
        let (c, p) = (n.container.as_str(), n.peer.as_str());
        for args in [
            vec!["netns", "add", c],
            vec!["netns", "add", p],
            vec![
                "link", "add", &va, "netns", c, "type", "veth", "peer", &vb, "netns", p,
            ],
            vec!["-n", c, "addr", "add", "10.251.0.1/30", "dev", &va],
            vec!["-n", p, "addr", "add", "10.251.0.2/30", "dev", &vb],
            vec!["-n", c, "link", "set", &va, "up"],
            vec!["-n", p, "link", "set", &vb, "up"],
            vec!["-n", c, "link", "set", "lo", "up"],
            vec!["-n", p, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        n
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.container, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The peer: sends a numbered line every 50 ms and checks each echo; prints each number, then
/// "ok", or why it stopped.
const CLIENT: &str = r#"
import socket, sys, time
s = socket.create_connection(("10.251.0.1", 7000), timeout=10)
f = s.makefile("rwb")
for i in range(1, int(sys.argv[1]) + 1):
    f.write(b"%d\n" % i); f.flush()
    got = f.readline()
    if got != b"%d\n" % i:
        print("bad echo for %d: %r" % (i, got), flush=True); sys.exit(1)
    print(i, flush=True)
    time.sleep(0.05)
print("ok", flush=True)
"#;

#[test]
fn tcp_established_connection_survives() {
    if !can_run() {
        return;
    }
    let net = Netns::new();
    let mut b = Bundle::new("criu-tcp");
    b.set_args(&["nc", "-l", "-p", "7000", "-e", "cat"]);
    let nss = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    for ns in nss.iter_mut() {
        if ns["type"] == "network" {
            ns["path"] = format!("/run/netns/{}", net.container).into();
        }
    }
    b.save();
    let id = b.id("tcp");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    std::thread::sleep(Duration::from_millis(300));

    let lines = 80;
    let mut client = Command::new("ip")
        .args(["netns", "exec", &net.peer, "python3", "-c", CLIENT])
        .arg(lines.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let l = out.next().expect("client ended early").unwrap();
        seen.push(l);
    }
    // Without --tcp-established CRIU fails the dump after freezing: the container is thawed
    // and the connection carries on (checked by the client's full count below).
    let (code, err) = checkpoint(&b, &id, &[]);
    assert_ne!(
        code, 0,
        "dump of an ESTABLISHED connection without --tcp-established"
    );
    assert!(err.contains("tcp-established"), "{err}");
    assert_eq!(status(&b, &id), "running");
    for _ in 0..5 {
        seen.push(
            out.next()
                .expect("client ended after a failed dump")
                .unwrap(),
        );
    }
    let (code, err) = checkpoint(&b, &id, &["--tcp-established"]);
    assert_eq!(code, 0, "checkpoint --tcp-established: {err}");
    let (code, err) = restore(&b, &id, &["--tcp-established"]);
    assert_eq!(code, 0, "restore --tcp-established: {err}");
    assert_eq!(status(&b, &id), "running");
    // The namespace the config joins stayed outside the checkpoint and is joined again.
    let (_, st, _) = b.cmd(&["state", &id]);
    let pid = serde_json::from_str::<serde_json::Value>(&st).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let ino = |p: String| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(format!("/proc/{pid}/ns/net")),
        ino(format!("/run/netns/{}", net.container)),
        "the restored container is not in the netns its config names"
    );
    for l in out {
        seen.push(l.unwrap());
    }
    let status = client.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut err).unwrap();
    let want: Vec<String> = (1..=lines)
        .map(|i| i.to_string())
        .chain(["ok".to_string()])
        .collect();
    assert!(
        status.success() && seen == want,
        "the connection broke across checkpoint/restore: {status}, last lines {:?}, stderr {err}",
        &seen[seen.len().saturating_sub(3)..]
    );
}

/// podman `container checkpoint/restore --tcp-established --runtime atoll`: a container whose
/// shell streams numbered lines through an ESTABLISHED loopback connection to an echo server
/// in the same container (podman's `--network none` netns: no traffic leaves it). Checkpointed
/// and restored ten times in a row; after each restore the echoed lines carry on, and at the end
/// none is lost or repeated.
#[test]
fn podman_checkpoint_restore_tcp_established() {
    if !common::can_run_also(missing_criu().or_else(|| {
        (!Path::new("/usr/bin/podman").exists())
            .then(|| "podman is not installed (scripts/setup.sh installs it)".to_string())
    })) {
        return;
    }
    let p = Podman::new(
        "criu",
        &["sh", "nc", "cat", "sleep", "tail", "awk", "wc"],
        &[("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")],
    );
    let parent = format!("/{}", p.cgroup);
    let name = format!("criu-tcp-{}", std::process::id());
    let script = "nc -l -p 7000 -e cat & sleep 0.3; i=0; \
                  while true; do i=$((i+1)); echo $i; sleep 0.05; done | nc 127.0.0.1 7000 > /tmp/echo";
    let (code, _, err) = p.podman(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "--cgroup-parent",
        &parent,
        &p.image,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, 0, "podman run: {err}");
    let lines = |p: &Podman| -> u64 {
        let (_, out, _) = p.podman(&["exec", &name, "sh", "-c", "wc -l < /tmp/echo"]);
        out.trim().parse().unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines(&p) < 5 {
        assert!(Instant::now() < deadline, "the container echoes nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Without --tcp-established CRIU refuses the connection, and the container runs on.
    let (code, _, err) = p.podman(&["container", "checkpoint", &name]);
    assert_ne!(
        code, 0,
        "checkpoint of an ESTABLISHED connection without the flag"
    );
    assert!(err.contains("tcp-established"), "{err}");
    // Ten times in a row (issue 12): each time the stream carries on.
    for round in 1..=10 {
        let (code, _, err) = p.podman(&["container", "checkpoint", "--tcp-established", &name]);
        assert_eq!(
            code, 0,
            "round {round}: podman container checkpoint --tcp-established: {err}"
        );
        let frozen = {
            let (_, out, _) = p.podman(&[
                "ps",
                "-a",
                "--format",
                "{{.Status}}",
                "--filter",
                &format!("name={name}"),
            ]);
            out
        };
        assert!(
            frozen.starts_with("Exited"),
            "round {round}: after checkpoint: {frozen}"
        );
        let (code, _, err) = p.podman(&["container", "restore", "--tcp-established", &name]);
        assert_eq!(
            code, 0,
            "round {round}: podman container restore --tcp-established: {err}"
        );
        let before = lines(&p);
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines(&p) < before + 5 {
            assert!(
                Instant::now() < deadline,
                "round {round}: no echo after restore (stuck at {before})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (code, out, err) = p.podman(&[
        "exec",
        &name,
        "awk",
        "NR != $1 { print \"line \" NR \" is \" $1; exit 1 }",
        "/tmp/echo",
    ]);
    assert_eq!(code, 0, "echoed lines lost or repeated: {out}{err}");
}

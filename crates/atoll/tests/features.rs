//! Runtime features reached through CLI flags and rarer config fields (console socket, preserved
//! fds, idmapped mounts, time namespace, seccomp notify, update, logs, kill), each checked from
//! where a user would see it.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// Accept one connection on `listener` in a thread (atoll connects while the test waits on it)
/// and hand back the payload and the fd that came in SCM_RIGHTS.
fn accept_fd(listener: UnixListener) -> mpsc::Receiver<(Vec<u8>, Option<OwnedFd>)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut buf = vec![0u8; 1 << 16];
        let (n, fd) = atoll_sys::socket::recv_with_fd(conn.as_fd(), &mut buf).unwrap();
        buf.truncate(n);
        // The JSON may come in more than one read; the sender closes after the last byte.
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = conn.read_to_end(&mut buf);
        let _ = tx.send((buf, fd));
    });
    rx
}

fn state_of(b: &Bundle, id: &str) -> String {
    let (_, out, _) = b.cmd(&["state", id]);
    serde_json::from_str::<serde_json::Value>(&out)
        .map(|v| v["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn wait_status(b: &Bundle, id: &str, want: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = state_of(b, id);
        if s == want || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// create + start a container running `args`.
fn start(b: &mut Bundle, name: &str, args: &[&str], extra: &[&str]) -> String {
    b.set_args(args);
    let id = b.id(name);
    let (code, err) = b.create(&id, extra);
    assert_eq!(code, 0, "create: {err}");
    let (code, _, err) = b.cmd(&["start", &id]);
    assert_eq!(code, 0, "start: {err}");
    id
}

fn socket_path(b: &Bundle, name: &str) -> PathBuf {
    // Outside the rootfs, inside the bundle's base dir: removed with the bundle.
    b.dir.parent().unwrap().join(name)
}

#[test]
fn console_socket_gets_a_working_pty_master() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("console");
    b.config["process"]["terminal"] = true.into();
    let sock = socket_path(&b, "console.sock");
    let rx = accept_fd(UnixListener::bind(&sock).unwrap());
    let id = start(
        &mut b,
        "tty",
        &[
            "sh",
            "-c",
            "tty; test -c /dev/console && echo console-ok; read line; echo got-$line",
        ],
        &["--console-socket", sock.to_str().unwrap()],
    );
    let (_, master) = rx
        .recv_timeout(WAIT)
        .expect("atoll connected to the console socket");
    let master = master.expect("the pty master came in SCM_RIGHTS");
    // Typed ahead: the line discipline keeps it until `read` asks.
    std::fs::File::from(master.try_clone().unwrap())
        .write_all(b"hello\n")
        .unwrap();
    let text = read_pty(master, Some("got-hello"), WAIT);
    assert!(text.contains("/dev/pts/0"), "tty inside: {text:?}");
    assert!(text.contains("console-ok"), "/dev/console inside: {text:?}");
    assert!(
        text.contains("got-hello"),
        "input through the master: {text:?}"
    );
    assert_eq!(wait_status(&b, &id, "stopped"), "stopped");
}

#[test]
fn exec_tty_sends_its_own_pty_master() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("exectty");
    let id = start(&mut b, "base", &["sleep", "1000"], &[]);
    let sock = socket_path(&b, "exec-console.sock");
    let rx = accept_fd(UnixListener::bind(&sock).unwrap());
    let errfile = b.dir.join("exec.err");
    let mut exec = b
        .atoll()
        .args(["exec", "-t", "--console-socket", sock.to_str().unwrap()])
        .args([&id, "sh", "-c", "tty; echo exec-ok"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&errfile).unwrap())
        .spawn()
        .unwrap();
    let received = rx.recv_timeout(WAIT);
    let text = match received {
        Ok((_, Some(master))) => read_pty(master, Some("exec-ok"), WAIT),
        _ => String::new(),
    };
    let status = exec.wait().unwrap();
    let err = std::fs::read_to_string(&errfile).unwrap_or_default();
    assert!(status.success(), "exec -t: {err}");
    assert!(
        text.contains("/dev/pts/") && text.contains("exec-ok"),
        "exec's tty: {text:?} {err}"
    );
}

#[test]
fn preserve_fds_passes_exactly_n_fds() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("fds");
    let file = socket_path(&b, "passed.txt");
    std::fs::write(&file, "passed-through\n").unwrap();
    b.set_args(&[
        "sh",
        "-c",
        "cat /proc/self/fd/3 2>&1 || echo no-fd3; [ -e /proc/$$/fd/4 ] && echo fd4-open || echo no-fd4",
    ]);
    let run = |b: &mut Bundle, n: &str| {
        let id = b.id("fds");
        // fd 3 is open in atoll (not close-on-exec) the way a caller such as containerd leaves it.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"f=$1; shift; exec 3<"$f" 4<"$f"; exec "$@""#)
            .arg("sh")
            .arg(&file)
            .arg(ATOLL)
            .arg("--root")
            .arg(&b.root)
            .args(["run", "--preserve-fds", n, "--bundle"])
            .arg(&b.dir)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        decode(out)
    };
    let (code, out, err) = run(&mut b, "1");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("passed-through"), "fd 3 inside: {out}");
    assert!(out.contains("no-fd4"), "fd 4 is not passed: {out}");
    let (code, out, err) = run(&mut b, "0");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("no-fd3"),
        "nothing passed without the flag: {out}"
    );
}

#[test]
fn idmapped_bind_mount_shows_mapped_owner() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("idmap");
    let host = socket_path(&b, "idmapped");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("file"), "x").unwrap();
    std::os::unix::fs::chown(host.join("file"), Some(0), Some(0)).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/mnt/idm",
            "type": "bind",
            "source": host,
            "options": ["bind", "idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 1}],
        }));
    let out =
        b.sh("stat -c '%u:%g' /mnt/idm/file; touch /mnt/idm/made 2>&1 || echo create-refused");
    assert!(
        out.starts_with("1000:2000\n"),
        "owner through the idmap: {out}"
    );
    // Container root (uid 0) has no mapping in this mount: the kernel refuses (EOVERFLOW).
    assert!(out.contains("create-refused"), "{out}");
    let meta = std::fs::metadata(host.join("file")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "the host file is unchanged"
    );
    assert!(!host.join("made").exists());
}

/// mount_setattr(MOUNT_ATTR_IDMAP) needs CAP_SYS_ADMIN over the filesystem's user namespace (the
/// host's), which init lacks in the container's user namespace: the parent makes the idmapped
/// detached mount and passes its fd to init (protocol message NeedMount).
#[test]
fn idmap_without_mappings_uses_the_containers_user_namespace() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("idmapns");
    let host = socket_path(&b, "idmapped");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("file"), "x").unwrap();
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "user"}));
    let map = serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.config["linux"]["uidMappings"] = map.clone();
    b.config["linux"]["gidMappings"] = map;
    let status = std::process::Command::new("chown")
        .arg("-R")
        .arg("200000:200000")
        .arg(b.rootfs())
        .status()
        .unwrap();
    assert!(status.success());
    let mount = |opts: &[&str]| {
        serde_json::json!({"destination": "/mnt/idm", "type": "bind", "source": host,
            "options": opts})
    };
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(mount(&["bind", "idmap"]));
    // Host root's file is the container root's through the container's own mapping.
    assert_eq!(b.sh("stat -c '%u:%g' /mnt/idm/file").trim(), "0:0");
    // Without idmap the same file is unmapped (the overflow id).
    b.config["mounts"].as_array_mut().unwrap().pop();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(mount(&["bind"]));
    assert_eq!(b.sh("stat -c '%u:%g' /mnt/idm/file").trim(), "65534:65534");
}

#[test]
fn time_namespace_offsets_apply() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("timens");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = serde_json::json!({
        "monotonic": {"secs": 86400},
        "boottime": {"secs": 172800, "nanosecs": 0},
    });
    let host_before = uptime(&std::fs::read_to_string("/proc/uptime").unwrap());
    let out = b.sh("cat /proc/uptime; cat /proc/self/timens_offsets");
    let inside = uptime(&out);
    assert!(
        inside >= host_before + 172800.0,
        "uptime inside {inside}, host {host_before}: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().eq(["monotonic", "86400", "0"])),
        "{out}"
    );
}

fn uptime(text: &str) -> f64 {
    text.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn no_pivot_still_jails_the_rootfs() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("nopivot");
    std::fs::write(b.rootfs().join("marker"), "in-rootfs").unwrap();
    b.set_args(&[
        "sh",
        "-c",
        "cat /marker; echo; [ -e /work ] && echo host-visible || echo host-hidden; ls /proc/1/root/marker",
    ]);
    let id = b.id("nopivot");
    let (code, out, err) = b.cmd(&[
        "run",
        "--no-pivot",
        "--bundle",
        b.dir.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(code, 0, "run --no-pivot: {err}");
    assert!(out.contains("in-rootfs"), "{out}");
    assert!(out.contains("host-hidden"), "{out}");

    // create --no-pivot too.
    let id = start(
        &mut b,
        "np2",
        &["sh", "-c", "cat /marker > /tmp/seen"],
        &["--no-pivot"],
    );
    assert_eq!(wait_status(&b, &id, "stopped"), "stopped");
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("tmp/seen")).unwrap(),
        "in-rootfs"
    );
}

#[test]
fn seccomp_notify_reaches_the_listener_and_its_answer_the_container() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("notify");
    let sock = socket_path(&b, "seccomp.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    b.config["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "meta-for-test",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let (n, fd) = atoll_sys::socket::recv_with_fd(conn.as_fd(), &mut buf).unwrap();
        let mut body = buf[..n].to_vec();
        let mut conn = conn;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = conn.read_to_end(&mut body);
        let fd = fd.expect("the notify fd came in SCM_RIGHTS");
        let mut answered = 0;
        // Answer until the container's filter goes away (recv fails once no task uses it).
        while let Ok(n) = atoll_sys::seccomp::seccomp_notif_recv(fd.as_fd()) {
            let resp = atoll_sys::seccomp::SeccompNotifResp::fail(n.id, libc::ENOSPC);
            if atoll_sys::seccomp::seccomp_notif_send(fd.as_fd(), &resp).is_ok() {
                answered += 1;
                let _ = tx.send((body.clone(), answered));
            }
        }
    });
    let out = b.sh("mkdir /tmp/denied 2>&1; echo rc=$?; [ -d /tmp/denied ] || echo absent");
    let (body, answered) = rx.recv_timeout(WAIT).expect("the listener answered");
    assert!(answered >= 1);
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.contains("absent") && !out.contains("rc=0"), "{out}");
    let msg: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        msg["ociVersion"].as_str().map(|v| v.starts_with("1.")),
        Some(true)
    );
    assert_eq!(msg["fds"], serde_json::json!(["seccompFd"]));
    assert!(msg["pid"].as_i64().unwrap_or(0) > 0, "{msg}");
    assert_eq!(msg["metadata"], "meta-for-test");
    assert!(
        msg["state"]["id"].as_str().unwrap().starts_with("sh-"),
        "{msg}"
    );
    assert_eq!(msg["state"]["pid"], msg["pid"]);
}

#[test]
fn update_changes_limits_of_a_running_container() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("update");
    let id = start(&mut b, "upd", &["sleep", "1000"], &[]);
    let read_limits = |b: &Bundle| {
        let (code, out, err) = b.cmd(&[
            "exec",
            &id,
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/pids/pids.max",
        ]);
        assert_eq!(code, 0, "{err}");
        out.split_whitespace().map(String::from).collect::<Vec<_>>()
    };
    let (code, _, err) = b.cmd(&["update", "--memory", "128m", "--pids-limit", "33", &id]);
    assert_eq!(code, 0, "update: {err}");
    assert_eq!(read_limits(&b), ["134217728", "33"]);

    let file = socket_path(&b, "resources.json");
    std::fs::write(
        &file,
        r#"{"memory": {"limit": 67108864}, "pids": {"limit": 44}}"#,
    )
    .unwrap();
    let (code, _, err) = b.cmd(&["update", "-r", file.to_str().unwrap(), &id]);
    assert_eq!(code, 0, "update -r: {err}");
    assert_eq!(read_limits(&b), ["67108864", "44"]);

    let (code, _, err) = b.cmd(&["update", "--memory", "lots", &id]);
    assert_ne!(code, 0);
    assert!(err.contains("--memory"), "{err}");
    assert_eq!(
        read_limits(&b),
        ["67108864", "44"],
        "bad input changes nothing"
    );
}

#[test]
fn json_log_has_one_error_line() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("log");
    let log = socket_path(&b, "atoll.log");
    let (code, _, _) = b.cmd(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "start",
        "no-such-container",
    ]);
    assert_ne!(code, 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let errors: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .filter(|v: &serde_json::Value| v["level"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    let msg = errors[0]["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("no-such-container"), "{text}");
    assert!(
        errors[0]["time"].as_str().is_some_and(|t| t.len() >= 19),
        "{text}"
    );

    // An error inside the container's init (a bad mount source) is reported once: one JSON line
    // in the log and one line on stderr, not a second copy from init itself.
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/x", "type": "bind", "source": "/nonexistent-src", "options": ["bind"],
        }));
    b.save();
    let log = socket_path(&b, "run.log");
    let id = b.id("logrun");
    let args = [
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "run",
        "--bundle",
    ];
    let (code, _, err) = decode(b.atoll().args(args).arg(&b.dir).arg(&id).output().unwrap());
    assert_ne!(code, 0);
    assert_eq!(err.matches("/nonexistent-src").count(), 1, "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["level"], "error");
    assert!(
        lines[0]["msg"]
            .as_str()
            .unwrap()
            .contains("/nonexistent-src"),
        "{text}"
    );
}

#[test]
#[cfg(target_arch = "x86_64")]
fn linux32_personality_reports_i686() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("pers");
    b.config["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"});
    assert_eq!(b.sh("uname -m").trim(), "i686");
    b.config["linux"]["personality"] = serde_json::json!({"domain": "LINUX"});
    assert_eq!(b.sh("uname -m").trim(), "x86_64");
}

#[test]
fn kill_all_and_signal_spellings() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("kill");
    // sh is the pid namespace's init: without a handler it ignores TERM from outside, its child
    // `sleep` does not. The marker shows that only `kill --all` reached the child.
    let script = "sleep 1000; touch /tmp/child-ended; sleep 1000";
    let id = start(&mut b, "all", &["sh", "-c", script], &[]);
    let marker = b.rootfs().join("tmp/child-ended");
    assert_eq!(b.cmd(&["kill", &id, "TERM"]).0, 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "TERM without --all reaches only init");
    let (code, _, err) = b.cmd(&["kill", "--all", &id, "TERM"]);
    assert_eq!(code, 0, "kill --all: {err}");
    let deadline = Instant::now() + WAIT;
    while !marker.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(marker.exists(), "kill --all TERM reached the child");
    assert_eq!(wait_status(&b, &id, "running"), "running");

    for sig in ["SIGKILL", "KILL", "9"] {
        let id = start(&mut b, "sig", &["sleep", "1000"], &[]);
        let (code, _, err) = b.cmd(&["kill", &id, sig]);
        assert_eq!(code, 0, "kill {sig}: {err}");
        assert_eq!(wait_status(&b, &id, "stopped"), "stopped", "after {sig}");
        let (code, _, err) = b.cmd(&["kill", &id, sig]);
        assert_ne!(code, 0, "kill of a stopped container is an error");
        assert!(
            err.contains("not running") || err.contains("stopped"),
            "{err}"
        );
    }
    let (code, _, err) = b.cmd(&["kill", &id, "NOSUCHSIG"]);
    assert_ne!(code, 0);
    assert!(err.contains("NOSUCHSIG"), "{err}");
}

#[test]
fn rootless_spec_runs_as_root() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("rootless");
    std::fs::remove_file(b.dir.join("config.json")).unwrap();
    let (code, _, err) = b.cmd(&["spec", "--rootless", "--bundle", b.dir.to_str().unwrap()]);
    assert_eq!(code, 0, "spec --rootless: {err}");
    b.config = serde_json::from_slice(&std::fs::read(b.dir.join("config.json")).unwrap()).unwrap();
    let ns: Vec<&str> = b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert!(ns.contains(&"user"), "{ns:?}");
    assert_eq!(b.config["linux"]["uidMappings"][0]["hostID"], 0);
    b.config["process"]["terminal"] = false.into();
    b.config["root"]["readonly"] = false.into();
    let out = b.sh("id -u; cat /proc/self/uid_map; touch /tmp/ok && echo writable");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words[..4], ["0", "0", "0", "1"], "{out}");
    assert!(out.contains("writable"), "{out}");
}

#[test]
fn features_json_matches_what_works() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("features");
    let (code, out, err) = b.cmd(&["features"]);
    assert_eq!(code, 0, "{err}");
    let f: serde_json::Value = serde_json::from_str(&out).unwrap();
    for key in ["ociVersionMin", "ociVersionMax"] {
        assert!(
            f[key].as_str().is_some_and(|v| v.starts_with("1.")),
            "{key}: {f}"
        );
    }
    assert!(f["mountOptions"]
        .as_array()
        .is_some_and(|o| o.iter().any(|x| x == "rbind")));
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    let namespaces: Vec<String> = f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let hooks: Vec<String> = f["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert!(namespaces.len() >= 7, "{namespaces:?}");
    assert!(hooks.len() >= 6, "{hooks:?}");

    // Every namespace listed: one container with all of them, each a new one (inode differs).
    let proc_name = |t: &str| {
        match t {
            "network" => "net",
            "mount" => "mnt",
            other => other,
        }
        .to_string()
    };
    b.config["linux"]["namespaces"] = namespaces
        .iter()
        .map(|t| serde_json::json!({"type": t}))
        .collect::<Vec<_>>()
        .into();
    b.config["linux"]["uidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    b.config["linux"]["gidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    // Every hook listed appends its name to a log (a host path, or / inside the container for
    // hooks that run after pivot_root).
    let log = b.dir.join("hooks.log");
    let mut hook_obj = serde_json::Map::new();
    for h in &hooks {
        let script = format!(
            "echo {h} >> {} 2>/dev/null || echo {h} >> /hooks.log",
            log.display()
        );
        hook_obj.insert(
            h.clone(),
            serde_json::json!([{"path": "/bin/sh", "args": ["sh", "-c", script]}]),
        );
    }
    b.config["hooks"] = hook_obj.into();
    let script: String = namespaces
        .iter()
        .map(|t| format!("echo {t} $(readlink /proc/self/ns/{});", proc_name(t)))
        .collect();
    let out = b.sh(&script);
    for t in &namespaces {
        let host = std::fs::read_link(format!("/proc/self/ns/{}", proc_name(t))).unwrap();
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{t} ")))
            .unwrap_or_else(|| panic!("{t} missing: {out}"));
        assert_ne!(
            line.split_whitespace().nth(1).unwrap_or_default(),
            host.to_str().unwrap(),
            "{t} namespace is new: {out}"
        );
    }
    let ran = std::fs::read_to_string(&log).unwrap_or_default()
        + &std::fs::read_to_string(b.rootfs().join("hooks.log")).unwrap_or_default();
    for h in &hooks {
        assert!(ran.lines().any(|l| l == h), "hook {h} ran: {ran:?}");
    }
}

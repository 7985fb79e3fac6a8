//! The container's process as runc gives it, where clients rely on it: HOME, a cwd the image
//! lacks, a process group of its own, a foreground terminal without --console-socket, hooks'
//! environment and poststart failures, process.scheduler, and capabilities outside the bounding
//! set. The expected values were taken from runc 1.1 on this host.

mod common;
use common::*;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

/// Fields 5 and 6 (process group, session) and the pid of a /proc/<pid>/stat line.
fn pgrp_session(stat: &str) -> (i64, i64, i64) {
    let after = stat.rsplit_once(") ").expect("a stat line").1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let pid = stat.split_whitespace().next().unwrap().parse().unwrap();
    (pid, f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// The value of `key` in `env` output.
fn env_value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// HOME, when process.env has none, is the user's home in the container's /etc/passwd, else `/`;
/// for the init and for an exec'd process alike (runc: HOME=/root for root).
#[test]
fn home_comes_from_the_containers_passwd() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("home");
    b.config["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    b.set_args(&["env"]);
    for (uid, want) in [(0, "/root"), (1000, "/tmp"), (4242, "/")] {
        b.config["process"]["user"] = serde_json::json!({"uid": uid, "gid": uid});
        b.save();
        let (code, out, err) = b.run("home");
        assert_eq!(code, 0, "{err}");
        assert_eq!(env_value(&out, "HOME"), Some(want), "uid {uid}: {out}");
    }
    // A HOME in the env is kept as given.
    b.config["process"]["user"] = serde_json::json!({"uid": 0, "gid": 0});
    b.config["process"]["env"] = serde_json::json!(["PATH=/bin", "HOME=/given"]);
    b.save();
    let (code, out, err) = b.run("home");
    assert_eq!(code, 0, "{err}");
    assert_eq!(env_value(&out, "HOME"), Some("/given"), "{out}");
    // A passwd that is a symlink out of the root is read inside it: no entry there, so `/`.
    let host = std::path::PathBuf::from(format!("/tmp/atoll-proc-passwd-{}", std::process::id()));
    std::fs::write(&host, "root:x:0:0::/host-home:/bin/sh\n").unwrap();
    let passwd = b.rootfs().join("etc/passwd");
    std::fs::remove_file(&passwd).unwrap();
    std::os::unix::fs::symlink(format!("../../../../../../..{}", host.display()), &passwd).unwrap();
    b.config["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    b.save();
    let (code, out, err) = b.run("home");
    std::fs::remove_file(&host).unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(env_value(&out, "HOME"), Some("/"), "{out}");
    // A FIFO there is not read (it would block the init): `/`.
    std::fs::remove_file(&passwd).unwrap();
    nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let (code, out, err) = b.run("home");
    assert_eq!(code, 0, "{err}");
    assert_eq!(env_value(&out, "HOME"), Some("/"), "{out}");
    std::fs::remove_file(&passwd).unwrap();
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").unwrap();

    // exec: the container's process has no HOME either.
    b.set_args(&["sleep", "1000"]);
    let id = b.id("homeexec");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = b.cmd(&["exec", &id, "env"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(env_value(&out, "HOME"), Some("/root"), "{out}");
}

/// A process.cwd the image lacks is made, 0755, inside the root (a symlink on the way resolves
/// in the rootfs, never on the host), as runc makes it.
#[test]
fn missing_cwd_is_made_inside_the_root() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("cwd");
    b.config["process"]["cwd"] = "/work/deep".into();
    b.set_args(&["pwd"]);
    let (code, out, err) = b.run("cwd");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "/work/deep");
    let made = std::fs::metadata(b.rootfs().join("work/deep")).unwrap();
    assert!(made.is_dir());
    assert_eq!(made.permissions().mode() & 0o7777, 0o755);

    // An absolute symlink names a directory of the rootfs, not the host's (which is absent).
    let outside = format!("/tmp/atoll-proc-cwd-{}", std::process::id());
    std::fs::create_dir(b.rootfs().join(outside.trim_start_matches('/'))).unwrap();
    std::os::unix::fs::symlink(&outside, b.rootfs().join("out")).unwrap();
    b.config["process"]["cwd"] = "/out/sub".into();
    b.save();
    let (code, out, err) = b.run("cwd");
    assert_eq!(code, 0, "{err}");
    // The symlink resolved inside the root: getcwd(3) names the real directory.
    assert_eq!(out.trim(), format!("{outside}/sub"));
    assert!(
        !std::path::Path::new(&outside).exists(),
        "{outside} made on the host"
    );
    assert!(b
        .rootfs()
        .join(outside.trim_start_matches('/'))
        .join("sub")
        .is_dir());
}

/// The init and an exec'd process each lead their own session and process group inside the
/// container (runc: init 1/1, exec'd pid/pid), never the host's (which shows as 0).
#[test]
fn processes_lead_their_own_process_group() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("pgrp");
    b.set_args(&["cat", "/proc/self/stat"]);
    let (code, out, err) = b.run("pgrp");
    assert_eq!(code, 0, "{err}");
    assert_eq!(pgrp_session(&out), (1, 1, 1), "{out}");

    b.set_args(&["sleep", "1000"]);
    let id = b.id("pgrpexec");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = b.cmd(&["exec", &id, "cat", "/proc/self/stat"]);
    assert_eq!(code, 0, "{err}");
    let (pid, pgrp, session) = pgrp_session(&out);
    assert!(pid > 1, "{out}");
    assert_eq!((pgrp, session), (pid, pid), "{out}");
}

/// Run `cmd` with a new pty as its stdio, its window size `rows`x`cols`; return (exit code,
/// everything written to the terminal).
fn in_pty(mut cmd: Command, rows: u16, cols: u16) -> (i32, String) {
    let pty = nix::pty::openpty(
        Some(&nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .unwrap();
    let cmd_text = format!("{cmd:?}");
    let slave: OwnedFd = pty.slave;
    let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let mut child = cmd
        .stdin(io(&slave))
        .stdout(io(&slave))
        .stderr(io(&slave))
        .spawn()
        .unwrap();
    // The command keeps its copies of the slave: only atoll's may stay open, or the master
    // never reads EOF.
    drop(cmd);
    drop(slave);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        // EIO once the last slave fd (atoll's) is closed.
        let _eio_at_the_end = master.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd_text} still running after 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = reader.join().unwrap();
    (status.code().unwrap_or(-1), out)
}

/// `run -t` and `exec -t` without --console-socket work in the foreground: atoll relays the pty
/// (our terminal's size, the output, the exit code), as runc does.
#[test]
fn tty_in_the_foreground_without_a_console_socket() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("ttyfg");
    b.config["process"]["terminal"] = true.into();
    b.set_args(&["sh", "-c", "test -t 0 && echo in-a-tty; stty size; exit 7"]);
    let id = b.id("ttyrun");
    let mut cmd = b.atoll();
    cmd.args(["run", "--bundle"]).arg(&b.dir).arg(&id);
    let (code, out) = in_pty(cmd, 33, 77);
    assert_eq!(code, 7, "{out}");
    assert!(out.contains("in-a-tty"), "{out}");
    assert!(out.contains("33 77"), "{out}");

    b.config["process"]["terminal"] = false.into();
    b.set_args(&["sleep", "1000"]);
    let id = b.id("ttyexec");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "{err}");
    let mut cmd = b.atoll();
    cmd.args(["exec", "-t", &id, "sh", "-c"])
        .arg("test -t 0 && echo in-a-tty; stty size; exit 5");
    let (code, out) = in_pty(cmd, 21, 55);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("in-a-tty"), "{out}");
    assert!(out.contains("21 55"), "{out}");

    // Detached, nobody would relay it: still refused without a console socket.
    let (code, err) = b.detached(&["exec", "-d", "-t", &id, "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("--console-socket"), "{err}");
}

/// A hook without `env` runs in the runtime's environment (runc's and crun's do), PATH included;
/// one with `env` gets exactly that.
#[test]
fn hooks_without_env_inherit_the_runtimes() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("hookenv");
    let seen = b.dir.join("hook.env");
    let given = b.dir.join("hook-given.env");
    b.config["hooks"] = serde_json::json!({"prestart": [
        {"path": "/bin/sh", "args": ["sh", "-c", format!("echo \"$PATH\" > {}", seen.display())]},
        {"path": "/bin/sh", "args": ["sh", "-c", format!("echo \"$PATH\" > {}", given.display())],
         "env": ["PATH=/given"]},
    ]});
    b.set_args(&["true"]);
    let path = "/usr/local/bin:/usr/bin:/bin:/atoll-test-path";
    let id = b.id("hookenv");
    let out = b
        .atoll()
        .env("PATH", path)
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .output()
        .unwrap();
    let (code, _, err) = decode(out);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), path);
    assert_eq!(std::fs::read_to_string(&given).unwrap().trim(), "/given");
}

/// A failing poststart hook fails `start` (and `run`), and the container is killed and removed,
/// as runc and crun do.
#[test]
fn failing_poststart_fails_start_and_removes_the_container() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("poststart");
    b.config["hooks"] = serde_json::json!({"poststart": [{"path": "/bin/false"}]});
    b.set_args(&["sleep", "1000"]);
    let id = b.id("poststart");
    let (code, err) = b.create(&id, &[]);
    assert_eq!(code, 0, "{err}");
    let (_, state, _) = b.cmd(&["state", &id]);
    let pid = serde_json::from_str::<serde_json::Value>(&state).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let (code, _, err) = b.cmd(&["start", &id]);
    assert_ne!(code, 0, "start succeeded");
    assert!(err.contains("poststart"), "{err}");
    let (code, _, err) = b.cmd(&["state", &id]);
    assert_ne!(code, 0, "container still there");
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "init {pid} still running"
    );

    let id = b.id("poststartrun");
    let (code, err) = b.detached(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert_ne!(code, 0, "run succeeded");
    assert!(err.contains("poststart"), "{err}");
    let (code, _, _) = b.cmd(&["state", &id]);
    assert_ne!(code, 0, "container still there after run");
}

/// Field `n` (1-based, as proc(5) counts) of a /proc/<pid>/stat line.
fn stat_field(stat: &str, n: usize) -> i64 {
    let after = stat.rsplit_once(") ").expect("a stat line").1;
    after
        .split_whitespace()
        .nth(n - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// process.scheduler is applied with sched_setattr(2) before execve (policy, nice, priority;
/// flags by the spec's names), and what the kernel refuses fails create naming the field.
#[test]
fn scheduler_is_applied() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("sched");
    b.set_args(&["cat", "/proc/self/stat"]);
    b.config["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_BATCH", "nice": 7,
        "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
    b.save();
    let (code, out, err) = b.run("batch");
    assert_eq!(code, 0, "{err}");
    // proc(5): 19 nice, 41 policy (SCHED_BATCH = 3).
    assert_eq!(
        (stat_field(&out, 19), stat_field(&out, 41)),
        (7, 3),
        "{out}"
    );

    // An exec'd process from --process gets its own.
    b.config["process"]["scheduler"] = serde_json::Value::Null;
    b.set_args(&["sleep", "1000"]);
    let id = b.id("schedexec");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "{err}");
    let p = serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0},
        "args": ["cat", "/proc/self/stat"], "env": ["PATH=/bin"],
        "scheduler": {"policy": "SCHED_IDLE", "flags": ["SCHED_FLAG_RESET_ON_FORK"]}});
    let file = b.dir.join("process.json");
    std::fs::write(&file, p.to_string()).unwrap();
    let (code, out, err) = b.cmd(&["exec", "--process", file.to_str().unwrap(), &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stat_field(&out, 41), 5, "SCHED_IDLE: {out}");

    // SCHED_ISO is reserved and not implemented: the kernel's EINVAL, by field.
    b.config["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_ISO"});
    b.set_args(&["true"]);
    let (code, _, err) = b.run("iso");
    assert_ne!(code, 0, "SCHED_ISO accepted");
    assert!(
        err.contains("process.scheduler") && err.contains("sched_setattr"),
        "{err}"
    );
    assert!(err.contains("Invalid argument"), "{err}");
}

/// A capability in effective, permitted, inheritable or ambient but not in the bounding set can
/// never be held: create fails naming the capability and the set (runc's start fails, EPERM).
#[test]
fn caps_outside_the_bounding_set_are_refused() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("capbnd");
    b.set_args(&["true"]);
    for set in ["effective", "permitted", "inheritable", "ambient"] {
        let mut caps = b.config["process"]["capabilities"].clone();
        let mut list = caps[set].as_array().cloned().unwrap_or_default();
        list.push("CAP_SYS_ADMIN".into());
        caps[set] = list.into();
        let saved = std::mem::replace(&mut b.config["process"]["capabilities"], caps);
        b.save();
        let id = b.id("capbnd");
        let (code, err) = b.create(&id, &[]);
        b.config["process"]["capabilities"] = saved;
        assert_ne!(code, 0, "{set}: CAP_SYS_ADMIN outside bounding accepted");
        assert!(
            err.contains(&format!("process.capabilities.{set}")) && err.contains("CAP_SYS_ADMIN"),
            "{set}: {err}"
        );
        let (_, list, _) = b.cmd(&["list", "-q"]);
        assert!(list.trim().is_empty(), "{set}: left {list}");
    }
    b.save();
    let (code, _, err) = b.run("capbnd-ok");
    assert_eq!(code, 0, "{err}");
}

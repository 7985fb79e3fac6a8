//! The runc verbs on real containers: run, create/start/state/kill/delete, exec, pause/resume,
//! ps, list, update, events, and cleanup after a crash.

mod common;
use common::*;

#[test]
fn run_passes_exit_code_through() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("exitcode");
    b.set_args(&["sh", "-c", "echo hello; exit 7"]);
    let (code, out, err) = b.run("exit");
    assert_eq!(code, 7, "stderr: {err}");
    assert_eq!(out.trim(), "hello");
    // run deletes the container afterwards.
    let (_, list, _) = b.cmd(&["list", "-q"]);
    assert!(list.trim().is_empty(), "left behind: {list}");
}

#[test]
fn create_start_state_kill_delete() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("lifecycle");
    b.set_args(&["sleep", "1000"]);
    let id = b.id("life");
    let pidfile = b.dir.join("pid");
    let (code, err) = b.create(&id, &["--pid-file", pidfile.to_str().unwrap()]);
    assert_eq!(code, 0, "create: {err}");
    let state: serde_json::Value = serde_json::from_str(&b.cmd(&["state", &id]).1).unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    let pid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(state["pid"], pid);
    // Not started yet: the process is still atoll's init, not sleep.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_ne!(comm.trim(), "sleep");

    assert_eq!(b.cmd(&["start", &id]).0, 0);
    let state: serde_json::Value = serde_json::from_str(&b.cmd(&["state", &id]).1).unwrap();
    assert_eq!(state["status"], "running");
    for _ in 0..100 {
        if std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            == "sleep"
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "sleep"
    );

    // A second start is refused.
    let (code, _, err) = b.cmd(&["start", &id]);
    assert_ne!(code, 0);
    assert!(err.contains("running"), "{err}");
    // Deleting a running container needs --force.
    let (code, _, err) = b.cmd(&["delete", &id]);
    assert_ne!(code, 0);
    assert!(err.contains("--force"), "{err}");

    let (list_code, list, _) = b.cmd(&["list", "--format", "json"]);
    assert_eq!(list_code, 0);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["id"], id.as_str());

    assert_eq!(b.cmd(&["kill", &id, "KILL"]).0, 0);
    let mut status = String::new();
    for _ in 0..200 {
        let state: serde_json::Value = serde_json::from_str(&b.cmd(&["state", &id]).1).unwrap();
        status = state["status"].as_str().unwrap().to_string();
        if status == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(status, "stopped");
    assert_eq!(b.cmd(&["delete", &id]).0, 0);
    let (code, _, err) = b.cmd(&["state", &id]);
    assert_ne!(code, 0);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!b.root.join(&id).exists());
}

#[test]
fn exec_pause_resume_ps() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("exec");
    b.set_args(&["sleep", "1000"]);
    let id = b.id("exec");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    let (code, out, err) = b.cmd(&["exec", &id, "sh", "-c", "echo $$; cat /proc/1/comm; exit 3"]);
    assert_eq!(code, 3, "exec: {err}");
    let mut lines = out.lines();
    assert_ne!(
        lines.next().unwrap().trim(),
        "1",
        "exec'd process must not be pid 1"
    );
    assert_eq!(
        lines.next().unwrap().trim(),
        "sleep",
        "exec must see the container's pid namespace"
    );

    let (code, out, _) = b.cmd(&["ps", "--format", "json", &id]);
    assert_eq!(code, 0);
    let pids: Vec<i64> = serde_json::from_str(&out).unwrap();
    assert!(!pids.is_empty());

    assert_eq!(b.cmd(&["pause", &id]).0, 0);
    let state: serde_json::Value = serde_json::from_str(&b.cmd(&["state", &id]).1).unwrap();
    assert_eq!(state["status"], "paused");
    assert_eq!(b.cmd(&["resume", &id]).0, 0);
    let state: serde_json::Value = serde_json::from_str(&b.cmd(&["state", &id]).1).unwrap();
    assert_eq!(state["status"], "running");

    let (code, out, err) = b.cmd(&["events", "--stats", &id]);
    assert_eq!(code, 0, "events: {err}");
    let ev: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ev["type"], "stats");
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1, "{ev}");

    assert_eq!(b.cmd(&["delete", "--force", &id]).0, 0);
    assert!(!b.root.join(&id).exists());
}

#[test]
fn delete_force_cleans_after_killed_init() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("crash");
    b.set_args(&["sleep", "1000"]);
    let id = b.id("crash");
    let (code, err) = b.create(&id, &[]);
    assert_eq!(code, 0, "create: {err}");
    let state: serde_json::Value = serde_json::from_str(&b.cmd(&["state", &id]).1).unwrap();
    let pid = state["pid"].as_i64().unwrap() as i32;
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mem = cgroups
        .lines()
        .find(|l| l.contains(":memory:"))
        .map(|l| l.rsplit(':').next().unwrap().to_string());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(b.cmd(&["delete", "--force", &id]).0, 0);
    assert!(!b.root.join(&id).exists(), "state dir left behind");
    if let Some(mem) = mem {
        assert!(
            !std::path::Path::new(&format!("/sys/fs/cgroup/memory{mem}")).exists(),
            "memory cgroup {mem} left behind"
        );
    }
}

#[test]
fn join_existing_namespaces_by_path() {
    if !can_run() {
        return;
    }
    // A host process in its own ipc, uts and net namespaces: the container joins them by path.
    let mut holder = std::process::Command::new("unshare")
        .args(["--ipc", "--uts", "--net", "sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let child = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        holder.id(),
        holder.id()
    ))
    .unwrap();
    let pid: u32 = child
        .split_whitespace()
        .next()
        .map(|p| p.parse().unwrap())
        .unwrap_or(holder.id());
    let mut b = Bundle::new("nspath");
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| !["ipc", "uts", "network"].contains(&n["type"].as_str().unwrap()));
    for (t, f) in [("ipc", "ipc"), ("uts", "uts"), ("network", "net")] {
        ns.push(serde_json::json!({"type": t, "path": format!("/proc/{pid}/ns/{f}")}));
    }
    b.config.as_object_mut().unwrap().remove("hostname");
    let wants: Vec<String> = ["ipc", "uts", "net"]
        .iter()
        .map(|f| {
            std::fs::read_link(format!("/proc/{pid}/ns/{f}"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let out = b.sh("for n in ipc uts net pid; do readlink /proc/self/ns/$n; done");
    let _ = holder.kill();
    let _ = holder.wait();
    let lines: Vec<&str> = out.lines().collect();
    for (i, want) in wants.iter().enumerate() {
        assert_eq!(lines[i], want, "namespace joined by path: {out}");
    }
    let host_pid = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_ne!(
        lines[3],
        host_pid.to_string_lossy(),
        "still gets a new pid namespace"
    );
}

/// Foreground `run` with process.terminal and no --console-socket: atoll is the terminal
/// (as runc): the container gets a pty of its own, sees our window size, and its exit code
/// comes back. `script` gives the test a terminal to run atoll on.
#[test]
fn foreground_run_with_a_terminal_proxies_the_pty() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("tty");
    b.config["process"]["terminal"] = true.into();
    b.set_args(&["sh", "-c", "tty; stty size; exit 5"]);
    let id = b.id("tty");
    let cmd = format!(
        "stty cols 91 rows 33; {} --root {} run --bundle {} {}",
        ATOLL,
        b.root.display(),
        b.dir.display(),
        id
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(
        text.contains("/dev/pts/0"),
        "the container's own pty: {text}"
    );
    assert!(text.contains("33 91"), "our window size: {text}");
    // Detached, with a terminal and no console socket, there is nowhere to put the pty.
    let (code, _, err) = b.cmd(&[
        "run",
        "-d",
        "--bundle",
        b.dir.to_str().unwrap(),
        "tty-detached",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("console-socket"), "{err}");
}

/// `create` killed with SIGKILL at many points along the way: `delete --force` must leave no
/// state directory, no cgroup and no process behind, whatever the point was.
#[test]
fn delete_force_cleans_up_after_create_killed_at_any_point() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("killcreate");
    b.set_args(&["sleep", "1000"]);
    for step in 0..24u64 {
        let id = b.id("kc");
        let mut child = b
            .atoll()
            .args(["create", "--bundle"])
            .arg(&b.dir)
            .arg(&id)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kill over the whole create (a few ms on this machine).
        std::thread::sleep(std::time::Duration::from_micros(step * 400));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the kill left is visible: a state dir is listed (as "creating" if the
        // create died before its first save), so whoever looks knows what to delete.
        if b.root.join(&id).exists() {
            let (_, list, _) = b.cmd(&["list", "-q"]);
            assert!(
                list.lines().any(|l| l == id),
                "step {step}: {id} not listed: {list:?}"
            );
        }
        // Not existing is fine (killed before the state dir); anything else must succeed.
        let (code, _, err) = b.cmd(&["delete", "--force", &id]);
        assert!(
            code == 0 || err.contains("does not exist"),
            "step {step}: {err}"
        );
        assert!(!b.root.join(&id).exists(), "step {step}: state dir left");
        // Every hierarchy: the v1 ones, and cgroup2 (unified on a hybrid host, the root on v2).
        let mut hierarchies: Vec<std::path::PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        hierarchies.push("/sys/fs/cgroup".into());
        for h in hierarchies {
            let dir = h.join("atoll").join(&id);
            assert!(!dir.exists(), "step {step}: cgroup {} left", dir.display());
        }
        // No process of the container survives (its init runs atoll with this id's bundle).
        std::thread::sleep(std::time::Duration::from_millis(20));
        let survivors = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                // A zombie is dead already: killed by delete, reparented to the host's init
                // (create, its parent, was killed), and reaped only when that init waits. Some
                // sandbox inits never do, so zombies from earlier runs linger; they hold no
                // memory, cgroup or mount.
                let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
                if status
                    .lines()
                    .any(|l| l.starts_with("State:") && l.contains("Z (zombie)"))
                {
                    return false;
                }
                // In the container's cgroup, or still running atoll's init code for this id.
                let cg = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                cg.contains(&format!("/atoll/{id}"))
                    || String::from_utf8_lossy(&cmd).split('\0').any(|a| a == id)
            })
            .count();
        assert_eq!(
            survivors, 0,
            "step {step}: processes left in the container's cgroup"
        );
    }
}

/// exec's flags: --cwd, --env, --user, --cap, -d with --pid-file, and --process FILE.
#[test]
fn exec_flags_and_process_file() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("execflags");
    b.set_args(&["sleep", "1000"]);
    let id = b.id("execflags");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    let (code, out, err) = b.cmd(&[
        "exec",
        "--cwd",
        "/tmp",
        "--env",
        "X=42",
        "--user",
        "1000:1000",
        "--cap",
        "CAP_NET_RAW",
        &id,
        "sh",
        "-c",
        "pwd; echo $X; id -u; id -g; grep CapEff /proc/self/status",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..4], ["/tmp", "42", "1000", "1000"], "{out}");
    // The container's caps (CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE) are dropped for a
    // non-root uid without ambient; --cap adds to bounding/effective/permitted of the process.
    assert!(lines[4].starts_with("CapEff:"), "{out}");

    let pidfile = b.dir.join("exec.pid");
    let (code, err) = b.detached(&[
        "exec",
        "-d",
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ]);
    assert_eq!(code, 0, "exec -d: {err}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "sleep"
    );
    let (_, ps, _) = b.cmd(&["ps", "--format", "json", &id]);
    let pids: Vec<i32> = serde_json::from_str(&ps).unwrap();
    assert!(
        pids.contains(&pid),
        "the detached exec is in the container's cgroup: {pids:?}"
    );

    let process = b.dir.join("process.json");
    std::fs::write(
        &process,
        serde_json::to_vec(&serde_json::json!({
            "args": ["sh", "-c", "echo from-process-file $Y; exit 4"],
            "env": ["PATH=/bin", "Y=yes"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0}
        }))
        .unwrap(),
    )
    .unwrap();
    let (code, out, err) = b.cmd(&["exec", "--process", process.to_str().unwrap(), &id]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(out.trim(), "from-process-file yes");
    assert_eq!(b.cmd(&["delete", "--force", &id]).0, 0);
}

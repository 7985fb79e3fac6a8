//! runc behaviours around the network namespace and the cgroup, on real containers: `lo` is up in
//! a new netns, v1 realtime runtime below `/atoll`, `delete --force` of a paused container whose
//! processes sit in a sub-cgroup frozen on its own, and `update` of runc's update fields.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the cgroup hierarchy holding every controller of `list` ("cpu", "name=systemd") is
/// mounted on the host; "" is the cgroup2 one.
fn mount_point(list: &str) -> Option<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mi.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        let fs_type = r.next()?;
        let opts = r.nth(1)?;
        let fits = if list.is_empty() {
            fs_type == "cgroup2"
        } else {
            fs_type == "cgroup" && list.split(',').all(|c| opts.split(',').any(|o| o == c))
        };
        fits.then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// `pid`'s cgroup directory on the host in every hierarchy, with that hierarchy's controllers.
fn cgroup_dirs(pid: i64) -> Vec<(String, PathBuf)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, list, rel) = (f.next()?, f.next()?, f.next()?);
            let mount = mount_point(list)?;
            Some((list.to_string(), mount.join(rel.trim_start_matches('/'))))
        })
        .collect()
}

/// The host directory of `pid`'s cgroup that holds `controller` (v1), else its cgroup2 one.
fn cgroup_dir(pid: i64, controller: &str) -> PathBuf {
    let dirs = cgroup_dirs(pid);
    dirs.iter()
        .find(|(list, _)| list.split(',').any(|c| c == controller))
        .or_else(|| dirs.iter().find(|(list, _)| list.is_empty()))
        .map(|(_, d)| d.clone())
        .unwrap()
}

fn init_pid(b: &Bundle, id: &str) -> i64 {
    let (code, out, err) = b.cmd(&["state", id]);
    assert_eq!(code, 0, "state: {err}");
    let state: serde_json::Value = serde_json::from_str(&out).unwrap();
    state["pid"].as_i64().unwrap()
}

/// runc brings `lo` up in a network namespace it makes: 127.0.0.1 works inside. Compared with
/// runc on the same bundle.
#[test]
fn lo_is_up_in_a_new_netns() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("netcg-lo");
    b.set_args(&["cat", "/sys/class/net/lo/flags"]);
    let (code, out, err) = b.run("netcg-lo");
    assert_eq!(code, 0, "run: {err}");
    let flags = u32::from_str_radix(out.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is down in the container (flags {out})");
    let runc = std::process::Command::new("runc")
        .arg("--root")
        .arg(b.root.join("runc"))
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(format!("netcg-lo-runc-{}", std::process::id()))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runc (the reference runtime) is installed");
    let (code, runc_out, err) = decode(runc);
    assert_eq!(code, 0, "runc run: {err}");
    assert_eq!(out, runc_out, "atoll and runc differ");
}

/// Realtime runtime on cgroup v1: atoll's `/atoll` parent needs its own RT budget first (the
/// kernel refused the write with EINVAL before). Where the host has no v1 RT group scheduling,
/// the field is refused by name.
#[test]
fn rt_runtime_below_atoll_parent() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("netcg-rt");
    b.config["linux"]["resources"] =
        serde_json::json!({"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 10000}});
    b.set_args(&["sleep", "100"]);
    let id = b.id("netcg-rt");
    let (code, err) = b.run_detached(&id);
    let rt = mount_point("cpu").filter(|m| m.join("cpu.rt_runtime_us").exists());
    if rt.is_none() {
        assert_ne!(code, 0, "realtime accepted without RT group scheduling");
        assert!(err.contains("realtime"), "{err}");
        return;
    }
    assert_eq!(code, 0, "run -d: {err}");
    let dir = cgroup_dir(init_pid(&b, &id), "cpu");
    let read = |d: &Path| std::fs::read_to_string(d.join("cpu.rt_runtime_us")).unwrap();
    assert_eq!(read(&dir).trim(), "10000");
    let parent: i64 = read(dir.parent().unwrap()).trim().parse().unwrap();
    assert!(parent >= 10000, "/atoll holds {parent}");
    // update raises it further.
    let file = b.dir.join("rt.json");
    std::fs::write(&file, r#"{"cpu": {"realtimeRuntime": 20000}}"#).unwrap();
    let (code, _, err) = b.cmd(&["update", "-r", file.to_str().unwrap(), &id]);
    assert_eq!(code, 0, "update: {err}");
    assert_eq!(read(&dir).trim(), "20000");
    assert_eq!(b.cmd(&["delete", "--force", &id]).0, 0);
}

/// `delete --force` of a paused container whose init sits in a sub-cgroup frozen on its own (a
/// nested manager's freeze): thawing only the container's cgroup leaves it frozen, the SIGKILL
/// never lands (cgroup v1), and delete gave up after 10 s leaving the cgroup.
#[test]
fn delete_force_of_a_paused_container_thaws_every_level() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("netcg-pause");
    b.set_args(&["sleep", "1000"]);
    let id = b.id("netcg-pause");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    let pid = init_pid(&b, &id);
    let dir = cgroup_dir(pid, "freezer");
    let v2 = !dir.join("freezer.state").exists();
    let (file, frozen, thawed) = if v2 {
        ("cgroup.freeze", "1", "0")
    } else {
        ("freezer.state", "FROZEN", "THAWED")
    };
    let all_dirs: Vec<PathBuf> = cgroup_dirs(pid).into_iter().map(|(_, d)| d).collect();
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("cgroup.procs"), pid.to_string()).unwrap();
    std::fs::write(sub.join(file), frozen).unwrap();
    assert_eq!(b.cmd(&["pause", &id]).0, 0);
    let start = Instant::now();
    let (code, _, err) = b.cmd(&["delete", "--force", &id]);
    let took = start.elapsed();
    if sub.exists() {
        // Failed: thaw by hand so nothing frozen stays behind (the SIGKILL is pending), remove
        // what delete left, then report.
        let _ = std::fs::write(sub.join(file), thawed);
        let _ = std::fs::write(dir.join(file), thawed);
        let gone = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() && gone.elapsed().as_secs() < 5 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir(&sub);
        for d in &all_dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
    assert_eq!(code, 0, "delete --force: {err}");
    assert!(
        took < Duration::from_secs(5),
        "delete --force took {took:?}"
    );
    assert!(!dir.exists(), "cgroup {dir:?} left behind");
    // Gone, or a zombie its new parent has not reaped yet.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    assert!(
        matches!(state, None | Some("Z") | Some("X")),
        "init {pid} alive: {stat}"
    );
}

/// The cgroup side of `update` for the fields runc's update sets: each lands in its file on the
/// running container's cgroup.
#[test]
fn update_sets_runc_update_fields() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("netcg-update");
    b.set_args(&["sleep", "1000"]);
    let id = b.id("netcg-update");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    let pid = init_pid(&b, &id);
    let cpus = std::fs::read_to_string(cgroup_dir(pid, "cpuset").join("cpuset.cpus")).unwrap();
    let first_cpu = cpus.trim().split([',', '-']).next().unwrap().to_string();
    let file = b.dir.join("update.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "memory": {"limit": 209715200, "reservation": 104857600},
            "cpu": {"cpus": first_cpu, "mems": "0"},
            "pids": {"limit": 77}
        })
        .to_string(),
    )
    .unwrap();
    let (code, _, err) = b.cmd(&["update", "-r", file.to_str().unwrap(), &id]);
    assert_eq!(code, 0, "update: {err}");
    let read = |controller: &str, f: &str| {
        std::fs::read_to_string(cgroup_dir(pid, controller).join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .trim()
            .to_string()
    };
    let v2 = !cgroup_dir(pid, "pids").join("pids.max").exists()
        || cgroup_dir(pid, "memory").join("memory.max").exists();
    assert_eq!(read("pids", "pids.max"), "77");
    assert_eq!(read("cpuset", "cpuset.cpus"), first_cpu);
    assert_eq!(read("cpuset", "cpuset.mems"), "0");
    if v2 {
        assert_eq!(read("memory", "memory.low"), "104857600");
    } else {
        assert_eq!(read("memory", "memory.soft_limit_in_bytes"), "104857600");
    }
    // A swap limit alone keeps the memory limit in force (runc merges update values).
    std::fs::write(&file, r#"{"memory": {"swap": 419430400}}"#).unwrap();
    let (code, _, err) = b.cmd(&["update", "-r", file.to_str().unwrap(), &id]);
    let swap_file = if v2 {
        "memory.swap.max"
    } else {
        "memory.memsw.limit_in_bytes"
    };
    if cgroup_dir(pid, "memory").join(swap_file).exists() {
        assert_eq!(code, 0, "update swap: {err}");
        let want = if v2 { "209715200" } else { "419430400" };
        assert_eq!(read("memory", swap_file), want);
    } else {
        assert_ne!(code, 0);
        assert!(err.contains("swap"), "{err}");
    }
    assert_eq!(b.cmd(&["delete", "--force", &id]).0, 0);
}

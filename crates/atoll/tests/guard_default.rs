//! The escape guard on by default (issue 13): every plain `run`/`create` is trapped and judged
//! without any annotation or separately started supervisor; privileged containers default to
//! detect; annotations and the node file (ATOLL_CONFIG) override; the supervisor starts itself
//! once per root, survives kill -9 through its keeper, and leaves when idle.

mod common;
use common::*;

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const EPERM: &str = "errno=1";

/// A bundle with the probe binary (and its libraries), a /helper dir shared with the host, CAP_SYS_ADMIN
/// (so setns is the kernel's to allow), and a node file of its own.
struct Case {
    b: Bundle,
    helper: PathBuf,
    node: PathBuf,
}

impl Case {
    fn new(name: &str, node_toml: &str) -> Case {
        let mut b = Bundle::new(&format!("grd-{name}"));
        let probe = atoll_testkit::probe::probe();
        let root = b.rootfs();
        std::fs::copy(&probe, root.join("bin/atoll-probe")).unwrap();
        let out = Command::new("ldd").arg(&probe).output().expect("ldd");
        for lib in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let dst = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(lib, &dst).unwrap();
        }
        let helper = b.dir.parent().unwrap().join("helper");
        std::fs::create_dir_all(&helper).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir_all(b.rootfs().join("helper")).unwrap();
        b.config["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/helper", "type": "bind", "source": helper, "options": ["rbind"]}),
        );
        b.add_caps(&["CAP_SYS_ADMIN"]);
        let node = b.dir.parent().unwrap().join("config.toml");
        std::fs::write(&node, node_toml).unwrap();
        b.save();
        Case { b, helper, node }
    }

    fn atoll(&self) -> Command {
        let mut c = self.b.atoll();
        c.env("ATOLL_CONFIG", &self.node);
        c
    }

    /// `atoll run -d` of the case's bundle as `id`.
    fn run_detached(&self, id: &str) {
        let ok = self
            .atoll()
            .args(["run", "-d", "--bundle"])
            .arg(&self.b.dir)
            .arg(id)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "atoll run -d {id}");
    }

    /// Ask a tenant that watches /helper/go to run its probe: what it wrote to /helper/out.
    fn ask(&self) -> String {
        let out = self.helper.join("out");
        let _ = std::fs::remove_file(&out);
        std::fs::write(self.helper.join("go"), "").unwrap();
        let t = Instant::now();
        loop {
            let s = std::fs::read_to_string(&out).unwrap_or_default();
            if !s.is_empty() && !self.helper.join("go").exists() {
                return s.trim().to_string();
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the tenant did not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn socket(&self) -> PathBuf {
        self.b.root.join(".guard/guard.sock")
    }

    fn alerts(&self) -> Vec<Value> {
        std::fs::read_to_string(self.b.root.join(".guard/alerts.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each alert line is JSON"))
            .collect()
    }

    /// The alerts about `tenant`, waiting a little (the line follows the answer).
    fn wait_alerts(&self, tenant: &str, n: usize) -> Vec<Value> {
        let t = Instant::now();
        loop {
            let got: Vec<Value> = self
                .alerts()
                .into_iter()
                .filter(|a| a["tenant"] == tenant)
                .collect();
            if got.len() >= n || t.elapsed() > Duration::from_secs(5) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `atoll run` of the probe; (exit code, its answer, stderr, the container id).
    fn probe(&mut self, args: &[&str]) -> (i32, String, String, String) {
        let mut argv = vec!["/bin/atoll-probe"];
        argv.extend_from_slice(args);
        self.b.set_args(&argv);
        let id = self.b.id("p");
        let out = self
            .atoll()
            .args(["run", "--bundle"])
            .arg(&self.b.dir)
            .arg(&id)
            .output()
            .unwrap();
        let (code, out, err) = decode(out);
        (code, out.trim().to_string(), err, id)
    }

    /// setns into the host's netns, the fd passed over SCM_RIGHTS by a host helper.
    fn host_setns(&mut self) -> (String, String) {
        let sock = serve_fd(&self.helper, "hostnet");
        let (code, out, err, id) = self.probe(&["setns-recv", &sock, "net"]);
        assert_eq!(code, 0, "probe: {out}{err}");
        (out, id)
    }
}

/// Serve an fd of the host's net namespace to the first client of `dir/<name>.sock`.
fn serve_fd(dir: &Path, name: &str) -> String {
    let file = std::fs::File::open("/proc/self/ns/net").unwrap();
    let path = dir.join(format!("{name}.sock"));
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::thread::spawn(move || {
        if let Ok((c, _)) = l.accept() {
            let _ = atoll_sys::socket::send_with_fd(c.as_fd(), b"x", Some(file.as_fd()));
        }
    });
    format!("/helper/{name}.sock")
}

/// A short idle exit, so that each test can check that its supervisor is gone at the end.
const QUICK: &str = "[guard]\nidle_exit_ms = 300\n";

/// Supervisor processes serving `socket`: (pid, "serve" or "worker").
fn supervisors(socket: &Path) -> Vec<(i32, String)> {
    let want = socket.to_string_lossy().into_owned();
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_guard = args.windows(2).find(|w| w[0] == "guard");
        if let Some(w) = is_guard {
            if args.contains(&want) && (w[1] == "serve" || w[1] == "worker") {
                let kind = if args.iter().any(|a| a == "--daemon") {
                    "daemon"
                } else {
                    &w[1]
                };
                found.push((pid, kind.to_string()));
            }
        }
    }
    found
}

/// The log of the supervisor of `socket` (for failure messages).
fn supervisor_log(socket: &Path) -> String {
    let mut p = socket.as_os_str().to_owned();
    p.push(".log");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| format!("(read {}: {e})", Path::new(&p).display()))
}

/// Wait for the supervisor of `socket` to leave (idle exit); fail the test if it stays.
fn assert_supervisor_leaves(socket: &Path) {
    let t = Instant::now();
    while !supervisors(socket).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the supervisor of {} is still there: {:?}",
            socket.display(),
            supervisors(socket)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain `run` (no annotation, no supervisor started by anyone): with no seccomp profile and
/// with one, a setns into the host's netns fails with EPERM and the alert names the host.
#[test]
fn grd_default_on_denies_host_setns_with_and_without_profile() {
    if !can_run() {
        return;
    }
    let mut c = Case::new("default", QUICK);
    let (out, id) = c.host_setns();
    assert_eq!(out, EPERM, "no profile: the guard's own filter traps setns");
    let a = c.wait_alerts(&id, 1);
    assert_eq!(a.len(), 1, "{:?}", c.alerts());
    assert_eq!(a[0]["rule"], "atoll.setns.foreign-namespace");
    assert_eq!(a[0]["owner"], "host");
    assert_eq!(a[0]["decision"], "deny");

    c.b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]});
    c.b.save();
    let (out, id) = c.host_setns();
    assert_eq!(out, EPERM, "with a profile: the trap is added to it");
    assert_eq!(c.wait_alerts(&id, 1)[0]["decision"], "deny");
    // Its own namespace stays allowed (judged, not refused).
    let (code, out, err, _) = c.probe(&["setns-loop", "20"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.parse::<u64>().is_ok(), "own netns setns works: {out}");
    assert_supervisor_leaves(&c.socket());
    assert_eq!(
        c.alerts().len(),
        2,
        "a leaving supervisor keeps an alert log with alerts"
    );
}

/// A container meant to reach the host (host pid namespace) keeps working: allowed, alerted.
/// So does one with every capability. The annotation still wins over the privileged default.
#[test]
fn grd_privileged_defaults_to_detect() {
    if !can_run() {
        return;
    }
    let mut c = Case::new("priv", QUICK);
    c.b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    c.b.save();
    let (out, id) = c.host_setns();
    assert_eq!(out, "ok", "host pid namespace: detect, the call goes on");
    let a = c.wait_alerts(&id, 1);
    assert_eq!(a.len(), 1, "{:?}", c.alerts());
    assert_eq!(a[0]["decision"], "allow-detect");
    assert_eq!(a[0]["owner"], "host");

    c.b.config["annotations"] = json!({"org.atoll.guard": "enforce"});
    c.b.save();
    let (out, _) = c.host_setns();
    assert_eq!(
        out, EPERM,
        "the annotation wins over the privileged default"
    );

    // Every capability, own pid namespace: detect too.
    let mut p = Case::new("allcaps", QUICK);
    let all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    for set in ["bounding", "effective", "permitted"] {
        p.b.config["process"]["capabilities"][set] = json!(all);
    }
    p.b.save();
    let (out, id) = p.host_setns();
    assert_eq!(out, "ok", "the full capability set: detect");
    assert_eq!(p.wait_alerts(&id, 1)[0]["decision"], "allow-detect");
    assert_supervisor_leaves(&c.socket());
    assert_supervisor_leaves(&p.socket());
}

/// `org.atoll.guard=off` and `=detect` on a plain container.
#[test]
fn grd_annotation_overrides_the_default() {
    if !can_run() {
        return;
    }
    let mut c = Case::new("ann", QUICK);
    c.b.config["annotations"] = json!({"org.atoll.guard": "off"});
    c.b.save();
    let (out, id) = c.host_setns();
    assert_eq!(out, "ok", "off: no trap at all");
    assert!(c.wait_alerts(&id, 1).is_empty() || c.alerts().is_empty());
    assert!(c.alerts().iter().all(|a| a["tenant"] != id.as_str()));

    c.b.config["annotations"] = json!({"org.atoll.guard": "detect"});
    c.b.save();
    let (out, id) = c.host_setns();
    assert_eq!(out, "ok", "detect: allowed");
    assert_eq!(c.wait_alerts(&id, 1)[0]["decision"], "allow-detect");

    c.b.config["annotations"] = json!({"org.atoll.guard": "sometimes"});
    c.b.save();
    let (code, _, err, _) = c.probe(&["getpid-loop", "1"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("org.atoll.guard") && err.contains("sometimes"),
        "{err}"
    );
    assert_supervisor_leaves(&c.socket());
}

/// The node file: its mode applies, `features` and `guard status` show it, and a bad file
/// fails create naming the file and the field.
#[test]
fn grd_node_file_sets_the_policy_and_bad_files_are_named() {
    if !can_run() {
        return;
    }
    let mut c = Case::new("node", "[guard]\nmode = \"detect\"\nidle_exit_ms = 300\n");
    let (out, id) = c.host_setns();
    assert_eq!(out, "ok", "node mode detect");
    assert_eq!(c.wait_alerts(&id, 1)[0]["decision"], "allow-detect");

    let st = c.atoll().args(["guard", "status"]).output().unwrap();
    let st: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["policy"]["mode"], "detect", "{st}");
    assert_eq!(st["policy"]["privileged"], "detect");
    assert_eq!(st["policy"]["config"], c.node.to_str().unwrap());
    let f = c.atoll().arg("features").output().unwrap();
    let f: Value = serde_json::from_slice(&f.stdout).unwrap();
    let g: Value =
        serde_json::from_str(f["annotations"]["io.github.atoll.guard"].as_str().unwrap()).unwrap();
    assert_eq!(g["mode"], "detect");

    std::fs::write(&c.node, "[guard]\nmode = \"enforced\"\n").unwrap();
    let (code, _, err, _) = c.probe(&["getpid-loop", "1"]);
    assert_ne!(code, 0);
    assert!(
        err.contains(c.node.to_str().unwrap()) && err.contains("guard.mode"),
        "{err}"
    );
    std::fs::write(&c.node, "[guard]\nsocket = 3\n").unwrap();
    let (code, _, err, _) = c.probe(&["getpid-loop", "1"]);
    assert_ne!(code, 0);
    assert!(
        err.contains(c.node.to_str().unwrap()) && err.contains("socket"),
        "{err}"
    );
    assert_supervisor_leaves(&c.socket());
}

/// Ten creates at once on a fresh root start exactly one supervisor; every container is its
/// tenant; after they are deleted it leaves.
#[test]
fn grd_ten_parallel_creates_start_one_supervisor() {
    if !can_run() {
        return;
    }
    let mut c = Case::new("race", QUICK);
    c.b.set_args(&["sleep", "1000"]);
    let ids: Vec<String> = (0..10).map(|_| c.b.id("r")).collect();
    let kids: Vec<_> = ids
        .iter()
        .map(|id| {
            // The container's init keeps create's stdio: stderr to a file, never a pipe.
            let errfile = c.b.dir.join(format!("{id}.err"));
            let mut cmd = c.atoll();
            cmd.args(["create", "--bundle"])
                .arg(&c.b.dir)
                .arg(id)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&errfile).unwrap());
            (cmd.spawn().unwrap(), errfile)
        })
        .collect();
    for (mut k, errfile) in kids {
        let st = k.wait().unwrap();
        assert!(
            st.success(),
            "{}",
            std::fs::read_to_string(errfile).unwrap()
        );
    }
    // No create waits for the worker (a registration is sent, never answered): the worker may
    // still be starting when the last create returns. Once it holds all ten, count.
    let t = Instant::now();
    let st = loop {
        let st = c.atoll().args(["guard", "status"]).output().unwrap();
        let st: Value = serde_json::from_slice(&st.stdout).unwrap();
        let n = st["supervisor"]["running"]["tenants"]
            .as_array()
            .map_or(0, |a| a.len());
        if n == 10 {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "tenants: {st}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut sups = supervisors(&c.socket());
    sups.sort_by(|a, b| a.1.cmp(&b.1)); // "serve" before "worker"
    let pid = |k: &str| st["supervisor"]["running"][k].as_i64().map(|p| p as i32);
    assert_eq!(
        sups,
        [pid("keeper"), pid("worker")]
            .into_iter()
            .flatten()
            .zip(["serve", "worker"])
            .map(|(p, k)| (p, k.to_string()))
            .collect::<Vec<_>>(),
        "one supervisor, the one that answers ({st}); its log:\n{}",
        supervisor_log(&c.socket())
    );
    assert_eq!(st["supervisor"]["answers"], true);
    for id in &ids {
        let out = c.atoll().args(["delete", "--force", id]).output().unwrap();
        assert!(out.status.success());
    }
    assert_supervisor_leaves(&c.socket());
    // Nothing was alerted and nothing went wrong: a supervisor that leaves idle takes its
    // files (socket, lock, empty alert log, quiet log) and the guard directory with it.
    let guard_dir = c.b.root.join(".guard");
    let left: Vec<_> = std::fs::read_dir(&guard_dir)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !guard_dir.exists(),
        "left in {}: {left:?}",
        guard_dir.display()
    );
}

/// kill -9 of the supervisor while a tenant hammers it with trapped setns calls: the keeper
/// starts another, which takes every tenant back; the tenant's next setns into the host is
/// judged (EPERM and an alert), not answered ENOSYS, and its load loop keeps going.
#[test]
fn grd_supervisor_kill9_under_load_loses_no_tenant() {
    if !can_run() {
        return;
    }
    let mut c = Case::new("kill9", QUICK);
    // The init: a load loop of own-netns setns calls, then, once /helper/go exists, one setns
    // into the host's netns (a child of the init: the same filter, the same tenant).
    c.b.set_args(&[
        "sh",
        "-c",
        "while [ ! -e /helper/go ]; do /bin/atoll-probe setns-loop 200 >> /helper/load; done; \
         /bin/atoll-probe setns-recv /helper/hostnet.sock net > /helper/result; sleep 1000",
    ]);
    let id = c.b.id("k");
    c.run_detached(&id);
    let load = c.helper.join("load");
    let lines = || {
        std::fs::read_to_string(&load)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let t = Instant::now();
    while lines() < 3 {
        assert!(t.elapsed() < Duration::from_secs(10), "no load");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A worker other than `killed`, once the keeper has started (and exec'd) it.
    let next_worker = |killed: Option<i32>| {
        let t = Instant::now();
        loop {
            let found = supervisors(&c.socket())
                .into_iter()
                .find(|(p, k)| k == "worker" && Some(*p) != killed);
            if let Some((w, _)) = found {
                break w;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no new worker; supervisor log:\n{}",
                supervisor_log(&c.socket())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut killed = None;
    for _ in 0..3 {
        let w = next_worker(killed);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(w), nix::sys::signal::SIGKILL).unwrap();
        killed = Some(w);
    }
    let new = next_worker(killed);
    let before = lines();
    let t = Instant::now();
    while lines() < before + 3 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the load loop stopped after the kill; supervisor log:\n{}",
            supervisor_log(&c.socket())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = c.atoll().args(["guard", "status"]).output().unwrap();
    let st: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["supervisor"]["running"]["worker"], new, "{st}");
    assert_eq!(st["supervisor"]["running"]["tenants"], json!([id]), "{st}");
    // Each line is a loop's median (all allowed) or, for a call a killed supervisor took
    // between its receive and its note, EINTR (fail closed); never ENOSYS.
    let text = std::fs::read_to_string(&load).unwrap();
    assert!(
        text.lines()
            .all(|l| l.parse::<u64>().is_ok() || l == "errno=4"),
        "own-netns setns: allowed or EINTR, never ENOSYS: {text}"
    );

    serve_fd(&c.helper, "hostnet");
    std::fs::write(c.helper.join("go"), "").unwrap();
    let result = c.helper.join("result");
    let t = Instant::now();
    while std::fs::read_to_string(&result)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(t.elapsed() < Duration::from_secs(10), "no result");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&result).unwrap().trim(),
        EPERM,
        "judged, not ENOSYS"
    );
    let a = c.wait_alerts(&id, 1);
    assert_eq!(a[0]["rule"], "atoll.setns.foreign-namespace");
    let out = c.atoll().args(["delete", "--force", &id]).output().unwrap();
    assert!(out.status.success());
    assert_supervisor_leaves(&c.socket());
}

/// The keeper itself killed: its notify fds die with it, and the tenant's trapped calls fail
/// with ENOSYS, unreported. The next supervisor of the root (started here by `guard serve
/// --daemon`, as by the next `create` or by systemd) gives the running tenant the guard back:
/// a layer with a new listener on each of its threads, put in with ptrace. The same process
/// (not an exec, which would get a filter of its own) is then judged again: EPERM and an alert.
#[test]
fn grd_keeper_kill9_then_a_new_supervisor_adopts_the_tenant() {
    if !can_run() {
        return;
    }
    let mut c = Case::new("keeper", QUICK);
    c.b.set_args(&[
        "sh",
        "-c",
        "while :; do if [ -e /helper/go ]; then /bin/atoll-probe unshare-user > /helper/out; \
         rm /helper/go; fi; sleep 0.05; done",
    ]);
    let id = c.b.id("adopt");
    c.run_detached(&id);
    let ask = || c.ask();
    assert_eq!(ask(), EPERM, "judged while the first supervisor serves");
    assert_eq!(c.wait_alerts(&id, 1).len(), 1);
    kill_keeper(&c);
    assert_eq!(ask(), "errno=38", "ENOSYS with no listener");
    serve(&c);
    // The adoption runs beside the new supervisor's start: wait for it.
    let t = Instant::now();
    loop {
        let got = ask();
        if got == EPERM {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not adopted ({got}); supervisor log:\n{}",
            supervisor_log(&c.socket())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.wait_alerts(&id, 2).len(), 2, "an alert again");
    let st = c.atoll().args(["guard", "status"]).output().unwrap();
    let st: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["supervisor"]["running"]["tenants"][0], json!(id), "{st}");
    let out = c.atoll().args(["delete", "--force", &id]).output().unwrap();
    assert!(out.status.success());
    assert_supervisor_leaves(&c.socket());
}

/// SIGKILL the keeper of `c`'s supervisor; its worker follows (it dies with the keeper).
fn kill_keeper(c: &Case) {
    for (pid, kind) in supervisors(&c.socket()) {
        if kind != "worker" {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
                .unwrap();
        }
    }
    let t = Instant::now();
    while !supervisors(&c.socket()).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the worker outlived its keeper"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `atoll guard serve --daemon` for `c`'s root: a new supervisor, which adopts as it starts.
fn serve(c: &Case) {
    let out = c
        .atoll()
        .args(["guard", "serve", "--daemon", "--idle-exit-ms", "300"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Adoption seizes the threads of a tenant that forks and execs without pause: a child that
/// execs between our look at it and our stop has its vDSO elsewhere, and the injection must
/// neither wedge it (a fault restarted for ever) nor kill it. After three kill -9 and
/// adoption rounds the tenant still counts, and is still judged.
#[test]
fn grd_adopting_a_tenant_that_forks_and_execs_leaves_it_running() {
    if !can_run() {
        return;
    }
    let mut c = Case::new("forker", QUICK);
    c.b.set_args(&[
        "sh",
        "-c",
        "n=0; while :; do cat /dev/null; n=$((n + 1)); echo $n > /helper/n.tmp; \
         mv /helper/n.tmp /helper/n; if [ -e /helper/go ]; then \
         /bin/atoll-probe unshare-user > /helper/out; rm /helper/go; fi; done",
    ]);
    let id = c.b.id("forker");
    c.run_detached(&id);
    let count = || -> u64 {
        std::fs::read_to_string(c.helper.join("n"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let counting = |round: usize| {
        let t = Instant::now();
        let start = count();
        while count() < start + 20 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "round {round}: the tenant stopped at {} (wedged or killed by the adoption); \
                 supervisor log:\n{}",
                count(),
                supervisor_log(&c.socket())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    counting(0);
    for round in 1..=3 {
        kill_keeper(&c);
        serve(&c);
        // The adoption runs beside the supervisor's start; it is over within a second.
        std::thread::sleep(Duration::from_millis(1000));
        counting(round);
    }
    // Still judged: the unshare the tenant asks for is denied, not ENOSYS.
    assert_eq!(c.ask(), EPERM);
    let out = c.atoll().args(["delete", "--force", &id]).output().unwrap();
    assert!(out.status.success());
    assert_supervisor_leaves(&c.socket());
}

/// The node file's sinks: the alert also reaches a syslog socket (RFC 5424) and a collector's
/// stream socket (the JSON line).
#[test]
fn grd_alerts_reach_syslog_and_collector() {
    if !can_run() {
        return;
    }
    let dir = PathBuf::from(format!("/tmp/atoll-tests/grd-sinks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let syslog = dir.join("log.sock");
    let collector = dir.join("collector.sock");
    let _ = std::fs::remove_file(&syslog);
    let _ = std::fs::remove_file(&collector);
    let dgram = std::os::unix::net::UnixDatagram::bind(&syslog).unwrap();
    dgram
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let stream = std::os::unix::net::UnixListener::bind(&collector).unwrap();
    let mut c = Case::new(
        "sinks",
        &format!(
            "[guard]\nidle_exit_ms = 300\nsyslog = {:?}\ncollector = {:?}\n",
            syslog, collector
        ),
    );
    let (out, id) = c.host_setns();
    assert_eq!(out, EPERM);
    let mut buf = vec![0u8; 8192];
    let n = dgram.recv(&mut buf).expect("a syslog message");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("<84>1 "), "{msg}");
    assert!(
        msg.contains(" atoll-guard ") && msg.contains(" atoll.setns.foreign-namespace "),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("tenant=\"{id}\"")) && msg.contains("decision=\"deny\""),
        "{msg}"
    );
    let (conn, _) = stream.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(conn), &mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["tenant"], id.as_str());
    assert_eq!(v["decision"], "deny");
    assert_supervisor_leaves(&c.socket());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A systemd user manager of the test's own, as root: `systemd --user` in a private mount
/// namespace (with a tmpfs /run/systemd holding `system/`, the sign it looks for) and in a cgroup
/// of its own in the named and unified hierarchies (a manager at a hierarchy's root takes every
/// process there into its init.scope), with its runtime and unit directories under `dir`.
/// Dropped: the manager exits, its cgroups (in every hierarchy) are emptied and removed.
struct UserManager {
    child: std::process::Child,
    run: PathBuf,
    cgroup: String,
}

/// Where each cgroup hierarchy is mounted: (mount point, whether the manager lives there).
fn cgroup_mounts() -> Vec<(PathBuf, bool)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mp = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let opts = post.nth(1)?;
            match fstype {
                "cgroup2" => Some((PathBuf::from(mp), true)),
                "cgroup" => Some((PathBuf::from(mp), opts.contains("name=systemd"))),
                _ => None,
            }
        })
        .collect()
}

fn missing_systemd() -> Option<String> {
    [
        "/lib/systemd/systemd",
        "/usr/bin/systemctl",
        "/usr/bin/unshare",
    ]
    .iter()
    .find(|p| !Path::new(p).exists())
    .map(|p| format!("{p} is missing (apt-get install systemd util-linux)"))
}

impl UserManager {
    fn start(dir: &Path) -> UserManager {
        let run = dir.join("xdg-run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        let cgroup = format!("atoll-test-sd-{}", std::process::id());
        let mut script = String::new();
        for (mp, ours) in cgroup_mounts() {
            if ours {
                let cg = mp.join(&cgroup);
                std::fs::create_dir_all(&cg).unwrap();
                script += &format!("echo $$ > {}/cgroup.procs && ", cg.display());
            }
        }
        script += "mkdir -p /run/systemd && mount -t tmpfs atoll-test /run/systemd && \
                   mkdir /run/systemd/system && exec /lib/systemd/systemd --user";
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env("XDG_RUNTIME_DIR", &run)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("manager.log")).unwrap())
            .spawn()
            .unwrap();
        let m = UserManager { child, run, cgroup };
        let t = Instant::now();
        while !m.ctl(&["show-environment"]).status.success() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "systemd --user did not start: {}",
                std::fs::read_to_string(dir.join("manager.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("systemctl")
            .arg("--user")
            .args(args)
            .env("XDG_RUNTIME_DIR", &self.run)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// A unit property (`systemctl show -p NAME --value`).
    fn show(&self, unit: &str, prop: &str) -> String {
        let out = self.ctl(&["show", "-p", prop, "--value", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        let _ = self.ctl(&["exit"]);
        let t = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The manager made its cgroup in the controllers' hierarchies too.
        for (mp, _) in cgroup_mounts() {
            remove_cgroup_tree(&mp.join(&self.cgroup), &mp);
        }
    }
}

/// rmdir `cg` and everything under it, deepest first, moving any process left to `root`.
fn remove_cgroup_tree(cg: &Path, root: &Path) {
    let Ok(rd) = std::fs::read_dir(cg) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path(), root);
        }
    }
    for pid in std::fs::read_to_string(cg.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
    {
        let _ = std::fs::write(root.join("cgroup.procs"), pid);
    }
    if let Err(e) = std::fs::remove_dir(cg) {
        panic!("rmdir {}: {e}", cg.display());
    }
}

/// The shipped units (contrib/systemd), pointed at this case: the test's binary, root, node file
/// and socket, the service's stderr to a file. Each line replaced must be there as shipped.
fn install_units(c: &Case, config: &Path, log: &Path) {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd");
    let units = config.join("systemd/user");
    std::fs::create_dir_all(&units).unwrap();
    let edit = |name: &str, swaps: &[(&str, String)]| {
        let mut text = std::fs::read_to_string(contrib.join(name)).unwrap();
        for (from, to) in swaps {
            assert!(text.contains(from), "{name} no longer has {from:?}");
            text = text.replace(from, to);
        }
        std::fs::write(units.join(name), text).unwrap();
    };
    let sock = c.socket();
    edit(
        "atoll-guard.socket",
        &[(
            "ListenStream=/run/atoll/guard.sock",
            format!("ListenStream={}", sock.display()),
        )],
    );
    edit(
        "atoll-guard.service",
        &[
            (
                "ExecStart=/usr/local/bin/atoll guard serve --socket /run/atoll/guard.sock",
                format!(
                    "Environment=ATOLL_CONFIG={}\nExecStart={ATOLL} --root {} guard serve --socket {}",
                    c.node.display(),
                    c.b.root.display(),
                    sock.display()
                ),
            ),
            ("StandardOutput=journal", "StandardOutput=null".into()),
            (
                "StandardError=journal",
                format!("StandardError=append:{}", log.display()),
            ),
        ],
    );
}

/// Under systemd with the shipped units (a real manager: [`UserManager`]), the keeper keeps a
/// copy of each tenant's notify fd in systemd's fd store. kill -9 of the keeper then leaves the
/// fd with systemd: the tenant's next trapped call waits in the kernel for the restarted keeper
/// and is judged (EPERM and an alert), never ENOSYS, and the new keeper says it had the tenant
/// back from the store (no adoption walk had to put a new layer on it). So does `systemctl
/// restart`.
#[test]
fn grd_systemd_fd_store_keeps_the_tenant_across_a_keeper_kill9() {
    if !can_run_also(missing_systemd()) {
        return;
    }
    let mut c = Case::new("sd", "[guard]\nautostart = false\n");
    c.b.set_args(&[
        "sh",
        "-c",
        "while :; do if [ -e /helper/go ]; then /bin/atoll-probe unshare-user > /helper/out; \
         rm /helper/go; fi; sleep 0.05; done",
    ]);
    c.b.save();
    let dir = c.b.dir.parent().unwrap().join("systemd");
    let log = dir.join("atoll-guard.log");
    install_units(&c, &dir.join("config"), &log);
    let m = UserManager::start(&dir);
    let out = m.ctl(&["start", "atoll-guard.socket"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = c.b.id("sd");
    c.run_detached(&id);
    assert_eq!(c.ask(), EPERM, "judged by the socket-activated unit");
    assert_eq!(c.wait_alerts(&id, 1).len(), 1);
    let unit = "atoll-guard.service";
    // The records, the in-flight slot and the tenant's notify fd.
    assert_eq!(m.show(unit, "NFileDescriptorStore"), "3");
    let keeper: i32 = m.show(unit, "MainPID").parse().unwrap();
    assert!(keeper > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(keeper),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    // Asked at once: the call waits out RestartSec and the new keeper's start.
    assert_eq!(
        c.ask(),
        EPERM,
        "judged after the restart, never ENOSYS; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(c.wait_alerts(&id, 2).len(), 2, "an alert again");
    let again: i32 = m.show(unit, "MainPID").parse().unwrap();
    assert!(again > 0 && again != keeper, "a new keeper: {again}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("1 tenants back from systemd's fd store"),
        "{text}"
    );
    assert!(!text.contains("had lost its listeners"), "{text}");
    // `systemctl restart` (an upgrade) keeps the store too.
    let out = m.ctl(&["restart", unit]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.ask(), EPERM, "judged after systemctl restart");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("1 tenants back from systemd's fd store")
            .count(),
        2,
        "{text}"
    );
    assert!(!text.contains("had lost its listeners"), "{text}");
    let out = c.atoll().args(["delete", "--force", &id]).output().unwrap();
    assert!(out.status.success());
    // The tenant's fd leaves the store with it (the worker drops it; systemd closes an fd that
    // hangs up).
    let t = Instant::now();
    while m.show(unit, "NFileDescriptorStore") != "2" {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "stored fds: {}",
            m.show(unit, "NFileDescriptorStore")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = m.ctl(&["stop", unit, "atoll-guard.socket"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(m);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tenant looping on a denied call does not flood the alert log: past the burst its lines
/// come at the rate limit, each carrying how many were held back, and when it goes a summary
/// line counts the rest, so that every call it made is accounted for.
#[test]
fn grd_a_denied_call_in_a_loop_is_alerted_at_the_rate_limit_and_counted() {
    if !can_run() {
        return;
    }
    let mut c = Case::new("rate", QUICK);
    c.b.set_args(&[
        "sh",
        "-c",
        "while [ ! -e /helper/stop ]; do /bin/atoll-probe unshare-user >> /helper/out; done",
    ]);
    let id = c.b.id("rate");
    let t = Instant::now();
    c.run_detached(&id);
    let calls = || {
        std::fs::read_to_string(c.helper.join("out"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    while calls() < 200 {
        assert!(t.elapsed() < Duration::from_secs(30), "{} calls", calls());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(c.helper.join("stop"), "").unwrap();
    // The loop ends and the container stops: every call is in /helper/out.
    let tw = Instant::now();
    loop {
        let st = c.atoll().args(["state", &id]).output().unwrap();
        let st: Value = serde_json::from_slice(&st.stdout).unwrap_or_default();
        if st["status"] == "stopped" {
            break;
        }
        assert!(tw.elapsed() < Duration::from_secs(10), "{st}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = calls();
    // The tenant's last task has exited: the summary line follows.
    let counted = |a: &[Value]| -> usize {
        a.iter()
            .map(|l| 1 + l["suppressed"].as_u64().unwrap_or(0) as usize)
            .sum()
    };
    let tw = Instant::now();
    let alerts = loop {
        let a = c.wait_alerts(&id, 1);
        if counted(&a) >= n {
            break a;
        }
        assert!(
            tw.elapsed() < Duration::from_secs(10),
            "{} of {n} calls in {} lines",
            counted(&a),
            a.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = t.elapsed().as_secs_f64();
    let out = std::fs::read_to_string(c.helper.join("out")).unwrap();
    assert!(out.lines().all(|l| l == EPERM), "{out}");
    assert_eq!(counted(&alerts), n, "every call accounted for, once");
    let last = alerts.last().unwrap();
    assert!(last["suppressed"].is_u64(), "the summary: {last}");
    // 20 at once, 10 a second after, and the summary.
    let bound = 20.0 + 10.0 * elapsed + 1.0;
    assert!(
        (alerts.len() as f64) <= bound,
        "{} lines in {elapsed:.1} s (bound {bound:.0})",
        alerts.len()
    );
    assert!(alerts.iter().all(|l| l["rule"] == "atoll.userns.create"));
    let out = c.atoll().args(["delete", "--force", &id]).output().unwrap();
    assert!(out.status.success());
    assert_supervisor_leaves(&c.socket());
}

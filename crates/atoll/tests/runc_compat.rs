//! runc behaviours that clients rely on, each run side by side against runc (the reference) on
//! the same bundle: `run --keep`, every `update` flag, `delete` of a missing or created
//! container, `--log` errors, `--preserve-fds` beyond the caller's fds, a held lock, and
//! `exec --ignore-paused` / `exec --cgroup`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn missing_runc() -> Option<String> {
    let ok = Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| "runc is not installed (apt-get install runc)".to_string())
}

fn can_run_with_runc() -> bool {
    can_run_also(missing_runc())
}

/// runc with its own --root beside the bundle; deletes its containers when dropped (declare it
/// after the Bundle so that it goes first).
struct Runc {
    root: PathBuf,
    ids: Vec<String>,
}

impl Runc {
    fn new(b: &Bundle) -> Runc {
        Runc {
            root: b.dir.parent().unwrap().join("runc-state"),
            ids: vec![],
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(&self.root).stdin(Stdio::null());
        c
    }

    fn cmd(&self, args: &[&str]) -> (i32, String, String) {
        decode(self.command().args(args).output().unwrap())
    }

    fn id(&mut self, b: &mut Bundle, name: &str) -> String {
        let id = b.id(&format!("runc-{name}"));
        // Not atoll's: the Bundle must not try to delete it.
        b.ids.pop();
        self.ids.push(id.clone());
        id
    }

    /// A command that leaves a container process holding stdio: stderr to a file.
    fn detached(&self, b: &Bundle, args: &[&str]) -> (i32, String) {
        let errfile = b
            .dir
            .join(format!("runc-{}.err", args.join("-").replace('/', "_")));
        let mut cmd = self.command();
        cmd.args(args);
        status_and_stderr(cmd, &errfile)
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.command().args(["delete", "--force", id]).output();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn state(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or(serde_json::Value::Null)
}

fn init_pid(state_out: &str) -> i32 {
    state(state_out)["pid"].as_i64().unwrap_or(0) as i32
}

fn alive(pid: i32) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
}

/// `run -d` a `sleep` container under atoll and under runc; (atoll id, atoll pid, runc id,
/// runc pid).
fn both_running(b: &mut Bundle, r: &mut Runc, name: &str) -> (String, i32, String, i32) {
    b.set_args(&["sleep", "1000"]);
    let id = b.id(name);
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "atoll run -d: {err}");
    let rid = r.id(b, name);
    let (code, err) = r.detached(b, &["run", "-d", "--bundle", b.dir.to_str().unwrap(), &rid]);
    assert_eq!(code, 0, "runc run -d: {err}");
    let pid = init_pid(&b.cmd(&["state", &id]).1);
    let rpid = init_pid(&r.cmd(&["state", &rid]).1);
    assert!(pid > 0 && rpid > 0);
    (id, pid, rid, rpid)
}

/// The host directory of `pid`'s cgroup in the hierarchy with `controller` (v1), or in the
/// cgroup2 hierarchy when no v1 hierarchy has it.
fn cgroup_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        if list.split(',').any(|c| c == controller) {
            return Some(
                Path::new("/sys/fs/cgroup")
                    .join(controller)
                    .join(&path[1..]),
            );
        }
    }
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let unified = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|m| Path::new(m).join("cgroup.controllers").exists())?;
    Some(Path::new(unified).join(&path[1..]))
}

/// Every hierarchy's directory of `pid`'s cgroup (v1 ones and the cgroup2 one).
fn all_cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, list, path) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let mount = match list {
                "" if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() => {
                    "unified".to_string()
                }
                "" => String::new(),
                l => l.strip_prefix("name=").unwrap_or(l).to_string(),
            };
            Path::new("/sys/fs/cgroup").join(mount).join(&path[1..])
        })
        .collect()
}

/// The value of a cgroup file of `pid`'s: the v1 file, else the v2 one.
fn cgroup_value(pid: i32, controller: &str, v1: &str, v2: &str) -> Option<String> {
    let dir = cgroup_dir(pid, controller)?;
    std::fs::read_to_string(dir.join(v1))
        .or_else(|_| std::fs::read_to_string(dir.join(v2)))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn run_keep_leaves_the_container_stopped_like_runc() {
    if !can_run_with_runc() {
        return;
    }
    let mut b = Bundle::new("keep");
    let mut r = Runc::new(&b);
    b.set_args(&["sh", "-c", "exit 3"]);
    let id = b.id("keep");
    let rid = r.id(&mut b, "keep");
    let dir = b.dir.to_str().unwrap().to_string();
    let (code, _, err) = b.cmd(&["run", "--keep", "--bundle", &dir, &id]);
    let (rcode, _, rerr) = r.cmd(&["run", "--keep", "--bundle", &dir, &rid]);
    assert_eq!((code, rcode), (3, 3), "atoll: {err}\nrunc: {rerr}");
    let (code, out, err) = b.cmd(&["state", &id]);
    assert_eq!(code, 0, "the kept container is gone: {err}");
    assert_eq!(state(&out)["status"], "stopped", "{out}");
    assert_eq!(state(&r.cmd(&["state", &rid]).1)["status"], "stopped");
    // It goes with a plain delete, as runc's does.
    assert_eq!(b.cmd(&["delete", &id]).0, 0);
    assert_eq!(r.cmd(&["delete", &rid]).0, 0);
    assert!(!b.root.join(&id).exists());
    // Without --keep, run still deletes it.
    let id = b.id("nokeep");
    assert_eq!(b.cmd(&["run", "--bundle", &dir, &id]).0, 3);
    assert_ne!(b.cmd(&["state", &id]).0, 0);
}

#[test]
fn update_flags_match_runc_units_and_errors() {
    if !can_run_with_runc() {
        return;
    }
    let mut b = Bundle::new("update");
    let mut r = Runc::new(&b);
    let (id, pid, rid, rpid) = both_running(&mut b, &mut r, "update");
    // (flags, controller, v1 file, v2 file): both runtimes must accept or refuse alike, and
    // where they accept, leave the same value in the file.
    let cases: &[(&[&str], &str, &str, &str)] = &[
        (
            &["--memory", "512m"],
            "memory",
            "memory.limit_in_bytes",
            "memory.max",
        ),
        (
            &["--memory", "1.5g"],
            "memory",
            "memory.limit_in_bytes",
            "memory.max",
        ),
        (
            &["--memory", "1GiB"],
            "memory",
            "memory.limit_in_bytes",
            "memory.max",
        ),
        (
            &["--memory", "300 MB"],
            "memory",
            "memory.limit_in_bytes",
            "memory.max",
        ),
        (
            &["--memory-reservation", "256m"],
            "memory",
            "memory.soft_limit_in_bytes",
            "memory.low",
        ),
        (
            &["--memory", "256m", "--memory-swap", "512m"],
            "memory",
            "memory.memsw.limit_in_bytes",
            "memory.swap.max",
        ),
        (
            &["--memory", "-1"],
            "memory",
            "memory.limit_in_bytes",
            "memory.max",
        ),
        (&["--cpu-share", "512"], "cpu", "cpu.shares", "cpu.weight"),
        (
            &["--cpu-period", "50000"],
            "cpu",
            "cpu.cfs_period_us",
            "cpu.max",
        ),
        (
            &["--cpu-quota", "25000"],
            "cpu",
            "cpu.cfs_quota_us",
            "cpu.max",
        ),
        (&["--cpu-quota", "-1"], "cpu", "cpu.cfs_quota_us", "cpu.max"),
        (
            &["--cpu-rt-period", "1000000"],
            "cpu",
            "cpu.rt_period_us",
            "cpu.max",
        ),
        (
            &["--cpuset-cpus", "0"],
            "cpuset",
            "cpuset.cpus",
            "cpuset.cpus",
        ),
        (
            &["--cpuset-mems", "0"],
            "cpuset",
            "cpuset.mems",
            "cpuset.mems",
        ),
        (&["--pids-limit", "50"], "pids", "pids.max", "pids.max"),
        (&["--pids-limit", "-1"], "pids", "pids.max", "pids.max"),
        (
            &["--blkio-weight", "500"],
            "blkio",
            "blkio.weight",
            "io.weight",
        ),
        // Values both refuse.
        (
            &["--memory", "lots"],
            "memory",
            "memory.limit_in_bytes",
            "memory.max",
        ),
        (
            &["--memory", "-5"],
            "memory",
            "memory.limit_in_bytes",
            "memory.max",
        ),
        (
            &["--memory", "1.2.3m"],
            "memory",
            "memory.limit_in_bytes",
            "memory.max",
        ),
        (&["--cpu-share", "x"], "cpu", "cpu.shares", "cpu.weight"),
        (
            &["--cpu-period", "-1"],
            "cpu",
            "cpu.cfs_period_us",
            "cpu.max",
        ),
        (
            &["--cpu-rt-runtime", "x"],
            "cpu",
            "cpu.rt_runtime_us",
            "cpu.max",
        ),
        (&["--pids-limit", "x"], "pids", "pids.max", "pids.max"),
        (&["--bogus", "1"], "pids", "pids.max", "pids.max"),
    ];
    // The first 17 cases are accepted by both, except where the host decides (swap accounting,
    // a realtime budget, a blkio weight file); the rest are refused by both.
    const REFUSED_FROM: usize = 17;
    let host_decides = ["--memory-swap", "--cpu-rt-period", "--blkio-weight"];
    for (i, (flags, controller, v1, v2)) in cases.iter().enumerate() {
        let mut args = vec!["update"];
        args.extend_from_slice(flags);
        let (code, _, err) = b.cmd(&[&args[..], &[id.as_str()]].concat());
        let (rcode, _, rerr) = r.cmd(&[&args[..], &[rid.as_str()]].concat());
        assert_eq!(
            code,
            rcode,
            "update {}: atoll exit {code} ({err}), runc exit {rcode} ({rerr})",
            flags.join(" ")
        );
        if i >= REFUSED_FROM {
            assert_ne!(code, 0, "update {} was accepted", flags.join(" "));
        } else if !flags.iter().any(|f| host_decides.contains(f)) {
            assert_eq!(code, 0, "update {}: {err}", flags.join(" "));
        }
        if code == 0 {
            assert_eq!(
                cgroup_value(pid, controller, v1, v2),
                cgroup_value(rpid, controller, v1, v2),
                "update {}: {v1}/{v2} differs from runc's",
                flags.join(" ")
            );
        }
    }

    // -r FILE and -r - (stdin) take a linux.resources object.
    let file = b.dir.join("resources.json");
    std::fs::write(
        &file,
        r#"{"memory":{"limit":314572800},"pids":{"limit":77}}"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(b.cmd(&["update", "-r", f, &id]).0, 0);
    assert_eq!(r.cmd(&["update", "-r", f, &rid]).0, 0);
    for (pid, who) in [(pid, "atoll"), (rpid, "runc")] {
        assert_eq!(
            cgroup_value(pid, "pids", "pids.max", "pids.max").as_deref(),
            Some("77"),
            "{who}: -r FILE"
        );
    }
    for (cmd, who) in [(b.atoll(), "atoll"), (r.command(), "runc")] {
        let target = if who == "atoll" { &id } else { &rid };
        let mut cmd = cmd;
        let mut child = cmd
            .args(["update", "-r", "-", target])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(br#"{"pids":{"limit":66}}"#)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{who} update -r -: {out:?}");
    }
    assert_eq!(
        cgroup_value(pid, "pids", "pids.max", "pids.max"),
        cgroup_value(rpid, "pids", "pids.max", "pids.max")
    );
    assert_eq!(
        cgroup_value(pid, "pids", "pids.max", "pids.max").as_deref(),
        Some("66")
    );
}

#[test]
fn delete_force_of_a_missing_container_exits_0_like_runc() {
    if !can_run_with_runc() {
        return;
    }
    let b = Bundle::new("delmissing");
    let r = Runc::new(&b);
    let id = format!("never-created-{}", std::process::id());
    let (code, _, err) = b.cmd(&["delete", "--force", &id]);
    assert_eq!(
        code, 0,
        "atoll delete --force of a missing container: {err}"
    );
    assert_eq!(r.cmd(&["delete", "--force", &id]).0, 0);
    // Without --force it stays an error, in both.
    let (code, _, err) = b.cmd(&["delete", &id]);
    assert_eq!((code, r.cmd(&["delete", &id]).0), (1, 1), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    // A bad id is still refused, even with --force.
    assert_ne!(b.cmd(&["delete", "--force", "../x"]).0, 0);
}

#[test]
fn delete_of_a_created_container_kills_its_init_like_runc() {
    if !can_run_with_runc() {
        return;
    }
    let mut b = Bundle::new("delcreated");
    let mut r = Runc::new(&b);
    b.set_args(&["sleep", "1000"]);
    let id = b.id("created");
    let (code, err) = b.create(&id, &[]);
    assert_eq!(code, 0, "create: {err}");
    let rid = r.id(&mut b, "created");
    let (code, err) = r.detached(&b, &["create", "--bundle", b.dir.to_str().unwrap(), &rid]);
    assert_eq!(code, 0, "runc create: {err}");
    let pid = init_pid(&b.cmd(&["state", &id]).1);
    let rpid = init_pid(&r.cmd(&["state", &rid]).1);
    assert!(alive(pid) && alive(rpid));

    let (code, _, err) = b.cmd(&["delete", &id]);
    let (rcode, _, rerr) = r.cmd(&["delete", &rid]);
    assert_eq!((code, rcode), (0, 0), "atoll: {err}\nrunc: {rerr}");
    assert!(!b.root.join(&id).exists(), "state left behind");
    assert_ne!(b.cmd(&["state", &id]).0, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the created container's init {pid} lives on");
}

#[test]
fn log_flag_errors_match_runc() {
    if !can_run_with_runc() {
        return;
    }
    let b = Bundle::new("logflag");
    let r = Runc::new(&b);
    let good = b.dir.join("atoll.log");
    let rgood = b.dir.join("runc.log");
    let cases: [(Vec<String>, Vec<String>); 5] = [
        // A directory that does not exist: the file cannot be opened.
        (
            vec!["--log".into(), "/nonexistent-dir/x.log".into()],
            vec!["--log".into(), "/nonexistent-dir/x.log".into()],
        ),
        // runc has no "type:path" forms: this is a relative path in a missing directory.
        (
            vec!["--log".into(), "file:/tmp/atoll-life.log".into()],
            vec!["--log".into(), "file:/tmp/atoll-life.log".into()],
        ),
        (
            vec!["--log-format".into(), "yaml".into()],
            vec!["--log-format".into(), "yaml".into()],
        ),
        // Empty: stderr.
        (
            vec!["--log".into(), "".into()],
            vec!["--log".into(), "".into()],
        ),
        (
            vec!["--log".into(), good.to_str().unwrap().into()],
            vec!["--log".into(), rgood.to_str().unwrap().into()],
        ),
    ];
    for (ours, theirs) in cases {
        let (code, _, err) = decode(b.atoll().args(&ours).arg("list").output().unwrap());
        let (rcode, _, rerr) = decode(r.command().args(&theirs).arg("list").output().unwrap());
        assert_eq!(
            code, rcode,
            "{ours:?} list: atoll exit {code} ({err}), runc exit {rcode} ({rerr})"
        );
        if code != 0 {
            assert!(err.contains("--log"), "the error names the flag: {err}");
        }
    }
    // With a good file, an error goes there too (as JSON with --log-format json).
    let (code, _, _) = b.cmd(&[
        "--log",
        good.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    assert_eq!(code, 1);
    let text = std::fs::read_to_string(&good).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error", "{text}");
    assert!(line["msg"].as_str().unwrap().contains("does not exist"));
}

#[test]
fn preserve_fds_beyond_the_callers_fds_is_refused_like_runc() {
    if !can_run_with_runc() {
        return;
    }
    let mut b = Bundle::new("prefds");
    let mut r = Runc::new(&b);
    b.set_args(&["sleep", "1000"]);
    let id = b.id("prefds");
    // The test's children have fds 0-2 only (std opens everything else close-on-exec).
    let (code, err) = b.create(&id, &["--preserve-fds", "100"]);
    assert_eq!(
        code, 1,
        "create with 100 fds the caller does not have: {err}"
    );
    assert!(
        err.contains("unable to stat preserved-fd 0 (of 100)"),
        "{err}"
    );
    assert!(!b.root.join(&id).exists(), "a refused create left state");
    let rid = r.id(&mut b, "prefds");
    let dir = b.dir.to_str().unwrap().to_string();
    let (rcode, rerr) = r.detached(
        &b,
        &["create", "--preserve-fds", "100", "--bundle", &dir, &rid],
    );
    assert_eq!(rcode, 1, "runc: {rerr}");
    // runc checks after opening fds of its own (3 to 6), which it then counts as preserved;
    // atoll checks before it opens any, so only the caller's fds count.
    assert!(
        rerr.contains("unable to stat preserved-fd") && rerr.contains("(of 100)"),
        "{rerr}"
    );

    // With the caller's fds 3 and 4 open, two pass and the container works; delete is prompt.
    let id = b.id("prefds-ok");
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3</dev/null 4</dev/null; exec "$@""#)
        .arg("sh")
        .arg(ATOLL)
        .arg("--root")
        .arg(&b.root)
        .args(["create", "--preserve-fds", "2", "--bundle", &dir, &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    assert_eq!(b.cmd(&["delete", "--force", &id]).0, 0);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn delete_gives_up_on_a_lock_held_too_long() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("dellock");
    b.set_args(&["sleep", "1000"]);
    let id = b.id("dellock");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    // Another party holds the container's lock and never lets go.
    let dir = std::fs::File::open(b.root.join(&id)).unwrap();
    rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let errfile = b.dir.join("delete.err");
    let mut child = b
        .atoll()
        .args(["delete", "--force", &id])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errfile).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&errfile).unwrap_or_default();
    let status = status.expect("delete --force waited forever on the container's lock");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("locked"), "{err}");
    drop(dir);
    assert_eq!(b.cmd(&["delete", "--force", &id]).0, 0);
}

#[test]
fn exec_into_a_paused_container_needs_ignore_paused_like_runc() {
    if !can_run_with_runc() {
        return;
    }
    let mut b = Bundle::new("execpaused");
    let mut r = Runc::new(&b);
    let (id, _, rid, _) = both_running(&mut b, &mut r, "paused");
    assert_eq!(b.cmd(&["pause", &id]).0, 0);
    assert_eq!(r.cmd(&["pause", &rid]).0, 0);
    let (code, _, err) = b.cmd(&["exec", &id, "true"]);
    let (rcode, _, rerr) = r.cmd(&["exec", &rid, "true"]);
    // A failed exec exits 255 (not 1, which the process itself may exit with).
    assert_eq!((code, rcode), (255, 255), "{err}{rerr}");
    assert!(err.contains("--ignore-paused"), "{err}");

    // With --ignore-paused the exec goes in, and its process runs once the container resumes.
    let spawn = |mut c: Command, target: &str| {
        c.args(["exec", "--ignore-paused", target, "echo", "hi-paused"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut ours = spawn(b.atoll(), &id);
    let mut theirs = spawn(r.command(), &rid);
    std::thread::sleep(Duration::from_millis(1500));
    let early = (ours.try_wait().unwrap(), theirs.try_wait().unwrap());
    assert_eq!(b.cmd(&["resume", &id]).0, 0);
    assert_eq!(r.cmd(&["resume", &rid]).0, 0);
    let out = ours.wait_with_output().unwrap();
    let rout = theirs.wait_with_output().unwrap();
    assert_eq!(early, (None, None), "exec finished inside a frozen cgroup");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hi-paused");
    assert_eq!(out.stdout, rout.stdout);
}

/// Make `sub` below every hierarchy's cgroup of `pid` (a v1 cpuset child needs cpus and mems
/// before a task may join). Returns the directories made, deepest last.
fn make_sub_cgroups(pid: i32, sub: &str) -> Vec<PathBuf> {
    let mut made = vec![];
    for dir in all_cgroup_dirs(pid) {
        let child = dir.join(sub);
        std::fs::create_dir(&child).unwrap();
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if child.join(f).exists() && dir.join(f).exists() {
                let v = std::fs::read_to_string(dir.join(f)).unwrap();
                if !v.trim().is_empty() {
                    std::fs::write(child.join(f), v.trim()).unwrap();
                }
            }
        }
        made.push(child);
    }
    made
}

#[test]
fn exec_cgroup_puts_the_process_in_a_sub_cgroup_like_runc() {
    if !can_run_with_runc() {
        return;
    }
    let mut b = Bundle::new("execcg");
    let mut r = Runc::new(&b);
    let (id, pid, rid, rpid) = both_running(&mut b, &mut r, "execcg");
    let subs: Vec<PathBuf> = [pid, rpid]
        .into_iter()
        .flat_map(|p| make_sub_cgroups(p, "sub"))
        .collect();
    let cleanup = || {
        for d in &subs {
            let _ = std::fs::remove_dir(d);
        }
    };
    let both = |flags: &[&str]| {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        let ours = b.cmd(&[&args[..], &[id.as_str(), "cat", "/proc/self/cgroup"]].concat());
        let theirs = r.cmd(&[&args[..], &[rid.as_str(), "cat", "/proc/self/cgroup"]].concat());
        (ours, theirs)
    };
    let mut failures = vec![];
    // Accepted forms: the process's cgroup lines (seen inside the container's cgroup
    // namespace) are the same as under runc.
    for flags in [
        &["--cgroup", "sub"][..],
        &["--cgroup", "pids:sub"],
        &["--cgroup", "pids,memory:/sub/"],
        &["--cgroup", "/"],
    ] {
        let ((code, out, err), (rcode, rout, rerr)) = both(flags);
        if (code, rcode) != (0, 0) || out != rout {
            failures.push(format!(
                "exec {flags:?}: atoll {code} {out:?} {err}; runc {rcode} {rout:?} {rerr}"
            ));
        }
        if flags[1] == "sub" && !out.lines().all(|l| l.ends_with("/sub")) {
            failures.push(format!("exec {flags:?}: not in sub everywhere: {out}"));
        }
    }
    // Refused by both: a missing sub-cgroup, one outside the container's, an unknown
    // controller, two paths without controllers.
    for flags in [
        &["--cgroup", "nosuch"][..],
        &["--cgroup", "../x"],
        &["--cgroup", "nosuchcontroller:sub"],
        &["--cgroup", "sub", "--cgroup", "pids:sub"],
    ] {
        let ((code, _, err), (rcode, _, _)) = both(flags);
        if code == 0 || rcode == 0 {
            failures.push(format!("exec {flags:?}: atoll {code} {err}; runc {rcode}"));
        }
    }
    cleanup();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn update_with_a_device_list_keeps_the_standard_devices_like_runc() {
    if !can_run_with_runc() {
        return;
    }
    let mut b = Bundle::new("updatedev");
    let mut r = Runc::new(&b);
    let (id, _, rid, _) = both_running(&mut b, &mut r, "updatedev");
    // What containerd's CRI update passes: the spec's resources, device list included.
    let file = b.dir.join("resources.json");
    std::fs::write(
        &file,
        r#"{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":268435456}}"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, _, err) = b.cmd(&["update", "-r", f, &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r.cmd(&["update", "-r", f, &rid]).0, 0);
    let script = "echo x > /dev/null && exec 3<>/dev/ptmx && echo devices-ok";
    let (code, out, err) = b.cmd(&["exec", &id, "sh", "-c", script]);
    let (rcode, rout, _) = r.cmd(&["exec", &rid, "sh", "-c", script]);
    assert_eq!((rcode, rout.trim()), (0, "devices-ok"));
    assert_eq!((code, out.trim()), (0, "devices-ok"), "{err}");
}

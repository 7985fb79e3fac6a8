//! Real clients driving atoll side by side with runc: podman (`--runtime`) and containerd
//! (`ctr run --runc-binary`, and the runc v2 shim with `BinaryName`), each verb once per runtime,
//! the same outputs and exit codes expected from both. Everything the clients keep (podman's
//! storage, containerd's root, state and socket, the image) lives in a temporary directory; the
//! image is a tarball of the host's busybox-static, so nothing is downloaded. No container here
//! has a network other than its own loopback (`--network none`; ctr makes a new netns).
//!
//! Every client call has a timeout; Drop removes containers, daemons, mounts, cgroups and files
//! also when an assertion fails. Names carry the test binary's pid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ATOLL: &str = env!("CARGO_BIN_EXE_atoll");
const RUNC: &str = "/usr/sbin/runc";
/// Long enough for a loaded 2-core CI machine; a hang is a failure, not a stuck suite.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a client call did, compared between runtimes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `cmd` with its output in files (a pipe would stay open as long as a detached container or
/// conmon holds it), killing its process group after `CALL_TIMEOUT`.
fn call(mut cmd: Command, scratch: &Path) -> Outcome {
    use std::os::unix::process::CommandExt;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (out_path, err_path) = (
        scratch.join(format!("call-{n}.out")),
        scratch.join(format!("call-{n}.err")),
    );
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let code = wait_or_kill(&mut child, CALL_TIMEOUT, &what);
    Outcome {
        code,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

fn wait_or_kill(child: &mut Child, timeout: Duration, what: &str) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > timeout {
            let pgid = nix::unistd::Pid::from_raw(-(child.id() as i32));
            let _gone_already_is_fine = nix::sys::signal::kill(pgid, nix::sys::signal::SIGKILL);
            let _ = child.wait();
            panic!("timed out after {timeout:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The differences found, reported together at the end so one run shows all of them.
#[derive(Default)]
struct Diffs(Vec<String>);

impl Diffs {
    /// `runc` and `atoll` ran the same step: same exit code and the same output, after `norm`.
    fn same(&mut self, step: &str, runc: &Outcome, atoll: &Outcome, norm: impl Fn(&str) -> String) {
        let (r, a) = (
            (runc.code, norm(&runc.stdout)),
            (atoll.code, norm(&atoll.stdout)),
        );
        if r != a {
            self.0.push(format!(
                "{step}:\n  runc:  exit {} stdout {:?} stderr {:?}\n  atoll: exit {} stdout {:?} stderr {:?}",
                runc.code, runc.stdout, runc.stderr, atoll.code, atoll.stdout, atoll.stderr
            ));
        }
    }

    /// A step whose result is known (and the same for both runtimes).
    fn expect(&mut self, step: &str, got: &Outcome, code: i32, stdout: &str) {
        if got.code != code || got.stdout.trim_end() != stdout {
            self.0.push(format!(
                "{step}: expected exit {code} stdout {stdout:?}, got exit {} stdout {:?} stderr {:?}",
                got.code, got.stdout, got.stderr
            ));
        }
    }

    fn assert_none(self, client: &str) {
        assert!(
            self.0.is_empty(),
            "{client} differs:\n{}",
            self.0.join("\n")
        );
    }
}

fn trimmed(s: &str) -> String {
    s.trim_end().to_string()
}

/// A pty turns "\n" into "\r\n".
fn untty(s: &str) -> String {
    s.replace("\r\n", "\n").trim_end().to_string()
}

fn can_run(tools: &[&str]) -> bool {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let missing_tool = tools
        .iter()
        .find(|t| !Path::new(t).exists())
        .map(|t| format!("{t} is not installed (scripts/setup.sh installs it)"));
    atoll_testkit::gate::gate(
        &test,
        atoll_testkit::gate::first_missing([
            atoll_testkit::gate::missing_root(),
            atoll_testkit::gate::missing_busybox(),
            missing_tool,
        ]),
    )
}

/// A scratch directory with a busybox rootfs and its tarball; removed on drop, after the mounts
/// under it.
struct Scratch {
    dir: PathBuf,
    /// The cgroup parent the clients put their containers under (every hierarchy).
    cgroup: String,
}

impl Scratch {
    fn new(client: &str) -> Scratch {
        let dir = PathBuf::from(format!(
            "/tmp/atoll-tests/clients-{client}-{}",
            std::process::id()
        ));
        unmount_under(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("image/rootfs");
        for d in ["bin", "etc", "root", "tmp", "proc", "sys", "dev"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let busybox = atoll_testkit::gate::busybox().unwrap();
        std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
        let list = Command::new(&busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            // --list names some applets twice; the first link is the one wanted.
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(dir.join("image/rootfs.tar"))
            .arg(".")
            .status()
            .unwrap();
        assert!(tar.success(), "tar of the busybox rootfs failed");
        Scratch {
            dir,
            cgroup: format!("atoll-clients-{client}-{}", std::process::id()),
        }
    }

    fn rootfs_tar(&self) -> PathBuf {
        self.dir.join("image/rootfs.tar")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        remove_cgroup_tree(&self.cgroup);
    }
}

/// Lazily unmount everything mounted at or below `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// rmdir `name` and everything below it in every mounted cgroup hierarchy (the clients remove
/// their containers' cgroups; the parents they made are ours to remove).
fn remove_cgroup_tree(name: &str) {
    fn rmdir_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    rmdir_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in info.lines() {
        if l.contains(" - cgroup ") || l.contains(" - cgroup2 ") {
            if let Some(mnt) = l.split(' ').nth(4) {
                rmdir_tree(&Path::new(mnt).join(name));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// podman

/// podman with its own storage, run root, tmp dir and containers.conf under the scratch dir.
struct Podman {
    s: Scratch,
    image: String,
}

impl Podman {
    fn new() -> Podman {
        let s = Scratch::new("podman");
        for d in ["storage", "run", "tmp"] {
            std::fs::create_dir_all(s.dir.join(d)).unwrap();
        }
        // Only this file is read when CONTAINERS_CONF is set, so the host's own configuration
        // (runtime, network, ulimits) plays no part. podman's default RLIMIT_NOFILE and
        // RLIMIT_NPROC (1048576) exceed this host's hard limits, and raising a hard limit needs
        // CAP_SYS_RESOURCE in the initial user namespace, which CI's root lacks: every runtime's
        // setrlimit fails (EPERM) with the defaults.
        std::fs::write(
            s.dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        std::fs::write(s.dir.join("registries.conf"), "").unwrap();
        let p = Podman {
            image: format!("localhost/atoll-clients-{}:busybox", std::process::id()),
            s,
        };
        let out = p.podman(
            RUNC,
            &["import", p.s.rootfs_tar().to_str().unwrap(), &p.image],
        );
        assert_eq!(out.code, 0, "podman import: {}", out.stderr);
        p
    }

    fn podman(&self, runtime: &str, args: &[&str]) -> Outcome {
        let d = &self.s.dir;
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file", "--runtime", runtime])
            .args(args);
        call(c, &self.s.dir)
    }

    /// `podman run` with this test's image, cgroup parent and no network.
    fn run(&self, runtime: &str, opts: &[&str], argv: &[&str]) -> Outcome {
        let parent = format!("/{}", self.s.cgroup);
        let mut args = vec!["run", "--network", "none", "--cgroup-parent", &parent];
        args.extend_from_slice(opts);
        args.push(&self.image);
        args.extend_from_slice(argv);
        self.podman(runtime, &args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Every container of this storage, then the image; the storage goes with the scratch dir.
        let _ = self.podman(RUNC, &["rm", "--force", "--all", "--time", "0"]);
        let _ = self.podman(RUNC, &["rmi", "--force", "--all"]);
    }
}

/// One long-lived container per runtime: created, exec'd into, paused, stopped, restarted,
/// killed and removed by podman, and each step's result compared with runc's.
#[test]
fn podman_drives_atoll_as_it_drives_runc() {
    if !can_run(&["/usr/bin/podman", "/usr/bin/conmon", RUNC]) {
        return;
    }
    let started = Instant::now();
    let p = Podman::new();
    let mut d = Diffs::default();
    let both = |f: &dyn Fn(&str) -> Outcome| (f(RUNC), f(ATOLL));

    // run in the foreground: stdout, stderr and the exit code pass through.
    let (r, a) = both(&|rt| {
        p.run(
            rt,
            &["--rm"],
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
        )
    });
    d.expect("run (runc)", &r, 3, "out");
    d.same("run: stdout and exit code", &r, &a, trimmed);
    if r.stderr.trim_end() != "err" || a.stderr != r.stderr {
        d.0.push(format!(
            "run: stderr: runc {:?}, atoll {:?}",
            r.stderr, a.stderr
        ));
    }

    // --network none: a network namespace of its own, with only lo.
    let (r, a) = both(&|rt| {
        p.run(
            rt,
            &["--rm"],
            &[
                "sh",
                "-c",
                "ls /sys/class/net; cat /sys/class/net/lo/operstate",
            ],
        )
    });
    d.expect("run --network none (runc)", &r, 0, "lo\nunknown");
    d.same("run --network none", &r, &a, trimmed);

    // run -d: a container each runtime keeps running; SIGTERM makes its shell exit 7.
    let pid = std::process::id();
    let name = |rt: &str| {
        format!(
            "atoll-clients-{pid}-{}",
            if rt == RUNC { "runc" } else { "atoll" }
        )
    };
    let script = "trap 'exit 7' TERM; echo ready; sleep 1000 & wait";
    let (r, a) = both(&|rt| p.run(rt, &["-d", "--name", &name(rt)], &["sh", "-c", script]));
    for (rt, o) in [("runc", &r), ("atoll", &a)] {
        // The rest needs both containers: stop here if either is missing.
        let id = o.stdout.trim();
        assert!(
            o.code == 0 && id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "podman run -d ({rt}): exit {} stdout {:?} stderr {:?}\nearlier differences: {:#?}",
            o.code,
            o.stdout,
            o.stderr,
            d.0
        );
    }
    let status = |rt: &str| {
        p.podman(
            rt,
            &[
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                &name(rt),
            ],
        )
    };
    let with = |args: &[&str]| {
        let f = |rt: &str| {
            let n = name(rt);
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == "NAME" { n.as_str() } else { a })
                .collect();
            p.podman(rt, &args)
        };
        (f(RUNC), f(ATOLL))
    };

    let (r, a) = with(&[
        "exec",
        "NAME",
        "sh",
        "-c",
        "echo $HOME; id -u; test -t 0 || echo notty; exit 5",
    ]);
    d.expect("exec (runc)", &r, 5, "/root\n0\nnotty");
    d.same("exec", &r, &a, trimmed);

    let (r, a) = with(&[
        "exec",
        "-t",
        "NAME",
        "sh",
        "-c",
        "tty; test -t 1 && echo stdout-is-a-tty; exit 4",
    ]);
    d.same("exec -t", &r, &a, untty);
    if untty(&r.stdout) != "/dev/pts/0\nstdout-is-a-tty" || r.code != 4 {
        d.0.push(format!("exec -t (runc) not as expected: {r:?}"));
    }

    let (r, a) = with(&["pause", "NAME"]);
    d.same("pause", &r, &a, |_| String::new());
    let (r, a) = (status(RUNC), status(ATOLL));
    d.expect("status after pause (runc)", &r, 0, "paused 0");
    d.same("status after pause", &r, &a, trimmed);
    let (r, a) = with(&["unpause", "NAME"]);
    d.same("unpause", &r, &a, |_| String::new());
    let (r, a) = (status(RUNC), status(ATOLL));
    d.expect("status after unpause (runc)", &r, 0, "running 0");
    d.same("status after unpause", &r, &a, trimmed);

    // top: podman joins the container's pid namespace and reads its /proc. The sleep's pid
    // differs (runc's init forks inside the new pid namespace before the exec; atoll's does
    // not), so only pid 1 is compared by number.
    let (r, a) = with(&["top", "NAME", "pid", "comm"]);
    let cols = |s: &str| {
        let row = |l: &str| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [pid, comm] if *pid != "1" && pid.parse::<u32>().is_ok() => format!("N {comm}"),
                _ => f.join(" "),
            }
        };
        s.lines().map(row).collect::<Vec<_>>().join("\n")
    };
    d.expect(
        "top (runc)",
        &Outcome {
            stdout: cols(&r.stdout),
            ..r.clone()
        },
        0,
        "PID COMMAND\n1 sh\nN sleep",
    );
    d.same("top", &r, &a, cols);

    // stats read the container's cgroup: its pids count (two processes) and a memory figure.
    let (r, a) = with(&["stats", "--no-stream", "--format", "{{.PIDs}}", "NAME"]);
    d.expect("stats (runc)", &r, 0, "2");
    d.same("stats", &r, &a, trimmed);
    let (r, a) = with(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "NAME"]);
    let nonzero = |s: &str| (!s.trim().is_empty() && !s.trim().starts_with("0B")).to_string();
    d.same("stats memory", &r, &a, nonzero);

    // stop sends SIGTERM: the shell's trap exits 7 (well before the 10 s SIGKILL).
    let (r, a) = with(&["stop", "--time", "10", "NAME"]);
    d.same("stop", &r, &a, |_| String::new());
    let (r, a) = (status(RUNC), status(ATOLL));
    d.expect("status after stop (runc)", &r, 0, "exited 7");
    d.same("status after stop", &r, &a, trimmed);

    // start again (a new init in the same container), then its log has both runs' lines.
    let (r, a) = with(&["start", "NAME"]);
    d.same("start", &r, &a, |_| String::new());
    let (r, a) = (status(RUNC), status(ATOLL));
    d.expect("status after start (runc)", &r, 0, "running 0");
    d.same("status after start", &r, &a, trimmed);
    let wait_ready = |rt: &str| {
        // conmon writes the log as the process prints; wait for the second "ready".
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = p.podman(rt, &["logs", &name(rt)]);
            if o.stdout.matches("ready").count() >= 2 || Instant::now() > deadline {
                return o;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (r, a) = (wait_ready(RUNC), wait_ready(ATOLL));
    d.expect("logs (runc)", &r, 0, "ready\nready");
    d.same("logs", &r, &a, trimmed);

    // kill -s KILL, then wait reports 137 (128 + SIGKILL).
    let (r, a) = with(&["kill", "--signal", "KILL", "NAME"]);
    d.same("kill", &r, &a, |_| String::new());
    let (r, a) = with(&["wait", "NAME"]);
    d.expect("wait after kill (runc)", &r, 0, "137");
    d.same("wait after kill", &r, &a, trimmed);

    let (r, a) = with(&["rm", "NAME"]);
    d.same("rm", &r, &a, |_| String::new());
    let (r, a) = with(&["ps", "--all", "--quiet", "--filter", "name=NAME"]);
    d.expect("ps after rm (runc)", &r, 0, "");
    d.same("ps after rm", &r, &a, trimmed);

    d.assert_none("podman");
    eprintln!("podman side by side: {:.1?}", started.elapsed());
}

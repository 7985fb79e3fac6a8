//! Real clients driving atoll side by side with runc: podman (`--runtime`) and containerd
//! (`ctr run --runc-binary`, and the CRI plugin's runtime handlers with `BinaryName`, as
//! Kubernetes RuntimeClass uses them), each verb once per runtime, the same outputs and exit
//! codes expected from both. Everything the clients keep (podman's storage, containerd's root,
//! state and socket, the image) lives in a temporary directory; the image is a tarball of the
//! host's busybox-static, so nothing is downloaded. No container here sends a packet: podman's
//! have `--network none`, ctr's a new network namespace of their own, and the CRI pods (which
//! would need a CNI plugin for a namespace of their own) the host's.
//!
//! Every client call has a timeout; Drop removes containers, daemons, mounts, cgroups and files
//! also when an assertion fails. Names carry the test binary's pid.

mod common;

use std::os::unix::ffi::OsStrExt;
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
        common::busybox_image(
            &dir.join("image/rootfs"),
            &dir.join("image/rootfs.tar"),
            &[],
            &[
                ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                ("etc/group", "root:x:0:\n"),
            ],
        );
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
        // The clients remove their containers' cgroups; the parents they made are ours.
        common::remove_cgroup_tree(&self.cgroup);
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

// ---------------------------------------------------------------------------------------------
// containerd

/// An OCI image layout tarball (what `ctr image import` reads) holding one layer, the rootfs
/// tarball, named `name`; `cmd` is the image's default command.
fn oci_image_tar(s: &Scratch, name: &str, cmd: &[&str]) -> PathBuf {
    let layout = s.dir.join("image/layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    // Store a blob under its digest; (digest, size).
    let put = |bytes: &[u8]| {
        let tmp = s.dir.join("image/blob");
        std::fs::write(&tmp, bytes).unwrap();
        let out = Command::new("sha256sum").arg(&tmp).output().unwrap();
        assert!(out.status.success(), "sha256sum failed");
        let digest = String::from_utf8_lossy(&out.stdout)
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        std::fs::rename(&tmp, blobs.join(&digest)).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let (layer, layer_size) = put(&std::fs::read(s.rootfs_tar()).unwrap());
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": { "Cmd": cmd, "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [layer] },
    });
    let (config, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size }],
    });
    let (manifest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest,
            "size": manifest_size,
            "annotations": { "io.containerd.image.name": name },
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let tar = s.dir.join("image/oci.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success(), "tar of the OCI layout failed");
    tar
}

/// A containerd of its own: root, state, sockets and config.toml under the scratch dir, one
/// namespace named after this test binary. Dropping it removes the tasks, containers and image,
/// stops the daemon and the shims it started, and removes what is left.
struct Containerd {
    /// One containerd at a time in this binary: each removes /run/containerd/s if it made it,
    /// which must not happen while another one's shim is about to bind a socket there.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    s: Scratch,
    /// Whether /run/containerd existed before: the shim makes /run/containerd/s for its
    /// sockets whatever the config says, and this test removes it only if it made it.
    had_run_dir: bool,
    daemon: Child,
    ns: String,
    image: String,
}

impl Containerd {
    /// `extra_config` is appended to config.toml.
    fn start(name: &str, extra_config: &str) -> Containerd {
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        // A test that failed while holding it poisons it; the next one can still run.
        let one_at_a_time = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let s = Scratch::new(name);
        let had_run_dir = Path::new("/run/containerd").exists();
        let d = &s.dir;
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n{extra_config}",
            root = d.join("root").display(),
            state = d.join("state").display(),
            d = d.display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        use std::os::unix::process::CommandExt;
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start containerd");
        let ns = s.cgroup.clone();
        let c = Containerd {
            _one_at_a_time: one_at_a_time,
            s,
            had_run_dir,
            daemon,
            ns,
            image: format!("localhost/atoll-clients-{}:busybox", std::process::id()),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.ctr(&["version"]).code != 0 {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer in 30 s: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.s.dir.join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Outcome {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.s.dir.join("containerd.sock"))
            .args(["--namespace", &self.ns])
            .args(args);
        call(c, &self.s.dir)
    }

    /// ctr run's own defaults (/run/containerd/runc, /run/containerd/fifo) moved under the
    /// scratch dir.
    fn private_dirs(&self) -> (String, String) {
        let d = &self.s.dir;
        (
            d.join("runc-root").display().to_string(),
            d.join("fifo").display().to_string(),
        )
    }

    /// `ctr run` with this test's image: `--runc-binary` names the runtime.
    fn run(&self, runtime: &str, opts: &[&str], id: &str, argv: &[&str]) -> Outcome {
        let (runc_root, fifo) = self.private_dirs();
        let mut args = vec![
            "run",
            "--runc-binary",
            runtime,
            "--runc-root",
            &runc_root,
            "--fifo-dir",
            &fifo,
        ];
        args.extend_from_slice(opts);
        args.push(&self.image);
        args.push(id);
        args.extend_from_slice(argv);
        self.ctr(&args)
    }

    /// The pids of the runc v2 shims of this containerd (`-address` is its socket), in any
    /// namespace (the CRI plugin uses k8s.io).
    fn shims(&self) -> Vec<i32> {
        let sock = self.s.dir.join("containerd.sock");
        let mut pids = vec![];
        for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let ours = args.windows(2).any(|w| {
                w[0] == b"-address" && Path::new(std::ffi::OsStr::from_bytes(w[1])) == sock
            });
            if ours
                && args
                    .first()
                    .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// The STATUS column of `ctr task ls` for `id`.
    fn task_status(&self, id: &str) -> String {
        let o = self.ctr(&["task", "ls"]);
        o.stdout
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f.last().unwrap_or(&"").to_string())
            })
            .unwrap_or_else(|| format!("no task {id} (exit {}: {})", o.code, o.stderr.trim()))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let tasks = self.ctr(&["task", "ls", "--quiet"]).stdout;
        for id in tasks.lines() {
            let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
            let _ = self.ctr(&["task", "delete", "--force", id]);
        }
        for id in self.ctr(&["container", "ls", "--quiet"]).stdout.lines() {
            let _ = self.ctr(&["container", "delete", id]);
        }
        let _ = self.ctr(&["image", "rm", &self.image]);
        let pid = nix::unistd::Pid::from_raw(self.daemon.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // A shim outlives containerd; those started for our socket are ours. Wait
        // for them to be gone: each removes its socket from /run/containerd/s as it exits.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let shims @ [_, ..] = &self.shims()[..] {
            for pid in shims {
                let pid = nix::unistd::Pid::from_raw(*pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !self.had_run_dir {
            // Empty once the shims are gone; remove_dir fails (and keeps it) otherwise.
            let _ = std::fs::remove_dir("/run/containerd/s");
            let _ = std::fs::remove_dir("/run/containerd");
        }
    }
}

/// `ctr run --runc-binary` and `ctr task ...` against containerd's runc v2 shim, once with runc
/// and once with atoll as the binary the shim calls.
#[test]
fn containerd_drives_atoll_as_it_drives_runc() {
    if !can_run(&[
        "/usr/bin/containerd",
        "/usr/bin/ctr",
        "/usr/bin/containerd-shim-runc-v2",
        RUNC,
    ]) {
        return;
    }
    let started = Instant::now();
    let c = Containerd::start("containerd", "");
    let tar = oci_image_tar(&c.s, &c.image, &["/bin/sh"]);
    let o = c.ctr(&["image", "import", tar.to_str().unwrap()]);
    assert_eq!(o.code, 0, "ctr image import: {}\n{}", o.stderr, c.log());
    let mut d = Diffs::default();
    let pid = std::process::id();
    let id = |rt: &str| format!("ctr-{pid}-{}", if rt == RUNC { "runc" } else { "atoll" });
    let both = |f: &dyn Fn(&str) -> Outcome| (f(RUNC), f(ATOLL));

    // In the foreground: the process's output and exit code, HOME from /etc/passwd (ctr sets
    // none; runc fills it in).
    let (r, a) = both(&|rt| {
        c.run(
            rt,
            &["--rm"],
            &format!("{}-fg", id(rt)),
            &["sh", "-c", "echo out; echo $HOME; exit 3"],
        )
    });
    d.expect("ctr run (runc)", &r, 3, "out\n/root");
    d.same("ctr run", &r, &a, trimmed);

    // Detached; SIGTERM makes its shell exit 7.
    let script = "trap 'exit 7' TERM; sleep 1000 & wait";
    let (r, a) = both(&|rt| c.run(rt, &["--detach"], &id(rt), &["sh", "-c", script]));
    for (rt, o) in [("runc", &r), ("atoll", &a)] {
        assert_eq!(
            o.code, 0,
            "ctr run --detach ({rt}): {}\nearlier differences: {:#?}",
            o.stderr, d.0
        );
    }
    let with = |args: &[&str]| {
        let f = |rt: &str| {
            let n = id(rt);
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == "ID" { n.as_str() } else { a })
                .collect();
            c.ctr(&args)
        };
        (f(RUNC), f(ATOLL))
    };
    let status = || (c.task_status(&id(RUNC)), c.task_status(&id(ATOLL)));
    let fifo = c.private_dirs().1;

    let (r, a) = with(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e1",
        "ID",
        "sh",
        "-c",
        "id -u; echo $HOME; exit 5",
    ]);
    d.expect("task exec (runc)", &r, 5, "0\n/root");
    d.same("task exec", &r, &a, trimmed);

    let (r, a) = with(&["task", "pause", "ID"]);
    d.same("task pause", &r, &a, trimmed);
    let (r, a) = status();
    d.expect(
        "status after pause (runc)",
        &Outcome {
            code: 0,
            stdout: r.clone(),
            stderr: String::new(),
        },
        0,
        "PAUSED",
    );
    if r != a {
        d.0.push(format!("status after pause: runc {r}, atoll {a}"));
    }
    let (r, a) = with(&["task", "resume", "ID"]);
    d.same("task resume", &r, &a, trimmed);
    let (r, a) = status();
    if r != "RUNNING" || a != r {
        d.0.push(format!("status after resume: runc {r}, atoll {a}"));
    }

    // ps lists host pids (different numbers): the shell and its sleep.
    let (r, a) = with(&["task", "ps", "ID"]);
    let rows = |s: &str| s.lines().skip(1).count().to_string();
    d.expect(
        "task ps (runc)",
        &Outcome {
            stdout: rows(&r.stdout),
            ..r.clone()
        },
        0,
        "2",
    );
    d.same("task ps", &r, &a, rows);

    let (r, a) = with(&["task", "kill", "ID"]);
    d.same("task kill", &r, &a, trimmed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status() != ("STOPPED".into(), "STOPPED".into()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (r, a) = status();
    if r != "STOPPED" || a != r {
        d.0.push(format!("status after kill: runc {r}, atoll {a}"));
    }
    // delete reports the exit code the shim got from the runtime (7, from the trap).
    let (r, a) = with(&["task", "delete", "ID"]);
    let exit_note = |o: &Outcome| Outcome {
        stdout: o
            .stderr
            .split("msg=")
            .nth(1)
            .unwrap_or("")
            .replace(&id(RUNC), "ID")
            .replace(&id(ATOLL), "ID"),
        ..o.clone()
    };
    let (r, a) = (exit_note(&r), exit_note(&a));
    d.expect(
        "task delete (runc)",
        &r,
        0,
        "\"task ID exit with non-zero exit code 7\"",
    );
    d.same("task delete", &r, &a, trimmed);
    let (r, a) = with(&["container", "delete", "ID"]);
    d.same("container delete", &r, &a, trimmed);

    d.assert_none("containerd (ctr --runc-binary)");
    eprintln!("containerd side by side: {:.1?}", started.elapsed());
}

/// The CRI plugin's runtime handlers, as Kubernetes RuntimeClass uses them: two handlers in
/// config.toml, runtime_type io.containerd.runc.v2 with options BinaryName = runc and = atoll,
/// and `pod_annotations` passing `org.atoll.*` through. A pod per handler, driven by
/// tests/cri/pod.py with the calls kubelet makes (RunPodSandbox with the handler,
/// CreateContainer, StartContainer, ExecSync). The runtime's own `state` shows that the handler's
/// binary ran the container and which pod annotations reached its config.json.
#[test]
fn containerd_cri_runtime_class_uses_atoll_by_binary_name() {
    const PYTHON: &str = "/usr/bin/python3"; // Debian's, where python3-grpcio is installed
    let tools = [
        "/usr/bin/containerd",
        "/usr/bin/ctr",
        "/usr/bin/containerd-shim-runc-v2",
        RUNC,
        PYTHON,
    ];
    if !can_run(&tools) {
        return;
    }
    let grpc = Command::new(PYTHON)
        .args(["-c", "import grpc"])
        .output()
        .unwrap();
    if !grpc.status.success() {
        let why = "python3-grpcio is not installed (scripts/setup.sh installs it)".to_string();
        let test = "containerd_cri_runtime_class_uses_atoll_by_binary_name";
        if !atoll_testkit::gate::gate(test, Some(why)) {
            return;
        }
    }
    let started = Instant::now();
    let pid = std::process::id();
    let dir = PathBuf::from(format!("/tmp/atoll-tests/clients-cri-{pid}"));
    let image = format!("localhost/atoll-clients-{pid}:pause");
    let root = |handler: &str| dir.join(format!("{handler}-root"));
    let handler = |name: &str, binary: &str| {
        format!(
            "  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{name}]\n    \
             runtime_type = \"io.containerd.runc.v2\"\n    pod_annotations = [\"org.atoll.*\"]\n    \
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{name}.options]\n      \
             BinaryName = \"{binary}\"\n      Root = \"{}\"\n",
            root(name).display()
        )
    };
    // No CNI plugin: the pods use the host's network namespace (and send nothing). The sandbox
    // image is the busybox one, its command waiting for SIGTERM. restrict_oom_score_adj: the
    // sandbox asks for -998, and lowering oom_score_adj needs CAP_SYS_RESOURCE, which CI's root
    // lacks.
    let config = format!(
        "[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{image}\"\n  \
         restrict_oom_score_adj = true\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n  \
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    bin_dir = \"{d}/cni-bin\"\n    conf_dir = \"{d}/cni-conf\"\n{}{}",
        handler("runc", RUNC),
        handler("atoll", ATOLL),
        d = dir.display(),
    );
    let c = Containerd::start("cri", &config);
    assert_eq!(c.s.dir, dir);
    let pause = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"];
    let tar = oci_image_tar(&c.s, &image, &pause);
    let o = c.ctr(&[
        "--namespace",
        "k8s.io",
        "image",
        "import",
        tar.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "ctr image import: {}", o.stderr);
    std::fs::create_dir_all(dir.join("logs")).unwrap();

    let pod = |name: &str, binary: &str| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cri/pod.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(script)
            .arg(dir.join("containerd.sock"))
            .arg(name)
            .arg(binary)
            // the runc v2 shim gives the runtime --root <Root>/<containerd namespace>
            .arg(root(name).join("k8s.io"))
            .arg(format!("atoll-clients-{pid}-{name}"))
            .arg(&image)
            .arg(format!("/{}", c.s.cgroup))
            .arg(dir.join("logs"))
            .args(["org.atoll.guard=off", "not.passed.through=x"]);
        let o = call(cmd, &dir);
        assert_eq!(
            o.code,
            0,
            "pod with handler {name}: {}\n{}",
            o.stderr,
            c.log()
        );
        serde_json::from_str::<serde_json::Value>(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
    };
    let (r, a) = (pod("runc", RUNC), pod("atoll", ATOLL));
    let mut d = Diffs::default();
    for (name, v) in [("runc", &r), ("atoll", &a)] {
        // `state` answered from this handler's root: its BinaryName ran the container.
        if v["state"]["status"] != "running" {
            d.0.push(format!(
                "{name}: the container is not running under its handler's root: {v}"
            ));
        }
        let ann = &v["state"]["annotations"];
        if ann["org.atoll.guard"] != "off" || !ann["not.passed.through"].is_null() {
            d.0.push(format!(
                "{name}: pod_annotations did not pass exactly org.atoll.*: {ann}"
            ));
        }
        if ann["io.kubernetes.cri.container-type"] != "container" {
            d.0.push(format!("{name}: no CRI container annotations: {ann}"));
        }
    }
    if r["exec"] != serde_json::json!({"stdout": "0\n/root\n", "stderr": "err\n", "exit_code": 3}) {
        d.0.push(format!("ExecSync (runc) not as expected: {}", r["exec"]));
    }
    if r["exec"] != a["exec"] {
        d.0.push(format!(
            "ExecSync:\n  runc:  {}\n  atoll: {}",
            r["exec"], a["exec"]
        ));
    }
    d.assert_none("containerd CRI (RuntimeClass handler with BinaryName)");
    eprintln!("containerd CRI side by side: {:.1?}", started.elapsed());
}

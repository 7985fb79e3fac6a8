//! Shared pieces of the root integration tests: a busybox-static bundle per test, an atoll
//! invocation with a private --root, and cleanup that runs also when a test fails.
#![allow(dead_code)]

pub mod podman;
pub mod project;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const ATOLL: &str = env!("CARGO_BIN_EXE_atoll");
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Tests need root and busybox-static. In CI (ATOLL_TESTS_MUST_RUN=1) a missing requirement is a
/// failure; locally the test says why it did not run and returns (atoll_testkit::gate).
pub fn can_run() -> bool {
    can_run_also(None)
}

/// `can_run`, with one more requirement of the test's own (`Some(why)` when it is missing).
pub fn can_run_also(missing: Option<String>) -> bool {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    atoll_testkit::gate::gate(
        &test,
        atoll_testkit::gate::first_missing([
            atoll_testkit::gate::missing_root(),
            atoll_testkit::gate::missing_busybox(),
            missing,
        ]),
    )
}

/// Run a command that leaves a container process holding its stdio (`create`, `run -d`): never
/// wait on pipes for it (they stay open until the container exits); stderr goes to `errfile`.
/// Returns (exit code, stderr).
pub fn status_and_stderr(mut cmd: Command, errfile: &Path) -> (i32, String) {
    let status = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(errfile).unwrap())
        .status()
        .unwrap();
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(errfile).unwrap_or_default(),
    )
}

pub use atoll_testkit::gate::busybox;

/// A bundle with a busybox rootfs and a config.json from `atoll spec`, adjusted for tests
/// (no terminal, writable root), and its own state root. Dropping it deletes the containers and
/// the directories.
pub struct Bundle {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub ids: Vec<String>,
    pub config: serde_json::Value,
}

impl Bundle {
    pub fn new(name: &str) -> Bundle {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = PathBuf::from(format!(
            "/tmp/atoll-tests/{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("bundle");
        let rootfs = dir.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "root", "data"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(busybox().expect("busybox"), rootfs.join("bin/busybox")).unwrap();
        // Ask the host's busybox: executing the fresh copy races with other test threads' forks
        // that still hold its write fd (ETXTBSY).
        let out = Command::new(busybox().expect("busybox"))
            .arg("--list")
            .output()
            .unwrap();
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
        let out = Command::new(ATOLL)
            .args(["spec", "--bundle"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "atoll spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        config["process"]["terminal"] = false.into();
        config["root"]["readonly"] = false.into();
        let b = Bundle {
            dir,
            root: base.join("state"),
            ids: vec![],
            config,
        };
        b.save();
        b
    }

    pub fn save(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn set_args(&mut self, args: &[&str]) {
        self.config["process"]["args"] = args
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into();
        self.save();
    }

    pub fn id(&mut self, name: &str) -> String {
        // The pid keeps ids (and so cgroup paths /atoll/<id>) apart between test binaries.
        let id = format!(
            "{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        self.ids.push(id.clone());
        id
    }

    pub fn atoll(&self) -> Command {
        let mut c = Command::new(ATOLL);
        c.arg("--root").arg(&self.root);
        c.stdin(Stdio::null());
        c
    }

    /// `atoll run` in the foreground; returns (exit code, stdout, stderr).
    pub fn run(&mut self, name: &str) -> (i32, String, String) {
        let id = self.id(name);
        let out = self
            .atoll()
            .args(["run", "--bundle"])
            .arg(&self.dir)
            .arg(&id)
            .output()
            .unwrap();
        decode(out)
    }

    /// Run `args` as the container's process; return stdout after asserting exit 0.
    pub fn sh(&mut self, script: &str) -> String {
        self.set_args(&["sh", "-c", script]);
        let (code, out, err) = self.run("sh");
        assert_eq!(
            code, 0,
            "container script failed: {script}\nstdout: {out}\nstderr: {err}"
        );
        out
    }

    /// An atoll command that leaves a container process holding our stdio (`create`,
    /// `run -d`, `exec -d`): never wait on pipes for it (they stay open until the container
    /// exits); stderr goes to a file instead. Returns (exit code, stderr).
    pub fn detached(&self, args: &[&str]) -> (i32, String) {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let errfile = self.dir.join(format!("detached-{n}.err"));
        let mut cmd = self.atoll();
        cmd.args(args);
        status_and_stderr(cmd, &errfile)
    }

    /// `atoll create --bundle <bundle> <extra> <id>`.
    pub fn create(&self, id: &str, extra: &[&str]) -> (i32, String) {
        let bundle = self.dir.to_str().unwrap().to_string();
        let mut args = vec!["create", "--bundle", &bundle];
        args.extend_from_slice(extra);
        args.push(id);
        self.detached(&args)
    }

    /// `atoll run -d --bundle <bundle> <id>`.
    pub fn run_detached(&self, id: &str) -> (i32, String) {
        self.detached(&["run", "-d", "--bundle", self.dir.to_str().unwrap(), id])
    }

    pub fn cmd(&self, args: &[&str]) -> (i32, String, String) {
        decode(self.atoll().args(args).output().unwrap())
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

pub fn decode(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.atoll().args(["delete", "--force", id]).output();
        }
        let base = self.dir.parent().unwrap().to_path_buf();
        // Unmount anything a failed test may have left under the bundle before removing it.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.rootfs())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&base);
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

impl Bundle {
    /// Add capabilities to the bounding, effective and permitted sets, and save.
    pub fn add_caps(&mut self, caps: &[&str]) {
        for set in ["bounding", "effective", "permitted"] {
            let l = self.config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap();
            for c in caps {
                l.push(serde_json::json!(c));
            }
        }
        self.save();
    }
}

/// Read a pty master in a thread until `until` shows up (or, with None, until EOF: EIO once the
/// last slave fd closes), or `wait` passes; return all text read.
pub fn read_pty(
    master: std::os::fd::OwnedFd,
    until: Option<&str>,
    wait: std::time::Duration,
) -> String {
    use std::io::Read;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + wait;
    let mut text = String::new();
    while until.is_none_or(|needle| !text.contains(needle)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Err(_) => break,
        }
    }
    text
}

/// A busybox-static image for podman and containerd to import: the tree at `rootfs` (busybox,
/// the `applets` linked to it, or every applet when empty, and `files` as (path inside,
/// content)), tarred to `tar`.
pub fn busybox_image(rootfs: &Path, tar: &Path, applets: &[&str], files: &[(&str, &str)]) {
    for d in ["bin", "etc", "root", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let busybox = atoll_testkit::gate::busybox().unwrap();
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
    let all;
    let applets: Vec<&str> = if applets.is_empty() {
        let list = Command::new(&busybox).arg("--list").output().unwrap();
        all = String::from_utf8_lossy(&list.stdout).to_string();
        all.lines().collect()
    } else {
        applets.to_vec()
    };
    for applet in applets {
        // --list names some applets twice; the first link is the one wanted.
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
    }
    for (path, content) in files {
        std::fs::write(rootfs.join(path.trim_start_matches('/')), content).unwrap();
    }
    let ok = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success(), "tar of the busybox rootfs failed");
}

/// rmdir the cgroup `name` (relative to each hierarchy's root) and everything below it, deepest
/// first, in every mounted hierarchy. An engine's last process (conmon, a shim) leaves its
/// cgroup a moment after the engine's `rm` returns (EBUSY until then), so the removal is retried
/// for up to 5 s: without it every run left a tree behind.
pub fn remove_cgroup_tree(name: &str) {
    fn rmdir_tree(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let trees: Vec<PathBuf> = info
        .lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mnt| Path::new(mnt).join(name))
        .collect();
    let t = std::time::Instant::now();
    while trees.iter().any(|d| d.exists()) && t.elapsed() < std::time::Duration::from_secs(5) {
        trees.iter().for_each(|d| rmdir_tree(d));
        if trees.iter().any(|d| d.exists()) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

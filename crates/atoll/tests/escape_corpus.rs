//! The escape corpus: each technique attempted for real from inside a container (busybox plus
//! the atoll-probe binary), asserting that it fails and, where the guard covers it, that the
//! alert line names it. tests/escapes/README.md maps techniques to tests; the runtime-core
//! escapes that need no probe live in tests/escapes.rs and are referenced there, not repeated.

mod common;
use common::*;

use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Copy the probe (crates/atoll-probe, a test-only package: cargo test --workspace builds it)
/// and the shared libraries it links (ldd, with the loader) into the rootfs: it is linked
/// dynamically like every test build, and the rootfs is busybox-static only.
fn install_probe(b: &Bundle) {
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
}

/// A bundle with the probe, a /helper directory shared with the host, and a fresh id.
fn probe_bundle(name: &str) -> (Bundle, PathBuf) {
    let mut b = Bundle::new(name);
    install_probe(&b);
    let helper = b.dir.parent().unwrap().join("helper");
    std::fs::create_dir_all(&helper).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir_all(b.rootfs().join("helper")).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/helper", "type": "bind", "source": helper, "options": ["rbind"]}),
    );
    b.save();
    (b, helper)
}

/// Root inside a user namespace (host uids 300000+), the way tenants should run.
fn in_userns(b: &mut Bundle) {
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    b.config["linux"]["uidMappings"] = map.clone();
    b.config["linux"]["gidMappings"] = map;
    let st = Command::new("chown")
        .args(["-R", "300000:300000"])
        .arg(b.rootfs())
        .status()
        .unwrap();
    assert!(st.success());
    b.save();
}

/// `atoll guard serve` in the background; killed (by its pid) on drop.
struct Guard {
    child: Child,
    socket: PathBuf,
    alerts: PathBuf,
}

impl Guard {
    fn start(dir: &Path, mode: &str) -> Guard {
        let socket = dir.join("guard.sock");
        let alerts = dir.join("alerts.jsonl");
        let child = Command::new(ATOLL)
            .args(["guard", "serve", "--mode", mode, "--socket"])
            .arg(&socket)
            .arg("--alerts")
            .arg(&alerts)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while !socket.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "guard socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Guard {
            child,
            socket,
            alerts,
        }
    }

    fn alerts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.alerts)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each alert line is JSON"))
            .collect()
    }

    /// The alert lines for `rule` and `tenant`, waiting a little: the line is written right
    /// after the answer, so the container may report before it lands.
    fn wait_alerts(&self, rule: &str, tenant: &str, n: usize) -> Vec<Value> {
        let t = Instant::now();
        loop {
            let got: Vec<Value> = self
                .alerts()
                .into_iter()
                .filter(|a| a["rule"] == rule && a["tenant"] == tenant)
                .collect();
            if got.len() >= n || t.elapsed() > Duration::from_secs(3) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Put the bundle under this guard through the config annotations.
    fn annotate(&self, b: &mut Bundle, mode: &str, meta: Option<&str>) {
        let mut ann = json!({"org.atoll.guard": mode, "org.atoll.guard.socket": self.socket});
        if let Some(m) = meta {
            ann["org.atoll.guard.metadata"] = json!(m);
        }
        b.config["annotations"] = ann;
        b.save();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the probe as the container's process; its one-line answer.
fn probe(b: &mut Bundle, args: &[&str]) -> String {
    let mut argv = vec!["/bin/atoll-probe"];
    argv.extend_from_slice(args);
    b.set_args(&argv);
    let (code, out, err) = b.run("probe");
    assert_eq!(code, 0, "probe {args:?}: {out}{err}");
    out.trim().to_string()
}

/// A host helper: serve `file` over SCM_RIGHTS to the first client of `dir/<name>.sock`.
fn serve_fd(dir: &Path, name: &str, file: std::fs::File) -> String {
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

fn ino(p: &str) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

fn container_pid(b: &Bundle, id: &str) -> i64 {
    let st: Value = serde_json::from_str(&b.cmd(&["state", id]).1).unwrap();
    st["pid"].as_i64().unwrap()
}

const EPERM: &str = "errno=1";

/// (1) A host netns fd passed over SCM_RIGHTS: root with CAP_SYS_ADMIN and no user namespace
/// joins it without the guard (the control proves the attempt is real), and fails with EPERM
/// and a `foreign-namespace` alert naming the host with it.
#[test]
fn setns_into_a_host_netns_fd_is_denied_and_alerted() {
    if !can_run() {
        return;
    }
    let (mut b, helper) = probe_bundle("setns-host");
    b.add_caps(&["CAP_SYS_ADMIN"]);
    let host_net = || std::fs::File::open("/proc/self/ns/net").unwrap();

    let sock = serve_fd(&helper, "control", host_net());
    b.config["annotations"] = json!({"org.atoll.guard": "off"});
    b.save();
    assert_eq!(
        probe(&mut b, &["setns-recv", &sock, "net"]),
        "ok",
        "control: the guard switched off, it works"
    );

    let g = Guard::start(&helper, "enforce");
    g.annotate(&mut b, "enforce", None);
    let sock = serve_fd(&helper, "attack", host_net());
    assert_eq!(probe(&mut b, &["setns-recv", &sock, "net"]), EPERM);
    let id = b.ids.last().unwrap().clone();
    let a = g.wait_alerts("atoll.setns.foreign-namespace", &id, 1);
    assert_eq!(a.len(), 1, "one alert: {:?}", g.alerts());
    let a = &a[0];
    assert_eq!(a["syscall"], "setns");
    assert_eq!(a["nstype"], "net");
    assert_eq!(a["owner"], "host");
    assert_eq!(a["decision"], "deny");
    assert_eq!(a["ns_inode"], ino("/proc/self/ns/net"));
    assert_eq!(a["uid"], 0);
    assert!(a["pid"].as_u64().unwrap() > 0 && a["time"].as_str().unwrap().ends_with('Z'));
}

/// (1) Another tenant's mount and pid namespaces, from inside a user namespace: denied, and the
/// alert names the other tenant ("island:db", from its listenerMetadata).
#[test]
fn setns_into_another_tenants_mnt_and_pid_ns_is_denied() {
    if !can_run() {
        return;
    }
    let (mut b, helper) = probe_bundle("setns-other");
    let g = Guard::start(&helper, "enforce");
    // The victim: a guarded island member "db" that just sleeps.
    let mut db = Bundle::new("setns-db");
    g.annotate(&mut db, "enforce", Some("name=db"));
    db.set_args(&["sleep", "1000"]);
    let db_id = db.id("db");
    let (code, err) = db.run_detached(&db_id);
    assert_eq!(code, 0, "{err}");
    let pid = container_pid(&db, &db_id);

    in_userns(&mut b);
    b.add_caps(&["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"]);
    g.annotate(&mut b, "enforce", None);
    for ty in ["mnt", "pid"] {
        let f = std::fs::File::open(format!("/proc/{pid}/ns/{ty}")).unwrap();
        let sock = serve_fd(&helper, ty, f);
        assert_eq!(probe(&mut b, &["setns-recv", &sock, ty]), EPERM, "{ty}");
        let id = b.ids.last().unwrap().clone();
        let a = g.wait_alerts("atoll.setns.foreign-namespace", &id, 1);
        assert_eq!(a.len(), 1, "{ty}: {:?}", g.alerts());
        assert_eq!(a[0]["nstype"], ty);
        assert_eq!(a[0]["owner"], "island:db");
        assert_eq!(a[0]["ns_inode"], ino(&format!("/proc/{pid}/ns/{ty}")));
        assert!(
            a[0]["uid"].as_i64().unwrap() >= 300000,
            "host uid of mapped root"
        );
    }
}

/// (2) setns on the tenant's own namespaces keeps working, with no alert.
#[test]
fn setns_into_own_namespaces_works_without_alert() {
    if !can_run() {
        return;
    }
    let (mut b, helper) = probe_bundle("setns-own");
    in_userns(&mut b);
    b.add_caps(&["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"]);
    let g = Guard::start(&helper, "enforce");
    g.annotate(&mut b, "enforce", None);
    for ty in ["net", "mnt", "uts", "ipc"] {
        let path = format!("/proc/self/ns/{ty}");
        assert_eq!(probe(&mut b, &["setns-path", &path, ty]), "ok", "{ty}");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(g.alerts().is_empty(), "no alert: {:?}", g.alerts());
}

/// (6) "shocker": open_by_handle_at is denied and alerted (CAP_DAC_READ_SEARCH granted, so
/// only the filter stands between the call and the kernel's own check).
#[test]
fn open_by_handle_at_is_denied_and_alerted() {
    if !can_run() {
        return;
    }
    let (mut b, helper) = probe_bundle("shocker");
    b.add_caps(&["CAP_DAC_READ_SEARCH"]);
    let g = Guard::start(&helper, "enforce");
    g.annotate(&mut b, "enforce", None);
    assert_eq!(probe(&mut b, &["open-by-handle"]), EPERM);
    let id = b.ids.last().unwrap().clone();
    let a = g.wait_alerts("atoll.open-by-handle-at", &id, 1);
    assert_eq!(a.len(), 1, "{:?}", g.alerts());
    assert_eq!(a[0]["syscall"], "open_by_handle_at");
    assert_eq!(a[0]["decision"], "deny");
}

/// (10) Creating a user namespace where the policy forbids it: unshare and clone are denied
/// and alerted; clone3 (flags in memory, unjudgeable) fails with ENOSYS. The control shows the
/// same probe succeeds without the guard.
#[test]
fn user_namespace_creation_is_denied_when_forbidden() {
    if !can_run() {
        return;
    }
    let (mut b, helper) = probe_bundle("userns-create");
    b.config["annotations"] = json!({"org.atoll.guard": "off"});
    b.save();
    assert_eq!(
        probe(&mut b, &["unshare-user"]),
        "ok",
        "control: the guard switched off"
    );
    let g = Guard::start(&helper, "enforce");
    g.annotate(&mut b, "enforce", None);
    assert_eq!(probe(&mut b, &["unshare-user"]), EPERM);
    let unshare_id = b.ids.last().unwrap().clone();
    assert_eq!(probe(&mut b, &["clone-user"]), EPERM);
    let clone_id = b.ids.last().unwrap().clone();
    assert_eq!(probe(&mut b, &["clone3-user"]), "errno=38");
    for (id, sc) in [(unshare_id, "unshare"), (clone_id, "clone")] {
        let a = g.wait_alerts("atoll.userns.create", &id, 1);
        assert_eq!(a.len(), 1, "{sc}: {:?}", g.alerts());
        assert_eq!(a[0]["syscall"], sc);
        assert_eq!(a[0]["nstype"], "user");
    }
    // Allowed by metadata: the trap is not even installed.
    g.annotate(&mut b, "enforce", Some("userns=allow"));
    assert_eq!(probe(&mut b, &["unshare-user"]), "ok");
}

/// Detect mode: the call goes on and the alert says `allow-detect`.
#[test]
fn detect_mode_alerts_without_denying() {
    if !can_run() {
        return;
    }
    let (mut b, helper) = probe_bundle("detect");
    let g = Guard::start(&helper, "detect");
    g.annotate(&mut b, "detect", None);
    assert_eq!(probe(&mut b, &["unshare-user"]), "ok");
    let id = b.ids.last().unwrap().clone();
    let a = g.wait_alerts("atoll.userns.create", &id, 1);
    assert_eq!(a.len(), 1, "{:?}", g.alerts());
    assert_eq!(a[0]["decision"], "allow-detect");
}

/// Supervisor gone: the kernel fails every trapped call with ENOSYS; nothing succeeds silently.
#[test]
fn trapped_calls_fail_with_enosys_once_the_supervisor_is_gone() {
    if !can_run() {
        return;
    }
    let (mut b, helper) = probe_bundle("no-guard");
    let mut g = Guard::start(&helper, "enforce");
    g.annotate(&mut b, "enforce", None);
    b.set_args(&[
        "sh",
        "-c",
        "while [ ! -e /helper/go ]; do sleep 0.05; done; /bin/atoll-probe unshare-user > /helper/out",
    ]);
    let id = b.id("orphan");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "{err}");
    g.child.kill().unwrap(); // our own child, by pid
    g.child.wait().unwrap();
    std::fs::write(helper.join("go"), "").unwrap();
    let t = Instant::now();
    let out = loop {
        let s = std::fs::read_to_string(helper.join("out")).unwrap_or_default();
        if !s.is_empty() || t.elapsed() > Duration::from_secs(10) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(out.trim(), "errno=38", "ENOSYS, not success");
}

/// (8) Kernel attack surface a tenant must not reach: AF_PACKET sockets, bpf(),
/// perf_event_open, module loading. Root in a user namespace with the default capabilities.
#[test]
fn kernel_surface_calls_fail_inside() {
    if !can_run() {
        return;
    }
    let (mut b, _) = probe_bundle("surface");
    in_userns(&mut b);
    for args in [
        &["socket", "packet"][..],
        &["bpf"],
        &["perf"],
        &["init-module"],
        &["finit-module"],
    ] {
        let got = probe(&mut b, args);
        assert!(got.starts_with("errno="), "{args:?} must fail: {got}");
    }
}

/// The probe's answer on the host itself, outside any container.
fn probe_on_host(args: &[&str]) -> String {
    let out = Command::new(atoll_testkit::probe::probe())
        .args(args)
        .output()
        .expect("run atoll-probe on the host");
    assert!(out.status.success(), "atoll-probe {args:?} on the host");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// (8) AF_VSOCK in a plain container. vsock is not namespaced: a socket made inside reaches
/// the hypervisor (CID 2) and the VM's other vsock peers like one made on the host, and
/// socket(2) needs no capability. The guard's default filter (enforce mode, node file
/// `vsock = "deny"` by default) refuses it with EAFNOSUPPORT, what a kernel without vsock says;
/// with the guard off the container gets the host kernel's answer (`ok` where the kernel has
/// vsock, as this VM's virtio-vsock). Islands refuse it too
/// (`vsock_is_refused_with_eperm_in_an_island`).
#[test]
fn vsock_in_a_plain_container_is_refused_by_default() {
    if !can_run() {
        return;
    }
    let host = probe_on_host(&["socket", "vsock"]);
    assert!(
        host == "ok" || host == "errno=97",
        "the host kernel answered socket(AF_VSOCK) with {host}: neither present nor absent"
    );
    let (mut b, _) = probe_bundle("vsock-plain");
    in_userns(&mut b);
    assert_eq!(
        probe(&mut b, &["socket", "vsock"]),
        "errno=97",
        "a plain container is refused vsock by the guard's default filter"
    );
    b.config["annotations"] = json!({"org.atoll.guard": "off"});
    b.save();
    assert_eq!(
        probe(&mut b, &["socket", "vsock"]),
        host,
        "with the guard off: the host kernel's answer"
    );
}

/// `atoll up` of one island, removed with `atoll down` (and its files) on drop.
struct OneIsland {
    name: String,
    dir: PathBuf,
}

impl OneIsland {
    /// An island whose command runs `script` with the probe at /opt/atoll-probe and the
    /// island's data dir at /data (`data_root/<island>` on the host).
    fn up(script: &str) -> OneIsland {
        let name = format!("vs{}", std::process::id() % 100_000);
        let dir = PathBuf::from(format!("/tmp/atoll-tests/island-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("islands.toml");
        let probe = atoll_testkit::probe::probe();
        std::fs::write(
            &file,
            format!(
                "name = \"{name}\"\ndata_root = \"{}\"\n\n[[island]]\nname = \"v\"\n\
                 command = [\"/bin/sh\", \"-c\", {script:?}]\nbinds = [\"{}:/opt/atoll-probe\"]\n\
                 guard = \"off\"\n",
                dir.join("data").display(),
                probe.display()
            ),
        )
        .unwrap();
        let island = OneIsland { name, dir };
        let out = Command::new(ATOLL).arg("up").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "atoll up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        island
    }

    /// The content of `file` in the island's data dir, once the island has written it.
    fn wait_for(&self, file: &str) -> String {
        let path = self.dir.join("data/v").join(file);
        let t = Instant::now();
        loop {
            let s = std::fs::read_to_string(&path).unwrap_or_default();
            if s.ends_with('\n') || t.elapsed() > Duration::from_secs(10) {
                return s.trim().to_string();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OneIsland {
    fn drop(&mut self) {
        let _ = Command::new(ATOLL).args(["down", &self.name]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(Path::new("/var/log/atoll/islands").join(&self.name));
    }
}

/// (8) What islands promise: socket(AF_VSOCK) fails with EPERM, from the islands' seccomp
/// profile, whatever the kernel offers (docs/islands-file.md).
#[test]
fn vsock_is_refused_with_eperm_in_an_island() {
    if !can_run() {
        return;
    }
    let island = OneIsland::up("/opt/atoll-probe socket vsock > /data/vsock; exec sleep 600");
    assert_eq!(island.wait_for("vsock"), EPERM);
}

/// (1) setns(pidfd, CLONE_NEWNET) with a pidfd of another tenant's process passed in: joins
/// that process's namespaces in one call; the guard resolves them and denies.
#[test]
fn setns_through_a_pidfd_of_another_tenant_is_denied() {
    if !can_run() {
        return;
    }
    let (mut b, helper) = probe_bundle("setns-pidfd");
    let g = Guard::start(&helper, "enforce");
    let mut db = Bundle::new("pidfd-db");
    g.annotate(&mut db, "enforce", Some("name=db"));
    db.set_args(&["sleep", "1000"]);
    let db_id = db.id("db");
    assert_eq!(db.run_detached(&db_id).0, 0);
    let pid = container_pid(&db, &db_id);
    b.add_caps(&["CAP_SYS_ADMIN"]);
    g.annotate(&mut b, "enforce", None);
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    let sock = serve_fd(&helper, "pidfd", std::fs::File::from(pidfd));
    assert_eq!(probe(&mut b, &["setns-recv", &sock, "net"]), EPERM);
    let id = b.ids.last().unwrap().clone();
    let a = g.wait_alerts("atoll.setns.foreign-namespace", &id, 1);
    assert_eq!(a.len(), 1, "{:?}", g.alerts());
    assert_eq!(a[0]["owner"], "island:db");
    assert_eq!(a[0]["nstype"], "net");
    assert!(a[0]["detail"].as_str().unwrap().contains("pidfd"));
}

/// (5) CVE-2022-0492: mount a cgroup v1 hierarchy to reach release_agent. Root in a user
/// namespace with CAP_SYS_ADMIN: the kernel refuses the v1 mount outside the initial user
/// namespace; with the guard trapping mounts, the attempt is also denied and alerted.
#[test]
fn cgroup_v1_release_agent_is_unreachable() {
    if !can_run() {
        return;
    }
    let (mut b, helper) = probe_bundle("release-agent");
    in_userns(&mut b);
    b.add_caps(&["CAP_SYS_ADMIN"]);
    let script = "mkdir -p /cg; mount -t cgroup -o rdma cgroup /cg 2>/dev/null; echo mount=$?; \
                  grep -q ' /cg cgroup ' /proc/mounts && echo /helper/pwn > /cg/release_agent \
                  && echo wrote-release-agent; true";
    b.set_args(&["sh", "-c", script]);
    let (code, out, err) = b.run("ra");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mount=") && !out.contains("mount=0"), "{out}");
    assert!(!out.contains("wrote-release-agent"), "{out}");
    let g = Guard::start(&helper, "enforce");
    g.annotate(&mut b, "enforce", Some("mounts=trap"));
    let (code, out, err) = b.run("ra");
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("mount=0") && !out.contains("wrote"), "{out}");
    let id = b.ids.last().unwrap().clone();
    let a = g.wait_alerts("atoll.mount.denied", &id, 1);
    assert_eq!(a.len(), 1, "{:?}", g.alerts());
    assert_eq!(a[0]["syscall"], "mount");
}

/// (7) The /proc and /dev routes: remount /proc/sys or /sys writable, write sysrq-trigger (with
/// the harmless 'h'), read /proc/kcore, mknod a block device and open a raw disk, ptrace an
/// outside process, find a key the host planted in root's user keyring. Root in a user namespace
/// with CAP_SYS_ADMIN: it may remount its own (unlocked) read-only /proc/sys, but a global sysctl
/// stays the host's (written back with its own value, so a failure of this test changes
/// nothing); with the guard trapping mounts, the remount itself is denied and alerted.
#[test]
fn proc_dev_ptrace_and_keyring_routes_are_closed() {
    if !can_run() {
        return;
    }
    let (mut b, _) = probe_bundle("procdev");
    in_userns(&mut b);
    b.add_caps(&["CAP_SYS_ADMIN", "CAP_MKNOD", "CAP_SYS_PTRACE"]);
    let script = "mount -o remount,rw /proc/sys 2>/dev/null; echo procsys=$?; \
        cat /proc/sys/kernel/printk_ratelimit > /tmp/v; \
        cat /tmp/v > /proc/sys/kernel/printk_ratelimit 2>/dev/null; echo sysctlw=$?; \
        mount -o remount,rw /sys 2>/dev/null; echo sysfs=$?; \
        echo h > /proc/sysrq-trigger 2>/dev/null; echo sysrq=$?; \
        head -c 1 /proc/kcore > /dev/null 2>&1; echo kcore=$?; \
        mknod /tmp/sda b 8 0 2>/dev/null; echo mknod=$?; \
        /bin/atoll-probe mknod-block /sda2 8 0; /bin/atoll-probe open-ro /dev/sda";
    b.set_args(&["sh", "-c", script]);
    let (code, out, err) = b.run("procdev");
    assert_eq!(code, 0, "{err}");
    for k in ["sysctlw", "sysfs", "sysrq", "kcore", "mknod"] {
        assert!(!out.contains(&format!("{k}=0")), "{k} must fail: {out}");
    }
    assert!(
        !out.contains("ok"),
        "mknod/open of a block device must fail: {out}"
    );
    let me = std::process::id().to_string();
    assert!(probe(&mut b, &["ptrace", &me]).starts_with("errno="));
    // A key in the host root's user keyring (@u = -4), searched for from inside.
    let name = format!("atoll-corpus-{me}");
    let on_host = |args: &[&str]| {
        let out = Command::new(atoll_testkit::probe::probe())
            .args(args)
            .output()
            .expect("run atoll-probe on the host");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let key = on_host(&["add-key", "-4", &name]);
    assert!(key.parse::<i32>().is_ok_and(|k| k > 0), "add_key: {key}");
    let got = probe(&mut b, &["keyctl-search", "-4", &name]);
    assert_eq!(on_host(&["key-invalidate", &key]), "ok");
    assert!(got.starts_with("errno="), "host key visible inside: {got}");

    // kept to the end: dropping it removes the dir the guard makes its socket in
    let (_helper_bundle, helper) = probe_bundle("procdev-guard");
    let g = Guard::start(&helper, "enforce");
    g.annotate(&mut b, "enforce", Some("mounts=trap"));
    b.set_args(&["sh", "-c", script]);
    let (code, out, err) = b.run("procdev");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("procsys=") && !out.contains("procsys=0"),
        "{out}"
    );
    let id = b.ids.last().unwrap().clone();
    assert!(!g.wait_alerts("atoll.mount.denied", &id, 2).is_empty());
}

/// Robustness: a tenant flooding the supervisor with trapped calls does not starve another
/// tenant, and a tenant killed in the middle of its flood does not take the supervisor down.
#[test]
fn a_flooding_tenant_neither_starves_others_nor_kills_the_supervisor() {
    if !can_run() {
        return;
    }
    let (mut flood, helper) = probe_bundle("flood");
    let mut g = Guard::start(&helper, "enforce");
    g.annotate(&mut flood, "enforce", Some("name=flood"));
    flood.add_caps(&["CAP_SYS_ADMIN"]);
    // setns on its own netns, allowed by the guard, as fast as it can, for far longer than the test.
    flood.set_args(&["/bin/atoll-probe", "setns-loop", "1000000000"]);
    let flood_id = flood.id("flood");
    let (code, err) = flood.run_detached(&flood_id);
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(300));

    let (mut other, _) = probe_bundle("flood-other");
    g.annotate(&mut other, "enforce", Some("name=other"));
    let t = Instant::now();
    assert_eq!(probe(&mut other, &["unshare-user"]), EPERM);
    let waited = t.elapsed();
    let other_id = other.ids.last().unwrap().clone();
    assert_eq!(g.wait_alerts("atoll.userns.create", &other_id, 1).len(), 1);
    assert!(
        waited < Duration::from_secs(10),
        "another tenant waited {waited:?} behind the flood"
    );

    // The flood is real: still running (an EPERM would have ended the probe's loop).
    let st: Value = serde_json::from_str(&flood.cmd(&["state", &flood_id]).1).unwrap();
    assert_eq!(st["status"], "running", "the flooding tenant stopped: {st}");

    // Kill the flooding tenant while its calls are in flight; the supervisor keeps serving.
    let (code, _, err) = flood.cmd(&["kill", &flood_id, "KILL"]);
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        g.child.try_wait().unwrap().is_none(),
        "the supervisor died with its tenant"
    );
    assert_eq!(probe(&mut other, &["unshare-user"]), EPERM);
    let other_id = other.ids.last().unwrap().clone();
    assert_eq!(g.wait_alerts("atoll.userns.create", &other_id, 1).len(), 1);
}

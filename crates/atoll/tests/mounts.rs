//! Mount behaviours clients rely on, matched to runc: tmpfs modes, destinations behind symlinks,
//! bind sources a user namespace's root cannot reach, rshared propagation back to the host, the
//! uts sysctls next to their fields, and tty exec after `update`.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{can_run, read_pty, Bundle};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn push_mount(b: &mut Bundle, m: serde_json::Value) {
    b.config["mounts"].as_array_mut().unwrap().push(m);
    b.save();
}

/// Beside the bundle, removed with it.
fn beside(b: &Bundle, name: &str) -> PathBuf {
    b.dir.parent().unwrap().join(name)
}

#[test]
fn tmpfs_without_mode_keeps_the_mountpoint_mode() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("rootfs-tmpfsmode");
    let dir = b.rootfs().join("scratch");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o710)).unwrap();
    push_mount(
        &mut b,
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "size=1m"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/moded", "type": "tmpfs", "source": "tmpfs",
               "options": ["mode=1777"]}),
    );
    let out = b.sh("grep -q ' /scratch ' /proc/self/mountinfo && stat -c '%a' /scratch /moded");
    // runc: "mode=" taken from the directory in the image when the options have none; an
    // explicit mode= still wins.
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["710", "1777"]);
}

#[test]
fn dangling_symlink_destination_is_made_inside_the_root() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("rootfs-dangling");
    let rootfs = b.rootfs();
    // Absolute and relative targets, and one that climbs above the root: every one of them is
    // resolved inside the rootfs (RESOLVE_IN_ROOT), so `..` stops at the root.
    let escape = format!("rootfs-escape-{}", std::process::id());
    let host_escape = Path::new("/tmp").join(&escape);
    let _ = std::fs::remove_dir_all(&host_escape);
    std::os::unix::fs::symlink("/made/abs", rootfs.join("abs")).unwrap();
    std::os::unix::fs::symlink("sub/dir", rootfs.join("data/rel")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../../../tmp/{escape}"),
        rootfs.join("up"),
    )
    .unwrap();
    for (dest, tag) in [("/abs", "a"), ("/data/rel", "r"), ("/up", "u")] {
        push_mount(
            &mut b,
            json!({"destination": dest, "type": "tmpfs", "source": format!("tmpfs-{tag}")}),
        );
    }
    let out = b.sh("for m in /made/abs /data/sub/dir /tmp/rootfs-escape-*; do \
         grep ' '$m' ' /proc/self/mountinfo | sed 's/.* - tmpfs //;s/ .*//'; done");
    let exists = host_escape.exists();
    let _ = std::fs::remove_dir_all(&host_escape);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["tmpfs-a", "tmpfs-r", "tmpfs-u"],
        "each symlinked destination is the mount's target inside the root"
    );
    assert!(rootfs.join("made/abs").is_dir() && rootfs.join("data/sub/dir").is_dir());
    assert!(rootfs.join("tmp").join(&escape).is_dir());
    assert!(!exists, "a mount target was made outside the rootfs");
}

fn in_userns(b: &mut Bundle, host_id: u32) {
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": host_id, "size": 65536}]);
    b.config["linux"]["uidMappings"] = map.clone();
    b.config["linux"]["gidMappings"] = map;
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{host_id}:{host_id}"))
        .arg(b.rootfs())
        .status()
        .unwrap();
    assert!(st.success());
    b.save();
}

#[test]
fn bind_source_the_userns_root_cannot_reach_is_mounted() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("rootfs-usernsbind");
    in_userns(&mut b, 310000);
    // Host root's 0700 directory: the container's root (host uid 310000) may not search it.
    let locked = beside(&b, "locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Inside it, a directory that belongs to the container (what a volume under a private
    // runtime directory looks like), and a file.
    let vol = locked.join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("file"), "vol-content\n").unwrap();
    let st = Command::new("chown")
        .args(["-R", "310000:310000"])
        .arg(&vol)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(locked.join("secret"), "s\n").unwrap();
    push_mount(
        &mut b,
        json!({"destination": "/mnt/locked", "type": "bind", "source": locked,
               "options": ["rbind", "ro"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/mnt/vol", "type": "bind", "source": vol, "options": ["bind"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/mnt/secret", "type": "bind", "source": locked.join("secret"),
               "options": ["bind"]}),
    );
    let out = b.sh(
        "grep -c ' /mnt/locked \\| /mnt/secret ' /proc/self/mountinfo; stat -c '%a' /mnt/locked; \
         cat /mnt/vol/file; touch /mnt/vol/new && echo written",
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["2", "700", "vol-content", "written"]
    );
    // The container wrote as its own root, host uid 310000.
    let md = std::fs::metadata(vol.join("new")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), 310000);
}

#[test]
fn uts_sysctl_next_to_its_field_is_refused_naming_both() {
    if !can_run() {
        return;
    }
    for (sysctl, field) in [
        ("kernel.hostname", "hostname"),
        ("kernel.domainname", "domainname"),
    ] {
        let mut b = Bundle::new("rootfs-utssysctl");
        b.config[field] = json!("from-the-field");
        b.config["linux"]["sysctl"] = json!({ sysctl: "from-the-sysctl" });
        b.save();
        let id = b.id("rootfs-uts");
        let (code, err) = b.create(&id, &[]);
        assert_ne!(code, 0, "{sysctl} next to {field} was accepted");
        assert!(
            err.contains(&format!("linux.sysctl[\"{sysctl}\"]"))
                && err.contains(&format!("\"{field}\"")),
            "{err}"
        );
    }
}

/// Accept one connection on `listener` in a thread and hand back the fd sent in SCM_RIGHTS.
fn accept_fd(listener: UnixListener) -> mpsc::Receiver<Option<OwnedFd>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((conn, _)) = listener.accept() else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        let fd = atoll_sys::socket::recv_with_fd(conn.as_fd(), &mut buf)
            .ok()
            .and_then(|(_, fd)| fd);
        let _ = tx.send(fd);
    });
    rx
}

/// `exec -t --console-socket`: (exit code, stderr, what the pty showed).
fn exec_tty(b: &Bundle, id: &str, n: usize) -> (i32, String, String) {
    let sock = beside(b, &format!("console-{n}.sock"));
    let rx = accept_fd(UnixListener::bind(&sock).unwrap());
    let errfile = beside(b, &format!("exec-{n}.err"));
    let mut exec = b
        .atoll()
        .args(["exec", "-t", "--console-socket", sock.to_str().unwrap()])
        .args([id, "sh", "-c", "tty; cat /dev/null && echo exec-ok"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errfile).unwrap())
        .spawn()
        .unwrap();
    let text = match rx.recv_timeout(WAIT) {
        Ok(Some(master)) => read_pty(master, None, WAIT),
        _ => String::new(),
    };
    let code = exec.wait().unwrap().code().unwrap_or(-1);
    (
        code,
        std::fs::read_to_string(&errfile).unwrap_or_default(),
        text,
    )
}

#[test]
fn exec_tty_works_after_update_with_device_rules() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("rootfs-updtty");
    b.set_args(&["sleep", "1000"]);
    let id = b.id("rootfs-updtty");
    let (code, err) = b.create(&id, &[]);
    assert_eq!(code, 0, "create: {err}");
    let (code, _, err) = b.cmd(&["start", &id]);
    assert_eq!(code, 0, "start: {err}");
    let (code, err, text) = exec_tty(&b, &id, 0);
    assert!(
        code == 0 && text.contains("exec-ok"),
        "before update: {err}"
    );
    // What containerd's CRI plugin sends for `crictl update`: the container's whole
    // linux.resources, whose device list is the pod spec's bare "deny all".
    let res = beside(&b, "resources.json");
    std::fs::write(
        &res,
        json!({"devices": [{"allow": false, "access": "rwm"}], "pids": {"limit": 500}}).to_string(),
    )
    .unwrap();
    let (code, _, err) = b.cmd(&["update", "-r", res.to_str().unwrap(), &id]);
    assert_eq!(code, 0, "update: {err}");
    let (code, err, text) = exec_tty(&b, &id, 1);
    assert!(
        code == 0 && text.contains("/dev/pts/") && text.contains("exec-ok"),
        "exec -t after update: code {code}, {err} {text:?}"
    );
}

/// A tmpfs on the host made a shared mount (its own peer group), unmounted on drop.
struct SharedMount(PathBuf);

impl SharedMount {
    fn new(path: PathBuf) -> SharedMount {
        std::fs::create_dir_all(&path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "rootfs-shared-src"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        let m = SharedMount(path);
        let st = Command::new("mount")
            .arg("--make-shared")
            .arg(&m.0)
            .status()
            .unwrap();
        assert!(st.success());
        m
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg(&self.0).status();
    }
}

fn host_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

#[test]
fn rshared_bind_propagates_mounts_back_to_the_host() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("rootfs-rshared");
    let shared = SharedMount::new(beside(&b, "shared"));
    b.add_caps(&["CAP_SYS_ADMIN"]);
    // What containerd sets for a CRI mount with Bidirectional propagation.
    b.config["linux"]["rootfsPropagation"] = json!("rshared");
    push_mount(
        &mut b,
        json!({"destination": "/shared", "type": "bind", "source": shared.0,
               "options": ["rbind", "rshared"]}),
    );
    let tag = format!("rootfs-from-ctr-{}", std::process::id());
    let inner = shared.0.join("inner");
    b.sh(&format!(
        "mkdir -p /shared/inner && mount -t tmpfs {tag} /shared/inner && echo up"
    ));
    let seen = host_mountinfo()
        .lines()
        .any(|l| l.contains(&format!(" {} ", inner.display())) && l.contains(&tag));
    // Clean up the propagated mount before asserting (SharedMount's drop unmounts the rest).
    let _ = Command::new("umount").arg(&inner).status();
    assert!(
        seen,
        "the container's mount on {inner:?} is not in the host's mountinfo"
    );
    // Host → container still works with the default rslave root.
    let mut b2 = Bundle::new("rootfs-rslave");
    let shared2 = SharedMount::new(beside(&b2, "shared"));
    push_mount(
        &mut b2,
        json!({"destination": "/shared", "type": "bind", "source": shared2.0,
               "options": ["rbind", "rslave"]}),
    );
    b2.set_args(&["sleep", "1000"]);
    let id = b2.id("rootfs-rslave");
    let (code, err) = b2.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    std::fs::create_dir(shared2.0.join("late")).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "rootfs-from-host"])
        .arg(shared2.0.join("late"))
        .status()
        .unwrap();
    assert!(st.success());
    let (code, out, err) = b2.cmd(&[
        "exec",
        &id,
        "grep",
        "-c",
        "rootfs-from-host",
        "/proc/self/mountinfo",
    ]);
    assert_eq!((code, out.trim()), (0, "1"), "{err}");
}

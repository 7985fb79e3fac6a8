//! Each escape the runtime core must stop, attempted for real from inside a container.

mod common;
use common::*;
use std::os::unix::fs::{symlink, PermissionsExt};

/// CVE-2024-21626: a host fd leaked into the container (here an fd of the host's /etc that the
/// caller of atoll forgot to mark close-on-exec) must not be reachable through /proc/self/fd.
#[test]
fn no_host_fd_leaks_into_the_container() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("fdleak");
    b.set_args(&["sh", "-c", "ls /proc/self/fd; ls /proc/1/fd"]);
    let id = b.id("fdleak");
    // Open a host directory without O_CLOEXEC and keep it open across the spawn of atoll.
    let dir = nix::fcntl::open(
        "/etc",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let out = b
        .atoll()
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .output()
        .unwrap();
    drop(dir);
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{err}");
    let fds: Vec<&str> = out.split_whitespace().collect();
    // ls itself opens one directory fd (3); pid 1 (sh) holds only stdio.
    for fd in fds {
        let n: u32 = fd.parse().unwrap();
        assert!(n <= 3, "fd {n} leaked into the container: {out}");
    }
}

/// CVE-2019-5736: the container must not be able to open the runtime binary for writing
/// through /proc/<pid>/exe while a runtime process is in the container.
#[test]
fn runtime_binary_is_not_reachable_through_proc_exe() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("exe");
    b.set_args(&["sleep", "1000"]);
    let id = b.id("exe");
    // `create` leaves atoll's own init waiting as pid 1: the moment the attack targets.
    let (code, err) = b.create(&id, &[]);
    assert_eq!(code, 0, "{err}");
    let before = std::fs::read(ATOLL).unwrap();
    let (code, out, err) = b.cmd(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo pwned > /proc/1/exe; echo rc=$?; cat /proc/1/exe > /dev/null; echo rc2=$?",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rc=1"),
        "opening /proc/1/exe for writing must fail: {out}"
    );
    assert!(
        out.contains("rc2=1"),
        "even reading it must fail (non-dumpable): {out}"
    );
    assert_eq!(
        std::fs::read(ATOLL).unwrap(),
        before,
        "the runtime binary changed"
    );
}

/// CVE-2021-30465-style: a mount destination that is a symlink pointing out of the rootfs lands
/// inside the rootfs, never on the host path.
#[test]
fn symlinked_mount_target_stays_inside_the_rootfs() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("symlink");
    let host_dir = b.dir.parent().unwrap().join("host-victim");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("precious"), "host data").unwrap();
    symlink(&host_dir, b.rootfs().join("evil")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
        ));
    // The symlink resolves inside the rootfs (to a path that does not exist there): atoll either
    // refuses, naming the mount, or mounts inside the rootfs. Never on the host path.
    b.set_args(&["sh", "-c", "echo inside > /evil/marker; cat /evil/marker"]);
    let (code, out, err) = b.run("symlink");
    if code == 0 {
        assert_eq!(out.trim(), "inside");
    } else {
        assert!(err.contains("/evil"), "the refusal names the mount: {err}");
    }
    assert!(
        !host_dir.join("marker").exists(),
        "the mount went to the host path"
    );
    assert_eq!(
        std::fs::read_to_string(host_dir.join("precious")).unwrap(),
        "host data"
    );
    // A symlinked /proc in the image cannot redirect the proc mount outside either.
    let mut b2 = Bundle::new("symproc");
    std::fs::remove_dir(b2.rootfs().join("proc")).unwrap();
    symlink(&host_dir, b2.rootfs().join("proc")).unwrap();
    b2.set_args(&["true"]);
    let _ = b2.run("symproc");
    assert!(
        !host_dir.join("self").exists(),
        "procfs was mounted on the host path"
    );
}

/// CVE-2025-31133: masks must bind the real /dev/null, never the image's, even if the image's
/// /dev/null is a symlink to a writable procfs file.
#[test]
fn masked_paths_never_use_the_images_dev_null() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("devnull");
    // /dev comes from the image (a bind of the rootfs' own dev dir), with a planted symlink.
    let dev = b.dir.join("imagedev");
    std::fs::create_dir_all(&dev).unwrap();
    symlink("/proc/sys/kernel/core_pattern", dev.join("null")).unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
    mounts.push(serde_json::json!({"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]}));
    let host_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let out = b.sh("wc -c < /proc/keys; echo '|/tmp/evil' > /proc/keys 2>&1; true");
    assert_eq!(
        out.lines().next().unwrap().trim(),
        "0",
        "/proc/keys masked: {out}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        host_pattern,
        "core_pattern changed"
    );
}

/// A process inside cannot regain what the bounding set dropped, even as root.
#[test]
fn root_inside_cannot_mount_or_load_modules() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("root");
    let out = b.sh(
        "mount -t tmpfs x /tmp 2>&1; echo rc=$?; echo 1 > /proc/sys/kernel/sysrq 2>&1; echo rc2=$?",
    );
    assert!(
        out.contains("rc=") && !out.contains("rc=0"),
        "mount must fail without CAP_SYS_ADMIN: {out}"
    );
    assert!(!out.contains("rc2=0"), "/proc/sys is read-only: {out}");
}

/// CVE-2025-52565: an image whose /dev/console is a symlink (here to the kernel's core_pattern)
/// must not get the terminal bound over what the link names: atoll refuses, naming the path.
#[test]
fn symlinked_dev_console_is_refused() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("console-link");
    let dev = b.dir.join("imagedev");
    std::fs::create_dir_all(dev.join("pts")).unwrap();
    symlink("/proc/sys/kernel/core_pattern", dev.join("console")).unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/dev");
    mounts.insert(1, serde_json::json!({"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]}));
    b.config["process"]["terminal"] = true.into();
    b.set_args(&["true"]);
    let id = b.id("console");
    let host_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let cmd = format!(
        "{} --root {} run --bundle {} {}",
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
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("/dev/console"),
        "the refusal names /dev/console: {text}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        host_pattern
    );
}

/// A device path that the image already has as a symlink (no /dev mount in the config, so the
/// image's own /dev is used) must not let the device's chmod follow the link to a host file:
/// the runtime works before pivot_root, where an absolute link target is the host's.
#[test]
fn device_path_symlinked_in_the_image_is_refused() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("dev-link");
    let victim = b.dir.join("host-victim");
    std::fs::write(&victim, "host file\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dev = b.rootfs().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let _ = std::fs::remove_file(dev.join("zero"));
    symlink(&victim, dev.join("zero")).unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
    b.set_args(&["true"]);
    let (code, out, err) = b.run("devlink");
    assert_ne!(code, 0, "create must refuse: {out}{err}");
    assert!(
        err.contains("/dev/zero") && err.contains("symlink"),
        "the refusal names the path: {err}"
    );
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "the host file's mode changed");
}

/// CVE-2025-52881-style: a config mount laid over /proc/sys cannot redirect atoll's sysctl
/// writes into it; they go through a procfs atoll mounted itself and reach the kernel.
#[test]
fn sysctl_writes_cannot_be_redirected_by_a_mount_over_proc_sys() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("sysctl");
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    let proc_at = mounts
        .iter()
        .position(|m| m["destination"] == "/proc")
        .unwrap();
    mounts.insert(
        proc_at + 1,
        serde_json::json!({"destination": "/proc/sys", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.config["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
    b.set_args(&["sleep", "1000"]);
    let id = b.id("sysctl");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");
    let state: serde_json::Value = serde_json::from_str(&b.cmd(&["state", &id]).1).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    // The kernel's value in the container's network namespace, read from the host side.
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["cat", "/proc/sys/net/ipv4/ip_forward"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "the sysctl reached the kernel"
    );
    // And nothing was written into the tmpfs laid over /proc/sys.
    let (code, out, err) = b.cmd(&["exec", &id, "sh", "-c", "ls -A /proc/sys | wc -l"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "0", "the tmpfs over /proc/sys stayed empty");
    assert_eq!(b.cmd(&["delete", "--force", &id]).0, 0);
}

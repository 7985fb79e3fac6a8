//! config.json features, each checked from inside a real container.

mod common;
use common::*;

fn status_field(text: &str, key: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn only_net_bind_service_for_a_non_root_user() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("caps");
    b.config["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    let c = serde_json::json!(["CAP_NET_BIND_SERVICE"]);
    b.config["process"]["capabilities"] = serde_json::json!({"bounding": c, "effective": c, "permitted": c, "inheritable": c, "ambient": c});
    let out = b.sh("cat /proc/self/status; id -u; nc -l -p 80 & sleep 0.2; netstat -ltn; kill %1");
    assert_eq!(status_field(&out, "CapEff:"), "0000000000000400", "{out}");
    assert_eq!(status_field(&out, "CapBnd:"), "0000000000000400", "{out}");
    assert!(out.contains("\n1000\n"), "{out}");
    assert!(
        out.contains(":80 "),
        "a non-root process with only CAP_NET_BIND_SERVICE binds port 80: {out}"
    );

    // Without the capability the same bind fails.
    b.config["process"]["capabilities"] = serde_json::json!({});
    let out = b.sh("cat /proc/self/status; nc -l -p 80 2>&1; echo rc=$?");
    assert_eq!(status_field(&out, "CapEff:"), "0000000000000000");
    assert!(
        out.contains("ermission denied") && !out.contains("rc=0"),
        "{out}"
    );
}

#[test]
fn inheritable_stays_empty_by_default() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("inh");
    let out = b.sh("cat /proc/self/status");
    assert_eq!(
        status_field(&out, "CapInh:"),
        "0000000000000000",
        "CVE-2022-29162: {out}"
    );
    assert_eq!(status_field(&out, "NoNewPrivs:"), "1");
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_uid() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("userns");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "user"}));
    b.config["linux"]["uidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.config["linux"]["gidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    // The rootfs must be reachable by the mapped root.
    let _ = std::process::Command::new("chown")
        .arg("-R")
        .arg("200000:200000")
        .arg(b.rootfs())
        .status();
    let out = b.sh("cat /proc/self/uid_map; id -u; touch /tmp/made-inside; ls /sys/fs/cgroup");
    assert!(
        out.split_whitespace()
            .collect::<Vec<_>>()
            .starts_with(&["0", "200000", "65536"]),
        "{out}"
    );
    let st = std::fs::metadata(b.rootfs().join("tmp/made-inside")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&st),
        200000,
        "root inside is uid 200000 on the host"
    );
}

#[test]
fn seccomp_errno_is_what_the_profile_says() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("seccomp");
    b.config["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    });
    let out = b.sh("mkdir /tmp/x 2>&1; echo rc=$?");
    assert!(
        out.contains("Function not implemented"),
        "ENOSYS (38) from the profile: {out}"
    );
    let out = b.sh("grep Seccomp: /proc/self/status");
    assert!(out.contains('2'), "filter mode: {out}");
    // The compiled filter is cached while a container of this root lives, and the cache goes
    // with the last one, once the root's guard supervisor has left too (idle, 2 s after its
    // last tenant): nothing of atoll's outlives its containers for long.
    let cache = b.root.join(".cache");
    let gone = |p: &std::path::Path| {
        let t = std::time::Instant::now();
        while p.exists() && t.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        !p.exists()
    };
    assert!(gone(&cache), "cache left after the last container");
    b.set_args(&["sleep", "100"]);
    let id = b.id("cached");
    let (code, err) = b.create(&id, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        cache.join("seccomp").is_dir(),
        "no cache while a container lives"
    );
    let (code, _, err) = b.cmd(&["delete", "--force", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        gone(&cache),
        "cache left after delete of the last container"
    );
}

#[test]
fn memory_and_pids_limits_apply() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("limits");
    b.config["linux"]["resources"]["memory"] = serde_json::json!({"limit": 268435456});
    b.config["linux"]["resources"]["pids"] = serde_json::json!({"limit": 20});
    let out = b.sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; true");
    assert!(
        out.contains("268435456"),
        "memory limit visible inside: {out}"
    );
    assert!(
        out.lines().any(|l| l.trim() == "20"),
        "pids limit visible inside: {out}"
    );
}

#[test]
fn masked_and_readonly_paths() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("mask");
    let out = b.sh("wc -c < /proc/keys; echo x > /proc/sysrq-trigger 2>&1; echo rc=$?; ls /proc/acpi 2>/dev/null | wc -l");
    let mut l = out.lines();
    assert_eq!(
        l.next().unwrap().trim(),
        "0",
        "masked /proc/keys reads empty: {out}"
    );
    assert!(
        out.contains("Read-only file system") || out.contains("rc=1"),
        "{out}"
    );
}

/// A masked path the image lacks is skipped (runtime-spec); one that cannot be resolved (here a
/// symlink loop in the image) is an error naming the path, not a path left visible.
#[test]
fn masked_path_that_cannot_be_resolved_is_an_error() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("maskloop");
    std::os::unix::fs::symlink("/loop", b.rootfs().join("loop")).unwrap();
    b.config["linux"]["maskedPaths"] = serde_json::json!(["/no/such/path", "/loop/secret"]);
    b.set_args(&["true"]);
    let (code, _, err) = b.run("maskloop");
    assert_ne!(
        code, 0,
        "a masked path that cannot be resolved must fail: {err}"
    );
    assert!(err.contains("/loop/secret"), "{err}");
    let (_, list, _) = b.cmd(&["list", "-q"]);
    assert!(list.trim().is_empty(), "left behind: {list}");
}

/// A mount the kernel refuses is named by its config index and destination, with the step and
/// the errno's name; a masked path that cannot be resolved names the config list it came from.
#[test]
fn refused_mounts_name_the_mount_the_step_and_the_errno() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("mounterr");
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(serde_json::json!(
        {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["bogus=1"]}
    ));
    let index = mounts.len() - 1;
    b.set_args(&["true"]);
    let (code, _, err) = b.run("mounterr");
    assert_ne!(code, 0, "{err}");
    let want = format!("mounts[{index}] (\"tmpfs\" on \"/t\"): fsconfig bogus=1: EINVAL");
    assert!(err.contains(&want), "{err}");

    let mut b = Bundle::new("maskerr");
    std::os::unix::fs::symlink("/loop", b.rootfs().join("loop")).unwrap();
    b.config["linux"]["maskedPaths"] = serde_json::json!(["/loop/secret"]);
    b.set_args(&["true"]);
    let (code, _, err) = b.run("maskerr");
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("maskedPaths \"/loop/secret\": openat2: ELOOP"),
        "{err}"
    );
}

#[test]
fn hostname_env_cwd_rlimits_umask() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("misc");
    b.config["hostname"] = "island-1".into();
    b.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("GREETING=hi there".into());
    b.config["process"]["cwd"] = "/tmp".into();
    b.config["process"]["user"]["umask"] = 0o077.into();
    b.config["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
    b.config["process"]["oomScoreAdj"] = 500.into();
    let out = b.sh(
        "hostname; echo $GREETING; pwd; ulimit -n; ulimit -Hn; umask; cat /proc/self/oom_score_adj",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["island-1", "hi there", "/tmp", "123", "456", "0077", "500"],
        "{out}"
    );
}

#[test]
fn hooks_get_the_state_on_stdin() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("hooks");
    let log = b.dir.join("hook.log");
    let script = b.dir.join("hook.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1 $(cat)\" >> {}\n", log.display()),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let hook = |name: &str| serde_json::json!([{"path": script, "args": ["hook.sh", name]}]);
    b.config["hooks"] = serde_json::json!({
        "createRuntime": hook("createRuntime"),
        "poststart": hook("poststart"),
        "poststop": hook("poststop"),
    });
    b.sh("true");
    let text = std::fs::read_to_string(&log).unwrap();
    for kind in ["createRuntime", "poststart", "poststop"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("{kind} did not run: {text}"));
        let json: serde_json::Value =
            serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
        assert_eq!(json["ociVersion"], "1.2.0");
        assert!(json["id"].as_str().unwrap().starts_with("sh-"));
    }
    // A failing createRuntime hook fails the create and leaves nothing behind.
    b.config["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/false"}]});
    b.save();
    let (code, _, err) = b.run("failing");
    assert_ne!(code, 0);
    assert!(err.contains("createRuntime hook #0"), "{err}");
    assert!(b.cmd(&["list", "-q"]).1.trim().is_empty());
}

#[test]
fn bad_input_is_named_and_leaves_nothing() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("bad");
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            serde_json::json!({"root": {"path": "no-such-rootfs"}}),
            "root.path",
        ),
        (
            serde_json::json!({"process": {"capabilities": {"bounding": ["CAP_BOGUS"]}}}),
            "CAP_BOGUS",
        ),
        (
            serde_json::json!({"linux": {"namespaces": [{"type": "bogus"}]}}),
            "bogus",
        ),
        (
            serde_json::json!({"process": {"args": ["/no/such/binary"]}}),
            "process.args[0]",
        ),
        (
            serde_json::json!({"linux": {"sysctl": {"vm.swappiness": "1"}}}),
            "vm.swappiness",
        ),
    ];
    let good = b.config.clone();
    for (patch, expect) in cases {
        let mut c = good.clone();
        merge(&mut c, &patch);
        b.config = c;
        b.save();
        let (code, _, err) = b.run("bad");
        assert_ne!(code, 0, "{patch} accepted");
        assert!(
            err.contains(expect),
            "error for {patch} should name {expect}: {err}"
        );
        let (_, list, _) = b.cmd(&["list", "-q"]);
        assert!(list.trim().is_empty(), "{patch} left a container: {list}");
    }
}

fn merge(a: &mut serde_json::Value, b: &serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// A pure cgroup v2 host, simulated in a private mount namespace with cgroup2 alone on
/// /sys/fs/cgroup (this host's unified hierarchy has no controllers, so only device rules,
/// the cgroup namespace and cleanup can be checked, not limits).
#[test]
fn runs_on_a_pure_cgroup_v2_host() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("v2");
    let caps = serde_json::json!(["CAP_MKNOD"]);
    b.config["process"]["capabilities"] =
        serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps});
    b.set_args(&[
        "sh",
        "-c",
        "grep '^0::' /proc/self/cgroup; test -f /sys/fs/cgroup/cgroup.controllers && echo cgroup2-inside; \
         head -c0 /dev/null && echo null-ok; mknod /dev/blk b 7 0 2>&1; echo done",
    ]);
    let id = b.id("v2");
    let script = format!(
        "umount -R /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && \
         {atoll} --root {root} run --bundle {bundle} {id}; rc=$?; \
         test -e /sys/fs/cgroup/atoll/{id} && echo LEFT-BEHIND; exit $rc",
        atoll = ATOLL,
        root = b.root.display(),
        bundle = b.dir.display(),
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("0::/\n"),
        "a cgroup namespace rooted at the container's cgroup: {text}"
    );
    assert!(text.contains("cgroup2-inside"), "{text}");
    assert!(text.contains("null-ok"), "allowed devices work: {text}");
    assert!(
        text.contains("Operation not permitted"),
        "the eBPF device program denies /dev/blk: {text}"
    );
    assert!(!text.contains("LEFT-BEHIND"), "cgroup removed: {text}");
}

/// A hook gets its own env, and one that outlives its timeout is killed and fails create.
#[test]
fn hook_env_and_timeout() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("hooktimeout");
    let log = b.dir.join("env.log");
    b.config["hooks"] = serde_json::json!({
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo $HOOK_GREETING > {}", log.display())], "env": ["HOOK_GREETING=from-the-config"]}],
    });
    b.sh("true");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().trim(),
        "from-the-config"
    );

    b.config["hooks"] = serde_json::json!({
        "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}],
    });
    b.save();
    let started = std::time::Instant::now();
    let (code, _, err) = b.run("slowhook");
    assert_ne!(code, 0);
    assert!(err.contains("timed out after 1s"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the hook was not killed"
    );
    assert!(b.cmd(&["list", "-q"]).1.trim().is_empty(), "nothing left");
}

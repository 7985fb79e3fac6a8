//! config.json fields atoll must apply or refuse by name: LSM labels, the root path, resource
//! values the kernel would reject or misread, and type errors that name the field's path.

mod common;
use common::*;

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

/// Each patch, applied to a good config, makes `run` fail with an error that contains every
/// string of `expect`, and leaves no container behind.
fn refused(b: &mut Bundle, patch: serde_json::Value, expect: &[&str]) {
    let good = b.config.clone();
    merge(&mut b.config, &patch);
    b.save();
    let (code, out, err) = b.run("refused");
    b.config = good;
    b.save();
    assert_ne!(code, 0, "{patch} accepted: {out}");
    for e in expect {
        assert!(err.contains(e), "error for {patch} should name {e}: {err}");
    }
    let (_, list, _) = b.cmd(&["list", "-q"]);
    assert!(list.trim().is_empty(), "{patch} left a container: {list}");
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'))
}

fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// A profile this host cannot apply is refused, naming the field: where AppArmor is off because
/// it is off, where it is on because no profile of that name is loaded.
#[test]
fn apparmor_profile_is_applied_or_refused() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("apparmor");
    b.set_args(&["true"]);
    let why = if apparmor_enabled() {
        "process.apparmorProfile"
    } else {
        "AppArmor is not enabled"
    };
    refused(
        &mut b,
        serde_json::json!({"process": {"apparmorProfile": "atoll-test-no-such-profile"}}),
        &["process.apparmorProfile", why],
    );
}

#[test]
fn selinux_labels_are_applied_or_refused() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("selinux");
    b.set_args(&["true"]);
    let on = selinux_enabled();
    // Not a valid context under any policy: refused by the kernel where SELinux is on.
    let label = "atoll_test_no_such_user:no_role:no_type:s0";
    let why = |f: &'static str| if on { f } else { "SELinux is not enabled" };
    refused(
        &mut b,
        serde_json::json!({"process": {"selinuxLabel": label}}),
        &["process.selinuxLabel", why("process.selinuxLabel")],
    );
    refused(
        &mut b,
        serde_json::json!({"linux": {"mountLabel": label}}),
        &[
            if on { "context=" } else { "linux.mountLabel" },
            why("tmpfs"),
        ],
    );
}

/// `exec --apparmor` / `--process-label` (hidden runc flags) are applied or refused, never
/// ignored.
#[test]
fn exec_lsm_flags_are_applied_or_refused() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("execlsm");
    b.set_args(&["sleep", "100"]);
    let id = b.id("execlsm");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "{err}");
    for (flag, on) in [
        ("--apparmor", apparmor_enabled()),
        ("--process-label", selinux_enabled()),
    ] {
        let (code, out, err) = b.cmd(&["exec", flag, "atoll_test_no_such:x:y:s0", &id, "true"]);
        assert_ne!(code, 0, "exec {flag} was ignored: {out}");
        if !on {
            assert!(
                err.contains(flag) && err.contains("is not enabled"),
                "{flag}: {err}"
            );
        }
    }
    let (code, _, err) = b.cmd(&["delete", "-f", &id]);
    assert_eq!(code, 0, "{err}");
}

/// A type error names the field's path, not only a line and column.
#[test]
fn type_errors_name_the_field_path() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("typeerr");
    refused(
        &mut b,
        serde_json::json!({"process": {"args": "sh"}}),
        &["process.args", "line"],
    );
    refused(
        &mut b,
        serde_json::json!({"linux": {"resources": {"pids": {"limit": "many"}}}}),
        &["linux.resources.pids.limit"],
    );
    // A number that parses but no device can have is blamed on linux.devices[0], where it came
    // from, not on the cgroup rule atoll derives from it.
    let (code, _, err) = {
        b.config["linux"]["devices"] = serde_json::json!([
            {"path": "/dev/big", "type": "c", "major": 1u64 << 40, "minor": 1}
        ]);
        b.save();
        b.run("bigmajor")
    };
    b.config["linux"]["devices"] = serde_json::Value::Null;
    b.save();
    assert_ne!(code, 0);
    assert!(err.contains("linux.devices[0].major"), "{err}");
    assert!(!err.contains("linux.resources.devices"), "{err}");
}

/// A relative root.path that climbs out of the bundle is refused: "../../../../" from a bundle
/// four levels deep is the host's /.
#[test]
fn root_path_outside_the_bundle_is_refused() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("rootpath");
    b.set_args(&["true"]);
    let depth = b.dir.components().count();
    let up = "../".repeat(depth + 2);
    refused(
        &mut b,
        serde_json::json!({"root": {"path": up}}),
        &["root.path", "leaves the bundle"],
    );
    refused(
        &mut b,
        serde_json::json!({"root": {"path": "rootfs/../rootfs"}}),
        &["root.path"],
    );
    refused(
        &mut b,
        serde_json::json!({"root": {"path": "/"}}),
        &["root.path", "host's root"],
    );
    // A symlink to the rootfs: runc refuses it, and so does atoll.
    std::os::unix::fs::symlink("rootfs", b.dir.join("link")).unwrap();
    refused(
        &mut b,
        serde_json::json!({"root": {"path": "link"}}),
        &["root.path", "symlink"],
    );
    // The absolute real path is fine.
    let abs = b.rootfs().to_string_lossy().into_owned();
    b.config["root"]["path"] = abs.into();
    b.save();
    let (code, _, err) = b.run("abs");
    assert_eq!(code, 0, "{err}");
}

/// Values the kernel would refuse or misread are refused with the field's name, before
/// anything is made.
#[test]
fn resource_values_the_kernel_would_misread_are_refused() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("resvalues");
    b.set_args(&["true"]);
    for (res, name) in [
        (
            serde_json::json!({"pids": {"limit": -7}}),
            "linux.resources.pids.limit",
        ),
        (
            serde_json::json!({"cpu": {"period": 0}}),
            "linux.resources.cpu.period",
        ),
        (
            serde_json::json!({"cpu": {"period": 500}}),
            "linux.resources.cpu.period",
        ),
        (
            serde_json::json!({"cpu": {"quota": 0}}),
            "linux.resources.cpu.quota",
        ),
        (
            serde_json::json!({"cpu": {"quota": -5}}),
            "linux.resources.cpu.quota",
        ),
        (
            serde_json::json!({"cpu": {"shares": 0}}),
            "linux.resources.cpu.shares",
        ),
        (
            serde_json::json!({"memory": {"limit": -2}}),
            "linux.resources.memory.limit",
        ),
    ] {
        refused(
            &mut b,
            serde_json::json!({"linux": {"resources": res}}),
            &[name],
        );
    }
    // -1 stays "no limit".
    b.config["linux"]["resources"]["pids"] = serde_json::json!({"limit": -1});
    b.save();
    let (code, _, err) = b.run("unlimited");
    assert_eq!(code, 0, "{err}");
}

/// Fields atoll does not apply are refused by name (docs/spec-fields.md), never run without.
#[test]
fn fields_atoll_does_not_apply_are_refused() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("unapplied");
    b.set_args(&["true"]);
    let cases = [
        (
            serde_json::json!({"process": {"ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 7}}}),
            "process.ioPriority",
        ),
        (
            serde_json::json!({"process": {"execCPUAffinity": {"initial": "0"}}}),
            "process.execCPUAffinity",
        ),
        (
            serde_json::json!({"linux": {"intelRdt": {"closID": "x"}}}),
            "linux.intelRdt",
        ),
        (
            serde_json::json!({"linux": {"personality": {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}}}),
            "linux.personality.flags",
        ),
        (
            serde_json::json!({"vm": {"hypervisor": {"path": "/x"}, "kernel": {"path": "/k"}}}),
            "vm",
        ),
        (
            serde_json::json!({"mounts": [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}]}),
            "mounts[0].options",
        ),
    ];
    for (patch, name) in cases {
        refused(&mut b, patch, &[name]);
    }
}

/// process.consoleSize is the pty's first size (a foreground `run` without a terminal of its
/// own keeps it).
#[test]
fn console_size_is_applied() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("consolesize");
    b.config["process"]["terminal"] = true.into();
    b.config["process"]["consoleSize"] = serde_json::json!({"height": 33, "width": 77});
    b.set_args(&["stty", "size"]);
    let (code, out, err) = b.run("size");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("33 77"), "{out}");
}

/// `features` lists an LSM as enabled exactly where atoll applies it: where this host has it.
#[test]
fn features_lists_an_lsm_only_where_it_is_applied() {
    if !can_run() {
        return;
    }
    let b = Bundle::new("featlsm");
    let (code, out, err) = b.cmd(&["features"]);
    assert_eq!(code, 0, "{err}");
    let f: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(f["linux"]["apparmor"]["enabled"], apparmor_enabled(), "{f}");
    assert_eq!(f["linux"]["selinux"]["enabled"], selinux_enabled(), "{f}");
}

/// An exec'd process's own ioPriority or oomScoreAdj would not be applied: refused.
#[test]
fn exec_process_fields_atoll_does_not_apply_are_refused() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("execfields");
    b.set_args(&["sleep", "100"]);
    let id = b.id("execfields");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "{err}");
    let base = serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["true"]});
    for (extra, name) in [
        (
            serde_json::json!({"ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 7}}),
            "process.ioPriority",
        ),
        (serde_json::json!({"oomScoreAdj": 500}), "oomScoreAdj"),
    ] {
        let mut p = base.clone();
        merge(&mut p, &extra);
        let file = b.dir.join("process.json");
        std::fs::write(&file, p.to_string()).unwrap();
        let (code, _, err) = b.cmd(&["exec", "--process", file.to_str().unwrap(), &id]);
        assert_ne!(code, 0, "{extra} ignored");
        assert!(err.contains(name), "{err}");
    }
    let (code, _, err) = b.cmd(&["delete", "-f", &id]);
    assert_eq!(code, 0, "{err}");
}

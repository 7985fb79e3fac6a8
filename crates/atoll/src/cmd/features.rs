//! `features` (runtime-spec features.md): only what atoll implements and has tests for. The LSMs
//! are listed as enabled only where this host has them on: elsewhere a profile or label is
//! refused (docs/spec-fields.md). Checkpoint/restore is listed as runc lists it, enabled where a
//! CRIU binary is found (docs/checkpoint.md).

pub fn features(
    criu: Option<&std::path::Path>,
    root: &std::path::Path,
) -> anyhow::Result<serde_json::Value> {
    // The escape guard each container gets on this node (the node file, or the defaults).
    let guard = atoll_runtime::guard::GuardNode::load(root)?.to_json();
    let criu = atoll_runtime::checkpoint::criu_found(criu);
    let caps: Vec<String> = caps::all()
        .iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "idmap", "lazytime", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow",
            "private", "ratime", "rbind", "rdev", "rdiratime", "relatime", "ridmap", "rnoatime", "rnodev", "rnodiratime",
            "rnoexec", "rnorelatime", "rnostrictatime", "rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro",
            "rrw", "rshared", "rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared", "slave",
            "strictatime", "suid", "symfollow", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                            "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
            },
            "apparmor": {"enabled": atoll_runtime::lsm::apparmor_enabled()},
            "selinux": {"enabled": atoll_runtime::lsm::selinux_enabled()},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {
            "org.opencontainers.runc.version": "atoll (runc-compatible CLI)",
            "io.github.atoll.cgroup.mode": format!("{:?}", atoll_cgroups::host_mode()),
            "org.opencontainers.runc.checkpoint.enabled": criu.is_some().to_string(),
            "io.github.atoll.criu": criu.map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
            // CDI: edits an engine injected (linux.devices, linux.resources.devices, mounts,
            // env, hooks) are applied like any config; requests left as annotations are refused.
            "io.github.atoll.cdi.edits": "applied",
            "io.github.atoll.cdi.annotations": "refused (cdi.k8s.io/*: the engine resolves them)",
            // CDI names are resolved by the atoll-cdi helper beside this binary: named only
            // where it is there and answers.
            "io.github.atoll.islands.devices": islands_devices(),
            "io.github.atoll.guard": guard.to_string(),
        }
    }))
}

/// What an islands file's `devices` may name on this install: CDI names only where the
/// atoll-cdi helper beside this executable runs (its `--version`).
fn islands_devices() -> String {
    let helper = match atoll_islands::devices::cdi::helper_path() {
        Ok(p) => p,
        Err(e) => return format!("paths (CDI names: {e})"),
    };
    let answer = std::process::Command::new(&helper)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match answer {
        Ok(out) if out.status.success() => format!(
            "paths and CDI names ({}, {}; specs in /etc/cdi, /var/run/cdi or $ATOLL_CDI_SPEC_DIRS)",
            helper.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Ok(out) => format!(
            "paths (CDI names need the helper {}, which answered {}: docs/devices.md)",
            helper.display(),
            out.status
        ),
        Err(e) => format!(
            "paths (CDI names need the helper {}: {e}: docs/devices.md)",
            helper.display()
        ),
    }
}

//! An island's seccomp profile: the base profile every island gets (the deny list below), and,
//! unless its guard is off, the escape guard's trap rules and listener on top of it.

use atoll_guard::{Mode, Policy};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

use crate::error::{IslandsError, Result};
use crate::file::Guard;
use crate::plan::{IslandPlan, Plan};

/// Syscalls an island never needs and that reach the kernel's shared state.
const SECCOMP_DENY: &[&str] = &[
    "add_key",
    "keyctl",
    "request_key",
    "bpf",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "quotactl",
    "fanotify_init",
    "vhangup",
];

const AF_VSOCK: u64 = 40;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// The default island profile: everything allowed but vsock (not namespaced: a tenant could talk
/// to the host or other VMs' vsock peers), new user namespaces (a way to regain capabilities),
/// and syscalls that reach shared kernel state. clone3 answers ENOSYS so that libc falls back to
/// clone, whose flags seccomp can see.
///
/// With `guarded`, the calls the escape guard judges (new user namespaces, clone3,
/// open_by_handle_at) are left to its trap rules, so each attempt is denied AND alerted.
pub fn base_profile(guarded: bool) -> Value {
    let deny: Vec<&str> = SECCOMP_DENY
        .iter()
        .copied()
        .filter(|n| !(guarded && *n == "open_by_handle_at"))
        .collect();
    let mut rules = vec![
        json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
               "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_EQ"}]}),
        json!({"names": deny, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}),
    ];
    if !guarded {
        rules.push(
            json!({"names": ["unshare", "clone"], "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "args": [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER,
                      "op": "SCMP_CMP_MASKED_EQ"}]}),
        );
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules})
}

/// The island's seccomp profile under the guard (or the plain profile when its guard is off).
pub fn profile(plan: &Plan, island: &IslandPlan) -> Result<serde_json::Value> {
    let base = base_profile(island.spec.guard != Guard::Off);
    if island.spec.guard == Guard::Off {
        return Ok(base);
    }
    let base: LinuxSeccomp = serde_json::from_value(base).expect("the island profile parses");
    let policy = Policy {
        mode: match island.spec.guard {
            Guard::Enforce => Mode::Enforce,
            Guard::Detect => Mode::Detect,
            Guard::Off => Mode::Off,
        },
        name: Some(island.spec.name.clone()),
        allow_userns: false,
        trap_mounts: true,
    };
    let sc = atoll_guard::attach_listener(Some(base), &crate::guard::socket(plan), &policy)
        .map_err(|e| IslandsError::Island {
            island: island.spec.name.clone(),
            msg: format!("guard: {}", atoll_runtime::error::report(&e)),
        })?;
    Ok(serde_json::to_value(sc).expect("seccomp serialises"))
}

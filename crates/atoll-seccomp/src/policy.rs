//! What a tenant of the escape guard (atoll-guard) is held to: its mode, and which traps its
//! profile carries. Two outputs: the seccomp rules that make the kernel ask the guard
//! ([`trap_rules`], [`attach_listener`]) and the listenerMetadata string that tells the
//! supervisor the same policy (`mode=detect;name=db`). Pure profile rewriting, kept here so the
//! runtime can put a container under the guard without depending on the supervisor.

use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction as Act, LinuxSyscall};
use serde_json::json;

/// A policy value that cannot be read; `field` names where it came from (an annotation, a
/// listenerMetadata pair, linux.seccomp.listenerPath).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {msg}")]
pub struct PolicyError {
    pub field: String,
    pub msg: String,
}

/// How the guard answers a call it judges dangerous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Deny (EPERM) and alert.
    #[default]
    Enforce,
    /// Alert only: the call goes on (SECCOMP_USER_NOTIF_FLAG_CONTINUE). For rolling out a policy.
    Detect,
    /// No trap rules at all: the guard neither sees nor costs anything.
    Off,
}

impl std::str::FromStr for Mode {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Mode, PolicyError> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "detect" => Ok(Mode::Detect),
            "off" => Ok(Mode::Off),
            other => Err(PolicyError {
                field: "mode".into(),
                msg: format!("{other:?} is not one of enforce, detect, off"),
            }),
        }
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Detect => "detect",
            Mode::Off => "off",
        }
    }
}

/// One tenant's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// The island member name, if any: alerts then name the owner "island:<name>".
    pub name: Option<String>,
    /// May the tenant create user namespaces (unshare/clone CLONE_NEWUSER)?
    pub allow_userns: bool,
    /// Trap the mount family (mount, fsopen, fsmount, move_mount, open_tree) and deny it.
    pub trap_mounts: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            mode: Mode::Enforce,
            name: None,
            allow_userns: false,
            trap_mounts: false,
        }
    }
}

impl Policy {
    /// Parse listenerMetadata: `key=value` pairs separated by `;`, keys `mode`, `name`,
    /// `userns` (allow|deny), `mounts` (trap|allow). Missing keys keep `base`'s values (the
    /// supervisor's defaults). Unknown keys are refused: a typo must not weaken a policy.
    pub fn from_metadata(meta: &str, base: &Policy) -> Result<Policy, PolicyError> {
        let mut p = base.clone();
        for pair in meta.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |msg: String| PolicyError {
                field: format!("listenerMetadata {pair:?}"),
                msg,
            };
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad("expected key=value".into()))?;
            match (k, v) {
                ("mode", v) => p.mode = v.parse()?,
                ("name", v) if !v.is_empty() => p.name = Some(v.to_string()),
                ("userns", "allow") => p.allow_userns = true,
                ("userns", "deny") => p.allow_userns = false,
                ("mounts", "trap") => p.trap_mounts = true,
                ("mounts", "allow") => p.trap_mounts = false,
                _ => return Err(bad("unknown key or value".into())),
            }
        }
        Ok(p)
    }

    /// The listenerMetadata string for this policy (what [`Policy::from_metadata`] reads).
    pub fn to_metadata(&self) -> String {
        let mut s = format!("mode={}", self.mode.as_str());
        if let Some(n) = &self.name {
            s.push_str(&format!(";name={n}"));
        }
        s.push_str(if self.allow_userns {
            ";userns=allow"
        } else {
            ";userns=deny"
        });
        if self.trap_mounts {
            s.push_str(";mounts=trap");
        }
        s
    }
}

/// The mount family (new and old API).
pub const MOUNT_CALLS: &[&str] = &["mount", "fsopen", "fsmount", "move_mount", "open_tree"];

fn rule(v: serde_json::Value) -> LinuxSyscall {
    serde_json::from_value(v).expect("a rule built from constants parses")
}

/// The seccomp rules that put a tenant under the guard (empty for `Mode::Off`).
///
/// - `setns`, `open_by_handle_at`: always notified.
/// - unless `allow_userns`: `unshare`/`clone` notified only when CLONE_NEWUSER is set (the
///   flags are a register, so the filter sees exactly what the kernel will). clone3 passes its
///   flags in memory, which a filter cannot read and a supervisor cannot read race-free: in
///   enforce mode clone3 fails with ENOSYS (libc falls back to clone, which we can judge); in
///   detect mode it is left alone, a documented blind spot.
/// - in enforce mode, clone with CLONE_FILES but without CLONE_THREAD (a second process sharing
///   our fd table) and io_uring_setup (asynchronous fd installs) fail with EPERM: both would let
///   a tenant re-point a fd number between our check of a setns and the kernel's (see
///   docs/threat-model.md).
/// - with `trap_mounts`: the mount family, notified.
pub fn trap_rules(mode: Mode, policy: &Policy) -> Vec<LinuxSyscall> {
    if mode == Mode::Off {
        return Vec::new();
    }
    let newuser = libc::CLONE_NEWUSER as u64;
    let mut rules = vec![rule(json!({
        "names": ["setns", "open_by_handle_at"], "action": "SCMP_ACT_NOTIFY"
    }))];
    if !policy.allow_userns {
        rules.push(rule(json!({
            "names": ["unshare", "clone"], "action": "SCMP_ACT_NOTIFY",
            "args": [{"index": 0, "value": newuser, "valueTwo": newuser, "op": "SCMP_CMP_MASKED_EQ"}]
        })));
    }
    if mode == Mode::Enforce {
        rules.push(rule(json!({
            "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS
        })));
        let files_thread = (libc::CLONE_FILES | libc::CLONE_THREAD) as u64;
        rules.push(rule(json!({
            "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
            "args": [{"index": 0, "value": files_thread, "valueTwo": libc::CLONE_FILES as u64, "op": "SCMP_CMP_MASKED_EQ"}]
        })));
        rules.push(rule(json!({
            "names": ["io_uring_setup"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM
        })));
    }
    if policy.trap_mounts {
        rules.push(rule(
            json!({"names": MOUNT_CALLS, "action": "SCMP_ACT_NOTIFY"}),
        ));
    }
    rules
}

fn lets_through(a: Act) -> bool {
    matches!(a, Act::ScmpActAllow | Act::ScmpActLog)
}

/// Put a container's seccomp profile under the guard listening at `socket`: add
/// [`trap_rules`] for `policy` and set listenerPath / listenerMetadata. With no profile, start
/// from a default-allow one. A profile that already decides a trapped call keeps its decision
/// when that decision is stricter or argument-dependent (a static deny beats a notification;
/// we never rewrite someone else's argument filter); an unconditional allow is replaced by our
/// trap. Refused: a profile whose listenerPath names another agent.
pub fn attach_listener(
    profile: Option<LinuxSeccomp>,
    socket: &Path,
    policy: &Policy,
) -> Result<LinuxSeccomp, PolicyError> {
    let mut sc = profile.unwrap_or_else(|| {
        serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW"}))
            .expect("constant profile parses")
    });
    if let Some(p) = sc.listener_path() {
        if p != socket {
            return Err(PolicyError {
                field: "linux.seccomp.listenerPath".into(),
                msg: format!("already {} (another seccomp agent)", p.display()),
            });
        }
    }
    let ours = trap_rules(policy.mode, policy);
    if ours.is_empty() {
        return Ok(sc);
    }
    let default_allows = lets_through(sc.default_action());
    let mut theirs = sc.syscalls().clone().unwrap_or_default();
    let mut added = Vec::new();
    for mut r in ours {
        let names: Vec<String> = r
            .names()
            .iter()
            .filter(|n| {
                let mentions: Vec<&LinuxSyscall> =
                    theirs.iter().filter(|t| t.names().contains(n)).collect();
                if mentions.is_empty() {
                    return default_allows;
                }
                mentions.iter().all(|t| {
                    lets_through(t.action()) && t.args().as_ref().is_none_or(|a| a.is_empty())
                })
            })
            .cloned()
            .collect();
        if names.is_empty() {
            continue;
        }
        for t in theirs.iter_mut() {
            let kept = t
                .names()
                .iter()
                .filter(|n| !names.contains(n))
                .cloned()
                .collect();
            t.set_names(kept);
        }
        // A conditional trap replacing an unconditional allow: what it does not match must still
        // be allowed, not fall to a stricter default action.
        if !default_allows {
            if let Some(arg) = r.args().as_ref().and_then(|a| a.first()) {
                let mut rest = rule(json!({"names": names.clone(), "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": arg.index(), "value": arg.value(), "valueTwo": arg.value() ^ arg.value_two().unwrap_or(0), "op": "SCMP_CMP_MASKED_EQ"}]}));
                rest.set_names(names.clone());
                added.push(rest);
            }
        }
        r.set_names(names);
        added.push(r);
    }
    theirs.retain(|t| !t.names().is_empty());
    theirs.extend(added);
    sc.set_syscalls(Some(theirs));
    sc.set_listener_path(Some(socket.to_path_buf()));
    sc.set_listener_metadata(Some(policy.to_metadata()));
    Ok(sc)
}

/// AF_VSOCK (linux/socket.h): a socket family that talks to the hypervisor host, outside every
/// network namespace and so outside the border guard.
const AF_VSOCK: u64 = 40;

/// Make `socket(AF_VSOCK, ...)` fail with EAFNOSUPPORT (what a kernel without vsock answers),
/// as islands already do. A profile that denies `socket` outright keeps its decision; one that
/// allows it unconditionally gets the allow narrowed to the other families.
pub fn deny_vsock(sc: &mut LinuxSeccomp) {
    let mut theirs = sc.syscalls().clone().unwrap_or_default();
    let socket = "socket".to_string();
    let mentions: Vec<&LinuxSyscall> = theirs
        .iter()
        .filter(|r| r.names().contains(&socket))
        .collect();
    let lets = if mentions.is_empty() {
        lets_through(sc.default_action())
    } else {
        mentions
            .iter()
            .all(|r| lets_through(r.action()) && r.args().as_ref().is_none_or(|a| a.is_empty()))
    };
    if !lets {
        return;
    }
    for r in theirs.iter_mut() {
        let kept = r
            .names()
            .iter()
            .filter(|n| **n != socket)
            .cloned()
            .collect();
        r.set_names(kept);
    }
    theirs.retain(|r| !r.names().is_empty());
    theirs.push(rule(json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO",
        "errnoRet": libc::EAFNOSUPPORT, "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_EQ"}]})));
    if !lets_through(sc.default_action()) {
        theirs.push(rule(
            json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]}),
        ));
    }
    sc.set_syscalls(Some(theirs));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(rules: &[LinuxSyscall], action: Act) -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.action() == action)
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn metadata_round_trips_and_refuses_typos() {
        let base = Policy::default();
        let p = Policy::from_metadata("mode=detect;name=db;mounts=trap", &base).unwrap();
        assert_eq!(p.mode, Mode::Detect);
        assert_eq!(p.name.as_deref(), Some("db"));
        assert!(p.trap_mounts && !p.allow_userns);
        assert_eq!(Policy::from_metadata(&p.to_metadata(), &base).unwrap(), p);
        assert_eq!(Policy::from_metadata("", &base).unwrap(), base);
        let e = Policy::from_metadata("mode=detcet", &base).unwrap_err();
        assert!(e.to_string().contains("detcet"), "{e}");
        assert!(Policy::from_metadata("userns=maybe", &base).is_err());
        assert!(Policy::from_metadata("nonsense", &base).is_err());
    }

    #[test]
    fn rules_follow_mode_and_options() {
        let p = Policy::default();
        assert!(trap_rules(Mode::Off, &p).is_empty());
        let enforce = trap_rules(Mode::Enforce, &p);
        let n = names(&enforce, Act::ScmpActNotify);
        for want in ["setns", "open_by_handle_at", "unshare", "clone"] {
            assert!(n.contains(&want.to_string()), "{want} in {n:?}");
        }
        assert!(names(&enforce, Act::ScmpActErrno).contains(&"clone3".to_string()));
        let detect = trap_rules(Mode::Detect, &p);
        assert!(
            names(&detect, Act::ScmpActErrno).is_empty(),
            "detect changes nothing"
        );
        let mounts = trap_rules(
            Mode::Enforce,
            &Policy {
                allow_userns: true,
                trap_mounts: true,
                ..p
            },
        );
        let n = names(&mounts, Act::ScmpActNotify);
        assert!(!n.contains(&"unshare".to_string()));
        assert!(n.contains(&"fsopen".to_string()));
    }

    #[test]
    fn attach_makes_a_profile_and_keeps_stricter_decisions() {
        let sock = Path::new("/run/atoll/guard.sock");
        let sc = attach_listener(None, sock, &Policy::default()).unwrap();
        assert_eq!(sc.listener_path().as_deref(), Some(sock));
        assert_eq!(
            sc.listener_metadata().as_deref(),
            Some("mode=enforce;userns=deny")
        );
        let all = sc.syscalls().clone().unwrap();
        assert!(names(&all, Act::ScmpActNotify).contains(&"setns".to_string()));

        let theirs: LinuxSeccomp = serde_json::from_value(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["setns", "read", "unshare"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["open_by_handle_at"], "action": "SCMP_ACT_ERRNO"}
            ]
        }))
        .unwrap();
        let sc = attach_listener(Some(theirs), sock, &Policy::default()).unwrap();
        let all = sc.syscalls().clone().unwrap();
        let notify = names(&all, Act::ScmpActNotify);
        assert!(notify.contains(&"setns".to_string()));
        assert!(notify.contains(&"unshare".to_string()));
        assert!(
            !notify.contains(&"open_by_handle_at".to_string()),
            "their deny stays"
        );
        assert!(
            !notify.contains(&"clone".to_string()),
            "default-denied stays denied"
        );
        // unshare without CLONE_NEWUSER is still allowed, by a complement rule.
        let allow_unshare = all
            .iter()
            .find(|r| r.action() == Act::ScmpActAllow && r.names().contains(&"unshare".to_string()))
            .expect("complement rule");
        let a = &allow_unshare.args().as_ref().unwrap()[0];
        assert_eq!(
            (a.value(), a.value_two()),
            (libc::CLONE_NEWUSER as u64, Some(0))
        );
        assert!(names(&all, Act::ScmpActAllow).contains(&"read".to_string()));

        let mut strict: LinuxSeccomp =
            serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["socket", "read"], "action": "SCMP_ACT_ALLOW"}]}))
            .unwrap();
        deny_vsock(&mut strict);
        let all = strict.syscalls().clone().unwrap();
        assert!(names(&all, Act::ScmpActErrno).contains(&"socket".to_string()));
        assert!(
            names(&all, Act::ScmpActAllow).contains(&"socket".to_string()),
            "other families"
        );
        assert!(names(&all, Act::ScmpActAllow).contains(&"read".to_string()));

        let other: LinuxSeccomp = serde_json::from_value(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/other.sock"}),
        )
        .unwrap();
        assert!(attach_listener(Some(other), sock, &Policy::default()).is_err());
    }
}

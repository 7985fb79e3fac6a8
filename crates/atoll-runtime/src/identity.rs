//! Who the container process is: uid/gid/groups, the five capability sets, rlimits, and the id
//! maps the parent writes for a new user namespace.

use std::collections::HashSet;
use std::str::FromStr;

use caps::Capability;
use oci_spec::runtime::{LinuxCapabilities, LinuxIdMapping, PosixRlimit, Process};

use crate::error::{errno, field, nix_errno, Result};

/// "0 100000 65536\n..." as /proc/<pid>/uid_map wants it.
pub fn id_map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Write uid_map and gid_map of `pid` (the parent does this, from the host).
pub fn write_id_maps(pid: i32, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<()> {
    for (name, maps) in [("uid_map", uid), ("gid_map", gid)] {
        let path = format!("/proc/{pid}/{name}");
        std::fs::write(&path, id_map_text(maps))
            .map_err(crate::error::sys(format!("write {path}")))?;
    }
    Ok(())
}

/// Resolved capability sets, checked against what this kernel knows, before clone.
#[derive(Debug, Default, Clone)]
pub struct CapSets {
    pub bounding: HashSet<Capability>,
    pub effective: HashSet<Capability>,
    pub permitted: HashSet<Capability>,
    pub inheritable: HashSet<Capability>,
    pub ambient: HashSet<Capability>,
}

fn to_caps(
    list: &Option<oci_spec::runtime::Capabilities>,
    name: &str,
) -> Result<HashSet<Capability>> {
    let mut out = HashSet::new();
    if let Some(list) = list {
        for c in list {
            let text = serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let cap = Capability::from_str(&text).map_err(|_| {
                field(
                    format!("process.capabilities.{name}"),
                    format!("unknown capability {text:?}"),
                )
            })?;
            out.insert(cap);
        }
    }
    Ok(out)
}

impl CapSets {
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<CapSets> {
        let Some(c) = c else {
            return Ok(CapSets::default());
        };
        let sets = CapSets {
            bounding: to_caps(c.bounding(), "bounding")?,
            effective: to_caps(c.effective(), "effective")?,
            permitted: to_caps(c.permitted(), "permitted")?,
            inheritable: to_caps(c.inheritable(), "inheritable")?,
            ambient: to_caps(c.ambient(), "ambient")?,
        };
        sets.check_within_bounding()?;
        Ok(sets)
    }

    /// A capability asked for in another set but left out of the bounding set can never be
    /// held by the process: capset(2) refuses it as inheritable (EPERM), and execve(2) drops it
    /// from the permitted and effective sets of a process it is not inheritable for
    /// (capabilities(7), "Transformation of capabilities during execve"). runc's start fails
    /// with EPERM; atoll refuses the config at create, naming the capability and the set.
    fn check_within_bounding(&self) -> Result<()> {
        for (name, set) in [
            ("effective", &self.effective),
            ("permitted", &self.permitted),
            ("inheritable", &self.inheritable),
            ("ambient", &self.ambient),
        ] {
            let outside: HashSet<Capability> = set.difference(&self.bounding).copied().collect();
            if !outside.is_empty() {
                return Err(field(
                    format!("process.capabilities.{name}"),
                    format!(
                        "{} not in process.capabilities.bounding: a capability outside the \
                         bounding set cannot be held (capset(2): EPERM)",
                        names(&outside).join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Drop everything not in the bounding set. Needs CAP_SETPCAP: call before changing uid.
    pub fn apply_bounding(&self) -> Result<()> {
        for cap in caps::runtime::thread_all_supported() {
            if !self.bounding.contains(&cap) {
                rustix::thread::remove_capability_from_bounding_set(cap_bit(cap))
                    .map_err(errno(format!("prctl(PR_CAPBSET_DROP, {cap})")))?;
            }
        }
        Ok(())
    }

    /// Set inheritable, effective and permitted in one capset(2), then raise ambient. Called
    /// after the uid change (with PR_SET_KEEPCAPS the permitted set survived it). Inheritable
    /// stays exactly as asked: empty unless the config names caps (CVE-2022-29162).
    pub fn apply_sets(&self) -> Result<()> {
        // A cap the runtime itself does not hold (not in its permitted or bounding set) cannot be
        // granted: leave it out, as runc does, instead of failing the whole container.
        let held = rustix::thread::capabilities(None)
            .map_err(errno("capget"))?
            .permitted;
        let mut bounding = rustix::thread::CapabilitySet::empty();
        for cap in caps::runtime::thread_all_supported() {
            if rustix::thread::capability_is_in_bounding_set(cap_bit(cap))
                .map_err(errno(format!("prctl(PR_CAPBSET_READ, {cap})")))?
            {
                bounding |= cap_bit(cap);
            }
        }
        let inheritable = cap_set(&self.inheritable) & bounding;
        let permitted = cap_set(&self.permitted) & held;
        // capset(2) checks the three sets together: effective within the new permitted,
        // permitted within the old one, inheritable within bounding (with CAP_SETPCAP).
        let sets = rustix::thread::CapabilitySets {
            effective: cap_set(&self.effective) & held,
            permitted,
            inheritable,
        };
        rustix::thread::set_capabilities(None, sets).map_err(errno(format!(
            "capset effective {:?} permitted {:?} inheritable {:?}",
            names(&from_bits(sets.effective)),
            names(&from_bits(sets.permitted)),
            names(&from_bits(sets.inheritable)),
        )))?;
        rustix::thread::clear_ambient_capability_set()
            .map_err(errno("prctl(PR_CAP_AMBIENT_CLEAR_ALL)"))?;
        for cap in &self.ambient {
            // The kernel raises an ambient cap only if it is permitted and inheritable. Configs
            // from `runc spec` list ambient caps without inheritable ones and runc runs them,
            // skipping what cannot be raised: do the same, and say so.
            let bit = cap_bit(*cap);
            if !inheritable.contains(bit) || !permitted.contains(bit) {
                tracing::debug!("process.capabilities.ambient: {cap} is not in inheritable and permitted; not raised");
                continue;
            }
            rustix::thread::configure_capability_in_ambient_set(bit, true)
                .map_err(errno(format!("prctl(PR_CAP_AMBIENT_RAISE, {cap})")))?;
        }
        Ok(())
    }
}

/// The capability as the one-bit set rustix's capget/capset/prctl wrappers take.
fn cap_bit(cap: Capability) -> rustix::thread::CapabilitySet {
    rustix::thread::CapabilitySet::from_bits_retain(1u64 << cap.index())
}

fn cap_set(v: &HashSet<Capability>) -> rustix::thread::CapabilitySet {
    v.iter()
        .fold(rustix::thread::CapabilitySet::empty(), |s, c| {
            s | cap_bit(*c)
        })
}

fn from_bits(bits: rustix::thread::CapabilitySet) -> HashSet<Capability> {
    caps::all()
        .into_iter()
        .filter(|c| bits.contains(cap_bit(*c)))
        .collect()
}

fn names(v: &HashSet<Capability>) -> Vec<String> {
    let mut n: Vec<String> = v.iter().map(|c| c.to_string()).collect();
    n.sort();
    n
}

/// Give the process's stdio to its user, as runc and crun do, so it can reopen `/dev/stdout`
/// (a magic link to /proc/self/fd/1: open(2) checks the inode's own mode, and a pipe is made
/// 0600 for whoever created it, pipe(7)). Only pipes, sockets and regular files move: a
/// character device is the caller's terminal or /dev/null and stays the host's. The gid stays
/// too (runc's rule: only the owner is needed). EPERM (the owner is not mapped in this user
/// namespace: a pipe of host root), EINVAL (the user is not mapped) and EROFS leave the fd as
/// it is, so the process fails later only if it reopens it. Root needs none of this and pays
/// no syscall.
pub fn give_stdio_to_user(process: &Process) -> Result<()> {
    let uid = process.user().uid();
    if uid == 0 {
        return Ok(());
    }
    use rustix::stdio::{stderr, stdin, stdout};
    for (n, fd) in [stdin(), stdout(), stderr()].into_iter().enumerate() {
        let st = match rustix::fs::fstat(fd) {
            Ok(st) => st,
            Err(rustix::io::Errno::BADF) => continue,
            Err(e) => return Err(errno(format!("fstat stdio fd {n}"))(e)),
        };
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        let movable = matches!(
            kind,
            rustix::fs::FileType::Fifo
                | rustix::fs::FileType::Socket
                | rustix::fs::FileType::RegularFile
        );
        if !movable || st.st_uid == uid {
            continue;
        }
        let owner = rustix::fs::Uid::from_raw(uid);
        match rustix::fs::fchown(fd, Some(owner), None) {
            Ok(()) => {}
            Err(rustix::io::Errno::PERM | rustix::io::Errno::INVAL | rustix::io::Errno::ROFS) => {}
            Err(e) => return Err(errno(format!("fchown stdio fd {n} to uid {uid}"))(e)),
        }
    }
    Ok(())
}

/// setgroups, setresgid, setresuid, keeping the permitted caps across the switch.
pub fn switch_user(process: &Process, setgroups_allowed: bool) -> Result<()> {
    let user = process.user();
    let uid = nix::unistd::Uid::from_raw(user.uid());
    let gid = nix::unistd::Gid::from_raw(user.gid());
    nix::sys::prctl::set_keepcaps(true).map_err(nix_errno("prctl(PR_SET_KEEPCAPS, 1)"))?;
    if setgroups_allowed {
        let groups: Vec<nix::unistd::Gid> = user
            .additional_gids()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups).map_err(nix_errno(format!("setgroups {groups:?}")))?;
    } else if user
        .additional_gids()
        .as_ref()
        .is_some_and(|g| !g.is_empty())
    {
        return Err(field(
            "process.user.additionalGids",
            "setgroups is denied in this user namespace",
        ));
    }
    nix::unistd::setresgid(gid, gid, gid).map_err(nix_errno(format!("setresgid {gid}")))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(nix_errno(format!("setresuid {uid}")))?;
    nix::sys::prctl::set_keepcaps(false).map_err(nix_errno("prctl(PR_SET_KEEPCAPS, 0)"))?;
    Ok(())
}

/// Map an OCI rlimit type name to nix's resource.
pub fn rlimit_resource(name: &str) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    Some(match name {
        "RLIMIT_AS" => R::RLIMIT_AS,
        "RLIMIT_CORE" => R::RLIMIT_CORE,
        "RLIMIT_CPU" => R::RLIMIT_CPU,
        "RLIMIT_DATA" => R::RLIMIT_DATA,
        "RLIMIT_FSIZE" => R::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => R::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => R::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => R::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => R::RLIMIT_NICE,
        "RLIMIT_NOFILE" => R::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => R::RLIMIT_NPROC,
        "RLIMIT_RSS" => R::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => R::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => R::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => R::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => R::RLIMIT_STACK,
        _ => return None,
    })
}

pub fn rlimit_name(r: &PosixRlimit) -> String {
    serde_json::to_value(r.typ())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub fn apply_rlimits(limits: &[PosixRlimit]) -> Result<()> {
    for (i, r) in limits.iter().enumerate() {
        let name = rlimit_name(r);
        let res = rlimit_resource(&name).ok_or_else(|| {
            field(
                format!("process.rlimits[{i}].type"),
                format!("unknown rlimit {name:?}"),
            )
        })?;
        nix::sys::resource::setrlimit(res, r.soft(), r.hard()).map_err(nix_errno(format!(
            "setrlimit {name} soft {} hard {}",
            r.soft(),
            r.hard()
        )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_from_spec() {
        let c: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_NET_BIND_SERVICE"],"effective":["CAP_NET_BIND_SERVICE"],"ambient":["CAP_NET_BIND_SERVICE"]}"#,
        )
        .unwrap();
        let s = CapSets::from_spec(Some(&c)).unwrap();
        assert!(s.ambient.contains(&Capability::CAP_NET_BIND_SERVICE));
        assert!(
            s.inheritable.is_empty(),
            "inheritable must stay empty unless asked"
        );
    }

    #[test]
    fn caps_outside_bounding_are_named_with_their_set() {
        for set in ["effective", "permitted", "inheritable", "ambient"] {
            let c: LinuxCapabilities = serde_json::from_value(serde_json::json!({
                "bounding": ["CAP_KILL"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"],
                set: ["CAP_KILL", "CAP_SYS_ADMIN"],
            }))
            .unwrap();
            let e = CapSets::from_spec(Some(&c)).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "config.json: process.capabilities.{set}: CAP_SYS_ADMIN not in \
                     process.capabilities.bounding: a capability outside the bounding set cannot \
                     be held (capset(2): EPERM)"
                )
            );
        }
    }

    #[test]
    fn map_text() {
        let m: Vec<LinuxIdMapping> =
            serde_json::from_str(r#"[{"containerID":0,"hostID":100000,"size":65536}]"#).unwrap();
        assert_eq!(id_map_text(&m), "0 100000 65536\n");
    }
}

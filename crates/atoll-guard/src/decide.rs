//! The decisions. Gathering facts (syscalls on the tenant's fd) is kept apart from judging them
//! (pure functions of the facts and the registry), so the rules are unit-tested without a kernel.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use atoll_sys::nsfs;

use crate::ns::{NsId, NsType};
use crate::registry::{Owner, Registry, Tenant};

/// The kernel nests user namespaces at most 32 deep (MAX_USER_NS_LEVEL): a bound on the walk.
const MAX_USERNS_DEPTH: usize = 33;

/// What one namespace is, as far as the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsFacts {
    pub id: NsId,
    pub ty: NsType,
    /// The user namespace that owns it (for a user namespace: itself), then its ancestors, as
    /// far as NS_GET_PARENT goes.
    pub userns_chain: Vec<NsId>,
}

/// Read the facts of the namespace `ns` refers to (an nsfs fd).
pub fn ns_facts(ns: BorrowedFd<'_>) -> std::io::Result<NsFacts> {
    let flag = nsfs::ns_get_nstype(ns)?;
    let ty = NsType::from_clone_flag(flag)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let id = NsId::of_fd(ns)?;
    let mut chain = Vec::new();
    let mut cur: Option<OwnedFd> = match ty {
        NsType::User => None,
        _ => nsfs::ns_get_userns(ns).ok(),
    };
    if ty == NsType::User {
        chain.push(id);
        cur = nsfs::ns_get_parent(ns).ok();
    }
    while let Some(u) = cur {
        if chain.len() >= MAX_USERNS_DEPTH {
            break;
        }
        chain.push(NsId::of_fd(u.as_fd())?);
        // EPERM at the top of what we can see (the initial user namespace, for a host daemon).
        cur = nsfs::ns_get_parent(u.as_fd()).ok();
    }
    Ok(NsFacts {
        id,
        ty,
        userns_chain: chain,
    })
}

/// May `tenant` join the namespace `f` describes? `Ok` or the owner to name in the alert.
///
/// Allowed: one of the tenant's own namespaces (recorded at registration), or a namespace the
/// tenant made itself: one owned by the tenant's user namespace or a descendant of it, that is
/// neither the host's nor another tenant's. A tenant in the host's user namespace (a rootful
/// container) has no such proof of authorship: only its own namespaces are allowed.
pub fn judge_ns(tenant: &Tenant, reg: &Registry, f: &NsFacts) -> Result<(), Owner> {
    if tenant.ns.find(f.id).is_some() {
        return Ok(());
    }
    let owner = reg.owner_of(f.id);
    if owner != Owner::Unknown {
        return Err(owner);
    }
    let own_userns = tenant.ns.get(NsType::User);
    if !reg.shares_host_userns(tenant)
        && own_userns.is_some()
        && f.userns_chain.iter().any(|u| Some(*u) == own_userns)
    {
        return Ok(());
    }
    // Owned by some other tenant's user namespace? Then name that tenant.
    Err(f
        .userns_chain
        .iter()
        .map(|u| reg.owner_of(*u))
        .find(|o| *o != Owner::Unknown && *o != Owner::Host)
        .unwrap_or(Owner::Unknown))
}

/// The pid a pidfd refers to, from /proc/self/fdinfo ("Pid:" line; -1 once it has exited,
/// 0 when it is outside our pid namespace). None: not a pidfd.
pub fn pidfd_pid(fd: BorrowedFd<'_>) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The number of threads in `tid`'s thread group: procfs gives /proc/<pid>/task a link count of
/// 2 + the threads (fs/proc/base.c, proc_task_getattr), one stat instead of reading and
/// parsing /proc/<pid>/status. 0 if it cannot be read.
pub fn thread_count(tid: u32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{tid}/task"))
        .map(|m| m.nlink().saturating_sub(2) as u32)
        .unwrap_or(0)
}

/// Real uid and thread count of a task, from /proc/<pid>/status.
pub fn task_status(pid: u32) -> (i64, u32) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (-1, 0);
    };
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<i64>().ok())
    };
    (
        field("Uid:").unwrap_or(-1),
        field("Threads:").unwrap_or(0) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ns::NsSet;
    use crate::Policy;

    fn id(ino: u64) -> NsId {
        NsId { dev: 4, ino }
    }

    fn tenant(name: &str, net: u64, user: u64) -> Tenant {
        let notify = std::fs::File::open("/dev/null").unwrap().into();
        Tenant {
            id: name.into(),
            policy: Policy {
                name: Some(name.into()),
                ..Policy::default()
            },
            pid: 1,
            ns: NsSet::default()
                .with(NsType::Net, id(net))
                .with(NsType::User, id(user)),
            notify,
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::new().unwrap();
        r.host = NsSet::default()
            .with(NsType::Net, id(1))
            .with(NsType::User, id(2));
        r.insert(1, tenant("web", 10, 20));
        r.insert(2, tenant("db", 11, 21));
        r
    }

    fn net(ino: u64, chain: &[u64]) -> NsFacts {
        NsFacts {
            id: id(ino),
            ty: NsType::Net,
            userns_chain: chain.iter().map(|i| id(*i)).collect(),
        }
    }

    #[test]
    fn own_host_other_and_made_namespaces() {
        let reg = registry();
        let web = reg.get(1).unwrap();
        assert_eq!(judge_ns(web, &reg, &net(10, &[20, 2])), Ok(()), "own");
        assert_eq!(judge_ns(web, &reg, &net(1, &[2])), Err(Owner::Host));
        assert_eq!(
            judge_ns(web, &reg, &net(11, &[21, 2])),
            Err(Owner::Island("db".into()))
        );
        assert_eq!(
            judge_ns(web, &reg, &net(50, &[20, 2])),
            Ok(()),
            "made by web"
        );
        assert_eq!(
            judge_ns(web, &reg, &net(51, &[60, 20, 2])),
            Ok(()),
            "made in a child userns"
        );
        assert_eq!(
            judge_ns(web, &reg, &net(52, &[21, 2])),
            Err(Owner::Island("db".into())),
            "made by db"
        );
        assert_eq!(judge_ns(web, &reg, &net(53, &[2])), Err(Owner::Unknown));
    }

    #[test]
    fn a_rootful_tenant_gets_only_its_own() {
        let mut reg = registry();
        reg.insert(3, tenant("root", 12, 2));
        let t = reg.get(3).unwrap();
        assert_eq!(judge_ns(t, &reg, &net(12, &[2])), Ok(()));
        assert_eq!(judge_ns(t, &reg, &net(54, &[2])), Err(Owner::Unknown));
    }

    #[test]
    fn facts_of_our_own_net_namespace() {
        let f = std::fs::File::open("/proc/self/ns/net").unwrap();
        let facts = ns_facts(f.as_fd()).unwrap();
        assert_eq!(facts.ty, NsType::Net);
        let me = NsSet::of_pid(std::process::id() as i32).unwrap();
        assert_eq!(facts.userns_chain.first().copied(), me.get(NsType::User));
        let me_fd = rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        assert_eq!(pidfd_pid(me_fd.as_fd()), Some(std::process::id() as i32));
        assert_eq!(pidfd_pid(f.as_fd()), None);
        // A single-threaded child (our own thread count moves with the test harness's).
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert_eq!(thread_count(child.id()), 1);
        assert_eq!(task_status(child.id()).1, 1);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

//! Writes under /proc/sys/net. These files belong to the netns of the task that opens them, so a
//! write for an island happens while the thread is inside it (`Netns::enter`). We go through a
//! procfs mounted by pathrs, never a path lookup under a /proc someone else could have shaped.

use std::io::Write;

use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle};

use crate::error::NetError;

/// Open a private procfs handle; cheap to reuse for every write of an apply.
pub(crate) fn procfs() -> Result<ProcfsHandle, NetError> {
    ProcfsHandle::new().map_err(|e| NetError::Sysctl {
        key: "sys".into(),
        value: String::new(),
        netns: "host".into(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// `net.ipv6.conf.<ifname>.disable_ipv6 = 1` in the calling thread's netns. There is no rtnetlink
/// way to set it: inet6_set_link_af only takes IFLA_INET6_TOKEN and IFLA_INET6_ADDR_GEN_MODE.
pub(crate) fn disable_ipv6(proc: &ProcfsHandle, ifname: &str, netns: &str) -> Result<(), NetError> {
    write(
        proc,
        &format!("sys/net/ipv6/conf/{ifname}/disable_ipv6"),
        "1",
        netns,
    )
}

/// Read a /proc/sys/net value in the calling thread's netns (tests and status checks).
pub fn read(key: &str) -> Result<String, NetError> {
    let proc = procfs()?;
    let sub = format!("sys/{}", key.replace('.', "/"));
    let mut f = proc
        .open(
            ProcfsBase::ProcRoot,
            &sub,
            OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
        )
        .map_err(|e| sysctl_err(&sub, "", "current", std::io::Error::other(e.to_string())))?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut f, &mut s)
        .map_err(|e| sysctl_err(&sub, "", "current", e))?;
    Ok(s.trim().to_owned())
}

fn write(proc: &ProcfsHandle, sub: &str, value: &str, netns: &str) -> Result<(), NetError> {
    let mut f = proc
        .open(
            ProcfsBase::ProcRoot,
            sub,
            OpenFlags::O_WRONLY | OpenFlags::O_CLOEXEC,
        )
        .map_err(|e| sysctl_err(sub, value, netns, std::io::Error::other(e.to_string())))?;
    f.write_all(value.as_bytes())
        .map_err(|e| sysctl_err(sub, value, netns, e))
}

fn sysctl_err(key: &str, value: &str, netns: &str, source: std::io::Error) -> NetError {
    NetError::Sysctl {
        key: key.to_owned(),
        value: value.to_owned(),
        netns: netns.to_owned(),
        source,
    }
}

//! Writes under /proc/sys/net. These files belong to the netns of the task that opens them, so a
//! write for an island happens while the thread is inside it (`Netns::enter`). We go through a
//! procfs mounted by pathrs, never a path lookup under a /proc someone else could have shaped.
//!
//! Speed: a pathrs open under /proc/sys costs ~30 µs (its mount and symlink checks), ~300 µs
//! with a fresh `subset=pid` handle; hundreds of host link ends would pay that each. So the
//! `conf` directory is opened once through pathrs and each file beneath it with openat2
//! RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS (~5 µs), which cannot leave that
//! verified procfs directory.

use std::os::fd::OwnedFd;

use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle, ProcfsHandleBuilder};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::NetError;

/// A private procfs with /proc/sys visible (no `subset=pid`), for one apply; never leaked (CLOEXEC).
pub(crate) fn procfs() -> Result<ProcfsHandle, NetError> {
    ProcfsHandleBuilder::new()
        .subset_pid(false)
        .build()
        .map_err(|e| sysctl_err("sys", "", "host", std::io::Error::other(e)))
}

/// `/proc/sys/net/ipv6/conf` of the calling thread's netns, opened through pathrs.
pub(crate) struct Ipv6Conf {
    dir: OwnedFd,
    netns: String,
}

impl Ipv6Conf {
    pub(crate) fn open(proc: &ProcfsHandle, netns: &str) -> Result<Ipv6Conf, NetError> {
        let key = "sys/net/ipv6/conf";
        let dir = proc
            .open(
                ProcfsBase::ProcRoot,
                key,
                OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY | OpenFlags::O_CLOEXEC,
            )
            .map_err(|e| sysctl_err(key, "", netns, std::io::Error::other(e)))?;
        Ok(Ipv6Conf {
            dir: dir.into(),
            netns: netns.to_owned(),
        })
    }

    /// `net.ipv6.conf.<ifname>.disable_ipv6 = 1`. There is no rtnetlink way to set it:
    /// inet6_set_link_af only takes IFLA_INET6_TOKEN and IFLA_INET6_ADDR_GEN_MODE.
    pub(crate) fn disable(&self, ifname: &str) -> Result<(), NetError> {
        let sub = format!("{ifname}/disable_ipv6");
        let key = || format!("sys/net/ipv6/conf/{sub}");
        let resolve = ResolveFlags::BENEATH
            | ResolveFlags::NO_XDEV
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS;
        let fd = rustix::fs::openat2(
            &self.dir,
            sub.as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .map_err(|e| sysctl_err(&key(), "1", &self.netns, e.into()))?;
        let n = rustix::io::write(&fd, b"1")
            .map_err(|e| sysctl_err(&key(), "1", &self.netns, e.into()))?;
        if n != 1 {
            return Err(sysctl_err(
                &key(),
                "1",
                &self.netns,
                std::io::ErrorKind::WriteZero.into(),
            ));
        }
        Ok(())
    }
}

/// Read a /proc/sys value (`net.ipv4.ip_forward`) in the calling thread's netns, for tests and
/// status checks. Interface names containing '.' cannot be expressed in this dotted form.
pub fn read(key: &str) -> Result<String, NetError> {
    let proc = procfs()?;
    let sub = format!("sys/{}", key.replace('.', "/"));
    let mut f = proc
        .open(
            ProcfsBase::ProcRoot,
            &sub,
            OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
        )
        .map_err(|e| sysctl_err(&sub, "", "current", std::io::Error::other(e)))?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut f, &mut s)
        .map_err(|e| sysctl_err(&sub, "", "current", e))?;
    Ok(s.trim().to_owned())
}

fn sysctl_err(key: &str, value: &str, netns: &str, source: std::io::Error) -> NetError {
    NetError::Sysctl {
        key: key.to_owned(),
        value: value.to_owned(),
        netns: netns.to_owned(),
        source,
    }
}

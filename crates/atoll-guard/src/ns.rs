//! Namespace identities: a namespace is the (st_dev, st_ino) of its nsfs inode (ioctl_ns(2):
//! "two namespaces are the same if and only if the device and inode numbers match").

use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;

use serde::Serialize;

use crate::GuardError;

/// The eight namespace types, with the names /proc/<pid>/ns/ uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NsType {
    Net,
    Mnt,
    Pid,
    Uts,
    Ipc,
    User,
    Cgroup,
    Time,
}

impl NsType {
    pub const ALL: [NsType; 8] = [
        NsType::Net,
        NsType::Mnt,
        NsType::Pid,
        NsType::Uts,
        NsType::Ipc,
        NsType::User,
        NsType::Cgroup,
        NsType::Time,
    ];

    /// The file name under /proc/<pid>/ns/ (and the `nstype` word in alerts).
    pub fn name(self) -> &'static str {
        match self {
            NsType::Net => "net",
            NsType::Mnt => "mnt",
            NsType::Pid => "pid",
            NsType::Uts => "uts",
            NsType::Ipc => "ipc",
            NsType::User => "user",
            NsType::Cgroup => "cgroup",
            NsType::Time => "time",
        }
    }

    /// The CLONE_NEW* flag (setns(2) `nstype`, NS_GET_NSTYPE).
    pub fn clone_flag(self) -> i32 {
        match self {
            NsType::Net => libc::CLONE_NEWNET,
            NsType::Mnt => libc::CLONE_NEWNS,
            NsType::Pid => libc::CLONE_NEWPID,
            NsType::Uts => libc::CLONE_NEWUTS,
            NsType::Ipc => libc::CLONE_NEWIPC,
            NsType::User => libc::CLONE_NEWUSER,
            NsType::Cgroup => libc::CLONE_NEWCGROUP,
            NsType::Time => libc::CLONE_NEWTIME,
        }
    }

    pub fn from_clone_flag(flag: i32) -> Option<NsType> {
        NsType::ALL.into_iter().find(|t| t.clone_flag() == flag)
    }

    /// Every type whose flag is set in `flags` (setns(pidfd, flags)).
    pub fn in_flags(flags: u64) -> Vec<NsType> {
        NsType::ALL
            .into_iter()
            .filter(|t| flags & t.clone_flag() as u64 != 0)
            .collect()
    }
}

/// One namespace: the device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

impl NsId {
    pub fn of_fd(fd: BorrowedFd<'_>) -> std::io::Result<NsId> {
        let st = rustix::fs::fstat(fd)?;
        Ok(NsId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// The namespaces of one process, read once (at registration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsSet([Option<NsId>; 8]);

impl NsSet {
    /// stat /proc/<pid>/ns/<type> for each type. A type the kernel lacks (time before 5.6) is
    /// left empty; any other failure is an error (the process is gone, or not ours to see).
    pub fn of_pid(pid: i32) -> Result<NsSet, GuardError> {
        let mut set = NsSet::default();
        for (i, t) in NsType::ALL.into_iter().enumerate() {
            let p = format!("/proc/{pid}/ns/{}", t.name());
            match std::fs::metadata(&p) {
                Ok(m) => {
                    set.0[i] = Some(NsId {
                        dev: m.dev(),
                        ino: m.ino(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && t == NsType::Time => {}
                Err(e) => return Err(GuardError::io("stat", p)(e)),
            }
        }
        Ok(set)
    }

    pub fn get(&self, t: NsType) -> Option<NsId> {
        self.0[NsType::ALL
            .iter()
            .position(|x| *x == t)
            .expect("ALL has every type")]
    }

    /// The type of `id` if it is one of ours.
    pub fn find(&self, id: NsId) -> Option<NsType> {
        NsType::ALL
            .into_iter()
            .zip(self.0.iter())
            .find(|(_, x)| **x == Some(id))
            .map(|(t, _)| t)
    }

    /// As (st_dev, st_ino) per type, in [`NsType::ALL`] order (what the keeper stores).
    pub fn to_pairs(&self) -> Vec<Option<(u64, u64)>> {
        self.0
            .iter()
            .map(|x| x.map(|id| (id.dev, id.ino)))
            .collect()
    }

    pub fn from_pairs(pairs: &[Option<(u64, u64)>]) -> NsSet {
        let mut set = NsSet::default();
        for (slot, p) in set.0.iter_mut().zip(pairs) {
            *slot = p.map(|(dev, ino)| NsId { dev, ino });
        }
        set
    }

    #[cfg(test)]
    pub(crate) fn with(mut self, t: NsType, id: NsId) -> NsSet {
        self.0[NsType::ALL.iter().position(|x| *x == t).unwrap()] = Some(id);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        for t in NsType::ALL {
            assert_eq!(NsType::from_clone_flag(t.clone_flag()), Some(t));
        }
        assert_eq!(
            NsType::in_flags((libc::CLONE_NEWNET | libc::CLONE_NEWNS) as u64),
            vec![NsType::Net, NsType::Mnt]
        );
        assert_eq!(NsType::from_clone_flag(0), None);
    }

    #[test]
    fn our_own_set_finds_our_own_net() {
        let me = NsSet::of_pid(std::process::id() as i32).unwrap();
        let f = std::fs::File::open("/proc/self/ns/net").unwrap();
        use std::os::fd::AsFd;
        let id = NsId::of_fd(f.as_fd()).unwrap();
        assert_eq!(me.find(id), Some(NsType::Net));
        assert_eq!(me.get(NsType::Net), Some(id));
    }
}

//! The tenants the supervisor knows, with the namespaces each had when it registered, so that a
//! namespace can be named by its owner: the host, a known tenant, or unknown.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use crate::ns::{NsId, NsSet, NsType};
use crate::{GuardError, Policy};

/// One registered notify fd: a container's init, or a process `atoll exec` started in it.
#[derive(Debug)]
pub struct Tenant {
    /// The container id (runtime-spec state `id`).
    pub id: String,
    pub policy: Policy,
    /// The process whose namespaces were recorded (in the supervisor's pid namespace).
    pub pid: i32,
    pub ns: NsSet,
    pub notify: OwnedFd,
}

impl Tenant {
    /// Record `pid`'s namespaces now; `notify` is the listener fd of its seccomp filter.
    pub fn new(
        id: String,
        policy: Policy,
        pid: i32,
        notify: OwnedFd,
    ) -> Result<Tenant, GuardError> {
        let ns = NsSet::of_pid(pid)?;
        Ok(Tenant {
            id,
            policy,
            pid,
            ns,
            notify,
        })
    }

    /// A tenant the keeper handed back: its policy and namespaces as first recorded.
    pub fn restore(
        rec: &crate::keeper::TenantRecord,
        base: &Policy,
        notify: OwnedFd,
    ) -> Result<Tenant, GuardError> {
        Ok(Tenant {
            id: rec.id.clone(),
            policy: Policy::from_metadata(&rec.metadata, base)?,
            pid: rec.pid,
            ns: NsSet::from_pairs(&rec.ns),
            notify,
        })
    }

    /// What the keeper stores of this tenant.
    pub fn record(&self, token: u64) -> crate::keeper::TenantRecord {
        crate::keeper::TenantRecord {
            token,
            id: self.id.clone(),
            pid: self.pid,
            metadata: self.policy.to_metadata(),
            ns: self.ns.to_pairs(),
        }
    }

    /// How alerts name this tenant as an owner.
    pub fn owner(&self) -> Owner {
        match &self.policy.name {
            Some(n) => Owner::Island(n.clone()),
            None => Owner::Container(self.id.clone()),
        }
    }
}

/// Who a namespace belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Host,
    Island(String),
    Container(String),
    Unknown,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Host => f.write_str("host"),
            Owner::Island(n) => write!(f, "island:{n}"),
            Owner::Container(id) => write!(f, "container:{id}"),
            Owner::Unknown => f.write_str("unknown"),
        }
    }
}

/// Tenants by event-loop token, plus the host's namespaces: those of pid 1, or, where pid 1 is
/// not ours to look at (ptrace access check, e.g. a sandboxed init), the supervisor's own: it
/// runs as a host daemon, in the host's namespaces.
#[derive(Debug)]
pub struct Registry {
    pub host: NsSet,
    tenants: HashMap<u64, Tenant>,
}

impl Registry {
    pub fn new() -> Result<Registry, GuardError> {
        Ok(Registry {
            host: NsSet::of_pid(1).or_else(|_| NsSet::of_pid(std::process::id() as i32))?,
            tenants: HashMap::new(),
        })
    }

    pub fn insert(&mut self, token: u64, t: Tenant) {
        self.tenants.insert(token, t);
    }

    pub fn remove(&mut self, token: u64) -> Option<Tenant> {
        self.tenants.remove(&token)
    }

    pub fn get(&self, token: u64) -> Option<&Tenant> {
        self.tenants.get(&token)
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    pub fn tokens(&self) -> Vec<u64> {
        self.tenants.keys().copied().collect()
    }

    /// The container ids of the tenants (for `atoll guard status`).
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tenants.values().map(|t| t.id.clone()).collect();
        v.sort();
        v
    }

    /// The owner of namespace `id`: the host first (a tenant sharing a host namespace does not
    /// make it its own), then any registered tenant, else unknown.
    pub fn owner_of(&self, id: NsId) -> Owner {
        if self.host.find(id).is_some() {
            return Owner::Host;
        }
        self.tenants
            .values()
            .find(|t| t.ns.find(id).is_some())
            .map(Tenant::owner)
            .unwrap_or(Owner::Unknown)
    }

    /// Is the user namespace of `t` the host's (a rootful container)?
    pub fn shares_host_userns(&self, t: &Tenant) -> bool {
        t.ns.get(NsType::User) == self.host.get(NsType::User)
    }
}

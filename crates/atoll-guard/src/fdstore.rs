//! systemd's fd store, for a keeper that runs as a service (contrib/systemd/atoll-guard.service:
//! `FileDescriptorStoreMax=`). The keeper hands systemd a copy of every tenant's notify fd, the
//! in-flight slot, and a memfd of its tenant records; when the keeper itself dies (kill -9, a
//! crash, an upgrade's restart), systemd starts it again with all of them (`LISTEN_FDS`, named),
//! so no tenant loses its listener and none needs the ptrace walk of `adopt` to get it back.
//! Without systemd the keeper is the only holder, and a killed keeper is what `adopt` is for.
//!
//! Names: `guard-records` (memfd: the records as JSON, rewritten in place), `guard-slot` (the
//! in-flight memfd), `guard-t<token>` (a tenant's notify fd). systemd closes a stored fd that
//! reports EPOLLHUP: a notify fd does once every task of its filter has exited.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use atoll_sys::systemd::Notifier;

use crate::record::TenantRecord;
use crate::GuardError;

const RECORDS: &str = "guard-records";
const SLOT: &str = "guard-slot";
const TENANT: &str = "guard-t";

/// The tenants (and the slot) systemd handed back at our start.
#[derive(Debug, Default)]
pub struct Restored {
    pub tenants: HashMap<u64, (TenantRecord, OwnedFd)>,
    pub slot: Option<OwnedFd>,
}

/// The keeper's side of the store.
#[derive(Debug)]
pub struct FdStore {
    notify: Notifier,
    records: OwnedFd,
}

impl FdStore {
    /// Take what systemd handed back (`handed`: the fds named `guard-…` of `LISTEN_FDS`): the
    /// records memfd, the slot, and each tenant's fd that has a record. Starts a new records
    /// memfd (and stores it) when none came back. Tenant fds without a record (we died between
    /// storing the fd and writing its record) are closed and removed from the store.
    pub fn open(
        notify: Notifier,
        handed: Vec<(String, OwnedFd)>,
    ) -> Result<(FdStore, Restored), GuardError> {
        let mut records = None;
        let mut restored = Restored::default();
        let mut fds = HashMap::new();
        for (name, fd) in handed {
            match name.as_str() {
                RECORDS => records = Some(fd),
                SLOT => restored.slot = Some(fd),
                _ => match name
                    .strip_prefix(TENANT)
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    Some(token) => {
                        fds.insert(token, fd);
                    }
                    None => tracing::warn!("keeper: fd store: unknown fd name {name:?}; closed"),
                },
            }
        }
        let store = match records {
            Some(records) => FdStore { notify, records },
            None => {
                let records = memfd("atoll-guard-records")?;
                let store = FdStore { notify, records };
                store.send(RECORDS, "FDSTORE=1", true)?;
                store
            }
        };
        let mut kept: Vec<TenantRecord> = store.read_records();
        kept.retain(|r| fds.contains_key(&r.token));
        for rec in kept {
            let fd = fds.remove(&rec.token).expect("retained: has an fd");
            restored.tenants.insert(rec.token, (rec, fd));
        }
        for token in fds.into_keys() {
            tracing::warn!("keeper: fd store: tenant fd {token} has no record; dropped");
            store.forget(token);
        }
        store.write_records(restored.tenants.values().map(|(r, _)| r))?;
        Ok((store, restored))
    }

    /// Store the in-flight slot (once, at the first start).
    pub fn keep_slot(&self, slot: &OwnedFd) -> Result<(), GuardError> {
        self.send_fd(SLOT, slot)
    }

    /// A new tenant: its record first, then its fd (a record without an fd is dropped at the
    /// next start; an fd without its record could not be registered).
    pub fn keep(
        &self,
        tenants: &HashMap<u64, (TenantRecord, OwnedFd)>,
        token: u64,
    ) -> Result<(), GuardError> {
        self.write_records(tenants.values().map(|(r, _)| r))?;
        let (_, fd) = &tenants[&token];
        self.send_fd(&format!("{TENANT}{token}"), fd)
    }

    /// A tenant is gone: out of the store, then out of the records.
    pub fn drop_tenant(
        &self,
        tenants: &HashMap<u64, (TenantRecord, OwnedFd)>,
        token: u64,
    ) -> Result<(), GuardError> {
        self.forget(token);
        self.write_records(tenants.values().map(|(r, _)| r))
    }

    /// Tell the manager we serve (Type=notify).
    pub fn ready(&self) -> Result<(), GuardError> {
        self.notify
            .send("READY=1", &[])
            .map_err(GuardError::sys("sd_notify READY=1"))
    }

    fn forget(&self, token: u64) {
        if let Err(e) = self.send(&format!("{TENANT}{token}"), "FDSTOREREMOVE=1", false) {
            tracing::warn!("keeper: fd store: remove tenant {token}: {e}");
        }
    }

    fn send_fd(&self, name: &str, fd: &OwnedFd) -> Result<(), GuardError> {
        self.notify
            .send(&format!("FDSTORE=1\nFDNAME={name}"), &[fd.as_fd()])
            .map_err(GuardError::sys(format!(
                "sd_notify FDSTORE=1 FDNAME={name}"
            )))
    }

    fn send(&self, name: &str, verb: &str, with_records: bool) -> Result<(), GuardError> {
        let msg = format!("{verb}\nFDNAME={name}");
        let fds = if with_records {
            vec![self.records.as_fd()]
        } else {
            vec![]
        };
        self.notify
            .send(&msg, &fds)
            .map_err(GuardError::sys(format!(
                "sd_notify {}",
                msg.replace('\n', " ")
            )))
    }

    fn read_records(&self) -> Vec<TenantRecord> {
        let mut text = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let mut at = 0u64;
        loop {
            match rustix::io::pread(&self.records, &mut buf, at) {
                Ok(0) => break,
                Ok(n) => {
                    text.extend_from_slice(&buf[..n]);
                    at += n as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    tracing::warn!("keeper: fd store: read the records: {e}");
                    return Vec::new();
                }
            }
        }
        if text.is_empty() {
            return Vec::new();
        }
        serde_json::from_slice(&text)
            .inspect_err(|e| tracing::warn!("keeper: fd store: the records do not parse: {e}"))
            .unwrap_or_default()
    }

    /// Rewrite the records in place: the memfd is the one systemd holds.
    fn write_records<'a>(
        &self,
        recs: impl Iterator<Item = &'a TenantRecord>,
    ) -> Result<(), GuardError> {
        let recs: Vec<&TenantRecord> = recs.collect();
        let body = serde_json::to_vec(&recs).expect("records serialize");
        let err = GuardError::sys("write the tenant records (memfd)");
        rustix::fs::ftruncate(&self.records, 0).map_err(|e| err(e.into()))?;
        let mut at = 0usize;
        while at < body.len() {
            match rustix::io::pwrite(&self.records, &body[at..], at as u64) {
                Ok(n) => at += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(GuardError::sys("write the tenant records (memfd)")(
                        e.into(),
                    ))
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn memfd(name: &str) -> Result<OwnedFd, GuardError> {
    rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| GuardError::sys("memfd_create")(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::UnixDatagram;

    /// The manager's end: a datagram socket at an abstract address of this test's own.
    fn manager(tag: &str) -> (UnixDatagram, Notifier) {
        let name = format!("atoll-fdstore-{tag}-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let m = UnixDatagram::bind_addr(&addr).unwrap();
        m.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::connect(std::ffi::OsStr::new(&format!("@{name}"))).unwrap();
        (m, n)
    }

    fn next(m: &UnixDatagram) -> (String, Option<OwnedFd>) {
        let mut buf = [0u8; 256];
        let (n, fd) = atoll_sys::socket::recv_with_fd(m.as_fd(), &mut buf).unwrap();
        (String::from_utf8_lossy(&buf[..n]).into_owned(), fd)
    }

    fn record(token: u64) -> TenantRecord {
        TenantRecord {
            token,
            id: format!("c{token}"),
            pid: 1,
            metadata: "mode=enforce".into(),
            ns: vec![None; 8],
        }
    }

    #[test]
    fn records_and_fds_go_to_the_manager_and_come_back_matched() {
        let (m, n) = manager("a");
        let (store, restored) = FdStore::open(n, vec![]).unwrap();
        assert!(restored.tenants.is_empty() && restored.slot.is_none());
        let (msg, records) = next(&m);
        assert_eq!(msg, "FDSTORE=1\nFDNAME=guard-records");
        let records = records.expect("the records memfd rides along");
        let mut tenants = HashMap::new();
        for token in [7, 8] {
            let (a, _) = UnixDatagram::pair().unwrap();
            tenants.insert(token, (record(token), OwnedFd::from(a)));
            store.keep(&tenants, token).unwrap();
            let (msg, fd) = next(&m);
            assert_eq!(msg, format!("FDSTORE=1\nFDNAME=guard-t{token}"));
            assert!(fd.is_some());
        }
        tenants.remove(&8);
        store.drop_tenant(&tenants, 8).unwrap();
        assert_eq!(next(&m).0, "FDSTOREREMOVE=1\nFDNAME=guard-t8");
        // A restart: the manager hands back the records, tenant 7's fd, and an fd whose record
        // was never written (9).
        let (m, n) = manager("b");
        let fd = || OwnedFd::from(UnixDatagram::pair().unwrap().0);
        let handed = vec![
            ("guard-records".to_string(), records),
            ("guard-t7".to_string(), fd()),
            ("guard-t9".to_string(), fd()),
        ];
        let (_store, restored) = FdStore::open(n, handed).unwrap();
        let back: Vec<_> = restored.tenants.values().map(|(r, _)| r.clone()).collect();
        assert_eq!(back, vec![record(7)]);
        assert_eq!(next(&m).0, "FDSTOREREMOVE=1\nFDNAME=guard-t9");
    }
}

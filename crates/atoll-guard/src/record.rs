//! The record the keeper (and systemd's fd store) keeps of each tenant.

use serde::{Deserialize, Serialize};

/// What the keeper knows of a tenant: enough to register it again without asking the tenant
/// (its namespaces as recorded at its first registration, not as they are now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub token: u64,
    pub id: String,
    pub pid: i32,
    /// The policy as listenerMetadata (`mode=enforce;userns=deny`).
    pub metadata: String,
    /// The recorded namespaces: (st_dev, st_ino) per type, in NsType::ALL order.
    pub ns: Vec<Option<(u64, u64)>>,
}

//! atoll-guard: the seccomp user-notification supervisor. Tenants (containers, island members)
//! trap a small set of syscalls with SCMP_ACT_NOTIFY ([`trap_rules`]); the supervisor receives
//! their notify fds by the OCI listenerPath protocol, judges each trapped call against what it
//! recorded about the tenant at registration, answers, and appends one JSON alert line per event.
//! docs/threat-model.md says what it can and cannot see.

mod alert;
mod decide;
mod error;
pub mod fdstore;
pub mod keeper;
mod ns;
mod record;
mod registry;
mod supervisor;

pub use alert::{parse_lines, rfc5424, Alert, AlertLog, Decision, Sinks};
/// The policy and its seccomp rules live in atoll-seccomp (the runtime uses them without the
/// supervisor); re-exported here, where the supervisor enforces them.
pub use atoll_seccomp::policy::{attach_listener, trap_rules, Mode, Policy, PolicyError};
pub use error::GuardError;
pub use ns::{NsId, NsSet, NsType};
pub use registry::{Owner, Registry, Tenant};
pub use supervisor::{bind_socket, Supervisor, SupervisorOpts};

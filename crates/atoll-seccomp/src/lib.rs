//! OCI `linux.seccomp` → a classic-BPF program. libseccomp compiles the profile; we export the
//! program once (and cache it on disk, keyed by the profile), so installing it in the container's
//! init is one seccomp(2) call with no allocation and no library state. The notify listener fd
//! goes to the seccomp agent by the runtime-spec "Container Process State" protocol.

mod cache;
mod error;
mod filter;
mod listener;
pub mod policy;
mod profile;
#[cfg(test)]
mod testutil;

pub use atoll_sys::seccomp::SockFilter;
pub use error::SeccompError;
pub use filter::{CacheUse, Filter};
pub use listener::{send_to_listener, OCI_VERSION};
pub use policy::PolicyError;

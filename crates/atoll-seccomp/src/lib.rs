//! OCI `linux.seccomp` -> a classic-BPF program. libseccomp compiles the profile; we export the
//! program once (and cache it on disk, keyed by the profile), so installing it in the container's
//! init is one seccomp(2) call with no allocation and no library state.
#![forbid(unsafe_code)]

mod filter;
mod listener;

pub use filter::{Filter, SeccompError};
pub use listener::send_to_listener;

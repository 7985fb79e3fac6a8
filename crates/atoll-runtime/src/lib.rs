//! The OCI container lifecycle: the state store, process spawn and init, the root filesystem,
//! identities and capabilities, hooks and the console socket.

pub mod adopt;
pub mod checkpoint;
pub mod container;
pub mod error;
pub mod guard;
pub mod hooks;
pub mod identity;
pub mod lsm;
pub mod node;
pub mod process;
pub mod rootfs;
pub mod spec;
pub mod state;
pub use atoll_sys::time;
pub mod tty;

pub use error::{Result, RuntimeError};
pub use process::spawn::CreateOpts;
pub use state::{Saved, Status, Store};

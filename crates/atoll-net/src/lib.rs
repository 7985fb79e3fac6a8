//! atoll-net: the network plumbing of islands. Pinned network namespaces (`netns`), routed
//! point-to-point links that cross the host (`p2p`), and the host's border-guard nftables table
//! (`firewall`). Every change is planned as plain data first, then applied.
#![forbid(unsafe_code)]

mod error;
pub mod firewall;
mod netlink;
pub mod netns;
pub mod p2p;
pub mod sysctl;

pub use error::{NetError, NetlinkError};

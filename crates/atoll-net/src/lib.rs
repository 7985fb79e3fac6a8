//! atoll-net: the network plumbing of islands. Pinned network namespaces (`netns`), routed
//! point-to-point links that cross the host (`p2p`), and the host's border-guard nftables table
//! (`firewall`). Every change is planned as plain data first, then applied. For `atoll doctor`,
//! read-only views: links, addresses, routes and neighbours of a netns (`inspect`), one probe
//! packet from inside a netns (`probe`), its listening sockets (`sockdiag`), and the nftables
//! rules of a netns atoll does not manage (`nft_netns`).

mod error;
pub mod firewall;
pub mod inspect;
mod netlink;
pub mod netns;
mod nfqueue;
mod nft_batch;
pub mod nft_netns;
pub mod p2p;
pub mod probe;
pub mod sockdiag;
pub mod sysctl;

pub use error::{NetError, NetlinkError};

/// Tear down what a project's plan made: its link groups, its pinned namespaces, its firewall
/// table, in that order (links go before the table that guards them). Keeps going past errors and
/// returns them all; absent objects are not errors, so this also cleans up after a crash.
pub fn teardown(
    groups: &[u32],
    netns_paths: &[std::path::PathBuf],
    table: Option<&str>,
) -> Result<(), NetError> {
    let mut errors = Vec::new();
    for &g in groups {
        errors.extend(p2p::delete_group(g).err());
    }
    for p in netns_paths {
        errors.extend(netns::remove(p).err());
    }
    if let Some(t) = table {
        errors.extend(firewall::delete(t).err());
    }
    NetError::collect(errors)
}

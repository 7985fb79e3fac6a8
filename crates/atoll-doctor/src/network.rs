//! Layer 3, network: inside the tenant's netns `lo` and its interfaces up, addresses, the route
//! the kernel picks for the target, the neighbour entry, relevant sysctls; on the host side the
//! link's veth ends and their forwarding.

use std::net::Ipv4Addr;

use crate::report::{Layer, LayerReport};
use crate::subject::Subject;
use crate::Ctx;

pub fn check(c: &Ctx) -> LayerReport {
    let _ = c;
    LayerReport::not_checked(Layer::Network, "not built yet")
}

/// Whether `addr` is the container's own (loopback, or an address on one of its interfaces):
/// the only addresses doctor probes for a plain container.
pub fn is_own_address(subject: &Subject, addr: Ipv4Addr) -> bool {
    let _ = subject;
    addr.is_loopback()
}

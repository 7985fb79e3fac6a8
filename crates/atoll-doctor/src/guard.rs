//! Layer 4, border guard: which rule of the host's nftables table the flow meets (the plan says
//! which `[[allow]]` should match; a probe from inside the tenant's netns and the rule counters
//! confirm it live), and for a dropped flow the exact `[[allow]]` that lets it through. For a
//! container, the rules inside its own netns.

use crate::report::{Layer, LayerReport};
use crate::Ctx;

pub fn check(c: &Ctx) -> LayerReport {
    let _ = c;
    LayerReport::not_checked(Layer::Guard, "not built yet")
}

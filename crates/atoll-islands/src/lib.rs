//! atoll islands: one file describes tenants, the private links between them and the flows the
//! border guard lets across; `up` turns that into network namespaces, routed veth links through
//! the host, one nftables table, and one container per island; `down` removes all of it.
//!
//! file (TOML) → plan (plain data, saved first) → apply / teardown.

pub mod apply;
pub mod archive;
pub mod backup;
pub mod bundle;
pub mod devices;
pub mod error;
pub mod file;
pub mod fsclass;
pub mod graph;
pub mod guard;
pub mod image;
pub mod migrate;
pub mod net;
pub mod plan;
pub mod seccomp;
pub mod share;
pub mod state_dirs;
pub mod status;

pub use error::{FileError, IslandsError, Result};
pub use plan::Plan;

use std::path::Path;

/// The built-in example `atoll demo` brings up.
pub const DEMO: &str = include_str!("demo.toml");

/// Find an island by name: "island" (if exactly one project has it) or "project/island".
pub fn resolve(state_root: &Path, what: &str) -> Result<(Plan, String)> {
    let (proj, name) = match what.split_once(['/', '.']) {
        Some((p, n)) => (Some(p), n),
        None => (None, what),
    };
    let mut hits: Vec<Plan> = plan::existing(state_root)
        .into_iter()
        .filter(|p| proj.is_none_or(|x| x == p.name) && p.island(name).is_some())
        .collect();
    match hits.len() {
        1 => Ok((hits.pop().expect("one"), name.to_string())),
        0 => Err(IslandsError::Other(format!(
            "no island {what:?} is up (see `atoll status`)"
        ))),
        _ => Err(IslandsError::Other(format!(
            "island {name:?} is in several projects ({}): say PROJECT/{name}",
            hits.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

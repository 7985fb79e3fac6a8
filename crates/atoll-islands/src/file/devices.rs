//! The `devices` and `shared` keys of an island: each entry a host device path or a CDI name,
//! resolved here (so that an unknown name or a broken CDI spec is an error at its line), and
//! the rule that a whole GPU belongs to one island unless every island using it says `shared`.

use toml::Spanned;

use super::syntax::{Cx, RawIsland};
use super::Island;
use crate::devices::grant::{self as devices, Grant, Registry};
use crate::error::FileError;

/// Resolve every island's `devices` and check GPU sharing across the file's islands.
pub(super) fn grants(
    cx: &Cx<'_>,
    raw: &[RawIsland],
    islands: &mut [Island],
) -> Result<(), FileError> {
    // The spec dirs are read only where a file names a CDI device: a file without any costs
    // no syscall here.
    let mut registry: Option<Registry> = None;
    for (i, (ri, island)) in raw.iter().zip(islands.iter_mut()).enumerate() {
        let field = |k: usize| format!("island[{i}] ({}).devices[{k}]", island.name);
        for (k, entry) in ri.devices.iter().enumerate() {
            let e = entry.get_ref();
            let grant = if devices::is_cdi_name(e) {
                let reg = match &registry {
                    Some(r) => r,
                    None => registry.insert(
                        Registry::load(Registry::dirs())
                            .map_err(|m| cx.err(entry.span(), field(k), m))?,
                    ),
                };
                reg.resolve(e)
            } else {
                devices::from_path(e)
            }
            .map_err(|m| cx.err(entry.span(), field(k), m))?;
            island.devices.push(grant);
        }
        island.shared = ri.shared.as_ref().is_some_and(|s| *s.get_ref());
    }
    check_gpus(cx, raw, islands)
}

/// Two islands on one GPU share its memory and compute (cgroups cannot split them): allowed
/// only where both say `shared = true`.
fn check_gpus(cx: &Cx<'_>, raw: &[RawIsland], islands: &[Island]) -> Result<(), FileError> {
    for (b, later) in islands.iter().enumerate() {
        for earlier in &islands[..b] {
            if earlier.shared && later.shared {
                continue;
            }
            let Some((k, g)) = first_overlap(earlier, later) else {
                continue;
            };
            let span = raw[b].devices.get(k).map(Spanned::span).unwrap_or(0..0);
            return Err(cx.err(
                span,
                format!("island[{b}] ({}).devices[{k}]", later.name),
                format!(
                    "{} uses the same GPU as island {:?}: {}; set `shared = true` on both islands to allow it",
                    g.asked,
                    earlier.name,
                    devices::GPU_NOTE
                ),
            ));
        }
    }
    Ok(())
}

/// The first grant of `later` (its index) that uses a GPU `earlier` uses.
fn first_overlap<'a>(earlier: &Island, later: &'a Island) -> Option<(usize, &'a Grant)> {
    let theirs: Vec<_> = earlier.devices.iter().flat_map(Grant::gpu_uses).collect();
    later.devices.iter().enumerate().find(|(_, g)| {
        g.gpu_uses()
            .iter()
            .any(|u| theirs.iter().any(|t| devices::overlap(t, u)))
    })
}

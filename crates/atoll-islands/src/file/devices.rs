//! The `devices` and `shared` keys of an island: each entry a host device path or a CDI name,
//! resolved here (so that an unknown name or a broken CDI spec is an error at its line), and
//! the rule that a whole GPU belongs to one island unless every island using it says `shared`.

use toml::Spanned;

use super::syntax::{Cx, RawIsland};
use super::Island;
use crate::devices::cdi;
use crate::devices::grant::{self as devices, Grant};
use crate::error::FileError;

/// Resolve every island's `devices` and check GPU sharing across the file's islands.
pub(super) fn grants(
    cx: &Cx<'_>,
    raw: &[RawIsland],
    islands: &mut [Island],
) -> Result<(), FileError> {
    // The CDI helper runs once, and only where a file names a CDI device: a file without any
    // costs no process and no syscall here.
    let cdi_entries: Vec<(usize, usize)> = raw
        .iter()
        .enumerate()
        .flat_map(|(i, ri)| {
            ri.devices
                .iter()
                .enumerate()
                .filter(|(_, e)| devices::is_cdi_name(e.get_ref()))
                .map(move |(k, _)| (i, k))
        })
        .collect();
    let field =
        |i: usize, k: usize| format!("island[{i}] ({}).devices[{k}]", raw[i].name.get_ref());
    let mut resolved = match cdi_entries.first() {
        None => Vec::new().into_iter(),
        Some(&(i, k)) => {
            let names: Vec<&str> = cdi_entries
                .iter()
                .map(|&(i, k)| raw[i].devices[k].get_ref().as_str())
                .collect();
            cdi::resolve(&names, &cdi::spec_dirs())
                .map_err(|m| cx.err(raw[i].devices[k].span(), field(i, k), m))?
                .into_iter()
        }
    };
    for (i, (ri, island)) in raw.iter().zip(islands.iter_mut()).enumerate() {
        for (k, entry) in ri.devices.iter().enumerate() {
            let e = entry.get_ref();
            let grant = if devices::is_cdi_name(e) {
                resolved
                    .next()
                    .unwrap_or_else(|| Err("the CDI helper gave no result".to_string()))
            } else {
                devices::from_path(e)
            }
            .map_err(|m| cx.err(entry.span(), field(i, k), m))?;
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

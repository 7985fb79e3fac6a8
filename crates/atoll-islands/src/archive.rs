//! Island archives: `atoll checkpoint ISLAND --to ARCHIVE` and `atoll restore ARCHIVE`, the two
//! halves of a migration with a copy in between (another host: scp the directory; the steps are
//! those of `migrate`, crate::migrate). An archive is a directory:
//!
//! ```text
//! manifest.json   format, version, CRIU and kernel that made it, project, island, addresses,
//!                 the connections to verify after restore, whether data/ is in it
//! plan.json       the project's plan at checkpoint time (links, guard rules)
//! images/         CRIU's images and atoll-descriptors.json
//! data/           the island's data directory (--with-data: when moving hosts)
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Instant;

use atoll_net::{netns, p2p};
use serde::{Deserialize, Serialize};

use crate::error::{io, net, IslandsError, Result};
use crate::migrate::{self, Clock, Phase, Report};
use crate::plan::{Plan, Remote};

pub const FORMAT: &str = "atoll-island-archive";
pub const VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// CRIU's version number (major*10000 + minor*100 + sublevel) that wrote the images.
    pub criu_version: u32,
    pub kernel: String,
    pub project: String,
    pub island: String,
    /// The island's link addresses: the restoring host must give it exactly these.
    pub addresses: Vec<IpAddr>,
    pub connections: Vec<(SocketAddr, SocketAddr)>,
    pub data: bool,
}

fn bad(archive: &Path, msg: impl std::fmt::Display) -> IslandsError {
    IslandsError::Other(format!("archive {}: {msg}", archive.display()))
}

/// Read and check an archive's manifest (no CRIU needed).
pub fn read_manifest(archive: &Path) -> Result<Manifest> {
    if !archive.is_dir() {
        return Err(bad(
            archive,
            "no such directory (an island archive is the directory `atoll checkpoint ISLAND --to` made)",
        ));
    }
    let p = archive.join(MANIFEST);
    let data = std::fs::read(&p).map_err(|e| {
        bad(
            archive,
            format!(
                "{MANIFEST}: {e} (not an island archive made by `atoll checkpoint ISLAND --to`)"
            ),
        )
    })?;
    let m: Manifest =
        serde_json::from_slice(&data).map_err(|e| bad(archive, format!("{MANIFEST}: {e}")))?;
    if m.format != FORMAT || m.version != VERSION {
        return Err(bad(
            archive,
            format!(
                "{MANIFEST}: format {:?} version {}, this atoll reads {FORMAT:?} version {VERSION}",
                m.format, m.version
            ),
        ));
    }
    if !archive.join("images/atoll-descriptors.json").is_file() {
        return Err(bad(archive, "images/atoll-descriptors.json is missing"));
    }
    Ok(m)
}

/// Images from a CRIU with another major version, or a newer one, may not load here (CRIU
/// keeps its image format compatible forwards only, within a major version).
pub fn check_criu(archive: &Path, made_by: u32, here: u32) -> Result<()> {
    if made_by / 10000 != here / 10000 || made_by > here {
        return Err(bad(
            archive,
            format!(
                "its images were written by CRIU {}, this host has CRIU {}: restore with the same \
                 or a newer CRIU of the same major version",
                dotted(made_by),
                dotted(here)
            ),
        ));
    }
    Ok(())
}

fn dotted(v: u32) -> String {
    format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}

/// Checkpoint the island into `archive` (which must not exist). The island stops; its netns
/// stays locked, so its peers' connections wait (TCP retransmits) instead of being reset.
///
/// With `via` (the other host's address on the wire), the island leaves this host once its
/// archive is written: its addresses are routed to `via`, its netns and host ends go, and the
/// border guard names the wire for it (`leave`).
pub fn checkpoint(
    state_root: &Path,
    what: &str,
    archive: &Path,
    with_data: bool,
    via: Option<Ipv4Addr>,
    criu: Option<&Path>,
    progress: &mut dyn FnMut(&Phase),
) -> Result<Report> {
    let _lock = crate::apply::lock_state(state_root)?;
    let (mut plan, name) = crate::resolve(state_root, what)?;
    let idx = plan
        .islands
        .iter()
        .position(|i| i.spec.name == name)
        .expect("resolve found it");
    if plan.islands[idx].remote.is_some() {
        // A `checkpoint --via` killed in its leave left the plan saying so, and perhaps the
        // old routes, host ends, netns or guard rules: the same command finishes the leave.
        settle_leave(&plan, idx)?;
        return Err(IslandsError::Island {
            island: name,
            msg: "lives on another host (it left this one; its leave is complete): \
                  checkpoint it there"
                .into(),
        });
    }
    // Before anything is frozen: a wire that cannot carry the island's traffic is refused now.
    let remote = via.map(crate::apply::wire_to).transpose()?;
    if archive.exists() {
        // The same command after a kill between the archive and the leave: the island was
        // checkpointed into this archive and no longer runs here; only its leave is left.
        let store = atoll_runtime::Store::new(&plan.runtime_root);
        let ours = read_manifest(archive).is_ok_and(|m| m.project == plan.name && m.island == name);
        if let (Some(r), true, false) =
            (remote, ours, store.exists(&plan.islands[idx].container_id))
        {
            leave(&mut plan, idx, r)?;
            return Err(IslandsError::Island {
                island: name,
                msg: format!(
                    "was checkpointed into {} already (the island stopped there; its leave is \
                     complete now): restore that archive on the other host",
                    archive.display()
                ),
            });
        }
        return Err(bad(archive, "exists already; give a new directory"));
    }
    let mut clock = Clock {
        phases: Vec::new(),
        at: Instant::now(),
        progress,
    };
    let images = archive.join("images");
    let made = (|| {
        let c = migrate::preflight(&plan, idx, criu, &images)?;
        let version = atoll_runtime::checkpoint::Preflight::criu_only(&c.criu).map_err(|e| {
            IslandsError::Checkpoint {
                island: name.clone(),
                source: e,
            }
        })?;
        clock.done("preflight");
        let (outage, _no_hold) = migrate::freeze_and_dump(&plan, idx, &c, &images, None)?;
        clock.done("freeze+dump");
        let island = &plan.islands[idx];
        if with_data {
            crate::backup::copy_tree(
                &island.data_dir,
                &archive.join("data"),
                crate::backup::Owners::Keep,
            )?;
        }
        std::fs::copy(plan.path(), archive.join("plan.json"))
            .map_err(io(format!("copy {}", plan.path().display())))?;
        let m = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            criu_version: version,
            kernel: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
            project: plan.name.clone(),
            island: name.clone(),
            addresses: migrate::owned(&plan, idx),
            connections: c.conns.clone(),
            data: with_data,
        };
        let p = archive.join(MANIFEST);
        std::fs::write(
            &p,
            serde_json::to_vec_pretty(&m).expect("manifests serialise"),
        )
        .map_err(io(format!("write {}", p.display())))?;
        clock.done("transfer");
        Ok::<_, IslandsError>((c, outage))
    })();
    let (c, outage) = match made {
        Ok(x) => x,
        Err(e) => {
            // Nothing of a failed checkpoint stays; the island was thawed (or never frozen).
            let _ = std::fs::remove_dir_all(archive);
            return Err(e);
        }
    };
    if let Some(r) = remote {
        leave(&mut plan, idx, r)?;
        clock.done("leave");
    }
    Ok(Report {
        project: plan.name.clone(),
        island: name,
        pid_before: c.pid,
        pid_after: 0,
        connections: migrate::fmt_conns(&c.conns),
        phases: clock.phases.clone(),
        outage_ms: outage.elapsed().as_secs_f64() * 1e3,
        held_packets: 0,
        images: images.clone(),
    })
}

/// Restore an island archive into the project that is up here and has the island with the same
/// addresses; its connections are verified, then it takes over the island's links.
pub fn restore(
    state_root: &Path,
    archive: &Path,
    criu: Option<&Path>,
    progress: &mut dyn FnMut(&Phase),
) -> Result<Report> {
    let m = read_manifest(archive)?;
    let criu_path = atoll_runtime::checkpoint::criu_path(criu);
    let here = atoll_runtime::checkpoint::Preflight::criu_only(&criu_path).map_err(|e| {
        IslandsError::Checkpoint {
            island: m.island.clone(),
            source: e,
        }
    })?;
    check_criu(archive, m.criu_version, here)?;
    let _lock = crate::apply::lock_state(state_root)?;
    let (mut plan, name) = crate::resolve(state_root, &format!("{}/{}", m.project, m.island))
        .map_err(|_| {
            bad(
                archive,
                format!(
                    "island {}/{} is not up here: bring its project up first (`atoll up FILE`); \
                     the archive's plan.json shows its links",
                    m.project, m.island
                ),
            )
        })?;
    let idx = plan
        .islands
        .iter()
        .position(|i| i.spec.name == name)
        .expect("resolve found it");
    if plan.islands.iter().any(|i| i.remote.is_some()) {
        check_pickup(archive)?;
    }
    let island = plan.islands[idx].clone();
    let store = atoll_runtime::Store::new(&plan.runtime_root);
    if store.exists(&island.container_id) {
        return Err(bad(
            archive,
            format!(
                "island {}/{} is running here: restoring would give its addresses to two \
                 islands; an archive replaces an island that was checkpointed",
                m.project, m.island
            ),
        ));
    }
    let owned = migrate::owned(&plan, idx);
    if let Some(a) = m.addresses.iter().find(|a| !owned.contains(a)) {
        return Err(bad(
            archive,
            format!(
                "the island's connections are bound to {a}, which island {}/{} does not own here \
                 (it owns {owned:?}): they would die",
                m.project, m.island
            ),
        ));
    }
    // Every refusal above changed nothing; from here on the island is restored here.
    if plan.islands[idx].remote.is_some() {
        // The island left this host and comes back (a restore on its old host, when the one it
        // went to could not take it): it lives here again, in a locked netns, from now on.
        arrive(&mut plan, idx)?;
    }
    if m.data {
        bring_data(&archive.join("data"), &island.data_dir)?;
    }
    let mut clock = Clock {
        phases: Vec::new(),
        at: Instant::now(),
        progress,
    };
    let started = Instant::now();
    let old_netns = island.netns.clone();
    let images = archive.join("images");
    migrate::prepare_guard(&plan, idx)?;
    let (pid, _open, _held) = migrate::thaw(
        &mut plan,
        idx,
        &criu_path,
        &images,
        &m.connections,
        &mut clock,
        None,
    )?;
    let outage_ms = started.elapsed().as_secs_f64() * 1e3;
    atoll_net::netns::remove(&old_netns)
        .map_err(crate::error::net("remove the island's old netns"))?;
    clock.done("cleanup");
    Ok(Report {
        project: plan.name.clone(),
        island: name,
        pid_before: 0,
        pid_after: pid,
        connections: migrate::fmt_conns(&m.connections),
        phases: clock.phases.clone(),
        outage_ms,
        held_packets: 0,
        images,
    })
}

/// The island now lives at `remote`. The plan says so first (plan, then apply: a `down` after
/// a kill here finds the routes it must remove); then its addresses are routed over the wire
/// (a replace, so they are never without a route), its host ends (and their island ends) and
/// its netns go, and the guard names the wire wherever it named the island's host ends.
fn leave(plan: &mut Plan, idx: usize, remote: Remote) -> Result<()> {
    plan.islands[idx].remote = Some(remote);
    plan.save()?;
    settle_leave(plan, idx)
}

/// The steps of `leave` after the plan says the island is remote; each is safe to run again,
/// so a leave cut short (a kill) is finished by running them all.
fn settle_leave(plan: &Plan, idx: usize) -> Result<()> {
    let Some(remote) = &plan.islands[idx].remote else {
        return Ok(());
    };
    let via: Vec<_> = plan
        .addresses(idx)
        .into_iter()
        .map(|(a, _)| (a, remote.via))
        .collect();
    p2p::route_via(&via).map_err(net("route the island's addresses to the other host"))?;
    p2p::delete_host_links(&host_ends(plan, idx)).map_err(net("delete the island's host ends"))?;
    netns::remove(&plan.islands[idx].netns).map_err(net("remove the island's netns"))?;
    crate::apply::ruleset(plan)
        .apply()
        .map_err(net("border guard"))
}

fn host_ends(plan: &Plan, idx: usize) -> Vec<String> {
    plan.ends_of(idx)
        .into_iter()
        .map(|(_, _, h)| h.to_string())
        .collect()
}

/// The island comes to live here (again): a fresh netns, locked before it has a link, its ends
/// of its links and the host routes on them in place of the routes over the wire; the guard
/// names its host ends again. What `up --arriving` makes for it, for a project that is up.
fn arrive(plan: &mut Plan, idx: usize) -> Result<()> {
    let far: Vec<_> = plan.addresses(idx).into_iter().map(|(a, _)| a).collect();
    // Host ends a leave cut short did not delete would collide with the new ones.
    p2p::delete_host_links(&host_ends(plan, idx)).map_err(net("delete old host ends"))?;
    crate::apply::arriving_netns(&plan.islands[idx])?;
    p2p::delete_routes(&far).map_err(net("delete the routes over the wire"))?;
    plan.islands[idx].remote = None;
    crate::apply::routed_end_steps(plan, &plan.islands[idx].netns, &plan.ends_of(idx))
        .apply()
        .map_err(net("the island's links"))?;
    crate::apply::ruleset(plan)
        .apply()
        .map_err(net("border guard"))?;
    plan.save()
}

/// A connection that arrives from another host is new to this host's conntrack: its first
/// segment is picked up mid-stream (and judged `ct state new` by the guard's allows) only while
/// `net.netfilter.nf_conntrack_tcp_loose` is 1, the kernel's default; with 0 it is `invalid`
/// and the guard drops it. Refused before anything is restored.
fn check_pickup(archive: &Path) -> Result<()> {
    let p = "/proc/sys/net/netfilter/nf_conntrack_tcp_loose";
    match std::fs::read_to_string(p) {
        Ok(v) if v.trim() == "0" => Err(bad(
            archive,
            format!(
                "{p} is 0 on this host: the island's connections come from another host, whose \
                 conntrack entries did not move, and their next segments would be judged invalid \
                 and dropped by the border guard (set it to 1, the kernel's default)"
            ),
        )),
        // Absent: conntrack is not loaded yet; its default is 1.
        _ => Ok(()),
    }
}

fn dir_has_entries(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut rd| rd.next().is_some())
}

/// The archive's copy of the data dir into `to`, unless `to` already holds data (the island
/// restored on the host it left, where its data stayed in place). An empty `to` (made by an
/// `up` of the project here before) is removed first: rmdir(2) takes only an empty dir, so
/// nothing of a tenant's can go, and the copy never lands in a dir someone else prepared.
fn bring_data(from: &Path, to: &Path) -> Result<()> {
    if dir_has_entries(to) {
        return Ok(());
    }
    match std::fs::remove_dir(to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("remove the empty data dir {}", to.display()))(e)),
    }
    crate::backup::copy_tree(from, to, crate::backup::Owners::Keep).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_data_fills_an_absent_or_empty_data_dir_and_never_a_full_one() {
        let base = std::env::temp_dir().join(format!("atoll-archive-data-{}", std::process::id()));
        let from = base.join("archive-data");
        std::fs::create_dir_all(from.join("sub")).unwrap();
        std::fs::write(from.join("sub/pg.conf"), b"port = 5432").unwrap();
        std::fs::create_dir(base.join("empty")).unwrap();
        for to in ["absent", "empty"].map(|n| base.join(n)) {
            bring_data(&from, &to).unwrap();
            let got = std::fs::read(to.join("sub/pg.conf")).unwrap();
            assert_eq!(got, b"port = 5432", "{}", to.display());
        }
        let full = base.join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("mine"), b"kept").unwrap();
        bring_data(&from, &full).unwrap();
        assert_eq!(std::fs::read(full.join("mine")).unwrap(), b"kept");
        assert!(
            !full.join("sub").exists(),
            "a dir with data is left as it is"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn criu_compatibility() {
        let a = Path::new("/a");
        assert!(check_criu(a, 40201, 40201).is_ok());
        assert!(check_criu(a, 40200, 40201).is_ok());
        let e = check_criu(a, 40300, 40201).unwrap_err().to_string();
        assert!(e.contains("CRIU 4.3.0") && e.contains("CRIU 4.2.1"), "{e}");
        assert!(check_criu(a, 31700, 40201).is_err());
    }
}

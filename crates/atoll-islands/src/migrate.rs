//! `atoll migrate ISLAND`: move a running island with CRIU into a fresh network namespace, pid
//! namespace and cgroup that own the same link addresses, with the same links to its peers and
//! the same border-guard rules, so that its peers' TCP connections carry on.
//!
//! What its peers send it in the outage waits on the host (firewall::hold) and is delivered at
//! the unlock: a segment lost there would be resent only after the peer's RTO (200 ms or more).
//!
//! A TCP connection is its 4-tuple: the target must own the very addresses the island's sockets
//! are bound to, and no namespace may answer the peer with an RST while the sockets are in
//! flight. So both namespaces are locked (firewall::lock) from just before the freeze until the
//! restored sockets are verified ESTABLISHED; the target gets its addresses only under the lock.
//!
//! ```text
//! preflight   CRIU, every bound address owned by the target, open files, disk   (nothing frozen)
//! freeze+dump hold the island's inbound packets on the host, lock source netns; CRIU dumps
//!             (--tcp-established, --empty-ns network)
//! transfer    images to the target (same host: in place)
//! restore     CRIU restores; in its "setup-namespaces" step atoll pins the new netns, locks
//!             it, then makes its links and addresses; CRIU then restores the sockets
//! verify      every connection of the source is ESTABLISHED in the target
//! cleanup     old host ends go (their routes with them), routes and guard rules move to the
//!             new ends, target opened (end of the outage), held packets delivered, plan saved,
//!             target unlocked, hold removed, old netns removed
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use atoll_net::{firewall, netns, p2p, sockdiag};
use atoll_runtime::checkpoint::{self, CheckpointOpts, CommonOpts, RestoreOpts};
use atoll_runtime::state::Status;
use atoll_runtime::{container, Store};
use serde::Serialize;

use crate::error::{io, net, IslandsError, Result};
use crate::plan::Plan;

#[derive(Debug, Clone, Default)]
pub struct MigrateOpts {
    /// The CRIU binary (--criu); default as `checkpoint`.
    pub criu: Option<PathBuf>,
    /// Where the images go; default: the project's state dir (a tmpfs, removed by `down`).
    pub images: Option<PathBuf>,
    /// Keep the images after a successful migration.
    pub keep_images: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub project: String,
    pub island: String,
    pub pid_before: i32,
    pub pid_after: i32,
    /// ESTABLISHED TCP connections carried over (each verified in the target).
    pub connections: Vec<String>,
    pub phases: Vec<Phase>,
    /// From the lock of the source to the unlock of the target: no packet of the island
    /// passes in between.
    pub outage_ms: f64,
    /// Packets of its peers that waited on the host during the outage (firewall::hold) and
    /// were delivered at the unlock; 0 where nothing held them (checkpoint, restore).
    pub held_packets: usize,
    pub images: PathBuf,
}

/// How the images reach the target. On one host they stay where CRIU wrote them; between
/// hosts the same steps run with the archive copied (ssh) or the pages streamed by CRIU's page
/// server (docs/migrate.md).
pub trait Transport {
    /// Make the images in `dir` available to the target; return where the target reads them.
    fn send(&mut self, dir: &Path) -> Result<PathBuf>;
}

/// Same host: nothing moves.
pub struct InPlace;

impl Transport for InPlace {
    fn send(&mut self, dir: &Path) -> Result<PathBuf> {
        Ok(dir.to_path_buf())
    }
}

/// The fresh side of a migration: where the new netns is pinned and what its host ends are
/// called while the source's still exist (the two names alternate between migrations).
#[derive(Debug, Clone)]
struct Target {
    netns: PathBuf,
    /// (link index, is end a, new host end name, old host end name)
    ends: Vec<(usize, bool, String, String)>,
}

fn alternate_host_name(name: &str) -> String {
    match name.strip_prefix("at") {
        Some(rest) => format!("am{rest}"),
        None => format!("at{}", name.strip_prefix("am").unwrap_or(name)),
    }
}

fn target_of(plan: &Plan, idx: usize) -> Target {
    let island = &plan.islands[idx];
    let name = &island.spec.name;
    let pin_name = if island.netns.file_name().and_then(|n| n.to_str()) == Some(name.as_str()) {
        format!("{name}.m")
    } else {
        name.clone()
    };
    let netns = plan.state_dir.join("netns").join(pin_name);
    let ends = plan
        .ends_of(idx)
        .into_iter()
        .map(|(n, is_a, host)| (n, is_a, alternate_host_name(host), host.to_string()))
        .collect();
    Target { netns, ends }
}

/// The target's links as plain data (p2p's steps for the island's ends only): the netns is
/// locked before this runs, so the addresses it adds answer nobody until the unlock. Host
/// routes to the island come at the switch, once the source's ends (and routes) are gone.
fn target_steps(plan: &Plan, t: &Target) -> p2p::Plan {
    crate::apply::end_steps(
        plan,
        &t.netns,
        t.ends
            .iter()
            .map(|(n, is_a, host, _)| (*n, *is_a, host.as_str())),
    )
}

/// The host routes to the island's addresses, on the target's host ends.
fn target_routes(plan: &Plan, t: &Target) -> Vec<(std::net::Ipv4Addr, String)> {
    t.ends
        .iter()
        .map(|(n, is_a, host, _)| {
            let l = &plan.links[*n];
            (if *is_a { l.addr_a } else { l.addr_b }, host.clone())
        })
        .collect()
}

/// The border guard for both generations of the island's host ends: the allows and default
/// drops of the source's ends and, the same again, of the target's. Applied before the
/// freeze, so that the switch inside the outage is one route change and no nft transaction;
/// the rules of the source's names go once the target is open. Names of links that do not
/// exist yet match nothing.
fn guard_for_both(plan: &Plan, t: &Target) -> firewall::Ruleset {
    let mut both = crate::apply::ruleset(plan);
    let mut next = plan.clone();
    rename_ends(&mut next, t);
    let new = crate::apply::ruleset(&next);
    for i in new.host_ifaces {
        if !both.host_ifaces.contains(&i) {
            both.host_ifaces.push(i);
        }
    }
    for a in new.allows {
        if !both.allows.contains(&a) {
            both.allows.push(a);
        }
    }
    both
}

fn rename_ends(plan: &mut Plan, t: &Target) {
    for (n, is_a, host, _) in &t.ends {
        if *is_a {
            plan.links[*n].host_a = host.clone();
        } else {
            plan.links[*n].host_b = host.clone();
        }
    }
}

/// Remove what a target left: its host ends (each takes its island end) and its netns pin.
/// Also what a killed `migrate` left, so it runs before every migration too.
fn remove_target(t: &Target) -> Vec<String> {
    let mut errs = Vec::new();
    let names: Vec<String> = t.ends.iter().map(|e| e.2.clone()).collect();
    if let Err(e) = p2p::delete_host_links(&names) {
        errs.push(format!("delete host links {names:?}: {e}"));
    }
    if let Err(e) = netns::remove(&t.netns) {
        errs.push(format!("remove netns {}: {e}", t.netns.display()));
    }
    errs
}

/// Refusals before anything is frozen: a bound address the target will not own (the
/// connections on it would die: the 4-tuple cannot change).
pub fn check_addresses(
    island: &str,
    owned: &[IpAddr],
    socks: &[sockdiag::TcpSocket],
) -> std::result::Result<(), String> {
    for s in socks {
        let ip = match s.local.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if ip.is_unspecified() || ip.is_loopback() || owned.contains(&ip) {
            continue;
        }
        let what = if s.state == sockdiag::TCP_ESTABLISHED {
            format!("its connection {} -> {}", s.local, s.remote)
        } else {
            format!("its socket on {}", s.local)
        };
        return Err(format!(
            "island {island}: {what} is bound to {ip}, which the target will not own (it owns \
             {}); a TCP connection is its 4-tuple, so after the move the kernel would find no \
             socket for it and the peer's connection would die; refused before freezing",
            owned
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

pub(crate) struct Clock<'a> {
    pub(crate) phases: Vec<Phase>,
    pub(crate) at: Instant,
    pub(crate) progress: &'a mut dyn FnMut(&Phase),
}

impl Clock<'_> {
    pub(crate) fn done(&mut self, name: &'static str) {
        let now = Instant::now();
        let p = Phase {
            name,
            ms: now.duration_since(self.at).as_secs_f64() * 1e3,
        };
        (self.progress)(&p);
        self.phases.push(p);
        self.at = now;
    }
}

/// Migrate the island `what` (ISLAND or PROJECT/ISLAND) on this host.
pub fn migrate(
    state_root: &Path,
    what: &str,
    opts: &MigrateOpts,
    progress: &mut dyn FnMut(&Phase),
) -> Result<Report> {
    let _lock = crate::apply::lock_state(state_root)?;
    let (plan, name) = crate::resolve(state_root, what)?;
    let idx = plan
        .islands
        .iter()
        .position(|i| i.spec.name == name)
        .expect("resolve found it");
    let mut clock = Clock {
        phases: Vec::new(),
        at: Instant::now(),
        progress,
    };
    migrate_locked(plan, idx, opts, &mut clock, &mut InPlace)
}

fn refuse(island: &str, msg: impl Into<String>) -> IslandsError {
    IslandsError::Island {
        island: island.to_string(),
        msg: msg.into(),
    }
}

/// What preflight learnt: the island's process, its connections, the CRIU to use.
pub(crate) struct Checked {
    pub(crate) pid: i32,
    pub(crate) conns: Vec<(SocketAddr, SocketAddr)>,
    pub(crate) criu: PathBuf,
}

/// Every check that needs no freeze: a running island, no escape guard, CRIU, every bound
/// address owned by the target (`owned`), no file CRIU cannot dump, room for `images`.
pub(crate) fn preflight(
    plan: &Plan,
    idx: usize,
    criu: Option<&Path>,
    images: &Path,
) -> Result<Checked> {
    let island = &plan.islands[idx];
    let name = island.spec.name.as_str();
    let store = Store::new(&plan.runtime_root);
    let saved = store
        .load(&island.container_id)
        .map_err(|source| IslandsError::Runtime {
            island: name.to_string(),
            source,
        })?;
    if saved.status() != Status::Running {
        return Err(refuse(
            name,
            format!(
                "is {}, only a running island moves",
                saved.status().as_str()
            ),
        ));
    }
    let cp = |source| IslandsError::Checkpoint {
        island: name.to_string(),
        source,
    };
    let criu = checkpoint::criu_path(criu);
    checkpoint::Preflight::criu_only(&criu).map_err(cp)?;
    let src = netns::Netns::open(&island.netns).map_err(net("open the island's netns"))?;
    let socks = sockdiag::tcp_sockets(&src).map_err(net("list the island's TCP sockets"))?;
    check_addresses(name, &owned(plan, idx), &socks).map_err(IslandsError::Other)?;
    let conns = socks
        .iter()
        .filter(|s| s.state == sockdiag::TCP_ESTABLISHED)
        .map(|s| (s.local, s.remote))
        .collect();
    if images.exists() {
        // Only ever a previous run's image directory is replaced, never a directory of
        // something else that --images happened to name.
        let previous = ["inventory.img", "atoll-descriptors.json", "dump.log"]
            .iter()
            .any(|f| images.join(f).exists());
        let empty = std::fs::read_dir(images).is_ok_and(|mut rd| rd.next().is_none());
        if !previous && !empty {
            return Err(refuse(
                name,
                format!(
                    "{} exists and holds no CRIU images: give a new or empty directory",
                    images.display()
                ),
            ));
        }
        crate::apply::unmount_below(images);
        std::fs::remove_dir_all(images).map_err(io(format!("remove {}", images.display())))?;
    }
    std::fs::create_dir_all(images).map_err(io(format!("mkdir {}", images.display())))?;
    let pids = checkpoint::container_pids(&saved).map_err(cp)?;
    checkpoint::Preflight::run(&criu, &pids, images).map_err(cp)?;
    let stale = remove_target(&target_of(plan, idx));
    if !stale.is_empty() {
        return Err(refuse(
            name,
            format!(
                "cannot clear a previous migration's leftovers: {}",
                stale.join("; ")
            ),
        ));
    }
    Ok(Checked {
        pid: saved.pid,
        conns,
        criu,
    })
}

pub(crate) fn owned(plan: &Plan, idx: usize) -> Vec<IpAddr> {
    plan.addresses(idx)
        .into_iter()
        .map(|(a, _)| IpAddr::V4(a))
        .collect()
}

fn criu_opts(criu: &Path, images: &Path) -> CommonOpts {
    CommonOpts {
        criu: Some(criu.to_path_buf()),
        image_path: images.to_path_buf(),
        tcp_established: true,
        empty_ns: Some("network".into()),
        user_ns: true,
        preflight_done: true,
        // Both netns are locked by atoll from before the freeze to after the verify.
        network_lock_skip: true,
        ..CommonOpts::default()
    }
}

/// Lock the source netns, then CRIU dumps the island (and kills it once the dump is complete).
/// The source stays locked: once CRIU has closed its sockets (silently, in repair mode) nothing
/// there may answer the peer. A failed dump thaws the island (CRIU) and unlocks it (here).
/// With `hold` (a table name), the island's inbound packets wait on the host from just before
/// the lock (firewall::hold; a failed dump lets them go to the thawed island).
pub(crate) fn freeze_and_dump(
    plan: &Plan,
    idx: usize,
    c: &Checked,
    images: &Path,
    hold: Option<&str>,
) -> Result<(Instant, Option<firewall::Hold>)> {
    let island = &plan.islands[idx];
    let cp = |source| IslandsError::Checkpoint {
        island: island.spec.name.clone(),
        source,
    };
    let src = netns::Netns::open(&island.netns).map_err(net("open the island's netns"))?;
    // CRIU's request is built while the island still serves (nothing in it depends on the
    // freeze): only CRIU's own work is inside the outage.
    let store = Store::new(&plan.runtime_root);
    let prepared = checkpoint::prepare_dump(
        &store,
        &island.container_id,
        &CheckpointOpts {
            common: criu_opts(&c.criu, images),
            ptrace_freeze: true,
            ..CheckpointOpts::default()
        },
    )
    .map_err(cp)?;
    tracing::debug!("dump prepared");
    let held = match hold {
        Some(table) => Some(
            firewall::hold(table, &owned(plan, idx))
                .map_err(net("hold the island's inbound packets on the host"))?,
        ),
        None => None,
    };
    tracing::debug!("holding the island's inbound packets");
    firewall::lock(&src).map_err(net("lock the island's netns"))?;
    let outage = Instant::now();
    tracing::debug!("source locked (start of the outage)");
    if let Err(source) = prepared.dump() {
        let _unlocked = firewall::unlock(&src);
        if let Some(Err(e)) = held.map(firewall::Hold::end) {
            tracing::warn!("ending the hold of {}: {e}", island.spec.name);
        }
        return Err(cp(source));
    }
    Ok((outage, held))
}

/// Restore from `images` into a locked target (once more after a failure: the same images,
/// the same way), verify `conns`, then switch the island over; returns the new pid, when the
/// target opened and how many packets `hold` delivered then. The source netns stays as it was
/// (locked) on failure. The caller has applied `prepare_guard`.
pub(crate) fn thaw(
    plan: &mut Plan,
    idx: usize,
    criu: &Path,
    images: &Path,
    conns: &[(SocketAddr, SocketAddr)],
    clock: &mut Clock,
    hold: Option<&mut firewall::Hold>,
) -> Result<(i32, Instant, usize)> {
    let island = plan.islands[idx].clone();
    let name = island.spec.name.clone();
    let store = Store::new(&plan.runtime_root);
    let target = target_of(plan, idx);
    // CRIU reopens the inherited log through /proc/self/fd as the restored task (files-reg.c,
    // open_path), whose uid is the island's host uid: the island's own log becomes its file.
    std::os::unix::fs::chown(&island.log, Some(island.host_base), Some(island.host_base))
        .map_err(io(format!("chown {}", island.log.display())))?;
    let restore_opts = RestoreOpts {
        common: criu_opts(criu, images),
        bundle: island.dir.clone(),
        stdio_log: Some(island.log.clone()),
        ..RestoreOpts::default()
    };
    let pid = match restore_target(&store, &island.container_id, plan, &target, &restore_opts) {
        Ok(pid) => pid,
        Err(first) => {
            tracing::warn!("restore of {name} failed, restoring again: {first}");
            remove_target(&target);
            match restore_target(&store, &island.container_id, plan, &target, &restore_opts) {
                Ok(pid) => pid,
                Err(e) => {
                    remove_target(&target);
                    return Err(refuse(
                        &name,
                        format!(
                            "restore failed twice ({first}; then {e}); the island is not \
                             running; its images are in {}",
                            images.display()
                        ),
                    ));
                }
            }
        }
    };
    clock.done("restore");

    tracing::debug!("restore returned");
    let tgt = netns::Netns::open(&target.netns).map_err(net("open the target netns"))?;
    if let Err(msg) = verify(&tgt, conns) {
        if let Err(e) = container::delete(&store, &island.container_id, true) {
            tracing::warn!("removing the unverified copy of {name}: {e}");
        }
        remove_target(&target);
        return Err(refuse(&name, msg));
    }
    clock.done("verify");

    // Switch: the island's routes name the new ends (the guard knows them already), the
    // target opens (end of the outage); then the source's ends and their rules go.
    tracing::debug!("verified");
    route_to_target(plan, &target)?;
    tracing::debug!("routed to the target");
    firewall::open(&tgt).map_err(net("open the target netns"))?;
    tracing::debug!("target open (end of the outage)");
    let open = Instant::now();
    // The island is across: a hold that fails to deliver only costs its peers a retransmit
    // (the kernel drops what it held), and `end` below tries again and reports.
    let held = match hold.map(firewall::Hold::pass) {
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            tracing::warn!("delivering the packets held for {name}: {e}");
            0
        }
        None => 0,
    };
    tracing::debug!("{held} held packet(s) delivered");
    finish_switch(plan, idx, &target)?;
    firewall::unlock(&tgt).map_err(net("unlock the target netns"))?;
    Ok((pid, open, held))
}

/// Written before the freeze and removed when the migration has ended either way: what a
/// later `migrate` needs to finish or undo one that was killed (see `recover`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct Journal {
    island: String,
    old_netns: PathBuf,
    new_netns: PathBuf,
    /// (link index, is end a, new host end, old host end)
    ends: Vec<(usize, bool, String, String)>,
    images: PathBuf,
    criu: PathBuf,
    conns: Vec<(SocketAddr, SocketAddr)>,
}

fn journal_path(plan: &Plan, island: &str) -> PathBuf {
    plan.state_dir.join(format!("migrating-{island}.json"))
}

fn write_journal(plan: &Plan, j: &Journal) -> Result<()> {
    let p = journal_path(plan, &j.island);
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(j).expect("journals serialise"))
        .map_err(io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, &p).map_err(io(format!("rename to {}", p.display())))
}

fn netns_ino(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Finish or undo a migration of island `idx` that a killed `migrate` left (its journal says
/// what was under way). Exactly one of source and copy serves afterwards:
/// - the copy runs (in the new netns): finish the switch;
/// - the original runs (in the old netns): unlock it, remove the target;
/// - neither runs: stop whatever CRIU left, then restore from the images if the dump was
///   complete (CRIU writes stats-dump last), else report that the island is down.
fn recover(plan: &mut Plan, idx: usize, clock: &mut Clock) -> Result<bool> {
    let name = plan.islands[idx].spec.name.clone();
    let jp = journal_path(plan, &name);
    let Ok(data) = std::fs::read(&jp) else {
        return Ok(false);
    };
    let j: Journal = serde_json::from_slice(&data)
        .map_err(|e| refuse(&name, format!("{}: {e}", jp.display())))?;
    let target = Target {
        netns: j.new_netns.clone(),
        ends: j.ends.clone(),
    };
    // The killed run's hold has no listener left: it drops the island's inbound packets.
    firewall::unhold(&crate::plan::hold_table_name(&plan.name))
        .map_err(net("remove the hold of the killed migration"))?;
    let store = Store::new(&plan.runtime_root);
    let id = plan.islands[idx].container_id.clone();
    let running = store
        .load(&id)
        .ok()
        .filter(|s| s.status() == Status::Running)
        .and_then(|s| netns_ino(Path::new(&format!("/proc/{}/ns/net", s.pid))));
    prepare_guard(plan, idx)?;
    if running.is_some() && running == netns_ino(&j.new_netns) {
        route_to_target(plan, &target)?;
        let tgt = netns::Netns::open(&j.new_netns).map_err(net("open the target netns"))?;
        firewall::unlock(&tgt).map_err(net("unlock the target netns"))?;
        finish_switch(plan, idx, &target)?;
        netns::remove(&j.old_netns).map_err(net("remove the source netns"))?;
    } else if running.is_some() && running == netns_ino(&j.old_netns) {
        remove_target(&target);
        let src = netns::Netns::open(&j.old_netns).map_err(net("open the island's netns"))?;
        firewall::unlock(&src).map_err(net("unlock the island's netns"))?;
        crate::apply::ruleset(plan)
            .apply()
            .map_err(net("border guard"))?;
    } else {
        // A CRIU still at work on the images, a copy restored behind atoll's back (no state
        // entry): gone first, so that the restore below is the only copy.
        crate::apply::kill_holders_of(&j.images);
        crate::apply::unmount_below(&j.images);
        if let Err(e) = container::delete(&store, &id, true) {
            tracing::debug!("recover {name}: no container to delete: {e}");
        }
        crate::apply::kill_cgroup(&plan.cgroup_of(&name));
        remove_target(&target);
        if !j.images.join("stats-dump").is_file() {
            let _ = std::fs::remove_file(&jp);
            return Err(refuse(
                &name,
                format!(
                    "a killed migration left the island stopped and its dump in {} incomplete: \
                     `atoll down {}` and up again",
                    j.images.display(),
                    plan.name
                ),
            ));
        }
        thaw(plan, idx, &j.criu, &j.images, &j.conns, clock, None)?;
        netns::remove(&j.old_netns).map_err(net("remove the source netns"))?;
    }
    std::fs::remove_file(&jp).map_err(io(format!("remove {}", jp.display())))?;
    clock.done("recover");
    Ok(true)
}

/// Before the freeze (out of the outage): the guard admits the island's traffic on the
/// target's host ends too (`guard_for_both`).
pub(crate) fn prepare_guard(plan: &Plan, idx: usize) -> Result<()> {
    guard_for_both(plan, &target_of(plan, idx))
        .apply()
        .map_err(net("border guard"))
}

/// Inside the outage: the island's host routes move to the target's ends (one netlink
/// message each; the guard already knows their names, see `guard_for_both`). Safe to run
/// again after a kill.
fn route_to_target(plan: &Plan, target: &Target) -> Result<()> {
    p2p::replace_host_routes(&target_routes(plan, target))
        .map_err(net("route the island's addresses to the new ends"))
}

/// After the unlock: the source's host ends go (each takes its island end with it), the
/// guard forgets their names, the plan records the target. Safe to run again after a kill.
fn finish_switch(plan: &mut Plan, idx: usize, target: &Target) -> Result<()> {
    let old_names: Vec<String> = target.ends.iter().map(|e| e.3.clone()).collect();
    p2p::delete_host_links(&old_names).map_err(net("delete the source's host ends"))?;
    rename_ends(plan, target);
    plan.islands[idx].netns = target.netns.clone();
    crate::apply::ruleset(plan)
        .apply()
        .map_err(net("border guard"))?;
    plan.save()
}

fn migrate_locked(
    mut plan: Plan,
    idx: usize,
    opts: &MigrateOpts,
    clock: &mut Clock,
    transport: &mut dyn Transport,
) -> Result<Report> {
    let name = plan.islands[idx].spec.name.clone();
    if recover(&mut plan, idx, clock)? {
        tracing::info!("finished a migration of {name} that a killed `migrate` left");
    }
    let hold_table = crate::plan::hold_table_name(&plan.name);
    let old_netns = plan.islands[idx].netns.clone();
    let images = opts
        .images
        .clone()
        .unwrap_or_else(|| plan.state_dir.join("images").join(&name));
    let c = preflight(&plan, idx, opts.criu.as_deref(), &images)?;
    clock.done("preflight");
    let target = target_of(&plan, idx);
    let journal = Journal {
        island: name.clone(),
        old_netns: old_netns.clone(),
        new_netns: target.netns.clone(),
        ends: target.ends.clone(),
        images: images.clone(),
        criu: c.criu.clone(),
        conns: c.conns.clone(),
    };
    prepare_guard(&plan, idx)?;
    write_journal(&plan, &journal)?;
    let (outage, mut hold) = match freeze_and_dump(&plan, idx, &c, &images, Some(&hold_table)) {
        Ok(t) => t,
        Err(e) => {
            if let Err(g) = crate::apply::ruleset(&plan).apply() {
                tracing::warn!("restoring the border guard of {name}: {g}");
            }
            let _ = std::fs::remove_file(journal_path(&plan, &name));
            return Err(e);
        }
    };
    clock.done("freeze+dump");
    let at_target = transport.send(&images)?;
    clock.done("transfer");
    // On failure the source stays locked: CRIU killed it after the dump, and an unlocked netns
    // without its sockets would reset the peers' connections that a later `atoll restore` of
    // the images could still carry on.
    let (pid, open, held) = thaw(
        &mut plan,
        idx,
        &c.criu,
        &at_target,
        &c.conns,
        clock,
        hold.as_mut(),
    )?;
    let outage_ms = open.duration_since(outage).as_secs_f64() * 1e3;
    let held = match hold {
        Some(h) => held + h.end().map_err(net("end the hold"))?,
        None => held,
    };
    netns::remove(&old_netns).map_err(net("remove the source netns"))?;
    let jp = journal_path(&plan, &name);
    std::fs::remove_file(&jp).map_err(io(format!("remove {}", jp.display())))?;
    if !opts.keep_images {
        crate::apply::unmount_below(&at_target);
        std::fs::remove_dir_all(&at_target)
            .map_err(io(format!("remove {}", at_target.display())))?;
    }
    clock.done("cleanup");
    Ok(Report {
        project: plan.name.clone(),
        island: name,
        pid_before: c.pid,
        pid_after: pid,
        connections: fmt_conns(&c.conns),
        phases: clock.phases.clone(),
        outage_ms,
        held_packets: held,
        images: at_target,
    })
}

pub(crate) fn fmt_conns(conns: &[(SocketAddr, SocketAddr)]) -> Vec<String> {
    conns.iter().map(|(l, r)| format!("{l} -> {r}")).collect()
}

/// Restore into a fresh netns that the "setup-namespaces" step pins, locks, then links.
fn restore_target(
    store: &Store,
    id: &str,
    plan: &Plan,
    target: &Target,
    opts: &RestoreOpts,
) -> std::result::Result<i32, String> {
    let pin = target.netns.clone();
    let steps = target_steps(plan, target);
    let setup: checkpoint::SetupNetns = Box::new(move |pid| {
        let t0 = Instant::now();
        let ns = netns::Netns::pin(Path::new(&format!("/proc/{pid}/ns/net")), &pin)
            .map_err(|e| format!("pin /proc/{pid}/ns/net at {}: {e}", pin.display()))?;
        let t1 = Instant::now();
        // CRIU made this netns a moment ago: it holds no table.
        firewall::lock_fresh(&ns).map_err(|e| format!("lock: {e}"))?;
        let t2 = Instant::now();
        steps.apply().map_err(|e| format!("links: {e}"))?;
        tracing::debug!(
            "target netns: pin {:?}, lock {:?}, links {:?} (inside the outage)",
            t1 - t0,
            t2 - t1,
            t2.elapsed()
        );
        Ok(())
    });
    checkpoint::restore_with(store, id, opts, Some(setup))
        .map_err(|e| atoll_runtime::error::report(&e))
}

/// rc=0 from CRIU is not enough (a netns that owned the address before the sockets came back
/// would have reset them): every connection of the source must be ESTABLISHED in the target.
fn verify(
    tgt: &netns::Netns,
    conns: &[(SocketAddr, SocketAddr)],
) -> std::result::Result<(), String> {
    let states = sockdiag::tcp_states(tgt, conns)
        .map_err(|e| format!("look up the target's sockets: {e}"))?;
    let missing: Vec<String> = conns
        .iter()
        .zip(states)
        .filter(|(_, state)| *state != Some(sockdiag::TCP_ESTABLISHED))
        .map(|((l, r), _)| format!("{l} -> {r}"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "restored, but these connections are not ESTABLISHED in the target: {}",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_of_both_generations_admits_the_island_on_old_and_new_ends() {
        let f = crate::file::parse(
            Path::new("p.toml"),
            "name = \"p\"\n[[island]]\nname = \"db\"\ncommand = [\"/bin/sh\"]\n\
             [[island]]\nname = \"app\"\ncommand = [\"/bin/sh\"]\n\
             [[link]]\nbetween = [\"db\", \"app\"]\n\
             [[allow]]\nfrom = \"app\"\nto = \"db\"\nproto = \"tcp\"\nports = [5432]\n",
        )
        .unwrap();
        let plan = crate::plan::build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap();
        let db = plan
            .islands
            .iter()
            .position(|i| i.spec.name == "db")
            .unwrap();
        let t = target_of(&plan, db);
        let both = guard_for_both(&plan, &t);
        let (new, old) = (&t.ends[0].2, &t.ends[0].3);
        assert!(both.host_ifaces.contains(new) && both.host_ifaces.contains(old));
        let to: Vec<&str> = both.allows.iter().map(|a| a.to_if.as_str()).collect();
        assert!(
            to.contains(&new.as_str()) && to.contains(&old.as_str()),
            "{to:?}"
        );
        // The other island's end keeps its one name; nothing else is doubled.
        assert_eq!(both.allows.len(), 2);
        assert_eq!(both.host_ifaces.len(), 3);
        // Once switched, only the new names are left.
        let mut after = plan.clone();
        rename_ends(&mut after, &t);
        let done = crate::apply::ruleset(&after);
        assert!(!done.host_ifaces.contains(old) && done.host_ifaces.contains(new));
    }

    #[test]
    fn host_names_alternate() {
        assert_eq!(alternate_host_name("at0-1a"), "am0-1a");
        assert_eq!(alternate_host_name("am0-1a"), "at0-1a");
    }

    #[test]
    fn an_address_the_target_does_not_own_is_refused() {
        let owned = [IpAddr::from([10, 77, 0, 1])];
        let sock = |l: &str, r: &str, state| sockdiag::TcpSocket {
            local: l.parse().unwrap(),
            remote: r.parse().unwrap(),
            state,
            uid: 0,
            inode: 1,
        };
        let fine = [
            sock("0.0.0.0:7000", "0.0.0.0:0", 10),
            sock("[::]:7001", "[::]:0", 10),
            sock("127.0.0.1:9", "0.0.0.0:0", 10),
            sock("10.77.0.1:7000", "10.77.0.2:4000", 1),
            sock("[::ffff:10.77.0.1]:7000", "[::ffff:10.77.0.2]:4000", 1),
        ];
        assert!(check_addresses("srv", &owned, &fine).is_ok());
        let e = check_addresses(
            "srv",
            &owned,
            &[sock("10.99.0.1:7000", "10.77.0.2:4000", 1)],
        )
        .unwrap_err();
        assert!(
            e.contains("10.99.0.1:7000 -> 10.77.0.2:4000 is bound to 10.99.0.1")
                && e.contains("owns 10.77.0.1")
                && e.contains("would die"),
            "{e}"
        );
    }
}

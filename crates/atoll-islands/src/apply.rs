//! `up` and `down`: walk a plan forwards (create) or backwards (remove). Teardown never stops at
//! the first error and removes whatever exists, so it also cleans after a killed `up`.

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use atoll_net::{firewall, netns, p2p};
use atoll_runtime::error::report;
use atoll_runtime::{container, Store};

use crate::bundle;
use crate::error::{io, net, IslandsError, Result};
use crate::file::{File, Proto};
use crate::plan::{self, Plan};

pub struct UpOpts {
    pub state_root: PathBuf,
    pub runtime_root: PathBuf,
    /// The atoll binary, run once per island for `create` (its stdio becomes the island's log).
    pub atoll: PathBuf,
    /// How many islands are created at once.
    pub parallel: usize,
    /// Build the network and the firewall but start no island (benchmarks, `--net-only`).
    pub net_only: bool,
    /// `--arriving ISLAND --via ADDR`: this host is the target of a migration between hosts.
    pub arriving: Option<Arriving>,
}

/// The one island of the project that this host will run, once `atoll restore` brings it from
/// another host; every other island of the file lives on the host at `via` (the other end of
/// the wire). The island's netns is made, locked (nothing answers its peers before its
/// sockets are back), and linked; no process runs in it until the restore.
#[derive(Debug, Clone)]
pub struct Arriving {
    pub island: String,
    pub via: std::net::Ipv4Addr,
}

/// The wire to the host at `via`: the interface the host's route to it leaves by. It must be a
/// direct route (the other host is the next hop, no gateway in between) and the interface must
/// forward IPv4 (packets to the islands come in by it).
pub(crate) fn wire_to(via: std::net::Ipv4Addr) -> Result<crate::plan::Remote> {
    let mut ins = atoll_net::inspect::Inspector::open(None).map_err(net("inspect the host"))?;
    let route = ins
        .route_to(via)
        .map_err(net(format!("ip route get {via}")))?;
    let Some(r) = route.route().filter(|r| r.kind == "unicast") else {
        let why = match &route {
            atoll_net::inspect::RouteAnswer::Unreachable(e) => atoll_net::inspect::errno_name(*e),
            atoll_net::inspect::RouteAnswer::Route(r) => format!("a {} route", r.kind),
        };
        return Err(IslandsError::Other(format!(
            "--via {via}: this host has no route to it ({why}); the other host must be \
             reachable over a wire of this one"
        )));
    };
    if let Some(g) = r.gateway {
        return Err(IslandsError::Other(format!(
            "--via {via}: it is reached through the gateway {g}, not directly; name the other \
             host's address on a wire between the two hosts"
        )));
    }
    let links = ins.links().map_err(net("list the host's links"))?;
    let dev = r
        .oif
        .and_then(|i| links.iter().find(|l| l.index == i))
        .map(|l| l.name.clone())
        .ok_or_else(|| IslandsError::Other(format!("--via {via}: its route names no device")))?;
    let fwd = ins
        .ipv4_conf(&dev, "forwarding")
        .map_err(net(format!("read net.ipv4.conf.{dev}.forwarding")))?;
    if fwd.trim() != "1" {
        return Err(IslandsError::Other(format!(
            "--via {via}: the wire {dev} does not forward IPv4 (net.ipv4.conf.{dev}.forwarding = \
             {}), so the islands' packets from the other host would stop at it: \
             `sysctl -w net.ipv4.conf.{dev}.forwarding=1`",
            fwd.trim()
        )));
    }
    Ok(crate::plan::Remote { via, dev })
}

/// Place the project for `--arriving`: every island but the arriving one lives at `via`.
fn place_arriving(plan: &mut Plan, a: &Arriving) -> Result<()> {
    if plan.island(&a.island).is_none() {
        return Err(IslandsError::Other(format!(
            "--arriving {:?}: project {:?} has no such island (it has {})",
            a.island,
            plan.name,
            plan.islands
                .iter()
                .map(|i| i.spec.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let remote = wire_to(a.via)?;
    for i in plan.islands.iter_mut().filter(|i| i.spec.name != a.island) {
        i.remote = Some(remote.clone());
    }
    Ok(())
}

/// statfs(2) f_type of a tmpfs (linux/magic.h).
const TMPFS_MAGIC: i64 = 0x0102_1994;

// f_type's width differs between architectures: the cast is a no-op only on some.
#[allow(clippy::unnecessary_cast)]
fn is_tmpfs(st: &rustix::fs::StatFs) -> bool {
    st.f_type as i64 == TMPFS_MAGIC
}

/// Serialises `up`s against each other while they pick slots and uid ranges.
pub(crate) struct StateLock(#[allow(dead_code)] std::fs::File);

/// The lock file sits beside the state root (`/run/atoll/islands.lock`), not in it, so that the
/// root's tmpfs can be mounted and unmounted under the lock. The last `down` unlinks it while
/// holding it (`release_state_root`); whoever was waiting then holds a lock on a file that is
/// no longer at the path, sees that the inodes differ, and opens the path anew.
/// Each island's init resolves its rootfs (`/run/atoll/islands/…/rootfs`) as the island's own
/// host uid, so every directory above the state root must let others search it. /run/atoll is
/// also the runtime's --root, which the runtime makes 0711; one made 0700 (by an older atoll, or
/// by hand) would make every island fail with EACCES on its rootfs bind, so it gets o+x back.
fn searchable(dir: &Path) -> Result<()> {
    let st = std::fs::metadata(dir).map_err(io(format!("stat {}", dir.display())))?;
    let mode = st.permissions().mode() & 0o7777;
    if mode & 0o001 == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))
            .map_err(io(format!("chmod o+x {}", dir.display())))?;
    }
    Ok(())
}

pub(crate) fn lock_state(root: &Path) -> Result<StateLock> {
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("mkdir {}", parent.display())))?;
        searchable(parent)?;
    }
    let p = root.with_extension("lock");
    loop {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io(format!("open {}", p.display())))?;
        rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(format!("flock {}", p.display()))(e.into()))?;
        let held = f.metadata().map_err(io(format!("fstat {}", p.display())))?;
        match std::fs::metadata(&p) {
            Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => {
                return Ok(StateLock(f))
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(format!("stat {}", p.display()))(e)),
        }
    }
}

/// Create everything the file describes; on failure remove what was made and return the error.
pub fn up(file: &File, opts: &UpOpts) -> Result<Plan> {
    // Images first, outside the state lock (a pull may take a while): the plan records what
    // each image gave (its layers, and the defaults it set in the island).
    let pulled;
    let file = if file.islands.iter().any(|i| i.image.is_some()) && !opts.net_only {
        pulled = crate::image::pull_all(file, &opts.atoll)?;
        &pulled
    } else {
        file
    };
    let plan = {
        let _lock = lock_state(&opts.state_root)?;
        ensure_tmpfs(&opts.state_root)?;
        let others = plan::existing(&opts.state_root);
        if others.iter().any(|p| p.name == file.name) || opts.state_root.join(&file.name).exists() {
            return Err(IslandsError::Other(format!(
                "project {:?} is already up (state in {}); run `atoll down {}` first",
                file.name,
                opts.state_root.join(&file.name).display(),
                file.name
            )));
        }
        // Shares and passthrough ids against the projects that are up (the plan itself is
        // built from the file alone and what `others` hold).
        crate::share::check_against(file, &others)?;
        crate::devices::check_gpus_against(file, &others)?;
        let mut plan = plan::build(file, &opts.state_root, &opts.runtime_root, &others)?;
        if let Some(a) = &opts.arriving {
            place_arriving(&mut plan, a)?;
        }
        // The plan is on disk before the first resource exists: `down` can always find it.
        plan.save()?;
        plan
    };
    match apply(&plan, opts) {
        Ok(()) => Ok(plan),
        Err(e) => {
            if let Err(t) = teardown(&plan) {
                tracing::warn!("cleaning up after a failed up: {t}");
            }
            Err(e)
        }
    }
}

/// Order: islands are created (stopped before their program, as `create` leaves them), their
/// network namespaces pinned, links and the border guard made, then the islands started: no
/// island program runs before its links and its firewall exist.
///
/// Each island's netns is made by its own user namespace (at clone), so capabilities it holds
/// there, such as CAP_NET_BIND_SERVICE, count for its network; CAP_NET_ADMIN is never in its
/// bounding set, and the host, an ancestor user namespace, configures it from outside.
fn apply(plan: &Plan, opts: &UpOpts) -> Result<()> {
    let store = Store::new(&plan.runtime_root);
    let arriving = opts.arriving.as_ref().map(|a| a.island.as_str());
    let here: Vec<&plan::IslandPlan> = plan.islands.iter().filter(|i| i.remote.is_none()).collect();
    // The islands whose program `up` runs: all of this host's but an arriving one.
    let run: Vec<&plan::IslandPlan> = here
        .iter()
        .copied()
        .filter(|i| Some(i.spec.name.as_str()) != arriving)
        .collect();
    if opts.net_only {
        create_netns_parallel(&here)?;
    } else {
        tracing::debug!("planned");
        for i in &here {
            bundle::prepare(plan, i)?;
        }
        tracing::debug!("bundles written");
        // Image islands' roots are mounted by a thread while the guard starts (its supervisor
        // is a process we wait for): on ext4 each overlayfs mount costs about 0.4 ms.
        let (guard, roots) = std::thread::scope(|s| {
            let roots = s.spawn(|| -> Result<()> {
                for i in &here {
                    bundle::mount_image_root(plan, i)?;
                }
                Ok(())
            });
            let guard = if crate::guard::needed(plan) {
                crate::guard::start(plan, &opts.atoll).inspect(|_| {
                    tracing::debug!("guard listening");
                })
            } else {
                Ok(())
            };
            (guard, roots.join())
        });
        roots.unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        guard?;
        tracing::debug!("image roots mounted");
        create_all(plan, &run, opts)?;
        tracing::debug!("islands created");
        for i in &here {
            if Some(i.spec.name.as_str()) == arriving {
                // Its log, which the restored tasks' stdio reopen by path (CRIU), waits for it.
                log_file(i)?;
                arriving_netns(i)?;
                continue;
            }
            let saved = store
                .load(&i.container_id)
                .map_err(|source| IslandsError::Runtime {
                    island: i.spec.name.clone(),
                    source,
                })?;
            let nsfile = PathBuf::from(format!("/proc/{}/ns/net", saved.pid));
            netns::Netns::pin(&nsfile, &i.netns)
                .map_err(net(format!("island {}: pin its netns", i.spec.name)))?;
        }
    }
    p2p::plan(&link_specs(plan)).apply().map_err(net("links"))?;
    half_links(plan)
        .apply()
        .map_err(net("links to islands on other hosts"))?;
    p2p::route_via(&remote_routes(plan)).map_err(net("routes to islands on other hosts"))?;
    ruleset(plan).apply().map_err(net("border guard"))?;
    if opts.net_only {
        return Ok(());
    }
    for i in &run {
        container::start(&store, &i.container_id).map_err(|source| IslandsError::Runtime {
            island: i.spec.name.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Network namespaces for `--net-only`, made by a few threads at once: the kernel's per-netns
/// setup runs in parallel (each thread unshares on its own).
fn create_netns_parallel(islands: &[&plan::IslandPlan]) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let chunk = islands.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = islands
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> Result<()> {
                    for i in part {
                        netns::Netns::create(&i.netns)
                            .map_err(net(format!("island {}: netns", i.spec.name)))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("netns worker does not panic"))
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(())
}

/// The links whose two islands both live on this host (see `half_links` for the others).
pub fn link_specs(plan: &Plan) -> Vec<p2p::LinkSpec> {
    let here = |i: usize| plan.islands[i].remote.is_none();
    plan.links
        .iter()
        .enumerate()
        .filter(|(_, l)| here(l.a) && here(l.b))
        .map(|(n, l)| {
            let end = |island: usize, ifname: &str, host_ifname: &str, addr, side: u8| p2p::End {
                netns: plan.islands[island].netns.clone(),
                ifname: ifname.to_string(),
                host_ifname: host_ifname.to_string(),
                addr,
                mac: p2p::mac_for(plan.group, n as u32, side),
                host_mac: p2p::mac_for(plan.group, n as u32, side + 2),
            };
            p2p::LinkSpec {
                a: end(l.a, &l.if_a, &l.host_a, l.addr_a, 0),
                b: end(l.b, &l.if_b, &l.host_b, l.addr_b, 1),
                group: plan.group,
            }
        })
        .collect()
}

/// One island's ends of the links named in `ends` (link index, whether the island is end a,
/// the host end's name) as p2p steps: the veth pairs into `netns`, their addresses and static
/// neighbours, both sides up. No host route: the caller adds those (at once for `up`, at the
/// switch for a migration's target).
pub(crate) fn end_steps<'a>(
    plan: &Plan,
    netns: &Path,
    ends: impl Iterator<Item = (usize, bool, &'a str)>,
) -> p2p::Plan {
    use p2p::{Op, Step, Target as At};
    let ns = At::Netns(netns.to_path_buf());
    let step = |target: &At, op| Step {
        target: target.clone(),
        op,
    };
    let mut steps = vec![step(
        &ns,
        Op::DisableIpv6 {
            ifname: "default".into(),
        },
    )];
    let mut inside = vec![step(
        &ns,
        Op::LinkUp {
            ifname: "lo".into(),
            forwarding: false,
        },
    )];
    for (n, is_a, host) in ends {
        let l = &plan.links[n];
        let side = u8::from(!is_a);
        let (ifname, addr, peer) = if is_a {
            (&l.if_a, l.addr_a, l.addr_b)
        } else {
            (&l.if_b, l.addr_b, l.addr_a)
        };
        let mac = p2p::mac_for(plan.group, n as u32, side);
        let host_mac = p2p::mac_for(plan.group, n as u32, side + 2);
        steps.push(step(
            &At::Host,
            Op::CreateVeth {
                ifname: host.to_string(),
                mac: host_mac,
                group: plan.group,
                peer_ifname: ifname.clone(),
                peer_mac: mac,
                peer_netns: netns.to_path_buf(),
            },
        ));
        steps.push(step(
            &At::Host,
            Op::DisableIpv6 {
                ifname: host.to_string(),
            },
        ));
        steps.push(step(
            &At::Host,
            Op::LinkUp {
                ifname: host.to_string(),
                forwarding: true,
            },
        ));
        steps.push(step(
            &At::Host,
            Op::Neighbour {
                ifname: host.to_string(),
                addr,
                mac,
            },
        ));
        inside.push(step(
            &ns,
            Op::PeerAddress {
                ifname: ifname.clone(),
                local: addr,
                peer,
            },
        ));
        inside.push(step(
            &ns,
            Op::LinkUp {
                ifname: ifname.clone(),
                forwarding: false,
            },
        ));
        inside.push(step(
            &ns,
            Op::Neighbour {
                ifname: ifname.clone(),
                addr: peer,
                mac: host_mac,
            },
        ));
    }
    steps.extend(inside);
    p2p::Plan { steps }
}

/// `end_steps`, then the host route to the island's address on each of those host ends: the
/// island's side of its links, complete, for an island that is not migrating.
pub(crate) fn routed_end_steps(
    plan: &Plan,
    netns: &Path,
    ends: &[(usize, bool, &str)],
) -> p2p::Plan {
    let mut p = end_steps(plan, netns, ends.iter().copied());
    for &(n, is_a, host) in ends {
        let l = &plan.links[n];
        p.steps.push(p2p::Step {
            target: p2p::Target::Host,
            op: p2p::Op::LinkRoute {
                ifname: host.to_string(),
                dst: if is_a { l.addr_a } else { l.addr_b },
            },
        });
    }
    p
}

/// The links with one island here and the other on another host: this island's side of them
/// (`routed_end_steps`). The far island's address goes over the wire (`remote_routes`).
fn half_links(plan: &Plan) -> p2p::Plan {
    let here = |i: usize| plan.islands[i].remote.is_none();
    let mut steps = Vec::new();
    for (idx, island) in plan.islands.iter().enumerate().filter(|(i, _)| here(*i)) {
        let ends: Vec<(usize, bool, &str)> = plan
            .ends_of(idx)
            .into_iter()
            .filter(|&(n, is_a, _)| {
                let l = &plan.links[n];
                !here(if is_a { l.b } else { l.a })
            })
            .collect();
        steps.extend(routed_end_steps(plan, &island.netns, &ends).steps);
    }
    p2p::Plan { steps }
}

/// The netns of an island that will be restored here, pinned at its plan path and locked
/// before it has a link: its addresses answer no peer until the restore (no RST). A pin left
/// at the path (a killed earlier try) is replaced.
pub(crate) fn arriving_netns(island: &plan::IslandPlan) -> Result<()> {
    let _none_is_fine = netns::remove(&island.netns);
    let ns = netns::Netns::create(&island.netns)
        .map_err(net(format!("island {}: netns", island.spec.name)))?;
    firewall::lock_fresh(&ns).map_err(net(format!("island {}: lock its netns", island.spec.name)))
}

/// The addresses of the project's islands that live on other hosts, each with its gateway.
pub(crate) fn remote_routes(plan: &Plan) -> Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
    plan.islands
        .iter()
        .enumerate()
        .filter_map(|(i, island)| Some((i, island.remote.as_ref()?.via)))
        .flat_map(|(i, via)| plan.addresses(i).into_iter().map(move |(a, _)| (a, via)))
        .collect()
}

pub fn ruleset(plan: &Plan) -> firewall::Ruleset {
    let allows = plan
        .allows
        .iter()
        .map(|a| {
            let l = &plan.links[a.link];
            // Which end of the link each island sits on.
            let (saddr, daddr) = if l.a == a.from {
                (l.addr_a, l.addr_b)
            } else {
                (l.addr_b, l.addr_a)
            };
            firewall::Allow {
                id: a.id.clone(),
                from_if: plan.judged_if(a.link, a.from).to_string(),
                to_if: plan.judged_if(a.link, a.to).to_string(),
                saddr,
                daddr,
                proto: match a.proto {
                    Proto::Tcp => firewall::Proto::Tcp,
                    Proto::Udp => firewall::Proto::Udp,
                    Proto::Icmp => firewall::Proto::Icmp,
                },
                ports: a.ports.clone(),
            }
        })
        .collect();
    firewall::Ruleset {
        table: plan.table.clone(),
        host_ifaces: plan.host_ifaces(),
        allows,
        log_drops: plan.log_drops,
    }
}

/// `atoll create` for every island, `parallel` at a time. Each create's stdio is the island's
/// log file (the init inherits it, as with runc); atoll's own errors go to runtime.log.
fn create_all(plan: &Plan, islands: &[&plan::IslandPlan], opts: &UpOpts) -> Result<()> {
    let mut pending = islands.iter().copied();
    let mut running: Vec<(&crate::plan::IslandPlan, std::process::Child)> = Vec::new();
    let mut failed = Vec::new();
    loop {
        while running.len() < opts.parallel.max(1) {
            let Some(i) = pending.next() else { break };
            std::fs::create_dir_all(&i.dir).map_err(io(format!("mkdir {}", i.dir.display())))?;
            let log = log_file(i)?;
            let child = Command::new(&opts.atoll)
                .arg("--root")
                .arg(&plan.runtime_root)
                .arg("--log")
                .arg(i.dir.join("runtime.log"))
                .args(["create", "--bundle"])
                .arg(&i.dir)
                .arg(&i.container_id)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(io("dup log fd"))?)
                .stderr(log)
                .spawn()
                .map_err(io(format!("spawn {} create", opts.atoll.display())))?;
            running.push((i, child));
        }
        if running.is_empty() {
            break;
        }
        let (i, mut child) = running.remove(0);
        let status = child.wait().map_err(io("wait for atoll create"))?;
        if !status.success() {
            let why = std::fs::read_to_string(i.dir.join("runtime.log")).unwrap_or_default();
            let why = why.lines().last().unwrap_or("no error logged").to_string();
            failed.push(format!("{}: {why}", i.spec.name));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(IslandsError::Other(format!(
            "creating islands failed:\n  {}",
            failed.join("\n  ")
        )))
    }
}

/// The island's log, its stdout and stderr. It belongs to the island's user as the host sees it,
/// mode 0600: a service that reopens `/dev/stdout` (nginx's `access_log /dev/stdout`) passes
/// open(2)'s check on the file's own owner, and no other island's uid, nor any host user but
/// root, can open it. The island never sees the log's directory, only its open fd.
fn log_file(island: &crate::plan::IslandPlan) -> Result<std::fs::File> {
    let path = &island.log;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("mkdir {}", dir.display())))?;
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("open {}", path.display())))?;
    let (uid, gid) = crate::share::host_ids(island);
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
        .map_err(io(format!("chown {} to {uid}:{gid}", path.display())))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("chmod 0600 {}", path.display())))?;
    Ok(f)
}

/// Islands' state (bundles, rootfs skeletons, netns pins, plans) is small, rewritten on every
/// `up` and meaningless after a reboot: it belongs on a tmpfs, as /run is on most hosts. Where
/// the state root is on a disk filesystem (this project's CI machine has an ext4 /run), one
/// tmpfs is mounted there, once: ext4's inode allocator made `up` 3x slower (measured with
/// perf: find_inode_bit/recently_deleted). It stays mounted, like /run.
fn ensure_tmpfs(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root).map_err(io(format!("mkdir {}", root.display())))?;
    let st =
        rustix::fs::statfs(root).map_err(|e| io(format!("statfs {}", root.display()))(e.into()))?;
    if is_tmpfs(&st) {
        return Ok(());
    }
    // Never hide projects that are up: only an empty state root is mounted over.
    let busy = std::fs::read_dir(root)
        .map_err(io(format!("read {}", root.display())))?
        .flatten()
        .next()
        .is_some();
    if busy {
        return Ok(());
    }
    rustix::mount::mount(
        "tmpfs",
        root,
        "tmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        c"mode=0755",
    )
    .map_err(|e| io(format!("mount a tmpfs on {}", root.display()))(e.into()))
}

/// Remove everything of the project named `name` under `state_root`: by its plan if there is one
/// (it knows the link group), and by naming convention for whatever a crash left outside it.
/// Returns whether there was anything of the project on disk.
pub fn down(state_root: &Path, runtime_root: &Path, name: &str) -> Result<bool> {
    let dir = state_root.join(name);
    match Plan::load(&dir) {
        Ok(plan) => teardown(&plan).map(|_| true),
        Err(_) => {
            let was_up = dir.exists();
            // No plan to say where its cgroups went: where this host's node file puts them.
            let cgroups = atoll_runtime::node::IslandsNode::load()
                .map(|n| n.cgroup_parent)
                .unwrap_or_else(|_| atoll_runtime::node::DEFAULT_ISLANDS_CGROUP.into());
            remove_project(&dir, runtime_root, name, None, &cgroups).map(|_| was_up)
        }
    }
}

/// Remove everything `plan` made. Keeps going past errors and reports them all.
pub fn teardown(plan: &Plan) -> Result<()> {
    crate::image::stop_gracefully(plan);
    let mut removed = remove_project(
        &plan.state_dir,
        &plan.runtime_root,
        &plan.name,
        Some(plan.group),
        &plan.cgroup_parent,
    );
    // Routes over the wire to islands on other hosts: no link of the project carries them.
    // (`checkpoint --via` records the island as remote before it routes it away, so a killed
    // one leaves no route the plan does not know; one not made yet is ESRCH, skipped.)
    let far: Vec<_> = remote_routes(plan).into_iter().map(|(a, _)| a).collect();
    if let Err(e) = p2p::delete_routes(&far) {
        let e = format!(
            "delete the routes to islands on other hosts: {}",
            report(&e)
        );
        removed = match removed {
            Err(IslandsError::Teardown(mut errs)) => {
                errs.push(e);
                Err(IslandsError::Teardown(errs))
            }
            Ok(()) => Err(IslandsError::Teardown(vec![e])),
            other => other,
        };
    }
    let nodes: Vec<String> = plan
        .islands
        .iter()
        .filter_map(|i| crate::devices::remove_nodes(i).err())
        .collect();
    match removed {
        Err(IslandsError::Teardown(mut errs)) => {
            errs.extend(nodes);
            Err(IslandsError::Teardown(errs))
        }
        Ok(()) if !nodes.is_empty() => Err(IslandsError::Teardown(nodes)),
        other => other,
    }
}

/// The one teardown, in reverse order of `up`: stray processes of a killed `up`, the islands
/// (containers `<name>.*`), the guard, the links (by group, when known: deleting the island
/// netns removes their ends anyway), the pinned netns, the nft table, the project's cgroup
/// parents, the state dir, and the state root's tmpfs once no project is left.
fn remove_project(
    dir: &Path,
    runtime_root: &Path,
    name: &str,
    group: Option<u32>,
    cgroups: &str,
) -> Result<()> {
    let mut errs = Vec::new();
    kill_stragglers(dir);
    let store = Store::new(runtime_root);
    let prefix = format!("{name}.");
    for id in store.list().unwrap_or_default() {
        if id.starts_with(&prefix) {
            if let Err(e) = container::delete(&store, &id, true) {
                errs.push(format!("delete container {id}: {}", report(&e)));
            }
        }
    }
    if let Err(e) = crate::guard::stop(dir) {
        errs.push(format!("stop the guard: {}", report(&e)));
    }
    if let Some(g) = group {
        if let Err(e) = p2p::delete_group(g) {
            errs.push(format!("delete links (group {g:#x}): {}", report(&e)));
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir.join("netns")) {
        for e in rd.flatten() {
            if let Err(e) = netns::remove(&e.path()) {
                errs.push(format!("remove netns: {}", report(&e)));
            }
        }
    }
    let table = plan::table_name(name);
    if let Err(e) = firewall::delete(&table) {
        errs.push(format!("nft delete table inet {table}: {}", report(&e)));
    }
    // A killed migration's hold: it drops what is sent to the island's addresses.
    let hold = plan::hold_table_name(name);
    if let Err(e) = firewall::unhold(&hold) {
        errs.push(format!("delete the hold tables {hold}: {}", report(&e)));
    }
    let project_cgroup = Path::new(cgroups).join(name);
    kill_orphan_cgroups(&project_cgroup, &mut errs);
    remove_cgroup_parents(&project_cgroup, &mut errs);
    // Image roots and their layer mounts go first: removing the state dir with a layer still
    // mounted under it would delete the shared store's files through it.
    let mut mounted = false;
    if let Ok(rd) = std::fs::read_dir(dir.join("islands")) {
        for e in rd.flatten() {
            mounted |= !crate::image::unmount_root(&e.path(), &mut errs);
        }
    }
    if dir.exists() && !mounted {
        unmount_below(dir);
        if let Err(e) = std::fs::remove_dir_all(dir) {
            errs.push(format!("remove {}: {e}", dir.display()));
        }
    }
    if let Some(root) = dir.parent() {
        release_state_root(root);
    }
    // The runtime drops its seccomp cache with its last container, except while the state root
    // lies in its root (the defaults: /run/atoll/islands in /run/atoll) and so looks like one
    // more container; now that the state root may be gone, look again.
    store.drop_cache_if_unused();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(IslandsError::Teardown(errs))
    }
}

/// A killed `up` leaves its children running: `atoll create` of islands (which would make
/// containers after teardown looked) and the guard. Every process whose command line names the
/// project's state dir is one of ours: kill them and wait until they are gone.
fn kill_stragglers(state_dir: &Path) {
    let needle = format!("{}/", state_dir.display());
    let me = std::process::id().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let mut found = false;
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| *n != me)
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&needle)
                || holds_file_in(&e.path(), state_dir)
            {
                found = true;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                // Reap it if it is our own child (teardown after a failed `up`).
                let _ = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(pid),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
            }
        }
        if !found || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether process `proc_dir` (/proc/PID) has a file open under `dir`: a CRIU left working on a
/// killed `migrate`'s images there (its command line, `criu swrk N`, names nothing).
fn holds_file_in(proc_dir: &Path, dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(proc_dir.join("fd")) else {
        return false;
    };
    rd.flatten()
        .filter_map(|f| std::fs::read_link(f.path()).ok())
        .any(|t| t.starts_with(dir))
}

/// Tasks left in the project's cgroups with no container to own them (a restore that a killed
/// `migrate` left half-done): cgroup.kill (cgroup-v2.rst) the island dirs, wait for them to
/// empty, and remove them.
fn kill_orphan_cgroups(project: &Path, errs: &mut Vec<String>) {
    // Island dirs in any hierarchy: a restore killed midway may have made some hierarchies'
    // dirs and not others (v1 ones on a hybrid host), or had the v2 one removed already.
    let mut islands = std::collections::BTreeSet::new();
    for root in cgroup_roots() {
        let Ok(rd) = std::fs::read_dir(root.join(project)) else {
            continue;
        };
        islands.extend(
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok()),
        );
    }
    for island in islands {
        kill_cgroup(&project.join(&island));
        // The same island's dir in every hierarchy: no container state names it, so no
        // `delete` will remove it.
        for root in cgroup_roots() {
            let dir = root.join(project).join(&island);
            if dir.is_dir() {
                if let Err(e) = rmdir_tree(&dir) {
                    errs.push(e);
                }
            }
        }
    }
}

/// rmdir `dir` and any cgroup below it, deepest first. A v1 hierarchy may still count a task
/// that cgroup.kill (v2) has just killed for a moment: EBUSY is retried for up to a second.
fn rmdir_tree(dir: &Path) -> std::result::Result<(), String> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path())?;
            }
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error())
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(format!("rmdir {}: {e}", dir.display())),
        }
    }
}

/// /sys/fs/cgroup and each hierarchy mounted below it (v1 and hybrid hosts).
fn cgroup_roots() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    roots
}

/// Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup, or on a hybrid host its
/// `unified` directory.
fn cgroup2_root() -> PathBuf {
    let all = Path::new("/sys/fs/cgroup");
    if all.join("cgroup.controllers").exists() {
        all.to_path_buf()
    } else {
        all.join("unified")
    }
}

/// Detach every mount below `dir`, deepest first: a CRIU killed during a restore leaves its
/// cgroup yard (`.criu.cgyard.*`, in its work directory) mounted in the host's mount namespace.
pub(crate) fn unmount_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    // mountinfo(5): the 5th field is the mount point.
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _gone_is_fine = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Kill every process (but this one) that has a file open under `dir`.
pub(crate) fn kill_holders_of(dir: &Path) {
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| *n != me)
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if holds_file_in(&e.path(), dir) {
            let _gone_is_fine = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Kill the tasks of an island's cgroup (`cgroup`, below the hierarchies' roots: see
/// `Plan::cgroup_of`) with cgroup.kill, and wait until it is empty.
pub(crate) fn kill_cgroup(cgroup: &Path) {
    let d = cgroup2_root().join(cgroup);
    if std::fs::write(d.join("cgroup.kill"), "1").is_err() {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::fs::read_to_string(d.join("cgroup.events"))
        .is_ok_and(|ev| ev.lines().any(|l| l == "populated 1"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The runtime removes each island's own cgroup; the project's dir (`<cgroup_parent>/<name>`,
/// by default `atoll/islands/<name>`) is removed here, in every hierarchy that has it, and
/// the dirs above it (`atoll/islands`, `atoll`) with it when nothing else is left in them.
fn remove_cgroup_parents(project: &Path, errs: &mut Vec<String>) {
    for r in cgroup_roots() {
        let d = r.join(project);
        if d.is_dir() {
            if let Err(e) = std::fs::remove_dir(&d) {
                errs.push(format!("rmdir {}: {e}", d.display()));
            }
        }
        for shared in project.ancestors().skip(1) {
            if shared.as_os_str().is_empty() {
                break;
            }
            // EBUSY/ENOTEMPTY: another project or container still uses it; that is its to remove.
            let _in_use_is_fine = std::fs::remove_dir(r.join(shared));
        }
    }
}

/// Undo `ensure_tmpfs` once the last project is gone, so no mount, directory or lock file
/// outlives atoll's use of them. Only an empty state root, under the state lock; a tmpfs only
/// if it is a mount point of its own.
fn release_state_root(root: &Path) {
    let Ok(_lock) = lock_state(root) else {
        return;
    };
    let missing = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let empty = match std::fs::read_dir(root) {
        Ok(mut rd) => rd.next().is_none(),
        // `down` of a project that was never up: the lock file is all there is
        Err(e) => missing(&e),
    };
    if !empty {
        return;
    }
    let own_mount = match (
        std::fs::metadata(root),
        root.parent().map(std::fs::metadata),
    ) {
        (Ok(m), Some(Ok(p))) => m.dev() != p.dev(),
        _ => false,
    };
    let tmpfs = rustix::fs::statfs(root).is_ok_and(|st| is_tmpfs(&st));
    if tmpfs
        && own_mount
        && rustix::mount::unmount(root, rustix::mount::UnmountFlags::empty()).is_err()
    {
        // EBUSY: something (a shell, `atoll logs`) has a file or cwd in it; it all stays.
        return;
    }
    // ensure_tmpfs mounted only over an empty directory, so this one is empty too.
    match std::fs::remove_dir(root) {
        Ok(()) => {}
        Err(e) if missing(&e) => {}
        Err(_) => return,
    }
    let _gone_is_fine = std::fs::remove_file(root.with_extension("lock"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_runtime_root_gets_search_back_and_keeps_the_rest() {
        let tmp = std::env::temp_dir().join(format!("atoll-searchable-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).unwrap();
        searchable(&tmp).unwrap();
        let mode = std::fs::metadata(&tmp).unwrap().permissions().mode() & 0o7777;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o750)).unwrap();
        searchable(&tmp).unwrap();
        let kept = std::fs::metadata(&tmp).unwrap().permissions().mode() & 0o7777;
        std::fs::remove_dir(&tmp).unwrap();
        assert_eq!(mode, 0o711);
        assert_eq!(kept, 0o751, "read bits are not added, only search");
    }
}

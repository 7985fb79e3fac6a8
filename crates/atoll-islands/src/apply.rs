//! `up` and `down`: walk a plan forwards (create) or backwards (remove). Teardown never stops at
//! the first error and removes whatever exists, so it also cleans after a killed `up`.

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use atoll_net::{firewall, netns, p2p};
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
}

/// Serialises `up`s against each other while they pick slots and uid ranges.
struct StateLock(#[allow(dead_code)] std::fs::File);

fn lock_state(root: &Path) -> Result<StateLock> {
    std::fs::create_dir_all(root).map_err(io(format!("mkdir {}", root.display())))?;
    let p = root.join(".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io(format!("open {}", p.display())))?;
    rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(format!("flock {}", p.display()))(e.into()))?;
    Ok(StateLock(f))
}

/// Create everything the file describes; on failure remove what was made and return the error.
pub fn up(file: &File, opts: &UpOpts) -> Result<Plan> {
    ensure_tmpfs(&opts.state_root)?;
    let plan = {
        let _lock = lock_state(&opts.state_root)?;
        let others = plan::existing(&opts.state_root);
        if others.iter().any(|p| p.name == file.name) || opts.state_root.join(&file.name).exists() {
            return Err(IslandsError::Other(format!(
                "project {:?} is already up (state in {}); run `atoll down {}` first",
                file.name,
                opts.state_root.join(&file.name).display(),
                file.name
            )));
        }
        let plan = plan::build(file, &opts.state_root, &opts.runtime_root, &others);
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
    if opts.net_only {
        create_netns_parallel(plan)?;
    } else {
        for i in &plan.islands {
            bundle::prepare(plan, i)?;
        }
        tracing::debug!("bundles written");
        if crate::guard::needed(plan) {
            crate::guard::start(plan, &opts.atoll)?;
            tracing::debug!("guard listening");
        }
        create_all(plan, opts)?;
        tracing::debug!("islands created");
        for i in &plan.islands {
            let saved = store
                .load(&i.container_id)
                .map_err(|source| IslandsError::Runtime {
                    island: i.name.clone(),
                    source,
                })?;
            let nsfile = PathBuf::from(format!("/proc/{}/ns/net", saved.pid));
            netns::Netns::pin(&nsfile, &i.netns)
                .map_err(net(format!("island {}: pin its netns", i.name)))?;
        }
    }
    p2p::plan(&link_specs(plan)).apply().map_err(net("links"))?;
    ruleset(plan).apply().map_err(net("border guard"))?;
    if opts.net_only {
        return Ok(());
    }
    for i in &plan.islands {
        container::start(&store, &i.container_id).map_err(|source| IslandsError::Runtime {
            island: i.name.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Network namespaces for `--net-only`, made by a few threads at once: the kernel's per-netns
/// setup runs in parallel (each thread unshares on its own).
fn create_netns_parallel(plan: &Plan) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let chunk = plan.islands.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = plan
            .islands
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> Result<()> {
                    for i in part {
                        netns::Netns::create(&i.netns)
                            .map_err(net(format!("island {}: netns", i.name)))?;
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

pub fn link_specs(plan: &Plan) -> Vec<p2p::LinkSpec> {
    plan.links
        .iter()
        .enumerate()
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

pub fn ruleset(plan: &Plan) -> firewall::Ruleset {
    let allows = plan
        .allows
        .iter()
        .map(|a| {
            let l = &plan.links[a.link];
            // Which end of the link each island sits on.
            let (from_if, saddr, to_if, daddr) = if l.a == a.from {
                (&l.host_a, l.addr_a, &l.host_b, l.addr_b)
            } else {
                (&l.host_b, l.addr_b, &l.host_a, l.addr_a)
            };
            firewall::Allow {
                id: a.id.clone(),
                from_if: from_if.clone(),
                to_if: to_if.clone(),
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
fn create_all(plan: &Plan, opts: &UpOpts) -> Result<()> {
    let mut pending = plan.islands.iter();
    let mut running: Vec<(&crate::plan::IslandPlan, std::process::Child)> = Vec::new();
    let mut failed = Vec::new();
    loop {
        while running.len() < opts.parallel.max(1) {
            let Some(i) = pending.next() else { break };
            std::fs::create_dir_all(&i.dir).map_err(io(format!("mkdir {}", i.dir.display())))?;
            let log = log_file(&i.log)?;
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
            failed.push(format!("{}: {why}", i.name));
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

fn log_file(path: &Path) -> Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("mkdir {}", dir.display())))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(format!("open {}", path.display())))
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
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    if st.f_type as i64 == TMPFS_MAGIC {
        return Ok(());
    }
    // Never hide projects that are up: only an empty state root is mounted over.
    let busy = std::fs::read_dir(root)
        .map_err(io(format!("read {}", root.display())))?
        .flatten()
        .any(|e| e.file_name() != ".lock");
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

/// Remove everything of the project named `name` under `state_root`: by its plan if there is one,
/// and by naming convention for whatever a crash left outside it.
pub fn down(state_root: &Path, runtime_root: &Path, name: &str) -> Result<bool> {
    let dir = state_root.join(name);
    match Plan::load(&dir) {
        Ok(plan) => teardown(&plan).map(|_| true),
        Err(_) if dir.exists() => sweep(&dir, runtime_root, name).map(|_| true),
        Err(_) => {
            // Nothing on disk: still drop a table of that name, in case state was lost.
            let table = format!("atoll_{}", name.replace('-', "_"));
            firewall::delete(&table).map_err(net(format!("nft delete table inet {table}")))?;
            Ok(false)
        }
    }
}

/// Teardown in reverse: islands, links, netns, firewall, cgroup parents, state dir. Keeps going.
pub fn teardown(plan: &Plan) -> Result<()> {
    let mut errs = Vec::new();
    kill_stragglers(&plan.state_dir);
    let store = Store::new(&plan.runtime_root);
    for i in plan.islands.iter().rev() {
        if store.exists(&i.container_id) {
            if let Err(e) = container::delete(&store, &i.container_id, true) {
                errs.push(format!("delete island {}: {e}", i.name));
            }
        }
    }
    if let Err(e) = crate::guard::stop(&plan.state_dir) {
        errs.push(format!("stop the guard: {e}"));
    }
    if let Err(e) = p2p::delete_group(plan.group) {
        errs.push(format!("delete links (group {:#x}): {e}", plan.group));
    }
    for i in &plan.islands {
        if let Err(e) = netns::remove(&i.netns) {
            errs.push(format!("remove netns {}: {e}", i.netns.display()));
        }
    }
    remove_cgroup_parents(&plan.name, &mut errs);
    // The nft table (named after the project) goes in the sweep, with whatever else is left.
    if let Err(e) = sweep_after_kill(&plan.state_dir, &plan.runtime_root, &plan.name) {
        errs.push(e.to_string());
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(IslandsError::Teardown(errs))
    }
}

/// Whatever is left under the project's state dir: containers named `<name>.*`, netns mounts,
/// then the dir itself.
fn sweep(dir: &Path, runtime_root: &Path, name: &str) -> Result<()> {
    kill_stragglers(dir);
    sweep_after_kill(dir, runtime_root, name)
}

fn sweep_after_kill(dir: &Path, runtime_root: &Path, name: &str) -> Result<()> {
    let mut errs = Vec::new();
    let store = Store::new(runtime_root);
    let prefix = format!("{name}.");
    for id in store.list().unwrap_or_default() {
        if id.starts_with(&prefix) {
            if let Err(e) = container::delete(&store, &id, true) {
                errs.push(format!("delete container {id}: {e}"));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir.join("netns")) {
        for e in rd.flatten() {
            if let Err(e) = netns::remove(&e.path()) {
                errs.push(format!("remove netns: {e}"));
            }
        }
    }
    let table = format!("atoll_{}", name.replace('-', "_"));
    if let Err(e) = firewall::delete(&table) {
        errs.push(format!("nft delete table inet {table}: {e}"));
    }
    if let Err(e) = crate::guard::stop(dir) {
        errs.push(format!("stop the guard: {e}"));
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            errs.push(format!("remove {}: {e}", dir.display()));
        }
    }
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
            if String::from_utf8_lossy(&cmd).contains(&needle) {
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

/// The runtime removes each island's own cgroup; the project's parent dirs
/// (`atoll/islands/<name>`) are removed here, in every hierarchy that has them.
fn remove_cgroup_parents(name: &str, errs: &mut Vec<String>) {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    for r in roots {
        let d = r.join("atoll/islands").join(name);
        if d.is_dir() {
            if let Err(e) = std::fs::remove_dir(&d) {
                errs.push(format!("rmdir {}: {e}", d.display()));
            }
        }
    }
}

//! `checkpoint` and `restore` of a plain OCI container with CRIU, driven over its RPC interface
//! (`criu swrk`, through the rust-criu binding): what to tell CRIU about the container's external
//! namespaces, bind mounts and stdio, and how the restored container re-enters the state store.

mod preflight;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rust_criu::rust_criu_protobuf::rpc::Criu_notify;
use rust_criu::{CgMode, Criu};
use serde::{Deserialize, Serialize};

use crate::state::{pid_start_time, Saved, Status, Store};

pub use preflight::{criu_found, criu_path, Preflight};

/// What CRIU's failure or a refused request looks like to the user.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{flag}: not supported here: {why}")]
    Unsupported { flag: &'static str, why: String },
    #[error("{0}")]
    Preflight(String),
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("criu {op} failed (see {log:?}): {detail}")]
    Criu {
        op: &'static str,
        log: PathBuf,
        detail: String,
    },
    #[error("image directory {path:?}: {msg}")]
    Image { path: PathBuf, msg: String },
    #[error(transparent)]
    Runtime(#[from] crate::RuntimeError),
}

pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CheckpointError + 'a {
    move |source| CheckpointError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// CRIU's cgroup modes as runc's --manage-cgroups-mode spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupsMode {
    #[default]
    Soft,
    Full,
    Strict,
    Ignore,
}

impl CgroupsMode {
    pub fn parse(s: &str) -> Option<CgroupsMode> {
        match s {
            "soft" => Some(CgroupsMode::Soft),
            "full" => Some(CgroupsMode::Full),
            "strict" => Some(CgroupsMode::Strict),
            "ignore" => Some(CgroupsMode::Ignore),
            _ => None,
        }
    }

    fn criu(self) -> CgMode {
        match self {
            CgroupsMode::Soft => CgMode::SOFT,
            CgroupsMode::Full => CgMode::FULL,
            CgroupsMode::Strict => CgMode::STRICT,
            CgroupsMode::Ignore => CgMode::IGNORE,
        }
    }
}

/// The options `checkpoint` and `restore` share (runc's names).
#[derive(Debug, Clone, Default)]
pub struct CommonOpts {
    pub criu: Option<PathBuf>,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: CgroupsMode,
    /// Only "network" (CRIU's empty_ns takes CLONE_NEWNET alone over RPC).
    pub empty_ns: Option<String>,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    pub status_fd: Option<i32>,
    /// "ADDRESS:PORT" of a `criu page-server`.
    pub page_server: Option<String>,
    /// The caller has run the preflight (`Preflight::run`, `criu_only`) itself, before its own
    /// freeze: not again, inside the outage (each check starts a `criu swrk`).
    pub preflight_done: bool,
    /// Allow a container in its own user namespace (islands: CRIU recreates the namespace and
    /// its id maps from the images).
    pub user_ns: bool,
    /// The caller keeps the network namespaces locked itself for the whole dump and restore
    /// (islands: firewall::lock), so CRIU's own per-connection lock (iptables-restore runs at
    /// dump, restore and unlock, inside the outage) is skipped: `--network-lock skip`.
    pub network_lock_skip: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CheckpointOpts {
    pub common: CommonOpts,
    /// Seize the tasks with ptrace instead of freezing their cgroup: CRIU polls cgroup.freeze
    /// every 100 ms, ptrace stops a small tree at once (islands: one to a few tasks).
    pub ptrace_freeze: bool,
    pub leave_running: bool,
    pub pre_dump: bool,
    pub parent_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOpts {
    pub common: CommonOpts,
    pub bundle: PathBuf,
    pub no_pivot: bool,
    pub console_socket: Option<PathBuf>,
    /// Hand the restored tasks this file (opened for append) where they had a file outside the
    /// container as stdout or stderr, instead of this process's own stdio (an island's log).
    pub stdio_log: Option<PathBuf>,
}

/// What atoll writes next to CRIU's images: the container's stdio as the kernel named them at
/// dump time (a pipe's or socket's name is what restore hands back as an inherited fd, as runc's
/// descriptors.json), and the cgroup the tasks were dumped from.
#[derive(Debug, Serialize, Deserialize)]
struct Descriptors {
    stdio: Vec<String>,
    /// Masked files (binds of the host's /dev/null), external mounts at dump.
    #[serde(default)]
    masked: Vec<String>,
    /// cgroup filesystems mounted as a subtree (mountpoint, host directory), external mounts.
    #[serde(default)]
    cgroup_mounts: Vec<(String, String)>,
    cgroup: Option<String>,
}

const DESCRIPTORS: &str = "atoll-descriptors.json";
/// CRIU's key for the container's network namespace when the config joins one by path.
const EXT_NETNS: &str = "extRootNetNS";

/// `checkpoint ID`: preflight, then CRIU dumps the container's process tree into the image
/// directory. Without --leave-running the tasks are gone afterwards and atoll removes the
/// container (state and cgroup) as runc does; a failed dump leaves it running (CRIU thaws the
/// tree when it gives up).
pub fn checkpoint(store: &Store, id: &str, opts: &CheckpointOpts) -> Result<()> {
    prepare_dump(store, id, opts)?.dump()
}

/// A dump with everything but CRIU's own work done: the container locked and its state read,
/// the request built (external mounts, namespaces, stdio), the descriptors and CRIU's config
/// written. `migrate` prepares before it locks the island's netns, so that none of this is in
/// the outage; `dump` then only runs CRIU and removes the dumped container.
pub struct PreparedDump<'s> {
    store: &'s Store,
    saved: crate::state::Saved,
    rq: Criu,
    leave_running: bool,
    work: PathBuf,
    desc_path: PathBuf,
    _lock: crate::state::Lock,
    _images: std::os::fd::OwnedFd,
    _workd: std::os::fd::OwnedFd,
    _conf: Option<CriuConfig>,
}

impl PreparedDump<'_> {
    /// CRIU dumps (and, without leave-running, kills the tree); the container is then removed.
    pub fn dump(mut self) -> Result<()> {
        tracing::debug!("dump: CRIU starts");
        if let Err(e) = self.rq.dump() {
            let _ = fs::remove_file(&self.desc_path);
            return Err(criu_err("dump", &self.work, "dump.log", e));
        }
        tracing::debug!("dump: CRIU answered");
        if !self.leave_running {
            // CRIU killed the tree after a complete dump: the container is gone, as with runc.
            crate::container::remove_after_checkpoint(self.store, &self.saved)?;
            tracing::debug!("dump: the dumped container removed");
        }
        Ok(())
    }
}

/// Everything `checkpoint` does before CRIU runs (see `PreparedDump`).
pub fn prepare_dump<'s>(
    store: &'s Store,
    id: &str,
    opts: &CheckpointOpts,
) -> Result<PreparedDump<'s>> {
    if opts.pre_dump {
        return Err(CheckpointError::Unsupported {
            flag: "--pre-dump",
            why: "iterative pre-dumps need the kernel's soft-dirty page tracking \
                  (CONFIG_MEM_SOFT_DIRTY), which this kernel lacks, and atoll does not \
                  implement CRIU's PRE_DUMP request"
                .into(),
        });
    }
    let lock = store.lock(id)?;
    let saved = store.load(id)?;
    let status = saved.status();
    if status != Status::Running {
        return Err(crate::RuntimeError::BadState {
            id: id.into(),
            status: status.as_str(),
            wanted: "only a running container can be checkpointed",
        }
        .into());
    }
    let c = &opts.common;
    refuse_common(c, &saved.config)?;
    let criu = criu_path(c.criu.as_deref());
    let pids = container_pids(&saved)?;
    fs::create_dir_all(&c.image_path).map_err(io("create image directory", &c.image_path))?;
    let work = c.work_path.clone().unwrap_or_else(|| c.image_path.clone());
    fs::create_dir_all(&work).map_err(io("create work directory", &work))?;
    if !c.preflight_done {
        Preflight::run(&criu, &pids, &c.image_path)?;
    }

    let images = open_dir(&c.image_path)?;
    let workd = open_dir(&work)?;
    let mut rq = Criu::new_with_criu_path(criu.to_string_lossy().into_owned())
        .map_err(|e| criu_err("dump", &work, "dump.log", e))?;
    rq.set_pid(saved.pid);
    rq.set_images_dir_fd(images.as_raw_fd());
    rq.set_work_dir_fd(workd.as_raw_fd());
    rq.set_log_file("dump.log".into());
    rq.set_log_level(4);
    rq.set_root(saved.rootfs.to_string_lossy().into_owned());
    rq.set_leave_running(opts.leave_running);
    if let Some(p) = &opts.parent_path {
        rq.set_parent_img(p.to_string_lossy().into_owned());
    }
    if let Some(dir) = cgroup_v2_dir(&saved).filter(|_| !opts.ptrace_freeze) {
        // Freeze through the cgroup (cgroup.freeze), not task by task: no task forks away.
        rq.set_freeze_cgroup(dir.to_string_lossy().into_owned());
    }
    set_common(&mut rq, c);
    for (dest, _) in bind_mounts(&saved.config) {
        rq.set_external_mount(dest.clone(), dest);
    }
    let masked = masked_files(&saved);
    for m in &masked {
        rq.set_external_mount(m.clone(), m.clone());
    }
    let cgroup_mounts = cgroup_subtree_mounts(saved.pid);
    for (m, _) in &cgroup_mounts {
        rq.set_external_mount(m.clone(), m.clone());
    }
    if let Some(path) = netns_path(&saved.config) {
        let ino = fs::metadata(&path)
            .map_err(io("stat network namespace", &path))?
            .ino();
        rq.add_external(format!("net[{ino}]:{EXT_NETNS}"));
    }
    let stdio = (0..3)
        .map(|fd| stdio_key(saved.pid, fd))
        .collect::<Vec<_>>();
    for key in stdio.iter().filter(|k| k.starts_with("file[")) {
        rq.add_external(key.clone());
    }
    let desc = Descriptors {
        stdio,
        masked,
        cgroup_mounts,
        cgroup: saved.cgroup.clone(),
    };
    let desc_path = c.image_path.join(DESCRIPTORS);
    fs::write(
        &desc_path,
        serde_json::to_vec(&desc).expect("plain strings serialize"),
    )
    .map_err(io("write", &desc_path))?;

    let conf = CriuConfig::new(&work, "dump", criu_config_lines(c))?;
    Ok(PreparedDump {
        store,
        saved,
        rq,
        leave_running: opts.leave_running,
        work,
        desc_path,
        _lock: lock,
        _images: images,
        _workd: workd,
        _conf: conf,
    })
}

/// `restore ID`: recreate the container from a checkpoint into the bundle's config (its
/// rootfs, its cgroup, the network namespace it names by path), record it under --root as
/// running, and return its init's host pid. A failure removes the cgroup and the state made.
pub fn restore(store: &Store, id: &str, opts: &RestoreOpts) -> Result<i32> {
    restore_with(store, id, opts, None)
}

/// Configures the fresh, empty network namespace of a restore with `--empty-ns network`: called
/// with the restored root task's host pid once CRIU has made its namespaces and before it
/// restores any socket (CRIU's "setup-namespaces" action, criu(8) --action-script). An error
/// makes CRIU abandon the restore.
pub type SetupNetns = Box<dyn FnMut(i32) -> std::result::Result<(), String> + Send>;

static SETUP_NETNS: Mutex<Option<SetupNetns>> = Mutex::new(None);
static SETUP_FAILED: Mutex<Option<String>> = Mutex::new(None);

/// `restore`, with `setup` run on the new network namespace (see `SetupNetns`).
pub fn restore_with(
    store: &Store,
    id: &str,
    opts: &RestoreOpts,
    setup: Option<SetupNetns>,
) -> Result<i32> {
    *SETUP_FAILED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *SETUP_NETNS.lock().unwrap_or_else(|e| e.into_inner()) = setup;
    let r = restore_inner(store, id, opts);
    *SETUP_NETNS.lock().unwrap_or_else(|e| e.into_inner()) = None;
    match (
        r,
        SETUP_FAILED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(),
    ) {
        (Err(_), Some(why)) => Err(CheckpointError::Preflight(format!(
            "setting up the restored network namespace: {why}"
        ))),
        (r, _) => r,
    }
}

fn restore_inner(store: &Store, id: &str, opts: &RestoreOpts) -> Result<i32> {
    crate::state::check_id(id)?;
    if opts.no_pivot {
        return Err(CheckpointError::Unsupported {
            flag: "--no-pivot",
            why: "CRIU sets up the restored root itself (pivot_root); it has no chroot mode".into(),
        });
    }
    let c = &opts.common;
    if c.manage_cgroups_mode == CgroupsMode::Ignore {
        return Err(CheckpointError::Unsupported {
            flag: "restore --manage-cgroups-mode ignore",
            why: "the restored tasks would stay in atoll's own cgroup, outside the container's \
                  limits"
                .into(),
        });
    }
    let desc = read_descriptors(&c.image_path)?;
    let bundle = fs::canonicalize(&opts.bundle).map_err(io("bundle", &opts.bundle))?;
    let node = crate::guard::GuardNode::load(store.root())?;
    let spec = crate::spec::load(&bundle, &node)?;
    let rootfs = crate::spec::rootfs(&bundle, &spec)?;
    let ns = crate::spec::namespaces(&spec)?;
    crate::spec::validate(&spec, &ns)?;
    refuse_common(c, &spec)?;
    if spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
        || opts.console_socket.is_some()
    {
        return Err(CheckpointError::Unsupported {
            flag: "process.terminal / --console-socket",
            why: "restoring a container with a terminal is not implemented".into(),
        });
    }
    let criu = criu_path(c.criu.as_deref());
    if !c.preflight_done {
        Preflight::criu_only(&criu)?;
    }
    let work = c.work_path.clone().unwrap_or_else(|| c.image_path.clone());
    fs::create_dir_all(&work).map_err(io("create work directory", &work))?;

    let lock = store.create_dir(id)?;
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let mut undo = Undo {
        store,
        id,
        cgroup: None,
        pid: None,
        armed: true,
    };
    let cgroup = atoll_cgroups::Cgroup::open(cgroups_path.as_deref(), id)
        .map_err(crate::RuntimeError::from)?;
    let remap = match (&desc.cgroup, c.manage_cgroups_mode) {
        (Some(then), CgroupsMode::Soft | CgroupsMode::Full | CgroupsMode::Strict)
            if then != cgroup.path() =>
        {
            // One path for every hierarchy on both sides: CRIU's cgroup root replaces the
            // root task's dumped cgroup with one new path (criu(8) --cgroup-root).
            if then.contains(';') || cgroup.path().contains(';') {
                return Err(CheckpointError::Preflight(format!(
                    "the checkpoint's cgroup was {then}, this container's would be {}, and \
                     one of them differs per hierarchy: restore under the same id and \
                     linux.cgroupsPath",
                    cgroup.path()
                )));
            }
            Some((then.clone(), cgroup.path().to_string()))
        }
        _ => None,
    };
    let resources = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    // Limits come after the restore: the device rules would stop CRIU's own mknod of the
    // container's /dev (tmpfs content), as runc too joins CRIU to the cgroup and sets it later.
    cgroup.create(None).map_err(crate::RuntimeError::from)?;
    undo.cgroup = Some(cgroup.clone());

    let images = open_dir(&c.image_path)?;
    let workd = open_dir(&work)?;
    let mut rq = Criu::new_with_criu_path(criu.to_string_lossy().into_owned())
        .map_err(|e| criu_err("restore", &work, "restore.log", e))?;
    rq.set_images_dir_fd(images.as_raw_fd());
    rq.set_work_dir_fd(workd.as_raw_fd());
    rq.set_log_file("restore.log".into());
    rq.set_log_level(4);
    rq.set_root(rootfs.to_string_lossy().into_owned());
    // Restored tasks become children of CRIU; they must outlive it (runc asks the same).
    rq.set_rst_sibling(true);
    set_common(&mut rq, c);
    for (dest, source) in bind_mounts(&spec) {
        rq.set_external_mount(dest, source);
    }
    for m in &desc.masked {
        rq.set_external_mount(m.clone(), "/dev/null".into());
    }
    for (m, host) in &desc.cgroup_mounts {
        // The container's view of its own cgroup follows the tasks into the new one.
        let host = match &remap {
            Some((then, now)) => match host.strip_suffix(then.as_str()) {
                Some(base) => format!("{base}{now}"),
                None => host.clone(),
            },
            None => host.clone(),
        };
        rq.set_external_mount(m.clone(), host);
    }
    // Inherited fds: the child (criu swrk) must get them without CLOEXEC; they stay open here
    // until the request is done.
    let mut keep: Vec<OwnedFd> = Vec::new();
    if let Some(path) = netns_path(&spec) {
        let f = File::open(&path).map_err(io("open network namespace", &path))?;
        let fd = OwnedFd::from(f);
        inheritable(&fd, &path)?;
        rq.add_inherit_fd(fd.as_raw_fd(), EXT_NETNS.into())
            .map_err(|e| criu_err("restore", &work, "restore.log", e))?;
        keep.push(fd);
    }
    if let Some(log) = &opts.stdio_log {
        let f = fs::OpenOptions::new()
            .append(true)
            .open(log)
            .map_err(io("open log", log))?;
        // Far above the numbers CRIU's own files take when it starts (it moves and closes
        // descriptors it opens early, and an inherited fd must survive until it is stored).
        let fd = rustix::io::fcntl_dupfd_cloexec(&f, 200).map_err(|e| CheckpointError::Io {
            what: "dup",
            path: log.clone(),
            source: e.into(),
        })?;
        drop(f);
        inheritable(&fd, log)?;
        // stdout and stderr; stdin stays whatever CRIU reopens (an island's is /dev/null).
        let mut keys: Vec<&String> = desc.stdio[1..]
            .iter()
            .filter(|k| k.starts_with("file["))
            .collect();
        keys.dedup();
        for key in keys {
            rq.add_inherit_fd(fd.as_raw_fd(), key.clone())
                .map_err(|e| criu_err("restore", &work, "restore.log", e))?;
        }
        keep.push(fd);
    }
    for (n, name) in desc.stdio.iter().enumerate() {
        if opts.stdio_log.is_some() && n > 0 && name.starts_with("file[") {
            continue;
        }
        // A pipe or socket from outside the container cannot be reopened by path: hand ours in
        // its place (runc does the same with its descriptors.json).
        if name.starts_with("pipe:") || name.starts_with("socket:") || name.starts_with("file[") {
            rq.add_inherit_fd(n as i32, name.clone())
                .map_err(|e| criu_err("restore", &work, "restore.log", e))?;
        }
    }
    let mut conf = criu_config_lines(c);
    if let Some((_, root)) = &remap {
        conf.push(format!("cgroup-root {root}"));
    }
    // A guarded container's listener did not travel: its tasks stay stopped until the guard's
    // layer is back on every thread (guard::reattach), so no trapped call meets ENOSYS.
    let guard_layer = crate::guard::notify_layer(&spec, &store.seccomp_cache())?;
    if guard_layer.is_some() {
        conf.push("leave-stopped".into());
    }
    let _conf = CriuConfig::new(&work, "restore", conf)?;
    RESTORED_PID.store(0, Ordering::SeqCst);
    rq.set_notify_scripts(true);
    rq.set_notify_cb(note_restored_pid);
    tracing::debug!("restore: request ready, CRIU starts");
    rq.restore()
        .map_err(|e| criu_err("restore", &work, "restore.log", e))?;
    tracing::debug!("restore: CRIU answered");
    drop(keep);
    let pid = RESTORED_PID.load(Ordering::SeqCst);
    undo.pid = Some(pid);
    // Fail closed: the limits below only hold for tasks that CRIU put in this cgroup.
    let placed = cgroup.pids().map_err(crate::RuntimeError::from)?;
    if !placed.contains(&pid) {
        return Err(CheckpointError::Criu {
            op: "restore",
            log: work.join("restore.log"),
            detail: format!(
                "the restored init (pid {pid}) is not in the container's cgroup {}",
                cgroup.path()
            ),
        });
    }
    cgroup
        .update(&resources)
        .map_err(crate::RuntimeError::from)?;
    let pid_start = pid_start_time(pid).ok_or_else(|| CheckpointError::Criu {
        op: "restore",
        log: work.join("restore.log"),
        detail: format!("the restored init (pid {pid}) is not running"),
    })?;
    let saved = Saved {
        id: id.into(),
        bundle,
        rootfs,
        pid,
        pid_start,
        created: crate::time::now_rfc3339(),
        started: true,
        owner: String::new(),
        cgroup: Some(cgroup.path().to_string()),
        annotations: spec.annotations().clone().unwrap_or_default(),
        ns_flags: ns.all_flags(),
        config: spec,
    };
    if let Some(layer) = &guard_layer {
        let pids = cgroup.pids().map_err(crate::RuntimeError::from)?;
        let state = saved.state_json(crate::state::Status::Running);
        let t0 = std::time::Instant::now();
        let done = crate::guard::reattach(&node, layer, pid, &pids, &state)?;
        tracing::debug!(
            "the guard's layer is back on {} restored threads in {:?}",
            done.guarded,
            t0.elapsed()
        );
        if !done.unguarded.is_empty() {
            tracing::warn!(
                "restore {id}: restored threads {:?} have neither no_new_privs nor \
                 CAP_SYS_ADMIN, so the kernel lets nobody give them the guard's seccomp layer \
                 again: their trapped calls (setns, unshare of a user namespace, ...) are \
                 denied with ENOSYS and raise no alert; set process.noNewPrivileges to keep \
                 the guard across a restore",
                done.unguarded
            );
        }
        for p in pids {
            // SIGCONT: CRIU left them stopped (leave-stopped).
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(p).expect("a cgroup lists positive pids"),
                rustix::process::Signal::CONT,
            );
        }
    }
    // Saved last: a restore killed before this leaves tasks that no state names, which
    // `delete --force` and a migration's recovery remove as leftovers.
    store.save(&saved)?;
    undo.armed = false;
    drop(lock);
    Ok(pid)
}

/// CRIU options rust-criu 0.6 has no setter for, though the RPC has fields for them
/// (criu_opts.network_lock, criu_opts.cg_root): `criu swrk` also reads the config file named by
/// $CRIU_CONFIG_FILE (criu(8), CONFIGURATION FILES), so they travel that way: a file in the
/// work directory, named in this process's environment while the guard lives (dump and restore
/// run on atoll's only thread).
struct CriuConfig {
    file: PathBuf,
    /// The caller's own $CRIU_CONFIG_FILE: its options come first in ours, and it is put back.
    before: Option<std::ffi::OsString>,
}

const CRIU_CONFIG_ENV: &str = "CRIU_CONFIG_FILE";

fn criu_config_lines(c: &CommonOpts) -> Vec<String> {
    let mut lines = Vec::new();
    if c.network_lock_skip {
        lines.push("network-lock skip".to_string());
    }
    lines
}

impl CriuConfig {
    /// Nothing to say: no file, no variable.
    fn new(work: &Path, op: &str, lines: Vec<String>) -> Result<Option<CriuConfig>> {
        if lines.is_empty() {
            return Ok(None);
        }
        let before = std::env::var_os(CRIU_CONFIG_ENV);
        let mut text = match &before {
            Some(f) => fs::read_to_string(f).map_err(io("read $CRIU_CONFIG_FILE", Path::new(f)))?,
            None => String::new(),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        // CRIU parses the file as a command line: a later option overrides an earlier one.
        text.push_str(&(lines.join("\n") + "\n"));
        let file = work.join(format!("atoll-criu-{op}.conf"));
        fs::write(&file, text).map_err(io("write", &file))?;
        std::env::set_var(CRIU_CONFIG_ENV, &file);
        Ok(Some(CriuConfig { file, before }))
    }
}

impl Drop for CriuConfig {
    fn drop(&mut self) {
        match &self.before {
            Some(v) => std::env::set_var(CRIU_CONFIG_ENV, v),
            None => std::env::remove_var(CRIU_CONFIG_ENV),
        }
        if let Err(e) = fs::remove_file(&self.file) {
            tracing::debug!("remove {}: {e}", self.file.display());
        }
    }
}

/// The post-restore notification carries the restored root task's host pid. rust-criu takes a
/// plain fn as callback, so the pid travels through this static (one restore per process).
static RESTORED_PID: AtomicI32 = AtomicI32::new(0);

fn note_restored_pid(script: &str, notify: &Criu_notify, _fd: Option<i32>) -> i32 {
    if script == "post-restore" {
        RESTORED_PID.store(notify.pid(), Ordering::SeqCst);
    }
    if script == "setup-namespaces" {
        if let Some(setup) = SETUP_NETNS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            if let Err(why) = setup(notify.pid()) {
                *SETUP_FAILED.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                return -1;
            }
        }
    }
    0
}

/// Removes what a failed restore made: the restored tasks (CRIU kills them itself when it
/// fails, but not when atoll fails after it), the cgroup, the state directory.
struct Undo<'a> {
    store: &'a Store,
    id: &'a str,
    cgroup: Option<atoll_cgroups::Cgroup>,
    /// The restored init, once CRIU has reported it.
    pid: Option<i32>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let restored = self.pid.filter(|p| *p > 0);
        if let Some(cg) = &self.cgroup {
            for pid in cg.pids().unwrap_or_default().into_iter().chain(restored) {
                let _gone_is_fine = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid).expect("cgroup pids are > 0"),
                    rustix::process::Signal::KILL,
                );
            }
            if let Err(e) = cg.destroy() {
                tracing::warn!("restore: removing cgroup {}: {e}", cg.path());
            }
        }
        if let Err(e) = self.store.remove(self.id) {
            tracing::warn!("restore: removing state of {}: {e}", self.id);
        }
    }
}

/// Flags CRIU cannot honour for this container or this RPC, refused instead of ignored.
fn refuse_common(c: &CommonOpts, spec: &Spec) -> Result<()> {
    if let Some(ns) = &c.empty_ns {
        if ns != "network" {
            return Err(CheckpointError::Unsupported {
                flag: "--empty-ns",
                why: format!("{ns:?}: only \"network\" can be left empty over CRIU's RPC"),
            });
        }
    }
    if let Some(ps) = &c.page_server {
        parse_page_server(ps)?;
    }
    if !c.user_ns
        && spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::User))
    {
        return Err(CheckpointError::Unsupported {
            flag: "linux.namespaces user",
            why: "checkpoint of a container in a user namespace is not implemented".into(),
        });
    }
    Ok(())
}

fn parse_page_server(s: &str) -> Result<(String, i32)> {
    let bad = || CheckpointError::Unsupported {
        flag: "--page-server",
        why: format!("{s:?}: expected ADDRESS:PORT"),
    };
    let (addr, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if addr.is_empty() {
        return Err(bad());
    }
    Ok((addr.to_string(), port.into()))
}

fn set_common(rq: &mut Criu, c: &CommonOpts) {
    rq.set_tcp_established(c.tcp_established);
    rq.set_ext_unix_sk(c.ext_unix_sk);
    rq.set_shell_job(c.shell_job);
    rq.set_file_locks(c.file_locks);
    rq.set_manage_cgroups(c.manage_cgroups_mode != CgroupsMode::Ignore);
    rq.cgroups_mode(c.manage_cgroups_mode.criu());
    if c.empty_ns.is_some() {
        rq.set_empty_net_ns(true);
    }
    if c.auto_dedup {
        rq.set_auto_dedup(true);
    }
    if c.lazy_pages {
        rq.set_lazy_pages(true);
    }
    if let Some(fd) = c.status_fd {
        rq.set_status_fd(fd);
    }
    if let Some(Ok((addr, port))) = c.page_server.as_deref().map(parse_page_server) {
        rq.set_page_server(addr, port);
    }
}

/// Every process of the container: the cgroup's, or the init alone without one.
pub fn container_pids(saved: &Saved) -> Result<Vec<i32>> {
    if let Some(cg) = &saved.cgroup {
        let cg = atoll_cgroups::Cgroup::from_saved(cg).map_err(crate::RuntimeError::from)?;
        let pids = cg.pids().map_err(crate::RuntimeError::from)?;
        if !pids.is_empty() {
            return Ok(pids);
        }
    }
    Ok(vec![saved.pid])
}

fn cgroup_v2_dir(saved: &Saved) -> Option<PathBuf> {
    let cg = atoll_cgroups::Cgroup::from_saved(saved.cgroup.as_ref()?).ok()?;
    cg.v2_dir().map(Path::to_path_buf)
}

/// The masked paths that are files in the running container: rootfs/mask.rs binds the host's
/// /dev/null over them (directories get a tmpfs, which CRIU dumps itself).
fn masked_files(saved: &Saved) -> Vec<String> {
    let Some(masked) = saved
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
    else {
        return Vec::new();
    };
    masked
        .into_iter()
        .filter(|p| fs::metadata(format!("/proc/{}/root{p}", saved.pid)).is_ok_and(|m| !m.is_dir()))
        .collect()
}

/// cgroup filesystems the container sees from a subtree (its own cgroup, without a cgroup
/// namespace: mountinfo's root is not "/"). CRIU finds no mount of the whole hierarchy inside
/// the container to bind them from, so they are external: (mountpoint, the host directory of
/// the same hierarchy and root), the directory that is bound again on restore.
fn cgroup_subtree_mounts(pid: i32) -> Vec<(String, String)> {
    let parse = |text: &str| -> Vec<(String, String, String, String)> {
        // mountinfo(5): id parent major:minor root mountpoint opts [optional...] - fstype ...
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let sep = f.iter().position(|x| *x == "-")?;
                Some((
                    f.get(2)?.to_string(),
                    f.get(3)?.to_string(),
                    f.get(4)?.to_string(),
                    f.get(sep + 1)?.to_string(),
                ))
            })
            .collect()
    };
    let (Ok(inside), Ok(host)) = (
        fs::read_to_string(format!("/proc/{pid}/mountinfo")),
        fs::read_to_string("/proc/self/mountinfo"),
    ) else {
        return Vec::new();
    };
    let host = parse(&host);
    parse(&inside)
        .into_iter()
        .filter(|(_, root, point, fstype)| {
            let cgroup = fstype == "cgroup" || fstype == "cgroup2";
            // Host device nodes bound in by a user-namespaced container (it cannot mknod).
            let device = fstype == "devtmpfs" && point.starts_with("/dev/");
            (cgroup || device) && root != "/"
        })
        .filter_map(|(dev, root, point, _)| {
            let (_, _, hpoint, _) = host.iter().find(|(d, r, _, _)| *d == dev && r == "/")?;
            Some((point, format!("{}{root}", hpoint.trim_end_matches('/'))))
        })
        .collect()
}

/// Bind mounts from the host (destination, source): CRIU cannot dump their host side, so each
/// is an external mount keyed by its destination, rebound from the source on restore.
fn bind_mounts(spec: &Spec) -> Vec<(String, String)> {
    let mut out = BTreeMap::new();
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|o| o == "bind" || o == "rbind");
        if let (true, Some(src)) = (bind, m.source()) {
            out.insert(
                m.destination().to_string_lossy().into_owned(),
                src.to_string_lossy().into_owned(),
            );
        }
    }
    out.into_iter().collect()
}

/// How CRIU will name the init's stdio fd `fd` when it is outside the container: a pipe or
/// socket by its kernel name, a file on a mount the container does not see as CRIU's external
/// file key `file[MNT_ID:INODE]` (hex, criu/files-reg.c), marked external at dump. Anything
/// else (a file in the container) CRIU reopens itself: "".
fn stdio_key(pid: i32, fd: i32) -> String {
    let link = format!("/proc/{pid}/fd/{fd}");
    let Ok(target) = fs::read_link(&link) else {
        return String::new();
    };
    let t = target.to_string_lossy().into_owned();
    if t.starts_with("pipe:") || t.starts_with("socket:") {
        return t;
    }
    if !t.starts_with('/') {
        return String::new();
    }
    let mnt_id = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("mnt_id:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
        });
    let ino = fs::metadata(&link).map(|m| m.ino()).ok();
    let (Some(mnt_id), Some(ino)) = (mnt_id, ino) else {
        return String::new();
    };
    let visible = fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map(|s| {
            s.lines()
                .any(|l| l.split(' ').next() == Some(mnt_id.to_string().as_str()))
        })
        .unwrap_or(true);
    if visible {
        String::new()
    } else {
        format!("file[{mnt_id:x}:{ino:x}]")
    }
}

/// The network namespace the config joins by path (it stays outside the checkpoint).
fn netns_path(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)?
        .path()
        .clone()
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    // Without O_CLOEXEC: criu swrk, the child, receives it by number in the request.
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| CheckpointError::Io {
        what: "open directory",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(fd)
}

fn inheritable(fd: &OwnedFd, path: &Path) -> Result<()> {
    rustix::io::fcntl_setfd(fd.as_fd(), rustix::io::FdFlags::empty()).map_err(|e| {
        CheckpointError::Io {
            what: "clear FD_CLOEXEC on",
            path: path.to_path_buf(),
            source: e.into(),
        }
    })
}

fn read_descriptors(images: &Path) -> Result<Descriptors> {
    if !images.is_dir() {
        return Err(CheckpointError::Image {
            path: images.to_path_buf(),
            msg: "not a directory (give --image-path of a checkpoint)".into(),
        });
    }
    let p = images.join(DESCRIPTORS);
    let data = fs::read(&p).map_err(|e| CheckpointError::Image {
        path: images.to_path_buf(),
        msg: format!("{DESCRIPTORS}: {e} (not a checkpoint made by atoll)"),
    })?;
    serde_json::from_slice(&data).map_err(|e| CheckpointError::Image {
        path: images.to_path_buf(),
        msg: format!("{DESCRIPTORS}: {e}"),
    })
}

/// CRIU's own log has the reason; name it and quote its last error lines.
fn criu_err(op: &'static str, work: &Path, log: &str, e: rust_criu::CriuError) -> CheckpointError {
    let log = work.join(log);
    let tail = fs::read_to_string(&log)
        .map(|s| {
            s.lines()
                .filter(|l| l.contains("Error") || l.contains("rror ("))
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    let detail = if tail.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {tail}")
    };
    CheckpointError::Criu { op, log, detail }
}

//! One container's cgroup across every hierarchy of the host: create, join, limit, freeze, list,
//! remove.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::error::{CgroupError, Errno};
use crate::layout::{self, Mode, Mount};
use crate::path::{self, Requested};
use crate::plan::{self, Step};
use crate::{fs, Hierarchy};

/// This container's place in one hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub mount: Mount,
    /// The cgroup path from the hierarchy root, "/atoll/c1".
    pub rel: String,
    /// Its directory on the host, mount point + rel.
    pub dir: PathBuf,
}

/// One container's cgroup across all hierarchies.
#[derive(Debug, Clone)]
pub struct Cgroup {
    saved: String,
    mode: Mode,
    places: Vec<Place>,
}

fn place(mount: &Mount, rel: String) -> Place {
    // mountinfo's root is the cgroup visible at the mount point (not "/" for a bind mount of a
    // subtree); a path below it is found below the mount point.
    let root = mount.root.to_string_lossy();
    let inside = match rel.strip_prefix(root.trim_end_matches('/')) {
        Some(rest) if root != "/" && (rest.is_empty() || rest.starts_with('/')) => rest,
        _ => rel.as_str(),
    };
    Place {
        mount: mount.clone(),
        dir: mount.mount_point.join(inside.trim_start_matches('/')),
        rel,
    }
}

impl Cgroup {
    /// Resolves linux.cgroupsPath: absolute "/a/b" is the same path in every hierarchy; relative
    /// "a/b" is below the calling process's own cgroup in each hierarchy (as runc does), which can
    /// differ per hierarchy; None is "/atoll/<id>". runc's systemd form "slice:prefix:name" (two
    /// colons, not starting with '/') becomes the path systemd would use,
    /// "/<expanded slice>/<prefix>-<name>.scope"; atoll does not ask systemd to create the unit.
    pub fn open(cgroups_path: Option<&str>, id: &str) -> Result<Cgroup, CgroupError> {
        let layout = layout::layout()?;
        let requested = path::resolve(cgroups_path, id)?;
        let own = match &requested {
            Requested::Relative(_) => {
                layout::parse_proc_cgroup(&fs::read(Path::new("/proc/self/cgroup"))?)
            }
            Requested::Absolute(_) => Default::default(),
        };
        let mut places = Vec::with_capacity(layout.mounts.len());
        for mount in &layout.mounts {
            let rel = match &requested {
                Requested::Absolute(p) => p.clone(),
                Requested::Relative(p) => {
                    let parent = layout::own_cgroup(&own, mount).unwrap_or("/");
                    path::under(parent, p)
                }
            };
            places.push(place(mount, rel));
        }
        Ok(Cgroup::from_places(layout.mode, places))
    }

    /// Re-opens a cgroup from what `path()` returned.
    pub fn from_saved(saved: &str) -> Result<Cgroup, CgroupError> {
        let layout = layout::layout()?;
        let (base, overrides) = path::decode_saved(saved)?;
        let places = layout
            .mounts
            .iter()
            .map(|m| {
                let list = m.controller_list();
                let rel = overrides
                    .iter()
                    .find(|(c, _)| *c == list)
                    .map_or_else(|| base.clone(), |(_, p)| p.clone());
                place(m, rel)
            })
            .collect();
        Ok(Cgroup::from_places(layout.mode, places))
    }

    fn from_places(mode: Mode, places: Vec<Place>) -> Cgroup {
        let pairs: Vec<(String, String)> = places
            .iter()
            .map(|p| (p.mount.controller_list(), p.rel.clone()))
            .collect();
        Cgroup {
            saved: path::encode_saved(&pairs),
            mode,
            places,
        }
    }

    /// This cgroup with `sub` below it, for `exec --cgroup`: the sub-cgroup must already exist
    /// (joining it fails otherwise, naming the directory), as in runc. A controller prefix picks
    /// v1 hierarchies; cgroup v2 has one hierarchy and so takes a plain path only (runc: "unknown
    /// controller").
    pub fn below(&self, sub: &crate::SubCgroup) -> Result<Cgroup, CgroupError> {
        let mut places = self.places.clone();
        match sub {
            crate::SubCgroup::All(p) => {
                for pl in &mut places {
                    *pl = place(&pl.mount, format!("{}{p}", pl.rel));
                }
            }
            crate::SubCgroup::PerController(list) => {
                let mut moved = vec![None::<&str>; places.len()];
                for (controller, p) in list {
                    let bad = |why| CgroupError::BadPath {
                        path: format!("{controller}:{}", p.trim_start_matches('/')),
                        why,
                    };
                    let mut found = false;
                    for (i, pl) in places.iter_mut().enumerate() {
                        if pl.mount.v2 || !pl.mount.has(controller) {
                            continue;
                        }
                        found = true;
                        match moved[i] {
                            Some(q) if q != p => {
                                return Err(bad(
                                    "controllers mounted together are given different paths",
                                ))
                            }
                            Some(_) => {}
                            None => {
                                *pl = place(&pl.mount, format!("{}{p}", pl.rel));
                                moved[i] = Some(p);
                            }
                        }
                    }
                    if !found {
                        return Err(bad(
                            "no cgroup v1 hierarchy on this host has that controller",
                        ));
                    }
                }
            }
        }
        Ok(Cgroup::from_places(self.mode, places))
    }

    /// The one-line form to store in the state file and give back to `from_saved`. Usually the
    /// cgroup path ("/atoll/c1"); for a relative request whose parents differ per hierarchy, it
    /// adds ";controllers:path" for each hierarchy that differs from the first.
    pub fn path(&self) -> &str {
        &self.saved
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// For mounting cgroupfs inside a container: one entry per hierarchy.
    pub fn hierarchies(&self) -> Vec<Hierarchy> {
        self.places
            .iter()
            .map(|p| Hierarchy {
                fs_type: if p.mount.v2 { "cgroup2" } else { "cgroup" },
                controllers: p.mount.controller_list(),
                mount_point: p.mount.mount_point.clone(),
                dir: p.dir.clone(),
                rel: PathBuf::from(&p.rel),
            })
            .collect()
    }

    fn plan(&self, res: &LinuxResources, updating: bool) -> Result<Vec<Step>, CgroupError> {
        plan::check(res)?;
        match self.mode {
            Mode::V2 => plan::plan_v2(res, updating),
            Mode::V1 | Mode::Hybrid => plan::plan_v1(res, updating),
        }
    }

    /// Makes the directory in every hierarchy and applies `resources`. On any error, removes the
    /// directories this call made (controllers it enabled in existing ancestors stay enabled).
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        // Plan first: a config error fails before anything touches the host.
        let steps = match resources {
            Some(r) => self.plan(r, false)?,
            None => Vec::new(),
        };
        // A controller with no hierarchy is a config error too: report it before any mkdir.
        for step in &steps {
            if let Step::Write {
                field, controller, ..
            } = step
            {
                self.dir_for(controller, field)?;
            }
        }
        let mut made = Vec::new();
        let result = self
            .make_dirs(&steps, &mut made)
            .and_then(|()| self.apply(&steps));
        let Err(err) = result else {
            return Ok(());
        };
        let mut errors = vec![err];
        for dir in made.iter().rev() {
            if let Err(e) = rmdir_retrying(dir) {
                errors.push(e);
            }
        }
        Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            CgroupError::Many(errors)
        })
    }

    fn make_dirs(&self, steps: &[Step], made: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
        let borrowed = self.borrowed_from_unified(steps);
        for p in &self.places {
            let below = p
                .dir
                .strip_prefix(&p.mount.mount_point)
                .unwrap_or(Path::new(""));
            let mut retries = 5;
            'walk: loop {
                let mut cur = p.mount.mount_point.clone();
                for comp in below.components() {
                    let parent = cur.clone();
                    cur.push(comp);
                    let mut step = || -> Result<(), CgroupError> {
                        if self.mode == Mode::V2 {
                            enable_controllers(&parent, steps)?;
                        } else if p.mount.v2 && !borrowed.is_empty() {
                            enable_listed(&parent, &borrowed)?;
                        }
                        match std::fs::create_dir(&cur) {
                            Ok(()) => made.push(cur.clone()),
                            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                            Err(e) => {
                                return Err(CgroupError::Mkdir {
                                    path: cur.clone(),
                                    errno: Errno::of(&e),
                                })
                            }
                        }
                        if p.mount.has("cpuset") {
                            inherit_cpuset(&parent, &cur)?;
                        }
                        Ok(())
                    };
                    match step() {
                        Ok(()) => {}
                        // A concurrent `destroy` (or an islands `down`) removed an empty atoll
                        // parent between two of our steps, before or just after we made a child
                        // in it (see `remove_empty_atoll_parents`): any ENOENT on the way down,
                        // a mkdir's or a read of a dir we just made, means walk again from the top
                        // (ENODEV: the read came while the rmdir was deactivating the dir's files).
                        Err(e)
                            if matches!(e.errno(), Some(Errno(libc::ENOENT | libc::ENODEV)))
                                && retries > 0 =>
                        {
                            retries -= 1;
                            continue 'walk;
                        }
                        Err(e) => return Err(e),
                    }
                }
                break;
            }
        }
        Ok(())
    }

    /// Writes `pid` to cgroup.procs in every hierarchy.
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for p in &self.places {
            fs::write(&p.dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// The `tasks` file of every v1 hierarchy, opened for writing (O_CLOEXEC), each with its
    /// path for errors. Handed to a single-threaded process that moves itself with
    /// [`join_self`]: the move then costs no RCU grace period (see there).
    pub fn open_v1_tasks(&self) -> Result<Vec<(PathBuf, OwnedFd)>, CgroupError> {
        self.places
            .iter()
            .filter(|p| !p.mount.v2)
            .map(|p| {
                let path = p.dir.join("tasks");
                let fd = rustix::fs::open(
                    &path,
                    rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| CgroupError::Open {
                    path: path.clone(),
                    errno: Errno::of(&e.into()),
                })?;
                Ok((path, fd))
            })
            .collect()
    }

    /// This cgroup's directory in the cgroup2 hierarchy, if it has one there (pure v2, or the
    /// unified hierarchy of a hybrid host): where CLONE_INTO_CGROUP can put a new process.
    pub fn v2_dir(&self) -> Option<&Path> {
        self.unified().map(|p| p.dir.as_path())
    }

    /// [`Cgroup::v2_dir`] opened (O_PATH, O_CLOEXEC) for clone3's CLONE_INTO_CGROUP.
    pub fn open_v2_dir(&self) -> Result<Option<OwnedFd>, CgroupError> {
        let Some(dir) = self.v2_dir() else {
            return Ok(None);
        };
        rustix::fs::open(
            dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map(Some)
        .map_err(|e| CgroupError::Open {
            path: dir.to_path_buf(),
            errno: Errno::of(&e.into()),
        })
    }

    /// Writes `pid` to cgroup.procs in the cgroup2 hierarchy only, if this cgroup has a place
    /// there (the v1 ones are joined with `open_v1_tasks` + `join_self`).
    pub fn add_task_v2(&self, pid: i32) -> Result<(), CgroupError> {
        match self.unified() {
            Some(p) => fs::write(&p.dir.join("cgroup.procs"), &pid.to_string()),
            None => Ok(()),
        }
    }

    /// Applies new resources to an existing cgroup (`atoll update`).
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let filled = self.with_current_memory_limit(resources)?;
        let steps = self.plan(filled.as_ref().unwrap_or(resources), true)?;
        // A controller the first config did not need may be needed now.
        let borrowed = self.borrowed_from_unified(&steps);
        if let Some(v2) = self.unified() {
            if self.mode == Mode::V2 || !borrowed.is_empty() {
                let below = v2
                    .dir
                    .strip_prefix(&v2.mount.mount_point)
                    .unwrap_or(Path::new(""));
                let mut cur = v2.mount.mount_point.clone();
                for comp in below.components() {
                    if self.mode == Mode::V2 {
                        enable_controllers(&cur, &steps)?;
                    } else {
                        enable_listed(&cur, &borrowed)?;
                    }
                    cur.push(comp);
                }
            }
        }
        self.apply(&steps)
    }

    /// v2 `update --memory-swap` alone: see `plan::with_current_memory_limit`.
    fn with_current_memory_limit(
        &self,
        res: &LinuxResources,
    ) -> Result<Option<LinuxResources>, CgroupError> {
        let wants_swap = res
            .memory()
            .as_ref()
            .is_some_and(|m| m.swap().is_some_and(|s| s > 0) && m.limit().unwrap_or(0) == 0);
        if self.mode != Mode::V2 || !wants_swap {
            return Ok(None);
        }
        let dir = self.dir_for("memory", "linux.resources.memory.swap")?;
        let current = fs::read(&dir.join("memory.max"))?;
        Ok(plan::with_current_memory_limit(res, &current))
    }

    fn apply(&self, steps: &[Step]) -> Result<(), CgroupError> {
        for step in steps {
            match step {
                Step::Write {
                    field,
                    controller,
                    files,
                } => self.apply_write(field, controller, files)?,
                Step::V1MemoryAndSwap {
                    limit,
                    swap,
                    swap_optional,
                } => {
                    let dir = self.dir_for("memory", "linux.resources.memory")?;
                    v1_memory_and_swap(dir, *limit, *swap, *swap_optional)?;
                }
                Step::V1RtSched { period, runtime } => self.apply_rt(*period, *runtime)?,
                Step::CheckUsage { limit } => {
                    let dir = self.dir_for("memory", "linux.resources.memory.checkBeforeUpdate")?;
                    let file = if self.mode == Mode::V2 {
                        "memory.current"
                    } else {
                        "memory.usage_in_bytes"
                    };
                    let path = dir.join(file);
                    let usage = fs::read(&path)?;
                    let usage: u64 = usage.trim().parse().map_err(|_| CgroupError::Parse {
                        path: path.clone(),
                        content: usage.clone(),
                    })?;
                    if usage > *limit as u64 {
                        return Err(CgroupError::BelowUsage {
                            path,
                            limit: *limit,
                            usage,
                        });
                    }
                }
                Step::DevicePrograms(rules) => {
                    crate::device_program::install(&self.places[0].dir, rules)?;
                }
            }
        }
        Ok(())
    }

    /// v1 realtime bandwidth: the ancestors' budget first (a runtime > 0 needs one in every
    /// cgroup above), then this cgroup's two files in runc's order.
    fn apply_rt(&self, period: Option<u64>, runtime: Option<i64>) -> Result<(), CgroupError> {
        const FIELD: &str = "linux.resources.cpu.realtimeRuntime";
        let dir = self.dir_for("cpu", FIELD)?;
        if !dir.join("cpu.rt_runtime_us").exists() {
            return Err(CgroupError::Unsupported {
                field: FIELD,
                why: format!(
                    "{:?} is missing: the kernel has no RT group scheduling (CONFIG_RT_GROUP_SCHED)",
                    dir.join("cpu.rt_runtime_us")
                ),
            });
        }
        if let (Some(r), Some(place)) = (runtime.filter(|&r| r > 0), self.place_of(dir)) {
            crate::rt_budget::ensure(&place.mount.mount_point, dir, period, r)?;
        }
        crate::rt_budget::write(dir, period, runtime)
    }

    fn place_of(&self, dir: &Path) -> Option<&Place> {
        self.places.iter().find(|p| p.dir == dir)
    }

    fn apply_write(
        &self,
        field: &'static str,
        controller: &'static str,
        files: &[(String, String)],
    ) -> Result<(), CgroupError> {
        let dir = self.dir_for(controller, field)?;
        let chosen = if files.len() == 1 {
            Some(&files[0])
        } else {
            files.iter().find(|(f, _)| dir.join(f).exists())
        };
        let Some((file, value)) = chosen else {
            let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
            return Err(CgroupError::Unsupported {
                field,
                why: format!("none of {names:?} exists in {dir:?} on this kernel"),
            });
        };
        let path = dir.join(file);
        fs::write(&path, value).map_err(|e| match e.errno().map(|e| e.0) {
            Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(524) if dir.exists() => {
                CgroupError::Unsupported {
                    field,
                    why: format!("this kernel does not provide it ({e})"),
                }
            }
            _ => e,
        })
    }

    /// The directory that holds `controller`'s files.
    fn dir_for(&self, controller: &'static str, field: &'static str) -> Result<&Path, CgroupError> {
        let found = match self.mode {
            Mode::V2 => self.places.first(),
            Mode::V1 | Mode::Hybrid => self
                .places
                .iter()
                .find(|p| !p.mount.v2 && p.mount.has(controller)),
        };
        if let Some(p) = found {
            return Ok(&p.dir);
        }
        // Hybrid: a controller no v1 hierarchy holds may be offered by the unified one (hugetlb
        // on hosts that mount only some v1 controllers).
        match self.unified() {
            Some(u)
                if self.mode == Mode::Hybrid
                    && unified_offers(&u.mount.mount_point, controller) =>
            {
                Ok(&u.dir)
            }
            _ => Err(CgroupError::NotMounted { field, controller }),
        }
    }

    /// Hybrid: the controllers the steps need that only the unified hierarchy can provide.
    fn borrowed_from_unified(&self, steps: &[Step]) -> Vec<&'static str> {
        if self.mode != Mode::Hybrid {
            return Vec::new();
        }
        let mut out: Vec<&'static str> = steps
            .iter()
            .filter_map(Step::controller)
            .filter(|c| !self.places.iter().any(|p| !p.mount.v2 && p.mount.has(c)))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn freezer_v1(&self) -> Option<&Path> {
        (self.mode != Mode::V2)
            .then(|| self.dir_for("freezer", "freeze").ok())
            .flatten()
    }

    fn unified(&self) -> Option<&Place> {
        self.places.iter().find(|p| p.mount.v2)
    }

    /// Freezes every task; returns once the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    /// Thaws this cgroup and every cgroup below it that is frozen on its own (a sub-cgroup a
    /// process inside froze, or one left frozen by a nested manager): a frozen task takes no
    /// signal on v1, so before `delete --force` sends SIGKILL every one must be thawed. Thawing
    /// only this cgroup leaves self-frozen children frozen (cgroup v1 freezer: a child's own
    /// state is independent of its parent's; v2: cgroup.freeze is per cgroup). Parents first,
    /// so no thawed child waits on a frozen parent. Directories that vanish meanwhile are fine.
    pub fn thaw_subtree(&self) -> Result<(), CgroupError> {
        let (top, file, thawed) = match self.freezer_v1() {
            Some(dir) => (dir, "freezer.state", "THAWED"),
            None => match self.unified() {
                Some(p) => (p.dir.as_path(), "cgroup.freeze", "0"),
                None => return Ok(()),
            },
        };
        let mut dirs = fs::subtree_deepest_first(top)?;
        dirs.reverse();
        for dir in dirs {
            let path = dir.join(file);
            let Some(state) = fs::read_opt(&path) else {
                continue;
            };
            if state.trim() == thawed {
                continue;
            }
            match fs::write(&path, thawed) {
                Err(e) if e.errno() == Some(Errno(libc::ENOENT)) => {}
                other => other?,
            }
        }
        Ok(())
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let op = if frozen { "freeze" } else { "thaw" };
        let (path, value) = if let Some(dir) = self.freezer_v1() {
            (
                dir.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            )
        } else {
            let Some(p) = self.unified() else {
                return Err(CgroupError::NotMounted {
                    field: op,
                    controller: "freezer",
                });
            };
            (p.dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })
        };
        fs::write(&path, value)?;
        // v1 freezing can stall in FREEZING while a task sits in an uninterruptible sleep; runc
        // writes FROZEN again now and then, which restarts the kernel's walk.
        let start = Instant::now();
        let limit = Duration::from_secs(5);
        let mut tries = 0u32;
        let mut last_rewrite = 0u32;
        loop {
            if self.frozen_state()? == Some(frozen) {
                return Ok(());
            }
            if start.elapsed() > limit {
                let state = fs::read_opt(&path).unwrap_or_default().trim().to_string();
                if frozen {
                    // Do not leave a half-frozen container behind.
                    let thaw = if value == "1" { "0" } else { "THAWED" };
                    fs::write(&path, thaw)?;
                }
                return Err(CgroupError::Timeout {
                    op,
                    path,
                    state,
                    waited_ms: limit.as_millis() as u64,
                });
            }
            tries += 1;
            if tries >= 100 && tries - last_rewrite >= 100 {
                last_rewrite = tries;
                fs::write(&path, value)?;
            }
            std::thread::sleep(Duration::from_micros(if tries < 100 { 100 } else { 5000 }));
        }
    }

    /// Some(true) frozen, Some(false) thawed, None in between (v1 FREEZING).
    fn frozen_state(&self) -> Result<Option<bool>, CgroupError> {
        if let Some(dir) = self.freezer_v1() {
            let state = fs::read(&dir.join("freezer.state"))?;
            return Ok(match state.trim() {
                "FROZEN" => Some(true),
                "THAWED" => Some(false),
                _ => None,
            });
        }
        let Some(p) = self.unified() else {
            return Ok(Some(false));
        };
        let events = fs::read(&p.dir.join("cgroup.events"))?;
        let frozen = events.lines().any(|l| l.trim() == "frozen 1");
        let wanted = fs::read(&p.dir.join("cgroup.freeze"))?.trim() == "1";
        // The kernel reports "frozen 1" only once every task stopped.
        Ok(if frozen == wanted { Some(frozen) } else { None })
    }

    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(self.frozen_state()? == Some(true))
    }

    /// Every pid in the cgroup and its sub-cgroups.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let place = match self.mode {
            Mode::V2 => self.places.first(),
            _ => self
                .places
                .iter()
                .find(|p| p.mount.has("pids") || p.mount.has("freezer"))
                .or_else(|| self.places.first()),
        };
        let Some(place) = place else {
            return Ok(Vec::new());
        };
        let mut pids = Vec::new();
        for dir in fs::subtree_deepest_first(&place.dir)? {
            let path = dir.join("cgroup.procs");
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // Removed between the walk and the read.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => {
                    return Err(CgroupError::Read {
                        path,
                        errno: Errno::of(&e),
                    })
                }
            };
            for line in text.lines() {
                let pid = line.trim().parse().map_err(|_| CgroupError::Parse {
                    path: path.clone(),
                    content: line.to_string(),
                })?;
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    pub fn stats(&self) -> Result<crate::stats::Stats, CgroupError> {
        Ok(match self.mode {
            Mode::V2 => crate::stats::read_v2(&self.places[0].dir),
            _ => crate::stats::read_v1(|c| self.dir_for(c, "stats").ok()),
        })
    }

    /// The kernel's counters of OOM kills and refused forks, and the limits in force (see
    /// [`crate::Events`]). Reads only; works on a cgroup whose tasks are gone.
    /// Arm an OOM notification on the cgroup's memory controller (v1 eventfd, v2 inotify on
    /// memory.events; a hybrid host's memory is whichever hierarchy holds it).
    pub fn oom_watch(&self) -> Result<crate::OomWatch, CgroupError> {
        let dir = self.dir_for("memory", "events")?;
        let v2 = self.mode == Mode::V2 || self.unified().is_some_and(|u| u.dir == dir);
        crate::OomWatch::new(dir, v2)
    }

    pub fn events(&self) -> crate::Events {
        let v2 = self.mode == Mode::V2;
        let memory = self.dir_for("memory", "events").ok();
        let pids = self.dir_for("pids", "events").ok();
        // Hybrid: a controller borrowed from the unified hierarchy has v2 files.
        let is_unified =
            |d: Option<&Path>| v2 || d.is_some_and(|d| self.unified().is_some_and(|u| u.dir == d));
        let mut e = crate::events::read(memory, None, is_unified(memory));
        let p = crate::events::read(None, pids, is_unified(pids));
        e.exists |= p.exists;
        e.pids_max_hits = p.pids_max_hits;
        e.pids_limit = p.pids_limit;
        e.pids_current = p.pids_current;
        e.sources.extend(p.sources);
        e
    }

    /// Removes every directory of this cgroup, deepest first, in every hierarchy. A missing
    /// directory counts as removed; every error is collected, none stops the rest.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut errors = Vec::new();
        for p in &self.places {
            // The common case, a cgroup with no child cgroups and no tasks left: one rmdir. The
            // walk below (a directory read per level) is for the rest: EBUSY means children or
            // tasks still leaving, ENOTEMPTY should not happen on cgroupfs but is handled alike.
            match std::fs::remove_dir(&p.dir) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {}
                // removed now, or already (a delete that stopped half-way): the parents next
                _ => {
                    remove_empty_atoll_parents(p);
                    continue;
                }
            }
            match fs::subtree_deepest_first(&p.dir) {
                Ok(dirs) => {
                    let mut all = true;
                    for d in dirs {
                        if let Err(e) = rmdir_retrying(&d) {
                            errors.push(e);
                            all = false;
                        }
                    }
                    if all {
                        remove_empty_atoll_parents(p);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(CgroupError::Many(errors)),
        }
    }
}

/// The parents atoll made under its own name (`/atoll`, `/atoll/islands/<project>`) go with
/// their last child, so nothing of atoll's stays in a hierarchy once its last container is
/// gone. Parents of any other path (`/kubepods/...`, a systemd slice) belong to whoever made
/// them and are never touched. A parent still in use fails rmdir (EBUSY/ENOTEMPTY) and stays;
/// a `create` racing with this walks again (see `make_dirs`).
fn remove_empty_atoll_parents(p: &Place) {
    let rel = Path::new(&p.rel);
    for (rel_dir, dir) in rel.ancestors().zip(p.dir.ancestors()).skip(1) {
        if rel_dir == Path::new("/") || !rel_dir.starts_with("/atoll") {
            return;
        }
        if std::fs::remove_dir(dir).is_err() {
            return;
        }
    }
}

/// Moves the calling thread into the v1 cgroup whose `tasks` file `tasks` is, by writing "0".
///
/// Why this and not the usual write of a pid to cgroup.procs: moving a whole thread group, or
/// any task named by pid, takes cgroup_threadgroup_rwsem for writing, a per-cpu rwsem whose
/// writer waits for an RCU grace period (0.6-1.3 ms measured here, every time, unless the host
/// set favordynmods). A thread moving only itself ("0" to `tasks`) needs no such lock: it
/// cannot exit or exec under the kernel's hands. For a single-threaded process (the container's
/// init before exec) that is the whole process. Permission is checked against the credentials
/// of whoever opened the file (the runtime, as root), so the mover may already be in a user
/// namespace.
pub fn join_self(path: &Path, tasks: std::os::fd::BorrowedFd<'_>) -> Result<(), CgroupError> {
    rustix::io::write(tasks, b"0")
        .map(|_| ())
        .map_err(|e| CgroupError::Write {
            path: path.to_path_buf(),
            value: "0".into(),
            errno: Errno::of(&e.into()),
        })
}

/// rmdir, retried for about a second on EBUSY: exiting tasks leave a cgroup a moment after they
/// are reaped. ENOENT is success.
pub(crate) fn rmdir_retrying(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(1);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(CgroupError::Rmdir {
                    path: dir.to_path_buf(),
                    errno: Errno::of(&e),
                })
            }
        }
    }
}

/// A new v1 cpuset cgroup starts with empty cpus and mems, and no task can join it until they are
/// set (ENOSPC): copy the parent's, as runc does, unless they are already set.
fn inherit_cpuset(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = fs::read(&dir.join(file))?;
        if own.trim().is_empty() {
            let from_parent = fs::read(&parent.join(file))?;
            fs::write(&dir.join(file), from_parent.trim())?;
        }
    }
    Ok(())
}

fn unified_offers(mount_point: &Path, controller: &str) -> bool {
    fs::read_opt(&mount_point.join("cgroup.controllers"))
        .is_some_and(|c| c.split_whitespace().any(|c| c == controller))
}

/// Enables exactly `wanted` in `dir`'s cgroup.subtree_control (those not enabled yet).
fn enable_listed(dir: &Path, wanted: &[&str]) -> Result<(), CgroupError> {
    let enabled = fs::read(&dir.join("cgroup.subtree_control"))?;
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::write(&dir.join("cgroup.subtree_control"), &missing.join(" "))
}

/// v2: enables in `dir`'s cgroup.subtree_control every controller it offers that is not enabled
/// yet, so the child gets all of them (for limits now, `update` and stats later). If the kernel
/// refuses the full set, only the controllers the steps need are required.
fn enable_controllers(dir: &Path, steps: &[Step]) -> Result<(), CgroupError> {
    let available = fs::read(&dir.join("cgroup.controllers"))?;
    let enabled = fs::read(&dir.join("cgroup.subtree_control"))?;
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    let missing: Vec<&str> = available
        .split_whitespace()
        .filter(|c| !enabled.contains(c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let line = |set: &[&str]| {
        set.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let path = dir.join("cgroup.subtree_control");
    let Err(full) = fs::write(&path, &line(&missing)) else {
        return Ok(());
    };
    let needed: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|c| steps.iter().any(|s| s.controller() == Some(c)))
        .collect();
    if needed.is_empty() {
        return Ok(());
    }
    fs::write(&path, &line(&needed)).map_err(|_| full)
}

fn v1_memory_and_swap(
    dir: &Path,
    limit: i64,
    swap: i64,
    swap_optional: bool,
) -> Result<(), CgroupError> {
    let limit_file = dir.join("memory.limit_in_bytes");
    let swap_file = dir.join("memory.memsw.limit_in_bytes");
    if !swap_file.exists() {
        if swap_optional {
            return fs::write(&limit_file, &limit.to_string());
        }
        return Err(CgroupError::Unsupported {
            field: "linux.resources.memory.swap",
            why: format!(
                "{swap_file:?} is missing: the kernel does not account swap (swapaccount=1)"
            ),
        });
    }
    // The kernel keeps limit <= memsw limit at every moment, so raise memsw first when growing.
    let current = fs::read_u64(&limit_file).unwrap_or(u64::MAX);
    let swap_first = swap == -1 || current < swap as u64;
    let order: [(&Path, i64); 2] = if swap_first {
        [(&swap_file, swap), (&limit_file, limit)]
    } else {
        [(&limit_file, limit), (&swap_file, swap)]
    };
    for (file, value) in order {
        fs::write(file, &value.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_strips_mount_root() {
        let m = Mount {
            v2: true,
            controllers: vec![],
            mount_point: "/sys/fs/cgroup".into(),
            root: "/".into(),
        };
        assert_eq!(
            place(&m, "/atoll/c1".into()).dir,
            Path::new("/sys/fs/cgroup/atoll/c1")
        );
        let bind = Mount {
            root: "/kubepods/pod1".into(),
            ..m
        };
        assert_eq!(
            place(&bind, "/kubepods/pod1/c1".into()).dir,
            Path::new("/sys/fs/cgroup/c1")
        );
        assert_eq!(
            place(&bind, "/other".into()).dir,
            Path::new("/sys/fs/cgroup/other")
        );
    }
}

//! Who is diagnosed: an island (from its project's plan) or a plain OCI container (from the
//! runtime's state under `--root`, as podman or containerd left it). Either way doctor reaches
//! the tenant's namespaces through what atoll saved: the island's pinned netns, or the init's
//! pid (`/proc/PID/ns/net`, `/proc/PID/root`).

use std::path::{Path, PathBuf};

use atoll_islands::plan::{IslandPlan, Plan};
use atoll_runtime::{Saved, Status, Store};

use crate::error::DoctorError;

/// An island and the plan it belongs to.
#[derive(Debug, Clone)]
pub struct IslandRef {
    pub plan: Plan,
    pub index: usize,
}

impl IslandRef {
    pub fn island(&self) -> &IslandPlan {
        &self.plan.islands[self.index]
    }
}

#[derive(Debug, Clone)]
pub struct Subject {
    /// "project/island", or the container id.
    pub name: String,
    pub container_id: String,
    pub runtime_root: PathBuf,
    /// The runtime's record; None when no container of that id exists (an island whose
    /// container was deleted under it).
    pub saved: Option<Saved>,
    pub status: Option<Status>,
    /// The init's host pid while it is alive.
    pub pid: Option<i32>,
    /// The network namespace: an island's pinned one (it outlives the init), else the init's.
    pub netns: Option<PathBuf>,
    /// Whether the tenant has a network namespace of its own (false: it shares the host's).
    pub own_netns: bool,
    /// The tenant's root as its mount namespace shows it (`/proc/PID/root`), while it runs.
    pub root: Option<PathBuf>,
    pub island: Option<IslandRef>,
}

const CLONE_NEWNET: u64 = 0x4000_0000;

impl Subject {
    /// The island `index` of `plan`.
    pub fn island(plan: &Plan, index: usize) -> Subject {
        let i = &plan.islands[index];
        let mut s = Subject::from_store(
            format!("{}/{}", plan.name, i.spec.name),
            &plan.runtime_root,
            &i.container_id,
        );
        s.netns = Some(i.netns.clone());
        s.own_netns = true;
        s.island = Some(IslandRef {
            plan: plan.clone(),
            index,
        });
        s
    }

    /// The container `id` of the runtime root `root`: its full id, or a prefix that only one
    /// container's id starts with (podman and docker print 12 of the 64 hex digits).
    pub fn container(root: &Path, id: &str) -> Result<Subject, DoctorError> {
        let store = Store::new(root);
        let not_found =
            || DoctorError::NotFound(format!("no container {id:?} in {}", root.display()));
        // An id is a path component under the root: one that could leave it names nothing.
        atoll_runtime::state::check_id(id).map_err(|_| not_found())?;
        if store.exists(id) {
            return Ok(Subject::from_store(id.to_string(), root, id));
        }
        let ids = store.list().map_err(|e| {
            DoctorError::NotFound(format!("list the containers of {}: {e}", root.display()))
        })?;
        let matching: Vec<&String> = ids.iter().filter(|c| c.starts_with(id)).collect();
        match matching.as_slice() {
            [] => Err(not_found()),
            [one] => Ok(Subject::from_store(one.to_string(), root, one)),
            many => Err(DoctorError::NotFound(format!(
                "{} containers of {} start with {id:?}: give more of the id",
                many.len(),
                root.display()
            ))),
        }
    }

    fn from_store(name: String, root: &Path, id: &str) -> Subject {
        let saved = Store::new(root).load(id).ok();
        let status = saved.as_ref().map(Saved::status);
        let pid = saved
            .as_ref()
            .filter(|s| s.pid > 0 && s.init_alive())
            .map(|s| s.pid);
        let own_netns = saved
            .as_ref()
            .is_some_and(|s| s.ns_flags & CLONE_NEWNET != 0);
        Subject {
            name,
            container_id: id.to_string(),
            runtime_root: root.to_path_buf(),
            netns: pid.map(|p| PathBuf::from(format!("/proc/{p}/ns/net"))),
            own_netns,
            root: pid.map(|p| PathBuf::from(format!("/proc/{p}/root"))),
            saved,
            status,
            pid,
            island: None,
        }
    }
}

/// Find what `what` names. With `--root` given, only containers of that root (a script that
/// drives atoll as runc never reaches an island by accident). Without it: "project/island" is an
/// island; a bare name is a container of the default root if one exists, else an island of
/// that name in exactly one project, else a container whose id it uniquely begins.
pub fn find(
    what: &str,
    runtime_root: &Path,
    root_given: bool,
    islands_state: &Path,
) -> Result<Subject, DoctorError> {
    if root_given {
        return Subject::container(runtime_root, what);
    }
    if !what.contains('/') && Store::new(runtime_root).exists(what) {
        return Subject::container(runtime_root, what);
    }
    let (plan, name) = match atoll_islands::resolve(islands_state, what) {
        Ok(found) => found,
        // Not an island: a unique prefix of a container id, last, so that it never hides one.
        Err(e) => {
            return Subject::container(runtime_root, what)
                .map_err(|c| DoctorError::NotFound(format!("{e}; and {c}")))
        }
    };
    let index = plan
        .islands
        .iter()
        .position(|i| i.spec.name == name)
        .ok_or_else(|| DoctorError::NotFound(format!("no island {what:?}")))?;
    Ok(Subject::island(&plan, index))
}

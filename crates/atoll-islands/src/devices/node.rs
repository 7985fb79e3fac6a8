//! A planned island's grants on the host and in its config.json: its own device nodes (made by
//! `up`, removed by `down`), the binds and device-cgroup rules, what `status` shows, and the
//! one-tenant-per-GPU rule across the projects that are up.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::grant::*;
use crate::error::{io, FileError, IslandsError, Result};
use crate::plan::{IslandPlan, Plan};

/// An island's grants as `status` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceStatus {
    /// Each entry as asked, with its nodes ("/dev/nvidia0 c 195:0 rwm").
    pub grants: Vec<(String, Vec<String>)>,
    /// [`GPU_NOTE`] where a grant is a GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    pub shared: bool,
}

impl DeviceStatus {
    pub fn of(island: &crate::file::Island) -> Option<DeviceStatus> {
        if island.devices.is_empty() {
            return None;
        }
        let grants = island
            .devices
            .iter()
            .map(|g| {
                let nodes = g
                    .nodes
                    .iter()
                    .map(|n| {
                        let access = if n.access.is_empty() {
                            "none"
                        } else {
                            &n.access
                        };
                        format!("{} {} {}:{} {access}", n.path, n.kind, n.major, n.minor)
                    })
                    .collect();
                (g.asked.clone(), nodes)
            })
            .collect();
        let gpu = island
            .devices
            .iter()
            .any(Grant::is_gpu)
            .then(|| GPU_NOTE.to_string());
        Some(DeviceStatus {
            grants,
            gpu,
            shared: island.shared,
        })
    }
}

impl DeviceStatus {
    /// The grants on one line (doctor's evidence).
    pub fn one_line(&self) -> String {
        let grants: Vec<String> = self
            .grants
            .iter()
            .map(|(asked, nodes)| format!("{asked} ({})", nodes.join(", ")))
            .collect();
        let mut line = format!("devices: {}", grants.join("; "));
        if let Some(note) = &self.gpu {
            line.push_str(&format!("; GPU: {note}"));
        }
        line
    }
}

impl std::fmt::Display for DeviceStatus {
    /// One line per grant, then the GPU note; ends with a newline.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (asked, nodes)) in self.grants.iter().enumerate() {
            let sep = if i == 0 { "" } else { "    " };
            writeln!(f, "{sep}{asked} -> {}", nodes.join(", "))?;
        }
        if let Some(note) = &self.gpu {
            let shared = if self.shared { " (shared = true)" } else { "" };
            writeln!(f, "    GPU{shared}: {note}")?;
        }
        Ok(())
    }
}

/// Where `up` makes the island's own device nodes: beside the islands' data dirs, on the data
/// root's filesystem. Not in the state dir: that tmpfs is mounted nodev (open(2) refuses a
/// node there with EACCES), and so is /run on most hosts.
pub fn node_dir(island: &IslandPlan) -> PathBuf {
    island
        .data_dir
        .parent()
        .unwrap_or(Path::new("/"))
        .join(".devices")
        .join(&island.spec.name)
}

/// The host path of node `n` of grant `g`.
pub fn host_node(island: &IslandPlan, g: usize, n: usize) -> PathBuf {
    node_dir(island).join(format!("{g}-{n}"))
}

/// Make the island's device nodes: a node of the granted major:minor owned by the island's
/// user as the host sees it (its mapped uid and gid), so that it is usable inside the user
/// namespace whatever group (video, render) owns the host's node; the device cgroup still
/// decides which numbers open. An island without devices costs nothing here.
pub fn make_nodes(island: &IslandPlan) -> Result<()> {
    if island.spec.devices.is_empty() {
        return Ok(());
    }
    let fail = |msg: String| IslandsError::Island {
        island: island.spec.name.clone(),
        msg,
    };
    let dir = node_dir(island);
    let _ = std::fs::remove_dir_all(&dir);
    let parent = dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(io(format!("mkdir {}", parent.display())))?;
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))
        .map_err(io(format!("chmod {}", parent.display())))?;
    std::fs::create_dir(&dir).map_err(io(format!("mkdir {}", dir.display())))?;
    let st = rustix::fs::statvfs(&dir)
        .map_err(|e| io(format!("statvfs {}", dir.display()))(e.into()))?;
    if st.f_flag.contains(rustix::fs::StatVfsMountFlags::NODEV) {
        return Err(fail(format!(
            "its device nodes would be in {}, on a filesystem mounted nodev, where no device opens: choose a data_root on a filesystem without nodev",
            dir.display()
        )));
    }
    let (uid, gid) = (
        island.host_base + island.spec.uid,
        island.host_base + island.spec.gid,
    );
    // The island's root (host_base) enters the dir to bind the nodes; nobody else does.
    std::os::unix::fs::chown(&dir, Some(island.host_base), Some(island.host_base))
        .map_err(io(format!("chown {}", dir.display())))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", dir.display())))?;
    for (g, grant) in island.spec.devices.iter().enumerate() {
        for (n, node) in grant.nodes.iter().enumerate() {
            let path = host_node(island, g, n);
            let kind = if node.kind == 'b' {
                rustix::fs::FileType::BlockDevice
            } else {
                rustix::fs::FileType::CharacterDevice
            };
            let mode = rustix::fs::Mode::from_raw_mode(node.mode);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                kind,
                mode,
                rustix::fs::makedev(node.major, node.minor),
            )
            .map_err(|e| io(format!("mknod {}", path.display()))(e.into()))?;
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(io(format!("chown {}", path.display())))?;
            // mknod applied the umask.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(node.mode))
                .map_err(io(format!("chmod {}", path.display())))?;
        }
    }
    Ok(())
}

/// Remove the island's device nodes (teardown).
pub fn remove_nodes(island: &IslandPlan) -> std::result::Result<(), String> {
    let dir = node_dir(island);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove {}: {e}", dir.display())),
    }
}

/// The island's grants in its config.json: each node bound from the island's own node (in a
/// user namespace mknod is refused, mknod(2)), a device-cgroup rule for exactly its
/// major:minor, and the CDI mounts, env and hooks.
pub fn apply_to_config(island: &IslandPlan, config: &mut Value) {
    if island.spec.devices.is_empty() {
        return;
    }
    let mut mounts = Vec::new();
    let mut rules = Vec::new();
    let mut env = Vec::new();
    for (g, grant) in island.spec.devices.iter().enumerate() {
        for (n, node) in grant.nodes.iter().enumerate() {
            mounts.push(serde_json::json!({
                "destination": node.path, "type": "bind",
                "source": host_node(island, g, n),
                "options": ["bind", "nosuid", "noexec"]}));
            // An empty access (CDI `permissions: "none"`) is no rule: in a rule it would
            // read as all access (runtime-spec, runc).
            if !node.access.is_empty() {
                rules.push(serde_json::json!({
                    "allow": true, "type": node.kind.to_string(),
                    "major": node.major, "minor": node.minor, "access": node.access}));
            }
        }
        mounts.extend(grant.mounts.iter().cloned());
        env.extend(grant.env.iter().cloned());
        for (name, hook) in &grant.hooks {
            let list = &mut config["hooks"][name.as_str()];
            if !list.is_array() {
                *list = Value::Array(Vec::new());
            }
            list.as_array_mut().expect("an array").push(hook.clone());
        }
    }
    if let Some(m) = config["mounts"].as_array_mut() {
        m.extend(mounts);
    }
    if let Some(e) = config["process"]["env"].as_array_mut() {
        for kv in env {
            let key = kv.split('=').next().unwrap_or_default().to_string();
            e.retain(|x| {
                !x.as_str()
                    .is_some_and(|x| x.starts_with(&format!("{key}=")))
            });
            e.push(Value::String(kv));
        }
    }
    // Deny everything first, then the grants: the runtime appends the standard devices
    // (null, zero, tty, pts...) after these, as runc does.
    let mut all = vec![serde_json::json!({"allow": false, "access": "rwm"})];
    all.extend(rules);
    config["linux"]["resources"]["devices"] = Value::Array(all);
}

/// A GPU is one tenant's across projects too: an island of `file` may use a GPU that an island
/// of a project already up uses (the same whole GPU, a whole GPU and an instance of it, or the
/// same MIG instance) only where both say `shared = true`. Called under the state lock, so two
/// `up`s at once see each other.
pub fn check_gpus_against(
    file: &crate::file::File,
    others: &[Plan],
) -> std::result::Result<(), FileError> {
    for (k, island) in file.islands.iter().enumerate() {
        for (g, grant) in island.devices.iter().enumerate() {
            let ours = grant.gpu_uses();
            if ours.is_empty() {
                continue;
            }
            let taken = others.iter().flat_map(|p| {
                p.islands
                    .iter()
                    .filter(|o| !(o.spec.shared && island.shared))
                    .map(move |o| (p, o))
            });
            for (p, o) in taken {
                let theirs: Vec<GpuUse> = o.spec.devices.iter().flat_map(Grant::gpu_uses).collect();
                if ours.iter().any(|u| theirs.iter().any(|t| overlap(t, u))) {
                    return Err(FileError {
                        path: file.path.clone(),
                        line: 0,
                        col: 0,
                        field: format!("island[{k}] ({}).devices[{g}]", island.name),
                        msg: format!(
                            "{} uses the same GPU as island {:?} of project {:?}, which is up: {GPU_NOTE}; set `shared = true` on both islands to allow it",
                            grant.asked, o.spec.name, p.name
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

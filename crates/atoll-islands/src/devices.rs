//! Device grants: an islands file's `devices` entries (a host device path, or a CDI name such
//! as `nvidia.com/gpu=0`) resolved into the nodes, cgroup rules, mounts, env and hooks an island
//! gets. CDI specs are read and their edits applied with the `container-device-interface` crate.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use container_device_interface as cdi;
use std::os::unix::fs::PermissionsExt;

use crate::error::{io, IslandsError, Result};
use crate::plan::IslandPlan;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where CDI specs live (the CDI spec's "Spec Directories"): static, then generated; a later
/// directory's spec wins over an earlier one for the same device.
pub const CDI_SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];
/// Overrides [`CDI_SPEC_DIRS`] with a colon-separated list (tests, and hosts that keep specs
/// elsewhere).
pub const CDI_SPEC_DIRS_ENV: &str = "ATOLL_CDI_SPEC_DIRS";

/// NVIDIA's GPU nodes: char major 195, minors 0..=253 one per GPU (254 is nvidia-modeset, 255
/// nvidiactl, which every GPU user shares).
pub const NVIDIA_MAJOR: u32 = 195;
const NVIDIA_GPU_MINORS: std::ops::RangeInclusive<u32> = 0..=253;

/// What cgroups cannot do for a GPU, said wherever an island has one.
pub const GPU_NOTE: &str = "VRAM and SMs are not limited by cgroups: shared GPUs are shared; give a tenant a MIG instance for a hard partition";

/// One device node an island gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Where it appears inside the island.
    pub path: String,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: u32,
    pub minor: u32,
    /// Device-cgroup access: letters of "rwm".
    pub access: String,
    /// Permission bits of the island's own node (its owner is the island's user).
    pub mode: u32,
}

/// One `devices` entry, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// As the file says it.
    pub asked: String,
    pub nodes: Vec<Node>,
    /// CDI mounts, env and hooks (runtime-spec JSON), applied to the island's config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// runtime-spec hook name ("createContainer", ...) and the hook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<(String, Value)>,
}

/// Which GPUs a grant holds, for the one-tenant-per-GPU rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GpuUse {
    /// The whole GPU of this minor.
    Whole(u32),
    /// A MIG instance of the GPU of this minor: its capability nodes (major, minor).
    Mig(u32, Vec<(u32, u32)>),
}

impl Node {
    fn is_gpu(&self) -> bool {
        self.kind == 'c' && self.major == NVIDIA_MAJOR && NVIDIA_GPU_MINORS.contains(&self.minor)
    }
}

impl Grant {
    /// Whether this is a GPU: a CDI name of nvidia.com/gpu, or a node of major 195.
    pub fn is_gpu(&self) -> bool {
        self.asked.starts_with("nvidia.com/gpu=") || self.nodes.iter().any(Node::is_gpu)
    }

    /// The GPUs it uses: a grant with MIG capability nodes (/dev/nvidia-caps/) holds an
    /// instance, not the whole GPU.
    pub fn gpu_uses(&self) -> Vec<GpuUse> {
        let caps: Vec<(u32, u32)> = self
            .nodes
            .iter()
            .filter(|n| n.path.starts_with("/dev/nvidia-caps/"))
            .map(|n| (n.major, n.minor))
            .collect();
        self.nodes
            .iter()
            .filter(|n| n.is_gpu())
            .map(|n| {
                if caps.is_empty() {
                    GpuUse::Whole(n.minor)
                } else {
                    GpuUse::Mig(n.minor, caps.clone())
                }
            })
            .collect()
    }
}

/// Whether two uses of GPUs overlap: the same whole GPU, a whole GPU and an instance of it, or
/// the same instance.
pub fn overlap(a: &GpuUse, b: &GpuUse) -> bool {
    match (a, b) {
        (GpuUse::Whole(x), GpuUse::Whole(y))
        | (GpuUse::Whole(x), GpuUse::Mig(y, _))
        | (GpuUse::Mig(x, _), GpuUse::Whole(y)) => x == y,
        (GpuUse::Mig(x, c), GpuUse::Mig(y, d)) => x == y && c.iter().any(|n| d.contains(n)),
    }
}

/// A host device path: `PATH` or `PATH:ACCESS`. A node under /dev appears at the same path
/// inside; one elsewhere (a copy made for the island) at /dev/NAME.
pub fn from_path(entry: &str) -> Result<Grant, String> {
    let (path, access) = match entry.rsplit_once(':') {
        Some((p, a)) => (p, check_access(a)?),
        None => (entry, "rwm".to_string()),
    };
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(format!(
            "{path:?} is neither an absolute device path nor a CDI name (vendor/class=name)"
        ));
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    let kind = if meta.file_type().is_char_device() {
        'c'
    } else if meta.file_type().is_block_device() {
        'b'
    } else {
        return Err(format!(
            "{path} is not a device node (a character or block device)"
        ));
    };
    let rdev = meta.rdev();
    let inside = if path.starts_with("/dev/") {
        path.to_string()
    } else {
        let name = Path::new(path).file_name().unwrap_or_default();
        format!("/dev/{}", name.to_string_lossy())
    };
    Ok(Grant {
        asked: entry.to_string(),
        nodes: vec![Node {
            path: inside,
            kind,
            major: rustix::fs::major(rdev),
            minor: rustix::fs::minor(rdev),
            access,
            mode: 0o660,
        }],
        mounts: Vec::new(),
        env: Vec::new(),
        hooks: Vec::new(),
    })
}

fn check_access(a: &str) -> Result<String, String> {
    if a.is_empty() || !a.chars().all(|c| "rwm".contains(c)) {
        return Err(format!(
            "access {a:?}: want letters of \"rwm\" (read, write, mknod)"
        ));
    }
    Ok(a.to_string())
}

/// Whether an entry is a CDI name (`vendor/class=name`) rather than a path.
pub fn is_cdi_name(entry: &str) -> bool {
    !entry.starts_with('/') && entry.contains('/') && entry.contains('=')
}

/// The CDI specs of this host's spec directories, read once per islands file.
pub struct Registry {
    pub dirs: Vec<PathBuf>,
    /// "vendor/class" → device name → (spec file, device).
    kinds: BTreeMap<String, BTreeMap<String, (PathBuf, cdi::device::Device)>>,
}

impl Registry {
    /// The spec dirs from [`CDI_SPEC_DIRS_ENV`] or the standard ones.
    pub fn dirs() -> Vec<PathBuf> {
        match std::env::var(CDI_SPEC_DIRS_ENV) {
            Ok(v) if !v.is_empty() => v.split(':').map(PathBuf::from).collect(),
            _ => CDI_SPEC_DIRS.iter().map(PathBuf::from).collect(),
        }
    }

    /// Read every spec (*.json, *.yaml) of `dirs`. A spec that does not parse or validate is an
    /// error naming its file: a device it may define must not silently vanish.
    pub fn load(dirs: Vec<PathBuf>) -> Result<Registry, String> {
        let mut kinds: BTreeMap<String, BTreeMap<String, (PathBuf, cdi::device::Device)>> =
            BTreeMap::new();
        for (priority, dir) in dirs.iter().enumerate() {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && cdi::utils::is_cdi_spec(p))
                .collect();
            files.sort();
            for file in files {
                let mut spec = cdi::spec::read_spec(&file, priority as i32)
                    .map_err(|e| format!("CDI spec {}: {e:#}", file.display()))?;
                let kind = format!("{}/{}", spec.get_vendor(), spec.get_class());
                let devs = kinds.entry(kind.clone()).or_default();
                // Taken, not cloned: each device holds a copy of its whole spec.
                for (name, dev) in std::mem::take(&mut spec.devices) {
                    if let Some((other, old)) = devs.get(&name) {
                        if old.get_spec().get_priority() == priority as i32 {
                            return Err(format!(
                                "CDI specs {} and {} both define {kind}={name}",
                                other.display(),
                                file.display()
                            ));
                        }
                    }
                    devs.insert(name, (file.clone(), dev));
                }
            }
        }
        Ok(Registry { dirs, kinds })
    }

    /// Resolve `vendor/class=name`. `name` "all" is the spec's own "all" device where it has
    /// one, else every device of the kind.
    pub fn resolve(&self, entry: &str) -> Result<Grant, String> {
        let (kind, name) = entry.split_once('=').unwrap_or((entry, ""));
        let dirs = self
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let Some(devs) = self.kinds.get(kind) else {
            let known: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
            return Err(format!(
                "no CDI spec in {dirs} defines the kind {kind:?} (known kinds: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        let chosen: Vec<&(PathBuf, cdi::device::Device)> = match devs.get(name) {
            Some(d) => vec![d],
            None if name == "all" => devs.values().collect(),
            None => {
                let known: Vec<String> = devs.keys().map(|n| format!("{kind}={n}")).collect();
                return Err(format!(
                    "no CDI spec in {dirs} defines {entry:?}; known names: {}",
                    known.join(", ")
                ));
            }
        };
        let mut edits = cdi::container_edits::ContainerEdits::new();
        let mut seen_specs = Vec::new();
        for (file, dev) in &chosen {
            if !seen_specs.contains(file) {
                seen_specs.push(file.clone());
                if let Some(e) = dev.get_spec().edits() {
                    edits.append(e).map_err(|e| format!("{entry}: {e:#}"))?;
                }
            }
            edits
                .append(dev.edits())
                .map_err(|e| format!("{entry}: {e:#}"))?;
        }
        let files: Vec<String> = seen_specs.iter().map(|f| f.display().to_string()).collect();
        grant_from_edits(entry, &mut edits)
            .map_err(|e| format!("{e} (CDI spec {})", files.join(", ")))
    }
}

/// Apply the edits to an empty runtime spec with the crate, and read back what it injected.
fn grant_from_edits(
    entry: &str,
    edits: &mut cdi::container_edits::ContainerEdits,
) -> Result<Grant, String> {
    let empty = serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/", "env": []},
        "root": {"path": "rootfs"},
        "mounts": [],
        "linux": {}
    });
    let mut spec: oci_spec::runtime::Spec =
        serde_json::from_value(empty).expect("an empty spec parses");
    edits
        .apply(&mut spec)
        .map_err(|e| format!("{entry}: {e:#}"))?;
    let v = serde_json::to_value(&spec).expect("a spec serializes");
    let linux = &v["linux"];
    for (field, what) in [
        ("intelRdt", "containerEdits.intelRdt"),
        ("netDevices", "containerEdits.netDevices"),
    ] {
        if !linux[field].is_null() {
            return Err(format!(
                "{entry}: {what} is not supported for islands (a network device or an RDT class would be shared outside the island's own namespaces)"
            ));
        }
    }
    let rules = linux["resources"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut nodes = Vec::new();
    for d in linux["devices"].as_array().into_iter().flatten() {
        let kind = d["type"].as_str().unwrap_or("c");
        if kind != "c" && kind != "b" {
            return Err(format!(
                "{entry}: deviceNodes {}: type {kind:?}: only character and block devices are granted",
                d["path"]
            ));
        }
        let num = |k: &str| d[k].as_u64().and_then(|n| u32::try_from(n).ok());
        let (Some(major), Some(minor)) = (num("major"), num("minor")) else {
            return Err(format!(
                "{entry}: deviceNodes {}: no major/minor",
                d["path"]
            ));
        };
        let access = rules
            .iter()
            .find(|r| r["major"] == d["major"] && r["minor"] == d["minor"] && r["type"] == kind)
            .and_then(|r| r["access"].as_str())
            .unwrap_or("rwm");
        let access = if access.is_empty() { "rwm" } else { access };
        let mode = d["fileMode"]
            .as_u64()
            .map(|m| m as u32 & 0o777)
            .unwrap_or(0o660);
        nodes.push(Node {
            path: d["path"].as_str().unwrap_or_default().to_string(),
            kind: kind.chars().next().unwrap_or('c'),
            major,
            minor,
            access: check_access(access)?,
            mode,
        });
    }
    for n in &nodes {
        if !n.path.starts_with("/dev/") || n.path.split('/').any(|c| c == "..") {
            return Err(format!(
                "{entry}: deviceNodes path {:?}: a node must appear under /dev",
                n.path
            ));
        }
    }
    let mut hooks = Vec::new();
    if let Some(h) = v["hooks"].as_object() {
        for (name, list) in h {
            for hook in list.as_array().into_iter().flatten() {
                hooks.push((name.clone(), hook.clone()));
            }
        }
    }
    Ok(Grant {
        asked: entry.to_string(),
        nodes,
        mounts: v["mounts"].as_array().cloned().unwrap_or_default(),
        env: v["process"]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(String::from))
            .collect(),
        hooks,
    })
}

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
                    .map(|n| format!("{} {} {}:{} {}", n.path, n.kind, n.major, n.minor, n.access))
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
            rules.push(serde_json::json!({
                "allow": true, "type": node.kind.to_string(),
                "major": node.major, "minor": node.minor, "access": node.access}));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!("atoll-cdi-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (f, text) in files {
            std::fs::write(d.join(f), text).unwrap();
        }
        d
    }

    const MIG: &str = r#"{"cdiVersion": "0.6.0", "kind": "test.atoll.dev/gpu",
      "containerEdits": {"env": ["TEST_GPU_DRIVER=1"],
                         "deviceNodes": [{"path": "/dev/tctl", "type": "c", "major": 195, "minor": 255}]},
      "devices": [
        {"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/tgpu0", "type": "c", "major": 195, "minor": 0}]}},
        {"name": "1", "containerEdits": {"deviceNodes": [{"path": "/dev/tgpu1", "type": "c", "major": 195, "minor": 1, "permissions": "rw"}]}},
        {"name": "0:1", "containerEdits": {"deviceNodes": [
          {"path": "/dev/tgpu0", "type": "c", "major": 195, "minor": 0},
          {"path": "/dev/nvidia-caps/nvidia-cap11", "type": "c", "major": 238, "minor": 11},
          {"path": "/dev/nvidia-caps/nvidia-cap12", "type": "c", "major": 238, "minor": 12}]}}
      ]}"#;

    #[test]
    fn cdi_names_resolve_to_nodes_rules_and_env() {
        let d = spec_dir("ok", &[("t.json", MIG)]);
        let r = Registry::load(vec![d.clone()]).unwrap();
        let g = r.resolve("test.atoll.dev/gpu=1").unwrap();
        let paths: Vec<&str> = g.nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, ["/dev/tctl", "/dev/tgpu1"]);
        assert_eq!(g.nodes[1].access, "rw");
        assert_eq!(g.env, ["TEST_GPU_DRIVER=1"]);
        assert_eq!(g.gpu_uses(), [GpuUse::Whole(1)]);
        let all = r.resolve("test.atoll.dev/gpu=all").unwrap();
        assert_eq!(all.nodes.len(), 5, "{:?}", all.nodes);
        let mig = r.resolve("test.atoll.dev/gpu=0:1").unwrap();
        assert!(matches!(&mig.gpu_uses()[..], [GpuUse::Mig(0, caps)] if caps.len() == 2));
        assert!(overlap(&GpuUse::Whole(0), &mig.gpu_uses()[0]));
        assert!(!overlap(&GpuUse::Whole(1), &mig.gpu_uses()[0]));
        let e = r.resolve("test.atoll.dev/gpu=7").unwrap_err();
        assert!(
            e.contains("known names: test.atoll.dev/gpu=0, test.atoll.dev/gpu=0:1"),
            "{e}"
        );
        let e = r.resolve("other.dev/x=1").unwrap_err();
        assert!(e.contains("known kinds: test.atoll.dev/gpu"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_broken_spec_names_its_file_and_field() {
        let bad = MIG.replace(
            "\"major\": 195, \"minor\": 1,",
            "\"majr\": 195, \"minor\": 1,",
        );
        let d = spec_dir("bad", &[("t.json", &bad)]);
        let e = Registry::load(vec![d.clone()]).err().unwrap();
        assert!(e.contains("t.json") && e.contains("majr"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_grant_is_a_bind_of_the_islands_node_and_one_cgroup_rule() {
        let f = crate::file::parse(
            Path::new("p.toml"),
            "name = \"p\"\n[[island]]\nname = \"web\"\ncommand = [\"/bin/sh\"]\ndevices = [\"/dev/null:rw\"]\n",
        )
        .unwrap();
        let plan = crate::plan::build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap();
        let island = &plan.islands[0];
        let mut c = crate::bundle::config(island, &[]);
        apply_to_config(island, &mut c);
        let _: oci_spec::runtime::Spec = serde_json::from_value(c.clone()).unwrap();
        assert_eq!(
            c["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}])
        );
        let m = c["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(m["destination"], "/dev/null");
        assert_eq!(
            m["source"], "/var/lib/atoll/islands/p/.devices/web/0-0",
            "beside the data dirs, not in the nodev state tmpfs"
        );
        assert!(!m["options"].as_array().unwrap().contains(&"nodev".into()));
    }

    #[test]
    fn paths_must_be_devices() {
        let g = from_path("/dev/null:rw").unwrap();
        assert_eq!(
            (
                g.nodes[0].major,
                g.nodes[0].minor,
                g.nodes[0].access.as_str()
            ),
            (1, 3, "rw")
        );
        assert!(from_path("/etc/hostname")
            .unwrap_err()
            .contains("not a device node"));
        assert!(from_path("/dev/nonexistent-x")
            .unwrap_err()
            .contains("No such file"));
        assert!(from_path("/dev/null:rx").unwrap_err().contains("access"));
    }
}

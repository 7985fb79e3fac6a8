//! Device grants resolved from an islands file's `devices` entries (a host device path, or a
//! CDI name such as `nvidia.com/gpu=0`): the nodes, cgroup rules, mounts, env and hooks an
//! island gets. CDI specs are read and their edits applied with the `container-device-interface`
//! crate. Pure resolution: nothing here knows a plan.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use container_device_interface as cdi;
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

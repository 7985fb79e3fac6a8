//! Device grants resolved from an islands file's `devices` entries (a host device path, or a
//! CDI name such as `nvidia.com/gpu=0`): the nodes, cgroup rules, mounts, env and hooks an
//! island gets. CDI specs are read and their edits applied by the atoll-cdi helper (cdi.rs).
//! Pure resolution: nothing here knows a plan.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

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
    /// Device-cgroup access: letters of "rwm"; empty for a CDI node whose spec says
    /// `permissions: "none"` (the node is there, the cgroup allows nothing of it).
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

pub(super) fn check_access(a: &str) -> Result<String, String> {
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

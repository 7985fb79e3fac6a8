//! A container's cgroup on cgroup v1, v2 and hybrid hosts behind one small interface: create it in
//! every hierarchy, apply OCI `linux.resources`, join tasks, freeze, list, report stats, remove.
//!
//! Resources are first turned into a plan of file writes (`plan`), checked without touching the
//! host, then applied. Device rules become devices.allow/deny lines on v1 and an eBPF program on
//! v2 (`devices`, `device_program`). The host layout is read from /proc/self/mountinfo once per
//! process (`layout`).
//!
//! Modes: V1 uses every mounted v1 hierarchy (controllers and named ones such as name=systemd);
//! Hybrid adds the cgroup2 mount for process tracking, and takes a controller from it only when no
//! v1 hierarchy holds that controller (hugetlb on some hosts); V2 uses the one cgroup2 hierarchy
//! and enables the controllers the parent offers in each ancestor's cgroup.subtree_control.
//!
//! Device rules are exactly `resources.devices`: the runtime must pass the complete list, including
//! the devices that linux.devices and the default set imply. Without it, no device rule is set.

mod cgroup;
mod device_program;
pub mod devices;
mod error;
pub mod events;
mod fs;
mod layout;
pub mod oom;
mod path;
mod plan;
mod rt_budget;
pub mod stats;

use std::path::PathBuf;

pub use cgroup::{join_self, Cgroup};
pub use error::{CgroupError, Errno};
pub use events::Events;
pub use layout::Mode;
pub use oci_spec::runtime::LinuxResources;
pub use oom::{Oom, OomWatch};
pub use path::SubCgroup;
pub use plan::check as check_resources;
pub use stats::Stats;

/// One hierarchy as seen for this container, for mounting cgroupfs inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// "cgroup" (v1) or "cgroup2".
    pub fs_type: &'static str,
    /// The mount option and conventional directory name: "memory", "cpu,cpuacct", "name=systemd";
    /// "" for v2.
    pub controllers: String,
    /// Where the hierarchy is mounted on the host.
    pub mount_point: PathBuf,
    /// The host path of this container's cgroup directory.
    pub dir: PathBuf,
    /// The container's cgroup path relative to the hierarchy root ("/atoll/c1").
    pub rel: PathBuf,
}

/// The cgroup layout of this host (V1, Hybrid or V2). A host without any cgroup filesystem is
/// reported as V1, the mode in which nothing is assumed about a unified hierarchy.
pub fn host_mode() -> Mode {
    layout::layout().map_or(Mode::V1, |l| l.mode)
}

//! The container's file view as plain data: what each config mount becomes, which devices are
//! made and how, and which paths are masked or made read-only. Built from the spec without a
//! syscall (unit-tested without root); the init carries it out with [`Rootfs::apply`] and
//! friends, in config order.
//!
//! [`Rootfs::apply`]: super::Rootfs::apply

use std::borrow::Cow;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceType, Mount, Spec};
use rustix::io::Errno;

use super::error::MountError;
use super::options::{parse_options, Options};
use crate::error::{field, Result};

/// Everything the init does to the rootfs, in the order it does it.
#[derive(Debug)]
pub struct MountPlan<'a> {
    pub mounts: Vec<MountOp<'a>>,
    /// None when /dev is a bind mount: its nodes are the source's, nothing is made.
    pub devices: Option<DevicePlan<'a>>,
    /// linux.maskedPaths: hidden after the createContainer hooks, before pivot_root.
    pub masked: &'a [String],
    /// linux.readonlyPaths: remounted read-only after the masks.
    pub readonly: &'a [String],
}

/// One config mount, decided.
#[derive(Debug)]
pub struct MountOp<'a> {
    /// Its index in config.json's `mounts`: errors name it, NeedMount asks for it.
    pub index: usize,
    pub mount: &'a Mount,
    pub dest: &'a Path,
    pub fstype: &'a str,
    pub opts: Options<'a>,
    pub idmap: Option<Idmap>,
    pub kind: MountKind<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MountKind<'a> {
    /// A new filesystem instance: fsopen, one fsconfig per option, fsmount.
    Fs,
    /// procfs, checked by fstatfs after it is attached (a proc mount must be procfs).
    Proc,
    /// sysfs; where the kernel refuses a new instance (no network namespace of our own, or one
    /// our user namespace does not own) the host's /sys is bound instead, as runc does.
    Sysfs,
    /// A bind mount the init makes: open_tree(OPEN_TREE_CLONE) of `source` plus its attributes.
    Bind { source: &'a Path },
    /// An idmapped bind mount of a container in a user namespace: MOUNT_ATTR_IDMAP needs
    /// CAP_SYS_ADMIN in the user namespace that owns the source mount (the host's), which only
    /// the parent has. The parent makes it (NeedMount) before the init applies the plan.
    FromParent { source: &'a Path },
    /// cgroup or cgroup2: the container's own cgroup, shaped by the host's hierarchies.
    Cgroup,
}

/// MOUNT_ATTR_IDMAP on a bind mount: which user namespace carries the mapping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Idmap {
    pub recursive: bool,
    pub userns: IdmapUserns,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IdmapUserns {
    /// One made for the mount's own uidMappings/gidMappings.
    Mount,
    /// The container's.
    Container,
}

/// One device node, borrowed from the spec or the default table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Device<'a> {
    /// Its index in linux.devices; None for a default device.
    pub index: Option<usize>,
    /// The config's own device rules for exactly this node leave it without mknod access (an
    /// engine's CDI node with `permissions: "rw"`): the init, already in the device cgroup,
    /// could not mknod it, so the host's node at the same path is bound instead.
    pub bind_from_host: bool,
    pub path: &'a Path,
    pub typ: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Device<'_> {
    pub fn typ(&self) -> LinuxDeviceType {
        self.typ
    }
    pub fn major(&self) -> i64 {
        self.major
    }
    pub fn minor(&self) -> i64 {
        self.minor
    }
}

/// The devices every container gets (runtime-spec "Default Devices"): path, major, minor.
const DEFAULT_DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Every device the container gets: the defaults, then linux.devices (which may override them).
pub fn all_devices(spec: &Spec) -> Vec<Device<'_>> {
    let extra = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_deref())
        .unwrap_or(&[]);
    let mut devs = Vec::with_capacity(DEFAULT_DEVICES.len() + extra.len());
    devs.extend(DEFAULT_DEVICES.iter().map(|&(path, major, minor)| Device {
        index: None,
        bind_from_host: false,
        path: Path::new(path),
        typ: LinuxDeviceType::C,
        major,
        minor,
        mode: 0o666,
        uid: Some(0),
        gid: Some(0),
    }));
    for (i, d) in extra.iter().enumerate() {
        devs.retain(|x| x.path != d.path());
        devs.push(Device {
            index: Some(i),
            bind_from_host: configured_access(spec, d.typ(), d.major(), d.minor()).is_some_and(
                |(allow, access)| !allow || (!access.is_empty() && !access.contains('m')),
            ),
            path: d.path(),
            typ: d.typ(),
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid(),
            gid: d.gid(),
        });
    }
    devs
}

/// The last of the config's linux.resources.devices rules that names exactly this type and
/// number (the kernel's v1 list and the v2 program both let the last match decide): whether it
/// allows, and its access ("" is all). None where no rule names it.
pub fn configured_access(
    spec: &Spec,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
) -> Option<(bool, &str)> {
    let typ = if typ == LinuxDeviceType::U {
        LinuxDeviceType::C
    } else {
        typ
    };
    spec.linux()
        .as_ref()?
        .resources()
        .as_ref()?
        .devices()
        .as_deref()?
        .iter()
        .rev()
        .find(|r| r.typ() == Some(typ) && r.major() == Some(major) && r.minor() == Some(minor))
        .map(|r| (r.allow(), r.access().as_deref().unwrap_or("")))
}

/// How the devices are made.
#[derive(Debug)]
pub struct DevicePlan<'a> {
    pub nodes: Vec<Device<'a>>,
    /// In a user namespace mknod is refused (mknod(2): CAP_MKNOD in the initial user
    /// namespace): each host node is bound onto an empty file instead, as runc does.
    pub bind_host_nodes: bool,
}

impl<'a> MountPlan<'a> {
    /// `in_userns`: the container is in a user namespace (made or joined).
    pub fn from_spec(spec: &'a Spec, in_userns: bool) -> Result<MountPlan<'a>> {
        let config = spec.mounts().as_deref().unwrap_or(&[]);
        let mut mounts = Vec::with_capacity(config.len());
        for (i, m) in config.iter().enumerate() {
            mounts.push(mount_op(i, m, in_userns)?);
        }
        let dev_is_bind = mounts.iter().any(|op| {
            op.dest == Path::new("/dev")
                && matches!(
                    op.kind,
                    MountKind::Bind { .. } | MountKind::FromParent { .. }
                )
        });
        let devices = if dev_is_bind {
            None
        } else {
            let nodes = all_devices(spec);
            for d in &nodes {
                d.check()?;
            }
            Some(DevicePlan {
                nodes,
                bind_host_nodes: in_userns,
            })
        };
        let linux = spec.linux().as_ref();
        let paths = |p: Option<&'a Vec<String>>| p.map(Vec::as_slice).unwrap_or(&[]);
        Ok(MountPlan {
            mounts,
            devices,
            masked: paths(linux.and_then(|l| l.masked_paths().as_ref())),
            readonly: paths(linux.and_then(|l| l.readonly_paths().as_ref())),
        })
    }

    /// How many mounts, from the first, need neither the cgroup nor the parent: the init
    /// applies them while the parent still makes its cgroup.
    pub fn independent(&self) -> usize {
        self.mounts
            .iter()
            .position(|op| matches!(op.kind, MountKind::Cgroup | MountKind::FromParent { .. }))
            .unwrap_or(self.mounts.len())
    }

    /// The config indices of the mounts the parent makes.
    pub fn from_parent(&self) -> impl Iterator<Item = usize> + '_ {
        self.mounts
            .iter()
            .filter(|op| matches!(op.kind, MountKind::FromParent { .. }))
            .map(|op| op.index)
    }
}

/// What config mount `i` becomes.
pub fn mount_op(i: usize, m: &Mount, in_userns: bool) -> Result<MountOp<'_>> {
    let fstype = m.typ().as_deref().unwrap_or("");
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let idmap = idmap(i, m, &opts, in_userns)?;
    let kind = match fstype {
        "cgroup" | "cgroup2" => MountKind::Cgroup,
        _ if opts.bind || fstype == "bind" => {
            let source = m
                .source()
                .as_deref()
                .ok_or_else(|| field(format!("mounts[{i}].source"), "missing for a bind mount"))?;
            if idmap.is_some() && in_userns {
                MountKind::FromParent { source }
            } else {
                MountKind::Bind { source }
            }
        }
        "" => {
            return Err(field(
                format!("mounts[{i}].type"),
                "missing and not a bind mount",
            ))
        }
        "proc" => MountKind::Proc,
        "sysfs" => MountKind::Sysfs,
        _ => MountKind::Fs,
    };
    Ok(MountOp {
        index: i,
        mount: m,
        dest: m.destination(),
        fstype,
        opts,
        idmap,
        kind,
    })
}

/// "idmap"/"ridmap" or uidMappings ask for MOUNT_ATTR_IDMAP; its user namespace is the mount's
/// own mappings (both must be there) or else the container's (which must exist).
fn idmap(i: usize, m: &Mount, opts: &Options<'_>, in_userns: bool) -> Result<Option<Idmap>> {
    let own = (m.uid_mappings().is_some(), m.gid_mappings().is_some());
    if opts.idmap.is_none() && own == (false, false) {
        return Ok(None);
    }
    let userns = match own {
        (true, true) => IdmapUserns::Mount,
        (false, false) if in_userns => IdmapUserns::Container,
        (false, false) => {
            return Err(field(
                format!("mounts[{i}].options"),
                "idmap needs uidMappings/gidMappings on the mount or a user namespace",
            ))
        }
        _ => {
            return Err(field(
                format!("mounts[{i}].uidMappings"),
                "uidMappings and gidMappings must both be set",
            ))
        }
    };
    Ok(Some(Idmap {
        recursive: opts.idmap.unwrap_or(false),
        userns,
    }))
}

impl Device<'_> {
    /// What the spec checks cannot: a node needs a name and a kind mknod can make.
    fn check(&self) -> Result<()> {
        let at = || match self.index {
            Some(i) => format!("linux.devices[{i}]"),
            None => "default devices".into(),
        };
        if self.path.file_name().is_none() {
            return Err(field(
                format!("{}.path", at()),
                format!("{:?} has no file name", self.path),
            ));
        }
        if self.typ == LinuxDeviceType::A {
            return Err(field(
                format!("{}.type", at()),
                "type \"a\" is for cgroup device rules only",
            ));
        }
        Ok(())
    }
}

impl MountOp<'_> {
    /// The error for step `call` of this mount.
    pub(super) fn failed(&self, call: impl Into<Cow<'static, str>>, errno: Errno) -> MountError {
        MountError::Mount {
            index: self.index,
            fstype: self.fstype.to_string(),
            dest: self.dest.to_path_buf(),
            call: call.into(),
            errno,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_sys::mount as sysm;

    fn spec(json: serde_json::Value) -> Spec {
        let mut base = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn default_mounts() -> Spec {
        spec(serde_json::json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/data", "type": "none", "source": "/srv/data",
             "options": ["rbind", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "hosts"}
        ],
        "linux": {"maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}}))
    }

    #[test]
    fn each_config_mount_becomes_one_op_in_config_order() {
        let s = default_mounts();
        let plan = MountPlan::from_spec(&s, false).unwrap();
        let kinds: Vec<_> = plan.mounts.iter().map(|op| (op.index, op.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (0, MountKind::Proc),
                (1, MountKind::Fs),
                (2, MountKind::Sysfs),
                (3, MountKind::Cgroup),
                (
                    4,
                    MountKind::Bind {
                        source: Path::new("/srv/data")
                    }
                ),
                (
                    5,
                    MountKind::Bind {
                        source: Path::new("hosts")
                    }
                ),
            ]
        );
        let dev = &plan.mounts[1];
        assert_eq!((dev.dest, dev.fstype), (Path::new("/dev"), "tmpfs"));
        assert_eq!(
            dev.opts.data,
            vec![("mode", Some("755")), ("size", Some("65536k"))]
        );
        assert!(plan.mounts[4].opts.recursive_bind);
        assert_ne!(plan.mounts[4].opts.attr_set & sysm::MOUNT_ATTR_RDONLY, 0);
        assert_eq!(plan.masked, ["/proc/kcore".to_string()]);
        assert_eq!(plan.readonly, ["/proc/sys".to_string()]);
        // Everything before the cgroup mount runs while the parent makes the cgroup.
        assert_eq!(plan.independent(), 3);
        assert_eq!(plan.from_parent().count(), 0);
    }

    #[test]
    fn devices_are_made_unless_dev_is_a_bind_mount() {
        let s = default_mounts();
        let plan = MountPlan::from_spec(&s, false).unwrap();
        let devs = plan.devices.unwrap();
        assert!(!devs.bind_host_nodes);
        let paths: Vec<_> = devs.nodes.iter().map(|d| d.path).collect();
        assert!(paths.contains(&Path::new("/dev/null")) && paths.len() == 6);
        let in_userns = MountPlan::from_spec(&s, true).unwrap();
        assert!(in_userns.devices.unwrap().bind_host_nodes);

        let s = spec(serde_json::json!({"mounts": [
            {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}
        ]}));
        assert!(MountPlan::from_spec(&s, false).unwrap().devices.is_none());
    }

    #[test]
    fn config_devices_override_the_defaults_by_path() {
        let s = spec(serde_json::json!({"linux": {"devices": [
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 384},
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}
        ]}}));
        let plan = MountPlan::from_spec(&s, false).unwrap();
        let nodes = plan.devices.unwrap().nodes;
        let null: Vec<_> = nodes
            .iter()
            .filter(|d| d.path == Path::new("/dev/null"))
            .collect();
        assert_eq!(
            (null.len(), null[0].mode, null[0].index),
            (1, 0o600, Some(0))
        );
        assert!(nodes.iter().any(|d| d.path == Path::new("/dev/fuse")));
        assert_eq!(nodes.len(), 7);
    }

    #[test]
    fn a_device_of_type_a_is_refused_naming_it() {
        let s = spec(serde_json::json!({"linux": {"devices": [
            {"path": "/dev/x", "type": "a", "major": 1, "minor": 1}
        ]}}));
        let e = MountPlan::from_spec(&s, false).unwrap_err().to_string();
        assert!(e.contains("linux.devices[0].type"), "{e}");
    }

    #[test]
    fn idmapped_binds_come_from_the_parent_only_in_a_user_namespace() {
        let s = spec(serde_json::json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/a", "type": "bind", "source": "/srv/a", "options": ["bind", "ridmap"],
             "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
             "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]},
            {"destination": "/b", "source": "/srv/b", "options": ["bind", "idmap"]}
        ]}));
        let plan = MountPlan::from_spec(&s, true).unwrap();
        assert_eq!(plan.from_parent().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(plan.independent(), 1);
        let a = plan.mounts[1].idmap.unwrap();
        assert_eq!((a.recursive, a.userns), (true, IdmapUserns::Mount));
        let b = plan.mounts[2].idmap.unwrap();
        assert_eq!((b.recursive, b.userns), (false, IdmapUserns::Container));

        // Without a user namespace the init makes the one with its own mappings itself, and the
        // one that needs the container's user namespace has none to use.
        let e = MountPlan::from_spec(&s, false).unwrap_err().to_string();
        assert!(e.contains("mounts[2].options"), "{e}");
    }

    #[test]
    fn bad_mounts_are_refused_naming_the_field() {
        let no_type = spec(serde_json::json!({"mounts": [{"destination": "/x"}]}));
        let e = MountPlan::from_spec(&no_type, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mounts[0].type"), "{e}");
        let no_source =
            spec(serde_json::json!({"mounts": [{"destination": "/x", "type": "bind"}]}));
        let e = MountPlan::from_spec(&no_source, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mounts[0].source"), "{e}");
        let half = spec(serde_json::json!({"mounts": [
            {"destination": "/x", "source": "/y", "options": ["bind"],
             "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}
        ]}));
        let e = MountPlan::from_spec(&half, true).unwrap_err().to_string();
        assert!(e.contains("mounts[0].uidMappings"), "{e}");
    }
}

//! One island as an OCI bundle: a rootfs skeleton whose contents are the host's own /usr (read
//! only), a generated /etc with nothing secret in it, a private /tmp, /proc and /dev, and the
//! island's data directory; and a config.json with the island's user namespace, capabilities,
//! limits, seccomp profile and a new network namespace that `up` pins and wires from the host
//! (CAP_NET_ADMIN is never in an island's bounding set, so the tenant cannot change it).

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{io, IslandsError, Result};
use crate::plan::{IslandPlan, Plan, UID_RANGE};

/// Top-level host dirs an island sees. On merged-/usr hosts they are symlinks into /usr and are
/// copied as symlinks; otherwise they are bound read-only.
const HOST_TOP: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Files of the host's /etc that programs need and that hold nothing secret. /etc/shadow, ssh
/// keys and the like never enter an island.
const ETC_COPY: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "services",
    "protocols",
    "localtime",
    "mime.types",
];
/// Directories of the host's /etc bound read-only (only symlinks and loader paths; copying
/// /etc/alternatives per island cost ~800 file creations each).
const ETC_BIND_DIRS: &[&str] = &["ld.so.conf.d", "alternatives"];
/// What atoll writes of an image island's /etc, each bound read-only over the image's own
/// (whose passwd, group and the rest are the image's).
const IMAGE_ETC: &[&str] = &["hosts", "hostname", "resolv.conf"];

/// Write the island's bundle dir (idempotent: `up` after a crash rewrites it). An image
/// island's root is not mounted yet: its layers are cloned here (which needs this process
/// single-threaded), and [`mount_image_root`] mounts it and makes its mount points, beside the
/// guard's start.
pub fn prepare(plan: &Plan, island: &IslandPlan) -> Result<()> {
    let mut extra = Vec::new();
    match image_of(island) {
        Some((spec, pulled)) => crate::image::clone_layers(island, spec, pulled)?,
        None => {
            // Mount points are made here, as host root: the island's init, root only in its own
            // user namespace, cannot create them in a rootfs the host owns.
            let rootfs = island.dir.join("rootfs");
            for d in ["usr", "etc", "tmp", "proc", "dev", "run", "var"] {
                mkdir(&rootfs.join(d))?;
            }
            host_top(&rootfs, &mut extra)?;
            make_points(plan, island, &MountPoints::Host(island.dir.clone()))?;
        }
    }
    write_etc(plan, island)?;
    write_data_dir(island)?;
    crate::state_dirs::make(island)?;
    crate::devices::make_nodes(island)?;
    let mut config = config(plan, island, &extra);
    crate::devices::apply_to_config(island, &mut config);
    if let Some(list) = config["mounts"].as_array_mut() {
        // Last: the runtime's parent makes an idmapped mount, after the init's own ones.
        list.extend(shares_of(plan, island));
    }
    config["linux"]["seccomp"] = crate::seccomp::profile(plan, island)?;
    let path = island.dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json"))
        .map_err(io(format!("write {}", path.display())))
}

/// An image island's root, after [`prepare`]: the overlayfs mounted, and the mount points made
/// in it through pathrs (its upper dir is the tenant's). Nothing for a host-/usr island.
pub fn mount_image_root(plan: &Plan, island: &IslandPlan) -> Result<()> {
    let Some((spec, pulled)) = image_of(island) else {
        return Ok(());
    };
    let at = crate::image::mount_overlay(island, spec, pulled)?;
    let root = pathrs::Root::open(&at).map_err(|e| {
        IslandsError::Other(format!(
            "island {}: open {}: {e}",
            island.spec.name,
            at.display()
        ))
    })?;
    for d in ["tmp", "proc", "dev", "run"] {
        crate::image::mount_point(&root, d, false)?;
    }
    for f in IMAGE_ETC {
        crate::image::mount_point(&root, &format!("/etc/{f}"), true)?;
    }
    make_points(plan, island, &MountPoints::Image(root))
}

fn image_of(island: &IslandPlan) -> Option<(&crate::image::ImageSpec, &crate::image::Pulled)> {
    let spec = island.spec.image.as_ref()?;
    Some((spec, spec.pulled.as_ref()?))
}

/// The `[[share]]` mounts of `island`, as OCI mounts.
fn shares_of(plan: &Plan, island: &IslandPlan) -> Vec<Value> {
    plan.islands
        .iter()
        .position(|i| i.spec.name == island.spec.name)
        .map(|n| crate::share::mounts(plan, n))
        .unwrap_or_default()
}

/// The mount points of the data dir, binds, tmpfs and writable paths and shares.
fn make_points(plan: &Plan, island: &IslandPlan, points: &MountPoints) -> Result<()> {
    points.dir(&island.spec.data)?;
    for (host, at) in &island.spec.binds {
        points.point(at, host.is_dir())?;
    }
    for at in island.spec.tmpfs.iter().chain(&island.spec.writable) {
        points.dir(at)?;
    }
    for m in &shares_of(plan, island) {
        points.dir(m["destination"].as_str().unwrap_or_default())?;
    }
    Ok(())
}

/// The host's top-level dirs: symlinks copied, directories bound read-only (in `extra`).
fn host_top(rootfs: &Path, extra: &mut Vec<Value>) -> Result<()> {
    for top in HOST_TOP {
        let host = Path::new("/").join(top);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&host)
                    .map_err(io(format!("readlink {}", host.display())))?;
                let at = rootfs.join(top);
                if std::fs::symlink_metadata(&at).is_err() {
                    symlink(&target, &at).map_err(io(format!("symlink {}", at.display())))?;
                }
            }
            Ok(m) if m.is_dir() => {
                mkdir(&rootfs.join(top))?;
                extra.push(ro_bind(&host, &format!("/{top}")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Where an island's mount points are made: the skeleton atoll wrote in the island's dir
/// (plain paths, see `mount_point`), or a mounted image root whose upper dir the tenant wrote
/// (through pathrs, crate::image).
enum MountPoints {
    Host(PathBuf),
    Image(pathrs::Root),
}

impl MountPoints {
    fn dir(&self, at: &str) -> Result<()> {
        self.point(at, true)
    }

    fn point(&self, at: &str, dir: bool) -> Result<()> {
        match self {
            MountPoints::Image(root) => crate::image::mount_point(root, at, !dir),
            MountPoints::Host(island_dir) => {
                let target = mount_point(island_dir, at);
                if dir {
                    mkdir(&target)
                } else if std::fs::symlink_metadata(&target).is_err() {
                    if let Some(parent) = target.parent() {
                        mkdir(parent)?;
                    }
                    std::fs::write(&target, b"").map_err(io(format!("create {}", target.display())))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Where the mount point for `at` is made on the host: in the island's generated /etc for a
/// path below /etc (that dir is bound over the rootfs's /etc), else in the rootfs skeleton.
fn mount_point(island_dir: &Path, at: &str) -> PathBuf {
    let rel = at.trim_start_matches('/');
    match rel.strip_prefix("etc/") {
        Some(below) => island_dir.join("etc").join(below),
        None => island_dir.join("rootfs").join(rel),
    }
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(io(format!("mkdir {}", p.display())))
}

/// The island's generated /etc: for a host-/usr island the whole dir bound over its /etc; for
/// an image island only [`IMAGE_ETC`], each bound over the image's own file (its passwd,
/// group, nsswitch.conf and ld.so.cache are the image's).
fn write_etc(plan: &Plan, island: &IslandPlan) -> Result<()> {
    let etc = island.dir.join("etc");
    mkdir(&etc)?;
    let put = |name: &str, text: String| {
        let p = etc.join(name);
        std::fs::write(&p, text).map_err(io(format!("write {}", p.display())))
    };
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        island.spec.hostname
    );
    for (ip, name) in &island.hosts {
        hosts.push_str(&format!("{ip}\t{name} {name}.{}\n", plan.name));
    }
    put("hosts", hosts)?;
    put("hostname", format!("{}\n", island.spec.hostname))?;
    put(
        "resolv.conf",
        "# atoll: islands have no route off the machine and no DNS server;\n# names of linked islands are in /etc/hosts.\n".into(),
    )?;
    if island.spec.image.is_some() {
        return Ok(());
    }
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    if island.spec.uid != 0 {
        passwd.push_str(&format!(
            "tenant:x:{}:{}:{} tenant:{}:/bin/sh\n",
            island.spec.uid, island.spec.gid, island.spec.name, island.spec.data
        ));
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    put("passwd", passwd)?;
    let mut group = String::from("root:x:0:\n");
    if island.spec.gid != 0 {
        group.push_str(&format!("tenant:x:{}:\n", island.spec.gid));
    }
    group.push_str("nogroup:x:65534:\n");
    put("group", group)?;
    put(
        "nsswitch.conf",
        "passwd: files\ngroup: files\nhosts: files\n".into(),
    )?;
    for f in ETC_COPY {
        copy_entry(&Path::new("/etc").join(f), &etc.join(f))?;
    }
    for d in ETC_BIND_DIRS {
        if Path::new("/etc").join(d).is_dir() {
            mkdir(&etc.join(d))?;
        }
    }
    Ok(())
}

/// Copy a regular file or a symlink (as a symlink); anything else is skipped.
fn copy_entry(from: &Path, to: &Path) -> Result<()> {
    let Ok(m) = std::fs::symlink_metadata(from) else {
        return Ok(());
    };
    let _ = std::fs::remove_file(to);
    if m.file_type().is_symlink() {
        let t = std::fs::read_link(from).map_err(io(format!("readlink {}", from.display())))?;
        symlink(t, to).map_err(io(format!("symlink {}", to.display())))
    } else if m.is_file() {
        std::fs::copy(from, to).map(|_| ()).map_err(io(format!(
            "copy {} to {}",
            from.display(),
            to.display()
        )))
    } else {
        Ok(())
    }
}

/// The data dir belongs to the island's user as the host sees it (its mapped uid), mode 0700:
/// no other island, and no host user but root, can read it.
fn write_data_dir(island: &IslandPlan) -> Result<()> {
    let d = &island.data_dir;
    mkdir(d)?;
    // The island's init, an unprivileged host uid, opens its data dir through these parents.
    for parent in d.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(parent) else {
            continue;
        };
        if m.permissions().mode() & 0o001 == 0 {
            return Err(crate::error::IslandsError::Island {
                island: island.spec.name.clone(),
                msg: format!(
                    "its data dir {} lies under {} (mode {:o}), which other users cannot enter: the island reaches its data as an unprivileged host uid; chmod o+x it or choose another data_root",
                    d.display(),
                    parent.display(),
                    m.permissions().mode() & 0o7777
                ),
            });
        }
    }
    let (uid, gid) = crate::share::host_ids(island);
    std::os::unix::fs::chown(d, Some(uid), Some(gid))
        .map_err(io(format!("chown {}", d.display())))?;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", d.display())))
}

fn ro_bind(host: &Path, at: &str) -> Value {
    json!({"destination": at, "type": "bind", "source": host,
           "options": ["rbind", "ro", "nosuid", "nodev"]})
}

/// The island's capability sets. A non-root user keeps its capabilities across exec only
/// through the ambient set, which needs them inheritable too; root needs neither.
fn capabilities(island: &IslandPlan) -> Value {
    let caps = &island.spec.caps;
    let (inh, amb): (&[String], &[String]) = if island.spec.uid == 0 {
        (&[], &[])
    } else {
        (caps, caps)
    };
    json!({"bounding": caps, "effective": caps, "permitted": caps,
           "inheritable": inh, "ambient": amb})
}

pub fn config(plan: &Plan, island: &IslandPlan, extra_mounts: &[Value]) -> Value {
    let image = island.spec.image.as_ref();
    let pulled = image.and_then(|i| i.pulled.as_ref());
    let mut env: Vec<String> = pulled.map(|p| p.env.clone()).unwrap_or_default();
    let has = |env: &[String], k: &str| env.iter().any(|e| e.starts_with(&format!("{k}=")));
    if !has(&env, "PATH") {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", island.spec.data));
    }
    env.push(format!("ATOLL_ISLAND={}", island.spec.name));
    for (k, v) in &island.spec.env {
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={v}"));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=755", "size=8192k"]}),
    ];
    let root = if image.is_some() {
        // The image's own /usr, /etc and /var; atoll's names and hostname over its /etc.
        for f in IMAGE_ETC {
            mounts.push(json!({"destination": format!("/etc/{f}"), "type": "bind",
                "source": island.dir.join("etc").join(f),
                "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}));
        }
        let ro = image.is_some_and(|i| i.root == crate::image::ImageRoot::ReadOnly);
        json!({"path": "image-root", "readonly": ro})
    } else {
        mounts.extend([
            json!({"destination": "/var", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "mode=755", "size=65536k"]}),
            ro_bind(Path::new("/usr"), "/usr"),
            json!({"destination": "/etc", "type": "bind", "source": island.dir.join("etc"),
                   "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}),
        ]);
        for d in ETC_BIND_DIRS {
            let host = Path::new("/etc").join(d);
            if host.is_dir() {
                mounts.push(ro_bind(&host, &format!("/etc/{d}")));
            }
        }
        json!({"path": "rootfs", "readonly": true})
    };
    mounts.push(
        json!({"destination": island.spec.data, "type": "bind", "source": island.data_dir,
               "options": ["bind", "rw", "nosuid", "nodev"]}),
    );
    mounts.extend(extra_mounts.iter().cloned());
    for (host, at) in &island.spec.binds {
        mounts.push(ro_bind(host, at));
    }
    mounts.extend(crate::state_dirs::mounts(island));
    let mut resources = json!({});
    if let Some(m) = island.spec.memory {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(p) = island.spec.pids {
        resources["pids"] = json!({"limit": p});
    }
    if let Some(c) = island.spec.cpu {
        resources["cpu"] = json!({"quota": (c * 100_000.0) as i64, "period": 100_000});
    }
    let (uid_map, gid_map) = crate::share::island_maps(island);
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": island.spec.uid, "gid": island.spec.gid},
            "args": island.spec.command,
            "env": env,
            "cwd": island.spec.cwd,
            "capabilities": capabilities(island),
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": root,
        "hostname": island.spec.hostname,
        "mounts": mounts,
        "annotations": {"org.atoll.island": island.spec.name},
        "linux": {
            "uidMappings": uid_map,
            "gidMappings": gid_map,
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "user"}, {"type": "cgroup"},
                {"type": "network"}
            ],
            // Unprivileged ping (ICMP datagram sockets, icmp(7)) for the island's own gids: the
            // kernel's default range "1 0" allows none, so busybox ping said "permission
            // denied". The range is read in the writer's user namespace: init writes it inside
            // the island, where 0..UID_RANGE is every gid the island has. Whether a ping gets
            // anywhere is still the border guard's decision (an `icmp` allow rule).
            "sysctl": {"net.ipv4.ping_group_range": format!("0 {}", UID_RANGE - 1)},
            "cgroupsPath": format!("/{}", plan.cgroup_of(&island.spec.name).display()),
            "resources": resources,
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                "/proc/sysrq-trigger"],
            "seccomp": crate::seccomp::base_profile(false)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_atoll_puts_in_etc_is_no_mount_point() {
        for name in ETC_COPY.iter().chain(ETC_BIND_DIRS) {
            assert!(crate::file::ETC_GENERATED.contains(name), "{name}");
        }
    }

    #[test]
    fn tmpfs_and_writable_dirs_are_mounts_owned_by_the_user() {
        let f = crate::file::parse(
            Path::new("p.toml"),
            "name = \"p\"\ndata_root = \"/srv/isl\"\n[[island]]\nname = \"web\"\ncommand = [\"/bin/sh\"]\nuser = 33\ntmpfs = [\"/run/nginx\"]\nwritable = [\"/var/log/nginx\"]\nbinds = [\"/usr/share:/etc/nginx\"]\n",
        )
        .unwrap();
        let plan = crate::plan::build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap();
        let c = config(&plan, &plan.islands[0], &[]);
        let _: oci_spec::runtime::Spec = serde_json::from_value(c.clone()).unwrap();
        let m = c["mounts"].as_array().unwrap();
        let at = |d: &str| m.iter().find(|x| x["destination"] == d).cloned().unwrap();
        assert_eq!(at("/run/nginx")["type"], "tmpfs");
        assert!(at("/run/nginx")["options"]
            .as_array()
            .unwrap()
            .contains(&json!("uid=33")));
        assert_eq!(
            at("/var/log/nginx")["source"],
            "/srv/isl/.writable/web/var/log/nginx"
        );
        assert_eq!(at("/etc/nginx")["options"][1], "ro");
        assert_eq!(
            mount_point(&plan.islands[0].dir, "/etc/nginx"),
            plan.islands[0].dir.join("etc/nginx")
        );
    }

    #[test]
    fn the_config_is_a_valid_runtime_spec_with_the_islands_rules() {
        let f = crate::file::parse(
            Path::new("p.toml"),
            "name = \"p\"\n[[island]]\nname = \"web\"\ncommand = [\"/bin/sh\"]\ncaps = [\"CAP_NET_BIND_SERVICE\"]\nmemory = \"32M\"\n",
        )
        .unwrap();
        let plan = crate::plan::build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap();
        let c = config(&plan, &plan.islands[0], &[]);
        // The runtime reads configs with oci-spec: a generated one must parse the same way.
        let _: oci_spec::runtime::Spec = serde_json::from_value(c.clone()).unwrap();
        assert_eq!(c["process"]["user"]["uid"], 1000);
        assert_eq!(
            c["linux"]["sysctl"]["net.ipv4.ping_group_range"], "0 65535",
            "unprivileged ping for every gid of the island"
        );
        assert_eq!(
            c["process"]["capabilities"]["ambient"],
            json!(["CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 32 << 20);
        assert_eq!(c["linux"]["namespaces"][6], json!({"type": "network"}));
        assert_eq!(c["linux"]["cgroupsPath"], "/atoll/islands/p/web");
    }
}

//! Loading and checking a bundle's config.json before anything is created: every refusal names the
//! file and the field, so a bad config never leaves half a container behind.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};

use crate::error::{field, Result, RuntimeError};

/// Parse `bundle/config.json` and put it under the escape guard as `node` says (crate::guard).
/// An error names the field's path (`process.args`) and serde's line and column.
pub fn load(bundle: &Path, node: &crate::guard::GuardNode) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| RuntimeError::Config {
        path: path.clone(),
        msg: format!("cannot read: {e}"),
    })?;
    let mut spec = parse(&data).map_err(|msg| RuntimeError::Config {
        path: path.clone(),
        msg,
    })?;
    crate::lsm::label_mounts(&mut spec);
    crate::guard::apply(spec, node)
}

/// config.json text → Spec; the error names the path of the field that did not fit.
pub fn parse(data: &[u8]) -> std::result::Result<Spec, String> {
    parse_with(data, |v| {
        if let Some(p) = v.get_mut("process") {
            spec_sched_flags(p);
        }
    })
}

/// A runtime-spec process object (`exec --process`) → Process, as [`parse`] does a config.
pub fn parse_process(data: &[u8]) -> std::result::Result<oci_spec::runtime::Process, String> {
    parse_with(data, spec_sched_flags)
}

/// runtime-spec's names for process.scheduler.flags that oci-spec 0.10 spells otherwise (its
/// serde derives them from its variant names): the spec's name → the one oci-spec reads.
const SCHED_FLAG_SPELLINGS: [(&str, &str); 2] = [
    ("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"),
    ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN"),
];

/// Rewrite the spec's flag names in a process object's scheduler.flags to oci-spec's.
fn spec_sched_flags(process: &mut serde_json::Value) {
    let flags = process
        .get_mut("scheduler")
        .and_then(|s| s.get_mut("flags"))
        .and_then(|f| f.as_array_mut());
    for f in flags.into_iter().flatten() {
        if let Some((_, ours)) = SCHED_FLAG_SPELLINGS
            .iter()
            .find(|(spec, _)| f.as_str() == Some(spec))
        {
            *f = serde_json::Value::from(*ours);
        }
    }
}

/// Deserialize `data`; a document naming a scheduler flag (rare) goes through a JSON value first
/// so that `fix` can rename the flags, every other one straight into the type.
fn parse_with<T: serde::de::DeserializeOwned>(
    data: &[u8],
    fix: impl FnOnce(&mut serde_json::Value),
) -> std::result::Result<T, String> {
    let at_field = |e: serde_path_to_error::Error<serde_json::Error>| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        if at == "." {
            inner.to_string()
        } else {
            format!("{at}: {inner}")
        }
    };
    if data.windows(11).any(|w| w == b"SCHED_FLAG_") {
        let mut v: serde_json::Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        fix(&mut v);
        return serde_path_to_error::deserialize(v).map_err(at_field);
    }
    let mut de = serde_json::Deserializer::from_slice(data);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(at_field)?;
    // Trailing text after the object, as serde_json::from_slice refuses it.
    de.end().map_err(|e| e.to_string())?;
    Ok(parsed)
}

/// The root filesystem path, resolved against the bundle, which must be a directory.
///
/// runtime-spec: a relative `root.path` is relative to the bundle. The rules, stricter than the
/// spec's text and close to runc's (which refuses a root that is, or goes through, a symlink):
/// - a relative path stays inside the bundle: no `..` component (a root elsewhere is given as
///   an absolute path, so the config shows what it uses);
/// - the path is the real one: resolving symlinks must not change it, so what the config names is
///   what the container gets, not whatever a link points to at create time;
/// - it is not the host's `/`: that would be no root of its own at all.
pub fn rootfs(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| field("root", "missing: a container needs a root filesystem"))?;
    let given = root.path();
    if given.as_os_str().is_empty() {
        return Err(field("root.path", "empty"));
    }
    let p = if given.is_absolute() {
        given.clone()
    } else {
        if given
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(field(
                "root.path",
                format!(
                    "{given:?} leaves the bundle: a relative root is relative to the bundle; \
                     give a root elsewhere as an absolute path"
                ),
            ));
        }
        bundle.join(given)
    };
    let lexical = lexically_clean(&p);
    let real = match std::fs::canonicalize(&p) {
        Ok(r) => r,
        Err(e) => return Err(field("root.path", format!("{}: {e}", p.display()))),
    };
    if real != lexical {
        return Err(field(
            "root.path",
            format!(
                "{} resolves to {}: a root named through a symlink or `..` is refused, \
                 give the real path",
                p.display(),
                real.display()
            ),
        ));
    }
    if real == Path::new("/") {
        return Err(field(
            "root.path",
            format!("{} is the host's root directory", p.display()),
        ));
    }
    match std::fs::metadata(&real) {
        Ok(m) if m.is_dir() => Ok(real),
        Ok(_) => Err(field(
            "root.path",
            format!("{} is not a directory", p.display()),
        )),
        Err(e) => Err(field("root.path", format!("{}: {e}", p.display()))),
    }
}

/// `p` without `.` components and repeated or trailing slashes; `..` stays, so a path with one
/// never equals its canonical form.
fn lexically_clean(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| *c != std::path::Component::CurDir)
        .collect()
}

pub fn ns_flag(t: LinuxNamespaceType) -> u64 {
    (match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }) as u64
}

pub fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The namespaces of the config, split into ones to create and ones to join (by path).
#[derive(Debug, Default, Clone)]
pub struct Namespaces {
    /// CLONE_NEW* bits of namespaces to create.
    pub new: u64,
    /// Namespaces to join, in the order they must be joined (user first).
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl Namespaces {
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.new & ns_flag(t) != 0 || self.join.iter().any(|(j, _)| *j == t)
    }
    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.new & ns_flag(t) != 0
    }
    /// Every namespace the container will be in that is not the host's.
    pub fn all_flags(&self) -> u64 {
        self.join
            .iter()
            .fold(self.new, |acc, (t, _)| acc | ns_flag(*t))
    }
}

pub fn namespaces(spec: &Spec) -> Result<Namespaces> {
    let list: &[LinuxNamespace] = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or(&[]);
    let mut ns = Namespaces::default();
    let mut seen = 0u64;
    for (i, n) in list.iter().enumerate() {
        let bit = ns_flag(n.typ());
        if seen & bit != 0 {
            return Err(field(
                format!("linux.namespaces[{i}]"),
                format!("namespace {:?} listed twice", ns_name(n.typ())),
            ));
        }
        seen |= bit;
        match n.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                if !p.exists() {
                    return Err(field(
                        format!("linux.namespaces[{i}].path"),
                        format!("{}: no such file", p.display()),
                    ));
                }
                ns.join.push((n.typ(), p.clone()));
            }
            _ => ns.new |= bit,
        }
    }
    ns.join.sort_by_key(|(t, _)| *t != LinuxNamespaceType::User);
    Ok(ns)
}

/// Checks that need the whole config: things the kernel would refuse later, refused now by name.
pub fn validate(spec: &Spec, ns: &Namespaces) -> Result<()> {
    refuse_unapplied(spec)?;
    crate::lsm::check(spec)?;
    if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        atoll_cgroups::check_resources(r)?;
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| field("process", "missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(field("process.args", "missing: nothing to run"));
    }
    if !process.cwd().is_absolute() {
        return Err(field(
            "process.cwd",
            format!("{:?} is not an absolute path", process.cwd()),
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !ns.has(LinuxNamespaceType::Uts) {
        return Err(field(
            "hostname",
            "setting a hostname needs a new uts namespace (linux.namespaces)",
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !ns.has(LinuxNamespaceType::Uts)
    {
        return Err(field(
            "domainname",
            "setting a domainname needs a new uts namespace (linux.namespaces)",
        ));
    }
    if let Some(linux) = spec.linux() {
        let user = ns.creates(LinuxNamespaceType::User);
        let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if user && !has_maps {
            return Err(field(
                "linux.uidMappings",
                "a new user namespace needs uid and gid mappings",
            ));
        }
        if !ns.has(LinuxNamespaceType::User) && has_maps {
            return Err(field(
                "linux.uidMappings",
                "mappings given but no user namespace in linux.namespaces",
            ));
        }
        if let Some(sysctl) = linux.sysctl() {
            for key in sysctl.keys() {
                check_sysctl(key, ns)?;
                check_uts_sysctl(key, spec)?;
            }
        }
        check_devices(linux)?;
        if let Some(mounts) = spec.mounts() {
            for (i, m) in mounts.iter().enumerate() {
                if !m.destination().is_absolute() {
                    return Err(field(
                        format!("mounts[{i}].destination"),
                        format!("{:?} is not an absolute path", m.destination()),
                    ));
                }
            }
        }
    }
    if let Some(rl) = process.rlimits() {
        for (i, r) in rl.iter().enumerate() {
            if r.soft() > r.hard() {
                return Err(field(
                    format!("process.rlimits[{i}]"),
                    format!("soft limit {} is above hard limit {}", r.soft(), r.hard()),
                ));
            }
        }
    }
    Ok(())
}

const WHY: &str = "not supported by atoll: the container would run without it";

/// Fields atoll parses but does not apply (docs/spec-fields.md): a config that sets one is
/// refused by name, since running without what it asks for would fail open.
fn refuse_unapplied(spec: &Spec) -> Result<()> {
    let platform = [
        ("solaris", spec.solaris().is_some()),
        ("windows", spec.windows().is_some()),
        ("vm", spec.vm().is_some()),
        ("zos", spec.zos().is_some()),
    ];
    if let Some((f, _)) = platform.iter().find(|(_, s)| *s) {
        return Err(field(*f, "atoll runs Linux containers only"));
    }
    if spec.uid_mappings().is_some() || spec.gid_mappings().is_some() {
        return Err(field(
            "uidMappings",
            "not a runtime-spec field: id mappings go in linux.uidMappings/gidMappings",
        ));
    }
    if let Some(p) = spec.process() {
        refuse_unapplied_process(p)?;
    }
    if let Some(l) = spec.linux() {
        let set = [
            ("linux.intelRdt", l.intel_rdt().is_some()),
            ("linux.memoryPolicy", l.memory_policy().is_some()),
            ("linux.netDevices", l.net_devices().is_some()),
            (
                "linux.personality.flags",
                l.personality()
                    .as_ref()
                    .is_some_and(|p| p.flags().as_ref().is_some_and(|f| !f.is_empty())),
            ),
        ];
        if let Some((f, _)) = set.iter().find(|(_, s)| *s) {
            return Err(field(*f, WHY));
        }
    }
    refuse_cdi_annotations(spec)?;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        for o in m.options().iter().flatten() {
            // runc's own extensions, which atoll does not carry out.
            if o == "tmpcopyup" || o == "remount" {
                return Err(field(
                    format!("mounts[{i}].options"),
                    format!("{o:?}: {WHY}"),
                ));
            }
        }
    }
    Ok(())
}

/// The annotation prefix of CDI device requests (the CDI spec's "cdi.k8s.io/<plugin>_<id>").
pub const CDI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// A CDI device request in the annotations is refused by name: the engine (podman, containerd,
/// CRI-O) resolves CDI names and writes their edits into this config (linux.devices, mounts,
/// env, hooks), which atoll applies; a request left only as an annotation would run the
/// container without the device, and resolving it here as well could apply the edits twice.
fn refuse_cdi_annotations(spec: &Spec) -> Result<()> {
    let Some(a) = spec.annotations() else {
        return Ok(());
    };
    if let Some((k, v)) = a.iter().find(|(k, _)| k.starts_with(CDI_ANNOTATION_PREFIX)) {
        return Err(field(
            format!("annotations.{k:?}"),
            format!(
                "a CDI device request ({v}): atoll does not resolve CDI annotations; let the engine inject the devices' edits into config.json (podman --device, containerd/CRI-O with CDI enabled) and drop the annotation"
            ),
        ));
    }
    Ok(())
}

/// The process fields atoll does not apply, refused by name (also for an `exec`'d process).
pub fn refuse_unapplied_process(p: &oci_spec::runtime::Process) -> Result<()> {
    let set = [
        ("process.ioPriority", p.io_priority().is_some()),
        ("process.execCPUAffinity", p.exec_cpu_affinity().is_some()),
        ("process.commandLine", p.command_line().is_some()),
        ("process.user.username", p.user().username().is_some()),
    ];
    if let Some((f, _)) = set.iter().find(|(_, s)| *s) {
        return Err(field(*f, WHY));
    }
    Ok(())
}

/// A device number the kernel can hold: mknod(2) takes a 32-bit dev_t, 12 bits of major and 20
/// of minor (include/linux/kdev_t.h), so anything larger would silently become another device.
const MAX_MAJOR: i64 = (1 << 12) - 1;
const MAX_MINOR: i64 = (1 << 20) - 1;

/// linux.devices and the device cgroup rules, each named by its own index: the rules atoll adds
/// for linux.devices must never be blamed for a number that came from linux.devices.
fn check_devices(linux: &oci_spec::runtime::Linux) -> Result<()> {
    let number = |f: String, v: i64, max: i64| -> Result<()> {
        if (0..=max).contains(&v) {
            return Ok(());
        }
        Err(field(f, format!("{v} is not a device number (0..={max})")))
    };
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() {
            return Err(field(
                format!("linux.devices[{i}].path"),
                format!("{:?} is not an absolute path", d.path()),
            ));
        }
        if d.typ() != oci_spec::runtime::LinuxDeviceType::P {
            number(format!("linux.devices[{i}].major"), d.major(), MAX_MAJOR)?;
            number(format!("linux.devices[{i}].minor"), d.minor(), MAX_MINOR)?;
        }
    }
    let rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().as_ref());
    for (i, r) in rules.into_iter().flatten().enumerate() {
        // -1 is runc's wildcard, as is a missing number.
        if let Some(v) = r.major().filter(|&v| v != -1) {
            number(format!("linux.resources.devices[{i}].major"), v, MAX_MAJOR)?;
        }
        if let Some(v) = r.minor().filter(|&v| v != -1) {
            number(format!("linux.resources.devices[{i}].minor"), v, MAX_MINOR)?;
        }
    }
    Ok(())
}

/// Only namespaced sysctls may be set, and only when the container has that namespace: anything
/// else would change the host.
fn check_sysctl(key: &str, ns: &Namespaces) -> Result<()> {
    let f = format!("linux.sysctl[{key:?}]");
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        if ns.has(LinuxNamespaceType::Ipc) {
            return Ok(());
        }
        return Err(field(f, "needs an ipc namespace"));
    }
    if key.starts_with("net.") {
        if ns.has(LinuxNamespaceType::Network) {
            return Ok(());
        }
        return Err(field(f, "needs a network namespace"));
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        if ns.has(LinuxNamespaceType::Uts) {
            return Ok(());
        }
        return Err(field(f, "needs a uts namespace"));
    }
    Err(field(
        f,
        "is not a namespaced sysctl: it would change the host",
    ))
}

/// kernel.hostname and kernel.domainname set what the `hostname` and `domainname` fields set:
/// with both given, which one wins would depend on the order they are applied, so the config is
/// refused, as runc refuses it.
fn check_uts_sysctl(key: &str, spec: &Spec) -> Result<()> {
    let conflict = match key {
        "kernel.hostname" if spec.hostname().is_some() => "hostname",
        "kernel.domainname" if spec.domainname().is_some() => "domainname",
        _ => return Ok(()),
    };
    Err(field(
        format!("linux.sysctl[{key:?}]"),
        format!("conflicts with the {conflict:?} field: set one of them"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn sysctl_rules() {
        let ns = Namespaces {
            new: (libc::CLONE_NEWNET | libc::CLONE_NEWIPC) as u64,
            join: vec![],
        };
        assert!(check_sysctl("net.ipv4.ip_forward", &ns).is_ok());
        assert!(check_sysctl("kernel.shmmax", &ns).is_ok());
        assert!(check_sysctl("kernel.hostname", &ns).is_err());
        assert!(check_sysctl("vm.swappiness", &ns)
            .unwrap_err()
            .to_string()
            .contains("not a namespaced sysctl"));
    }

    #[test]
    fn uts_sysctl_next_to_its_field_is_refused_naming_both() {
        let with = |extra: &str| {
            parse(&format!(
                r#"{{"ociVersion":"1.2.0",{extra}"linux":{{"sysctl":{{"kernel.hostname":"h","kernel.domainname":"d"}}}}}}"#
            ))
        };
        let e = check_uts_sysctl("kernel.hostname", &with(r#""hostname":"x","#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kernel.hostname") && e.contains("\"hostname\""),
            "{e}"
        );
        let e = check_uts_sysctl("kernel.domainname", &with(r#""domainname":"x","#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kernel.domainname") && e.contains("\"domainname\""),
            "{e}"
        );
        // Alone, each is a namespaced sysctl like any other.
        assert!(check_uts_sysctl("kernel.hostname", &with("")).is_ok());
        assert!(check_uts_sysctl("kernel.domainname", &with(r#""hostname":"x","#)).is_ok());
    }

    #[test]
    fn duplicate_namespace_named() {
        let spec = parse(
            r#"{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]}}"#,
        );
        let e = namespaces(&spec).unwrap_err().to_string();
        assert!(e.contains("linux.namespaces[1]"), "{e}");
    }

    #[test]
    fn type_error_names_the_path() {
        let e = super::parse(
            br#"{"ociVersion":"1.2.0","process":{"cwd":"/","user":{"uid":0,"gid":0},"args":"sh"}}"#,
        )
        .unwrap_err();
        assert!(
            e.starts_with("process.args: ") && e.contains("line 1"),
            "{e}"
        );
        let e = super::parse(br#"{"ociVersion":"1.2.0"} x"#).unwrap_err();
        assert!(e.contains("trailing"), "{e}");
    }

    #[test]
    fn device_numbers_are_named_where_they_came_from() {
        let spec = super::parse(
            br#"{"ociVersion":"1.2.0","linux":{"devices":[{"path":"/dev/a","type":"c","major":1099511627776,"minor":1}]}}"#,
        )
        .unwrap();
        let e = check_devices(spec.linux().as_ref().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.devices[0].major"), "{e}");
    }

    #[test]
    fn unknown_namespace_names_line() {
        let e = serde_json::from_str::<Spec>(
            r#"{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"bogus"}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bogus") && e.contains("line"), "{e}");
    }

    /// The spec's names for every scheduler flag parse (two of them oci-spec spells otherwise),
    /// and the parsed config survives the round trip through the saved state.
    #[test]
    fn scheduler_flags_by_the_spec_names() {
        let all = [
            "SCHED_FLAG_RESET_ON_FORK",
            "SCHED_FLAG_RECLAIM",
            "SCHED_FLAG_DL_OVERRUN",
            "SCHED_FLAG_KEEP_POLICY",
            "SCHED_FLAG_KEEP_PARAMS",
            "SCHED_FLAG_UTIL_CLAMP_MIN",
            "SCHED_FLAG_UTIL_CLAMP_MAX",
        ];
        let json = serde_json::json!({"ociVersion": "1.2.0", "process": {"cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "scheduler": {"policy": "SCHED_OTHER", "flags": all}}});
        let spec = super::parse(json.to_string().as_bytes()).unwrap();
        let flags = spec
            .process()
            .as_ref()
            .and_then(|p| p.scheduler().as_ref())
            .and_then(|s| s.flags().clone())
            .unwrap();
        assert_eq!(flags.len(), 7);
        let saved = serde_json::to_string(&spec).unwrap();
        let again: Spec = serde_json::from_str(&saved).unwrap();
        assert_eq!(again, spec);
        let p = super::parse_process(json["process"].to_string().as_bytes()).unwrap();
        assert_eq!(
            p.scheduler()
                .as_ref()
                .unwrap()
                .flags()
                .as_ref()
                .unwrap()
                .len(),
            7
        );
        let e = super::parse(
            br#"{"ociVersion":"1.2.0","process":{"cwd":"/","user":{"uid":0,"gid":0},
                "scheduler":{"policy":"SCHED_OTHER","flags":["SCHED_FLAG_BOGUS"]}}}"#,
        )
        .unwrap_err();
        assert!(e.starts_with("process.scheduler.flags[0]: "), "{e}");
    }
}

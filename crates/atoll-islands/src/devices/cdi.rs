//! CDI names resolved with the `container-device-interface` crate (cargo feature `cdi`): the
//! specs of the host's spec directories, read and validated by the crate, and their edits turned
//! into grants. Optional because the crate links jsonschema's HTTP client (tokio, hyper, rustls,
//! aws-lc) into whatever uses it: 1.5 MiB more peak RSS for every `atoll run` of the shipped
//! binary (docs/devices.md).

use std::collections::BTreeMap;
use std::path::PathBuf;

use container_device_interface as cdi;

use super::grant::*;

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

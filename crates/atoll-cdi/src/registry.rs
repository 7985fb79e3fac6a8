//! The CDI specs of the host's spec directories, read and validated by the
//! `container-device-interface` crate, and a name's edits applied by the crate to an empty
//! runtime spec: what `atoll up` turns into an island's grant.

use std::collections::BTreeMap;
use std::path::PathBuf;

use container_device_interface as cdi;

/// Every device of every spec: "vendor/class" → device name → (spec file, device).
pub struct Registry {
    dirs: Vec<PathBuf>,
    kinds: BTreeMap<String, BTreeMap<String, (PathBuf, cdi::device::Device)>>,
}

/// One name resolved: the spec files it came from and the edited runtime spec.
pub struct Resolved {
    pub specs: Vec<PathBuf>,
    pub edits: serde_json::Value,
}

impl Registry {
    /// Read every spec (*.json, *.yaml) of `dirs`, a later directory winning over an earlier
    /// one for the same device (the CDI spec's priority). A spec that does not parse or validate
    /// is an error naming its file and field: a device it may define must not silently vanish.
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
    pub fn resolve(&self, entry: &str) -> Result<Resolved, String> {
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
        let mut specs: Vec<PathBuf> = Vec::new();
        for (file, dev) in &chosen {
            // A spec's common edits once, however many of its devices are chosen.
            if !specs.contains(file) {
                specs.push(file.clone());
                if let Some(e) = dev.get_spec().edits() {
                    edits.append(e).map_err(|e| format!("{entry}: {e:#}"))?;
                }
            }
            edits
                .append(dev.edits())
                .map_err(|e| format!("{entry}: {e:#}"))?;
        }
        let in_specs = || {
            let files: Vec<String> = specs.iter().map(|f| f.display().to_string()).collect();
            format!("CDI spec {}", files.join(", "))
        };
        let edits = apply(&mut edits).map_err(|e| format!("{entry}: {e} ({})", in_specs()))?;
        Ok(Resolved { specs, edits })
    }
}

/// Apply the edits with the crate to an empty runtime spec (process uid/gid 0, so that the
/// crate sets no owner on the nodes: the island owns its own).
fn apply(edits: &mut cdi::container_edits::ContainerEdits) -> Result<serde_json::Value, String> {
    let empty = serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/", "env": []},
        "root": {"path": "rootfs"},
        "mounts": [],
        "linux": {}
    });
    let mut spec: oci_spec::runtime::Spec =
        serde_json::from_value(empty).map_err(|e| format!("an empty runtime spec: {e}"))?;
    edits.apply(&mut spec).map_err(|e| format!("{e:#}"))?;
    serde_json::to_value(&spec).map_err(|e| format!("the edited runtime spec: {e}"))
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

    pub const MIG: &str = r#"{"cdiVersion": "0.6.0", "kind": "test.atoll.dev/gpu",
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

    fn paths(r: &Resolved) -> Vec<String> {
        r.edits["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn names_resolve_to_the_edited_spec() {
        let d = spec_dir("ok", &[("t.json", MIG)]);
        let r = Registry::load(vec![d.clone()]).unwrap();
        let one = r.resolve("test.atoll.dev/gpu=1").unwrap();
        assert_eq!(paths(&one), ["/dev/tctl", "/dev/tgpu1"]);
        assert_eq!(one.specs, [d.join("t.json")]);
        assert_eq!(one.edits["process"]["env"][0], "TEST_GPU_DRIVER=1");
        let rules = &one.edits["linux"]["resources"]["devices"];
        assert_eq!(rules[1]["access"], "rw", "{rules}");
        let all = r.resolve("test.atoll.dev/gpu=all").unwrap();
        assert_eq!(paths(&all).len(), 5, "{:?}", paths(&all));
        let mig = r.resolve("test.atoll.dev/gpu=0:1").unwrap();
        assert_eq!(paths(&mig).len(), 4);
        let e = r.resolve("test.atoll.dev/gpu=7").err().unwrap();
        assert!(
            e.contains("known names: test.atoll.dev/gpu=0, test.atoll.dev/gpu=0:1"),
            "{e}"
        );
        let e = r.resolve("other.dev/x=1").err().unwrap();
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
}

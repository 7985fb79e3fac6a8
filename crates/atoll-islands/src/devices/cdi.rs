//! CDI names (`vendor/class=name`): resolved by the atoll-cdi helper beside the atoll executable
//! (crates/atoll-cdi: the CDI crate links an HTTP and TLS stack that the runtime must not map),
//! and its edited runtime spec turned into grants here, where atoll decides which edits an
//! island may have.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::grant::*;

/// The helper's file name, beside the running atoll.
pub const HELPER: &str = "atoll-cdi";

/// Where the helper is: beside this executable (/proc/self/exe, so a symlinked atoll finds the
/// helper of its own build).
pub fn helper_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("/proc/self/exe: {e}"))?;
    Ok(exe.with_file_name(HELPER))
}

/// The spec dirs from [`CDI_SPEC_DIRS_ENV`] or the standard ones.
pub fn spec_dirs() -> Vec<PathBuf> {
    match std::env::var(CDI_SPEC_DIRS_ENV) {
        Ok(v) if !v.is_empty() => v.split(':').map(PathBuf::from).collect(),
        _ => CDI_SPEC_DIRS.iter().map(PathBuf::from).collect(),
    }
}

/// Resolve `names` with one run of the helper: one result per name, in order. The outer error
/// is one for all names (the helper missing, or a spec of the dirs broken: it names the file
/// and field).
pub fn resolve(names: &[&str], dirs: &[PathBuf]) -> Result<Vec<Result<Grant, String>>, String> {
    let helper = helper_path()?;
    let mut cmd = Command::new(&helper);
    for d in dirs {
        cmd.arg("--spec-dir").arg(d);
    }
    let out = cmd
        .arg("--")
        .args(names)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing(&helper, e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(match out.status.code() {
            Some(1) => err.trim().to_string(),
            _ => format!("{}: {}: {}", helper.display(), out.status, err.trim()),
        });
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{}: its output is not JSON: {e}", helper.display()))?;
    let devices = v["devices"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if devices.len() != names.len() {
        return Err(format!(
            "{}: {} results for {} names",
            helper.display(),
            devices.len(),
            names.len()
        ));
    }
    Ok(names
        .iter()
        .zip(devices)
        .map(|(name, d)| match d["error"].as_str() {
            Some(e) => Err(e.to_string()),
            None => grant_from_edits(name, &d["edits"]).map_err(|e| {
                let specs: Vec<&str> = d["specs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                format!("{e} (CDI spec {})", specs.join(", "))
            }),
        })
        .collect())
}

fn missing(helper: &Path, e: std::io::Error) -> String {
    format!(
        "CDI names are resolved by the helper {} (crates/atoll-cdi), which could not be run: {e}; install it beside atoll (scripts/build.sh builds both)",
        helper.display()
    )
}

/// The grant an edited runtime spec describes: its nodes (with the access of their cgroup
/// rule, the last one naming the node as the kernel's last-match-wins order reads them),
/// mounts, env and hooks. Network devices and RDT classes are refused by name.
pub fn grant_from_edits(entry: &str, v: &Value) -> Result<Grant, String> {
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
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut nodes = Vec::new();
    for d in linux["devices"].as_array().into_iter().flatten() {
        let path = d["path"].as_str().unwrap_or_default();
        let kind = d["type"].as_str().unwrap_or("c");
        if kind != "c" && kind != "b" {
            return Err(format!(
                "{entry}: deviceNodes {path:?}: type {kind:?}: only character and block devices are granted"
            ));
        }
        let num = |k: &str| d[k].as_u64().and_then(|n| u32::try_from(n).ok());
        let (Some(major), Some(minor)) = (num("major"), num("minor")) else {
            return Err(format!("{entry}: deviceNodes {path:?}: no major/minor"));
        };
        if !path.starts_with("/dev/") || path.split('/').any(|c| c == "..") {
            return Err(format!(
                "{entry}: deviceNodes path {path:?}: a node must appear under /dev"
            ));
        }
        // The spec's `permissions` ("rwm" when unset; "none" is an empty access: the node
        // without any cgroup allow) as the crate wrote them into the rule for this node.
        let Some(access) = rules
            .iter()
            .rev()
            .find(|r| r["major"] == d["major"] && r["minor"] == d["minor"] && r["type"] == kind)
            .map(|r| r["access"].as_str().unwrap_or_default())
        else {
            return Err(format!(
                "{entry}: deviceNodes {path:?}: no device-cgroup rule for {kind} {major}:{minor}"
            ));
        };
        let access = if access.is_empty() {
            String::new()
        } else {
            check_access(access)?
        };
        let mode = d["fileMode"]
            .as_u64()
            .map(|m| m as u32 & 0o777)
            .unwrap_or(0o660);
        nodes.push(Node {
            path: path.to_string(),
            kind: if kind == "b" { 'b' } else { 'c' },
            major,
            minor,
            access,
            mode,
        });
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

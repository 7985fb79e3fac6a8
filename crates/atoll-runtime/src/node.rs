//! The node file (/etc/atoll/config.toml, or `$ATOLL_CONFIG`): what one host says about all its
//! containers and islands. `[guard]` is read by crate::guard (which
//! imports this module, not the other way round); `[islands]` here.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Result, RuntimeError};

/// The node file; `ATOLL_CONFIG` names another (tests, a host that keeps it elsewhere).
pub const NODE_CONFIG: &str = "/etc/atoll/config.toml";
pub const NODE_CONFIG_ENV: &str = "ATOLL_CONFIG";

/// Where the islands of this host live in the cgroup tree unless the node file says otherwise:
/// `<parent>/<project>/<island>` in every hierarchy.
pub const DEFAULT_ISLANDS_CGROUP: &str = "atoll/islands";

/// The node file's path: `$ATOLL_CONFIG` when set, else /etc/atoll/config.toml.
pub fn path() -> PathBuf {
    std::env::var_os(NODE_CONFIG_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(NODE_CONFIG))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    /// crate::guard's (checked there).
    #[serde(default)]
    #[allow(dead_code)]
    guard: toml::Table,
    #[serde(default)]
    islands: IslandsTable,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IslandsTable {
    cgroup_parent: Option<String>,
}

/// The node's `[islands]` settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IslandsNode {
    /// The cgroup (relative to each hierarchy's root) under which projects' islands go: two
    /// hosts sharing one kernel (the one-machine migration test) keep theirs apart with it, and
    /// a host that puts its workloads under a slice names it here.
    pub cgroup_parent: String,
}

impl IslandsNode {
    pub fn load() -> Result<IslandsNode> {
        let path = path();
        match std::fs::read_to_string(&path) {
            Ok(text) => IslandsNode::parse(&text).map_err(|msg| RuntimeError::Config { path, msg }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IslandsNode::default()),
            Err(e) => Err(RuntimeError::Config {
                path,
                msg: format!("cannot read: {e}"),
            }),
        }
    }

    /// The error names the field (`islands.cgroup_parent: ...`).
    pub fn parse(text: &str) -> std::result::Result<IslandsNode, String> {
        let file: NodeFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut n = IslandsNode::default();
        if let Some(p) = file.islands.cgroup_parent {
            let ok = !p.is_empty()
                && p.split('/')
                    .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
            if !ok {
                return Err(format!(
                    "islands.cgroup_parent: {p:?} is not a relative cgroup path of plain names \
                     (such as \"atoll/islands\"; no leading '/', no '.' or '..')"
                ));
            }
            n.cgroup_parent = p;
        }
        Ok(n)
    }
}

impl Default for IslandsNode {
    fn default() -> IslandsNode {
        IslandsNode {
            cgroup_parent: DEFAULT_ISLANDS_CGROUP.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_parent_is_read_and_checked() {
        assert_eq!(IslandsNode::parse("").unwrap(), IslandsNode::default());
        let n = IslandsNode::parse(
            "[guard]\nmode = \"detect\"\n[islands]\ncgroup_parent = \"hostb/islands\"\n",
        )
        .unwrap();
        assert_eq!(n.cgroup_parent, "hostb/islands");
        for bad in ["/abs", "a/../b", "a//b", "", "a/."] {
            let e =
                IslandsNode::parse(&format!("[islands]\ncgroup_parent = {bad:?}\n")).unwrap_err();
            assert!(e.starts_with("islands.cgroup_parent:"), "{bad}: {e}");
        }
        let e = IslandsNode::parse("[islands]\ncgroup = \"x\"\n").unwrap_err();
        assert!(e.contains("cgroup"), "{e}");
    }
}

//! Shares and identities as mounts and uid maps: the idmapped bind that lets islands with
//! private host uid ranges meet in one directory, and the one-id extent of a passthrough
//! island's user namespace. Which filesystems take an idmap is in `fsclass`.

use std::path::Path;

use serde_json::{json, Value};

use crate::error::FileError;
use crate::file::{File, Identity, Share, ShareIdentity};
pub use crate::fsclass::{cannot_idmap, classify, classify_magic, FsClass};
use crate::plan::{IslandPlan, Plan, UID_RANGE};

/// The island's user namespace map (uidMappings; gidMappings with `passed` its gid): its whole
/// private range, except that a passthrough island's own id is the host's same id, a one-id
/// extent cut out of the range (user_namespaces(7): extents may not overlap on either side).
pub fn id_map(base: u32, passed: Option<u32>) -> Value {
    let Some(id) = passed else {
        return json!([{"containerID": 0, "hostID": base, "size": UID_RANGE}]);
    };
    let mut v = Vec::new();
    if id > 0 {
        v.push(json!({"containerID": 0, "hostID": base, "size": id}));
    }
    v.push(json!({"containerID": id, "hostID": id, "size": 1}));
    if id + 1 < UID_RANGE {
        v.push(json!({"containerID": id + 1, "hostID": base + id + 1, "size": UID_RANGE - id - 1}));
    }
    Value::Array(v)
}

/// The island's uid and gid maps.
pub fn island_maps(island: &IslandPlan) -> (Value, Value) {
    let pass = island.spec.identity == Identity::Passthrough;
    (
        id_map(island.host_base, pass.then_some(island.spec.uid)),
        id_map(island.host_base, pass.then_some(island.spec.gid)),
    )
}

/// The host uid an island's user is, and whether it is passed through.
pub fn host_uid(island: &IslandPlan) -> u32 {
    match island.spec.identity {
        Identity::Passthrough => island.spec.uid,
        Identity::Private => island.host_base + island.spec.uid,
    }
}

/// The config mounts of island `n`'s shares. A private island's mount is idmapped with a map
/// of one uid and one gid: the share's owner on disk is the island's user (host_base + uid as
/// the kernel counts it), both ways, so what the user writes lands as the owner and what any
/// island wrote as the owner reads as its own user. Every other id is unmapped: files of other
/// owners read as nobody (overflowuid), and a write by any other of the island's uids (root
/// included) fails with EOVERFLOW (mount_setattr(2), the kernel cannot store an unmapped id).
/// A passthrough island, and a kerberos share, get a plain bind: the id is the host's already.
pub fn mounts(plan: &Plan, n: usize) -> Vec<Value> {
    let island = &plan.islands[n];
    let mut out = Vec::new();
    for share in &plan.shares {
        for m in share.mounts.iter().filter(|m| m.island == n) {
            let mut opts = vec!["bind", if m.read_only { "ro" } else { "rw" }];
            opts.extend(["nosuid", "nodev"]);
            let mut mount = json!({"destination": m.path, "type": "bind",
                                   "source": share.host, "options": opts});
            if idmapped(share, island) {
                mount["uidMappings"] = json!([{"containerID": share.owner,
                    "hostID": island.host_base + island.spec.uid, "size": 1}]);
                mount["gidMappings"] = json!([{"containerID": share.group,
                    "hostID": island.host_base + island.spec.gid, "size": 1}]);
            }
            out.push(mount);
        }
    }
    out
}

/// Whether `island` mounts `share` idmapped.
pub fn idmapped(share: &Share, island: &IslandPlan) -> bool {
    share.identity == ShareIdentity::Idmap && island.spec.identity == Identity::Private
}

/// What only the projects that are up can tell: a host uid passed through by two islands would
/// be one identity on the host (each could signal, ptrace-check and own the other's files),
/// and a share must stay out of every island's data.
pub fn check_against(file: &File, others: &[Plan]) -> Result<(), FileError> {
    let err = |field: String, msg: String| FileError {
        path: file.path.clone(),
        line: 0,
        col: 0,
        field,
        msg,
    };
    let mut passed: Vec<(u32, String)> = others
        .iter()
        .flat_map(|p| {
            p.islands
                .iter()
                .filter(|i| i.spec.identity == Identity::Passthrough)
                .map(move |i| (i.spec.uid, format!("{}/{}", p.name, i.spec.name)))
        })
        .collect();
    for (k, i) in file.islands.iter().enumerate() {
        if i.identity != Identity::Passthrough {
            continue;
        }
        if let Some((_, who)) = passed.iter().find(|(u, _)| *u == i.uid) {
            return Err(err(
                format!("island[{k}] ({}).identity", i.name),
                format!(
                    "host uid {} is already passed through by island {who}: two islands would be one user on the host",
                    i.uid
                ),
            ));
        }
        passed.push((i.uid, format!("{}/{}", file.name, i.name)));
    }
    for (k, s) in file.shares.iter().enumerate() {
        for p in others {
            if let Some(i) = p
                .islands
                .iter()
                .find(|i| crate::file::inside_data(&s.host, &i.data_dir))
            {
                return Err(err(
                    format!("share[{k}] ({}).host", s.name),
                    format!(
                        "{} overlaps the data dir {} of island {}/{}: an island's data dir is private to it",
                        s.host.display(),
                        i.data_dir.display(),
                        p.name,
                        i.spec.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Find a share by name: "SHARE" (if exactly one project that is up has it) or "PROJECT/SHARE".
pub fn resolve(state_root: &Path, what: &str) -> crate::Result<(Plan, Share)> {
    let (proj, name) = match what.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, what),
    };
    let mut hits: Vec<(Plan, Share)> = crate::plan::existing(state_root)
        .into_iter()
        .filter(|p| proj.is_none_or(|x| x == p.name))
        .filter_map(|p| {
            let s = p.shares.iter().find(|s| s.name == name)?.clone();
            Some((p, s))
        })
        .collect();
    match hits.len() {
        1 => Ok(hits.pop().expect("one")),
        0 => Err(crate::IslandsError::Other(format!(
            "no share {what:?} in a project that is up (see `atoll status`)"
        ))),
        _ => Err(crate::IslandsError::Other(format!(
            "share {name:?} is in several projects: say PROJECT/{name}"
        ))),
    }
}

/// The host uid and gid the island's user and group are.
pub(crate) fn host_ids(island: &IslandPlan) -> (u32, u32) {
    let gid = match island.spec.identity {
        crate::file::Identity::Passthrough => island.spec.gid,
        crate::file::Identity::Private => island.host_base + island.spec.gid,
    };
    (host_uid(island), gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_filesystems_and_fuse_are_told_apart() {
        assert_eq!(classify_magic(0x6969), FsClass::Network("nfs"));
        assert_eq!(classify_magic(0xff53_4d42), FsClass::Network("cifs/smb"));
        assert_eq!(classify_magic(0xfe53_4d42), FsClass::Network("cifs/smb"));
        assert_eq!(classify_magic(0x0102_1997), FsClass::Network("9p"));
        assert_eq!(classify_magic(0x6573_5546), FsClass::Fuse);
        assert_eq!(classify_magic(0xef53), FsClass::Local(0xef53), "ext4");
        assert_eq!(classify_magic(0x0102_1994), FsClass::Local(0x0102_1994));
        let m = cannot_idmap("x", Path::new("/mnt/nfs"), FsClass::Network("nfs"), &["a"]);
        assert!(m.contains("share \"x\": /mnt/nfs is on nfs"), "{m}");
        assert!(m.contains("1000001001") && m.contains("passthrough") && m.contains("krb5"));
    }

    #[test]
    fn a_host_uid_is_passed_through_by_one_island_only() {
        let text = "name = \"p\"\n[[island]]\nname = \"a\"\ncommand = [\"/bin/sh\"]\nuser = 1001\nidentity = \"passthrough\"\n";
        let f = crate::file::parse(Path::new("p.toml"), text).unwrap();
        let first = crate::plan::build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap();
        assert_eq!(host_uid(&first.islands[0]), 1001);
        let (uids, _) = island_maps(&first.islands[0]);
        assert_eq!(
            uids[1],
            json!({"containerID": 1001, "hostID": 1001, "size": 1})
        );
        let mut f2 = f.clone();
        f2.name = "q".into();
        let e = check_against(&f2, &[first]).unwrap_err();
        assert!(
            e.to_string().contains(
                "island[0] (a).identity: host uid 1001 is already passed through by island p/a"
            ),
            "{e}"
        );
        // Two islands of one file, too.
        let two = format!("{text}[[island]]\nname = \"b\"\ncommand = [\"/bin/sh\"]\nuser = 1001\nidentity = \"passthrough\"\n");
        let f = crate::file::parse(Path::new("p.toml"), &two).unwrap();
        let e = check_against(&f, &[]).unwrap_err();
        assert!(e.to_string().contains("island[1] (b).identity"), "{e}");
    }

    #[test]
    fn a_passthrough_id_is_a_one_id_extent_in_the_range() {
        let b = crate::plan::UID_BASE;
        assert_eq!(
            id_map(b, None),
            json!([{"containerID": 0, "hostID": b, "size": 65536}])
        );
        assert_eq!(
            id_map(b, Some(1001)),
            json!([{"containerID": 0, "hostID": b, "size": 1001},
                   {"containerID": 1001, "hostID": 1001, "size": 1},
                   {"containerID": 1002, "hostID": b + 1002, "size": 64534}])
        );
        assert_eq!(
            id_map(b, Some(65535)),
            json!([{"containerID": 0, "hostID": b, "size": 65535},
                   {"containerID": 65535, "hostID": 65535, "size": 1}])
        );
    }
}

//! `[[share]]` and an island's `identity`: a host directory several islands mount, who owns
//! what they write, and whether the filesystem can translate ids at all (crate::share says how
//! the mounts are made). Every check names the file, line and field, before anything exists.

use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::rules::reserved_inside;
use super::syntax::{Cx, RawShare};
use super::{Identity, Island, Share, ShareIdentity, ShareMount};
use crate::error::FileError;
use crate::fsclass::{classify, FsClass};

/// An island's `identity`: "private" (its own host uid range, the default) or "passthrough"
/// (its user keeps the same number on the host). Host root is never passed through.
pub(super) fn identity(
    cx: &Cx<'_>,
    raw: &Option<Spanned<String>>,
    uid: u32,
    gid: u32,
    field: String,
) -> Result<Identity, FileError> {
    let Some(r) = raw else {
        return Ok(Identity::Private);
    };
    match r.get_ref().as_str() {
        "private" => Ok(Identity::Private),
        "passthrough" if uid == 0 || gid == 0 => Err(cx.err(
            r.span(),
            field,
            "passthrough of uid or gid 0 would make the island's root the host's root: give the island a `user` (and `group`) other than 0".into(),
        )),
        "passthrough" => Ok(Identity::Passthrough),
        other => Err(cx.err(
            r.span(),
            field,
            format!("{other:?} is not an identity (private or passthrough)"),
        )),
    }
}

/// Every `[[share]]`, checked against the islands and the host. `data_root`: where this
/// project's islands keep their data; a share may be neither inside it nor above it.
pub(super) fn shares(
    cx: &Cx<'_>,
    raw: &[RawShare],
    islands: &[Island],
    data_root: &Path,
) -> Result<Vec<Share>, FileError> {
    let mut out: Vec<Share> = Vec::with_capacity(raw.len());
    for (i, rs) in raw.iter().enumerate() {
        let name = rs.name.get_ref().clone();
        let f = |field: &str| format!("share[{i}] ({name}).{field}");
        super::rules::check_name(&name, 32).map_err(|m| cx.err(rs.name.span(), f("name"), m))?;
        if out.iter().any(|s| s.name == name) {
            return Err(cx.err(
                rs.name.span(),
                f("name"),
                format!("share {name:?} is named twice"),
            ));
        }
        let host = host_dir(rs.host.get_ref(), data_root)
            .map_err(|m| cx.err(rs.host.span(), f("host"), m))?;
        let owner = id(&rs.owner).map_err(|m| cx.err(rs.owner.span(), f("owner"), m))?;
        let group = match &rs.group {
            Some(g) => id(g).map_err(|m| cx.err(g.span(), f("group"), m))?,
            None => owner,
        };
        let identity = match rs.identity.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "idmap")) => ShareIdentity::Idmap,
            Some((_, "kerberos")) => ShareIdentity::Kerberos,
            Some((s, other)) => {
                return Err(cx.err(
                    s.span(),
                    f("identity"),
                    format!("{other:?} is not a share identity (idmap or kerberos)"),
                ))
            }
        };
        let default_path = rs
            .path
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_else(|| format!("/shared/{name}"));
        if let Some(p) = &rs.path {
            check_inside(p.get_ref()).map_err(|m| cx.err(p.span(), f("path"), m))?;
        }
        let mut mounts: Vec<ShareMount> = Vec::new();
        for entry in rs.islands.get_ref() {
            let m = mount_entry(entry.get_ref(), &default_path, islands)
                .map_err(|m| cx.err(entry.span(), f("islands"), m))?;
            if mounts.iter().any(|x| x.island == m.island) {
                return Err(cx.err(
                    entry.span(),
                    f("islands"),
                    format!("{} is listed twice", islands[m.island].name),
                ));
            }
            collision(&m, &islands[m.island], &out)
                .map_err(|msg| cx.err(entry.span(), f("islands"), msg))?;
            mounts.push(m);
        }
        if mounts.is_empty() {
            return Err(cx.err(
                rs.islands.span(),
                f("islands"),
                "no island mounts the share: list at least one".into(),
            ));
        }
        let share = Share {
            name: name.clone(),
            host,
            owner,
            group,
            identity,
            mounts,
        };
        filesystem(&share, islands).map_err(|m| cx.err(rs.host.span(), f("host"), m))?;
        out.push(share);
    }
    Ok(out)
}

/// A host uid or gid that owns what islands write: not root (files an island writes would be
/// root's on the host), and within the 32-bit id space the kernel has (-1 is "no id").
fn id(v: &Spanned<i64>) -> Result<u32, String> {
    match *v.get_ref() {
        0 => Err("0 is root: what the islands write would belong to the host's root; give an ordinary host uid/gid".into()),
        n if (1..i64::from(u32::MAX)).contains(&n) => Ok(n as u32),
        n => Err(format!("{n} is not a host uid/gid")),
    }
}

/// The share's host directory: absolute, an existing directory reached without a symlink (a
/// tenant who can swap a link would move every island's view), and apart from islands' data.
fn host_dir(raw: &str, data_root: &Path) -> Result<PathBuf, String> {
    let p = PathBuf::from(raw);
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "{raw:?} must be an absolute host path without '..'"
        ));
    }
    let md = std::fs::symlink_metadata(&p)
        .map_err(|e| format!("{raw} cannot be used: {e} (create the directory first)"))?;
    if md.file_type().is_symlink() {
        return Err(format!(
            "{raw} is a symlink: give the directory it points to (a link can be swapped under the islands)"
        ));
    }
    if !md.is_dir() {
        return Err(format!("{raw} is not a directory"));
    }
    let real = p
        .canonicalize()
        .map_err(|e| format!("{raw} cannot be resolved: {e}"))?;
    if real != p.components().collect::<PathBuf>() {
        return Err(format!(
            "{raw} is reached through a symlink (it is {}): give the real path",
            real.display()
        ));
    }
    for data in [data_root, Path::new(super::DATA_ROOT)] {
        if inside_data(&real, data) {
            return Err(format!(
                "{raw} overlaps the islands' data under {}: an island's data dir is private to it",
                data.display()
            ));
        }
    }
    Ok(real)
}

/// Whether `host` lies in `data` or holds it. `data` may be a symlinked or missing path.
pub(crate) fn inside_data(host: &Path, data: &Path) -> bool {
    let data = data.canonicalize().unwrap_or_else(|_| data.to_path_buf());
    host.starts_with(&data) || data.starts_with(host)
}

fn check_inside(p: &str) -> Result<(), String> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return Err(format!(
            "{p:?} must be an absolute path inside the island, without '..'"
        ));
    }
    if let Some(why) = reserved_inside(p) {
        return Err(format!("{p:?} cannot hold a share: {why}"));
    }
    Ok(())
}

/// "ISLAND", "ISLAND:/path", "ISLAND:ro", "ISLAND:/path:ro" (rw is the default).
fn mount_entry(entry: &str, default_path: &str, islands: &[Island]) -> Result<ShareMount, String> {
    let mut parts = entry.split(':');
    let who = parts.next().unwrap_or_default();
    let island = islands
        .iter()
        .position(|i| i.name == who)
        .ok_or_else(|| format!("no island is named {who:?} (want ISLAND[:PATH][:ro])"))?;
    let mut path = default_path.to_string();
    let mut read_only = false;
    for part in parts {
        match part {
            "ro" => read_only = true,
            "rw" => read_only = false,
            p if p.starts_with('/') => {
                check_inside(p)?;
                path = p.to_string();
            }
            other => {
                return Err(format!(
                    "{entry:?}: {other:?} is neither a path inside the island nor ro/rw"
                ))
            }
        }
    }
    Ok(ShareMount {
        island,
        path: normal(&path),
        read_only,
    })
}

fn normal(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Two mount points where one holds the other would stack: the later mount hides the earlier
/// one's files, or needs a mount point made inside another mount.
fn nested(a: &str, b: &str) -> bool {
    let (a, b) = (normal(a), normal(b));
    Path::new(&a).starts_with(&b) || Path::new(&b).starts_with(&a)
}

/// A share's mount point must not meet the island's data dir, its binds or its other shares.
fn collision(m: &ShareMount, island: &Island, earlier: &[Share]) -> Result<(), String> {
    let at = &m.path;
    if nested(at, &island.data) {
        return Err(format!(
            "{at} meets {}'s data dir {}: give the share another path ({}:/PATH)",
            island.name, island.data, island.name
        ));
    }
    if let Some((_, b)) = island.binds.iter().find(|(_, b)| nested(at, b)) {
        return Err(format!("{at} meets {}'s bind at {b}", island.name));
    }
    if let Some(t) = island.tmpfs.iter().find(|t| nested(at, t)) {
        return Err(format!("{at} meets {}'s tmpfs at {t}", island.name));
    }
    if let Some(w) = island.writable.iter().find(|w| nested(at, w)) {
        return Err(format!("{at} meets {}'s writable dir at {w}", island.name));
    }
    for s in earlier {
        if let Some(o) = s
            .mounts
            .iter()
            .find(|o| o.island == m.island && nested(at, &o.path))
        {
            return Err(format!(
                "{at} meets share {:?} at {} in {}",
                s.name, o.path, island.name
            ));
        }
    }
    Ok(())
}

/// Can the share's filesystem give each island the identity it asks for? An idmapped mount
/// needs the filesystem's consent (FS_ALLOW_IDMAP; FUSE only when its server opts in); a
/// network filesystem would not honour it anyway, since the server checks the uid on the wire.
fn filesystem(share: &Share, islands: &[Island]) -> Result<(), String> {
    let class = match rustix::fs::statfs(&share.host) {
        Ok(st) => classify(&st),
        Err(e) => return Err(format!("statfs {}: {e}", share.host.display())),
    };
    for m in &share.mounts {
        let island = &islands[m.island];
        if island.identity == Identity::Passthrough
            && (island.uid, island.gid) != (share.owner, share.group)
        {
            return Err(format!(
                "island {} passes its uid {}:{} through to the host, so what it writes is owned by {}:{} there, not by the share's owner {}:{}: make them the same",
                island.name, island.uid, island.gid, island.uid, island.gid, share.owner, share.group
            ));
        }
    }
    match (share.identity, class) {
        (ShareIdentity::Kerberos, FsClass::Network(_)) => Ok(()),
        (ShareIdentity::Kerberos, _) => Err(format!(
            "identity = \"kerberos\" is for network filesystems mounted with sec=krb5; {} is local ({}): drop it and the share is idmapped",
            share.host.display(),
            class.name()
        )),
        (ShareIdentity::Idmap, FsClass::Network(_) | FsClass::Fuse) => {
            let private: Vec<&str> = share
                .mounts
                .iter()
                .map(|m| &islands[m.island])
                .filter(|i| i.identity == Identity::Private)
                .map(|i| i.name.as_str())
                .collect();
            if private.is_empty() {
                return Ok(());
            }
            Err(crate::fsclass::cannot_idmap(
                &share.name,
                &share.host,
                class,
                &private,
            ))
        }
        (ShareIdentity::Idmap, FsClass::Local(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::file::{parse, File, Identity, ShareIdentity};

    /// A host dir for one test (the checks stat the host).
    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("atoll-share-unit-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("real")).unwrap();
        d
    }

    fn file(host: &Path, extra_island: &str, share: &str) -> String {
        format!(
            "name = \"p\"\ndata_root = \"/srv/p-data\"\n[[island]]\nname = \"a\"\ncommand = [\"/bin/sh\"]\n{extra_island}\n[[island]]\nname = \"b\"\ncommand = [\"/bin/sh\"]\n[[share]]\nname = \"ex\"\nhost = \"{}\"\nowner = 1001\n{share}\n",
            host.display()
        )
    }

    fn p(text: &str) -> Result<File, String> {
        parse(Path::new("t.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_share_names_its_islands_paths_and_modes() {
        let d = dir("good");
        let f = p(&file(
            &d.join("real"),
            "",
            "islands = [\"a\", \"b:/in:ro\"]",
        ))
        .unwrap();
        let s = &f.shares[0];
        assert_eq!((s.owner, s.group), (1001, 1001));
        assert_eq!(s.identity, ShareIdentity::Idmap);
        assert_eq!(s.mounts[0].path, "/shared/ex");
        assert!(!s.mounts[0].read_only);
        assert_eq!((s.mounts[1].island, s.mounts[1].path.as_str()), (1, "/in"));
        assert!(s.mounts[1].read_only);
    }

    #[test]
    fn bad_shares_name_file_line_and_field() {
        let d = dir("bad");
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        let e = p(&file(&d.join("link"), "", "islands = [\"a\"]")).unwrap_err();
        assert!(
            e.starts_with("t.toml:12:8: share[0] (ex).host: ") && e.contains("is a symlink"),
            "{e}"
        );
        let e = p(&file(&d.join("link/x"), "", "islands = [\"a\"]")).unwrap_err();
        assert!(e.contains("share[0] (ex).host"), "{e}");
        // Inside (or above) the islands' data: this project's data_root, and the default root.
        let data = d.join("data");
        std::fs::create_dir_all(data.join("a")).unwrap();
        let text = file(&data.join("a"), "", "islands = [\"a\"]")
            .replace("/srv/p-data", data.to_str().unwrap());
        let e = p(&text).unwrap_err();
        assert!(
            e.contains("(ex).host: ") && e.contains("overlaps the islands' data"),
            "{e}"
        );
        let e = p(&file(Path::new("/var/lib"), "", "islands = [\"a\"]")).unwrap_err();
        assert!(
            e.contains("overlaps the islands' data under /var/lib/atoll/islands"),
            "{e}"
        );
        // Mount points that meet the island's own mounts.
        let real = d.join("real");
        for (islands, want) in [
            ("[\"a:/data/x\"]", "meets a's data dir /data"),
            (
                "[\"a:/proc/x\"]",
                "/proc belongs to the island's own mounts",
            ),
            ("[\"a:/\"]", "the island's root"),
            ("[\"zz\"]", "no island is named \"zz\""),
            ("[\"a:rx\"]", "neither a path inside the island nor ro/rw"),
            ("[\"a\", \"a:/y\"]", "a is listed twice"),
            ("[]", "no island mounts the share"),
        ] {
            let e = p(&file(&real, "", &format!("islands = {islands}"))).unwrap_err();
            assert!(
                e.contains("share[0] (ex).islands: ") && e.contains(want),
                "{islands}: {e}"
            );
            assert!(e.starts_with("t.toml:"), "{e}");
        }
        let two = format!(
            "{}[[share]]\nname = \"ex2\"\nhost = \"{}\"\nowner = 1001\nislands = [\"a:/shared\"]\n",
            file(&real, "", "islands = [\"a\"]"),
            real.display()
        );
        let e = p(&two).unwrap_err();
        assert!(
            e.contains("share[1] (ex2).islands: /shared meets share \"ex\""),
            "{e}"
        );
        let e = p(&file(&real, "", "owner = 0\nislands = [\"a\"]").replace("owner = 1001\n", ""))
            .unwrap_err();
        assert!(e.contains("(ex).owner: 0 is root"), "{e}");
    }

    #[test]
    fn passthrough_ids_are_checked() {
        let real = dir("pass").join("real");
        let e = p(&file(
            &real,
            "user = 70000\nidentity = \"passthrough\"",
            "islands = [\"b\"]",
        ))
        .unwrap_err();
        assert!(
            e.starts_with("t.toml:6:8: island[0] (a).user: uid 70000 is outside")
                && e.contains("passthrough uid"),
            "{e}"
        );
        let e = p(&file(
            &real,
            "user = 0\nidentity = \"passthrough\"",
            "islands = [\"b\"]",
        ))
        .unwrap_err();
        assert!(
            e.contains("island[0] (a).identity: passthrough of uid or gid 0"),
            "{e}"
        );
        let e = p(&file(&real, "identity = \"shared\"", "islands = [\"b\"]")).unwrap_err();
        assert!(
            e.contains("(a).identity: \"shared\" is not an identity"),
            "{e}"
        );
        // A passthrough island writes as its own uid: the share's owner must be that uid.
        let e = p(&file(
            &real,
            "user = 1002\nidentity = \"passthrough\"",
            "islands = [\"a\"]",
        ))
        .unwrap_err();
        assert!(e.contains("passes its uid 1002:1002 through"), "{e}");
        let f = p(&file(
            &real,
            "user = 1001\nidentity = \"passthrough\"",
            "islands = [\"a\"]",
        ))
        .unwrap();
        assert_eq!(f.islands[0].identity, Identity::Passthrough);
        // kerberos is for network filesystems only.
        let e = p(&file(
            &real,
            "",
            "identity = \"kerberos\"\nislands = [\"a\"]",
        ))
        .unwrap_err();
        assert!(
            e.contains("(ex).host: identity = \"kerberos\" is for network"),
            "{e}"
        );
    }
}

//! An island's own extra mount points, `tmpfs` and `writable`: each an absolute path inside the
//! island, off its reserved mounts, and meeting none of its other mount points (data dir,
//! binds, the other entries), so no mount hides another or needs a mount point made in one.

use std::path::Path;

use toml::Spanned;

use super::rules::reserved_for_mount;
use super::syntax::Cx;
use crate::error::FileError;

/// The `tmpfs` and `writable` lists of one island, checked against its data dir and binds.
pub(super) fn extra_mounts(
    cx: &Cx<'_>,
    tmpfs: &[Spanned<String>],
    writable: &[Spanned<String>],
    data: &str,
    binds: &[(std::path::PathBuf, String)],
    field: impl Fn(&str) -> String,
) -> Result<(Vec<String>, Vec<String>), FileError> {
    // Every mount point of the island so far, with what it is, for the "meets" message.
    let mut taken: Vec<(String, String)> = vec![(normal(data), "its data dir".into())];
    taken.extend(
        binds
            .iter()
            .map(|(_, at)| (normal(at), format!("its bind at {at}"))),
    );
    let mut out = (Vec::new(), Vec::new());
    for (key, list) in [("tmpfs", tmpfs), ("writable", writable)] {
        for (n, entry) in list.iter().enumerate() {
            let at = check_one(entry.get_ref(), &taken)
                .map_err(|m| cx.err(entry.span(), field(&format!("{key}[{n}]")), m))?;
            taken.push((at.clone(), format!("{key} {at}")));
            if key == "tmpfs" {
                out.0.push(at);
            } else {
                out.1.push(at);
            }
        }
    }
    Ok(out)
}

fn check_one(raw: &str, taken: &[(String, String)]) -> Result<String, String> {
    if !raw.starts_with('/') || raw.split('/').any(|c| c == "..") {
        return Err(format!(
            "{raw:?} must be an absolute path inside the island, without '..'"
        ));
    }
    if raw.contains(':') || raw.contains('\0') {
        return Err(format!("{raw:?}: a path only (no ':' options)"));
    }
    let at = normal(raw);
    if let Some(why) = reserved_for_mount(&at) {
        return Err(format!("{at:?} cannot be mounted on: {why}"));
    }
    if let Some((_, what)) = taken.iter().find(|(t, _)| nested(&at, t)) {
        return Err(format!(
            "{at} meets {what}: mount points must not hold one another"
        ));
    }
    Ok(at)
}

/// `/a//b/./c/` as `/a/b/c`.
fn normal(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Whether one of two (normal) mount points holds the other, or they are the same.
fn nested(a: &str, b: &str) -> bool {
    Path::new(a).starts_with(b) || Path::new(b).starts_with(a)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const ONE: &str = "name = \"x\"\n[[island]]\nname = \"a\"\ncommand = [\"/bin/sh\"]\n";

    fn err(text: &str) -> String {
        crate::file::parse(Path::new("t.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn tmpfs_and_writable_paths_are_read_normalised() {
        let f = crate::file::parse(
            Path::new("t.toml"),
            &format!("{ONE}tmpfs = [\"/run/nginx/\"]\nwritable = [\"/var/lib//nginx\", \"/var/log/nginx\", \"/srv/state\"]\n"),
        )
        .unwrap();
        assert_eq!(f.islands[0].tmpfs, ["/run/nginx"]);
        assert_eq!(
            f.islands[0].writable,
            ["/var/lib/nginx", "/var/log/nginx", "/srv/state"]
        );
    }

    #[test]
    fn bad_paths_name_file_line_and_entry() {
        let e = err(&format!("{ONE}writable = [\"/var/lib/a\", \"var/x\"]\n"));
        assert!(
            e.starts_with("t.toml:5:27: island[0] (a).writable[1]: \"var/x\" must be an absolute"),
            "{e}"
        );
        let e = err(&format!("{ONE}tmpfs = [\"/proc/x\"]\n"));
        assert!(
            e.contains("(a).tmpfs[0]: \"/proc/x\" cannot be mounted on"),
            "{e}"
        );
        for bad in [
            "/",
            "/usr/x",
            "/dev",
            "/var",
            "/etc",
            "/etc/passwd",
            "/etc/hosts",
            "/a/../b",
        ] {
            let e = err(&format!("{ONE}writable = [\"{bad}\"]\n"));
            assert!(e.contains("(a).writable[0]: "), "{bad}: {e}");
        }
    }

    #[test]
    fn mount_points_do_not_meet() {
        let e = err(&format!("{ONE}writable = [\"/data/x\"]\n"));
        assert!(e.contains("/data/x meets its data dir"), "{e}");
        let e = err(&format!(
            "{ONE}tmpfs = [\"/run/a\"]\nwritable = [\"/run/a/b\"]\n"
        ));
        assert!(
            e.contains("(a).writable[0]: /run/a/b meets tmpfs /run/a"),
            "{e}"
        );
        let e = err(&format!(
            "{ONE}binds = [\"/usr/share:/srv/doc\"]\ntmpfs = [\"/srv\"]\n"
        ));
        assert!(e.contains("/srv meets its bind at /srv/doc"), "{e}");
        let e = err(&format!("{ONE}writable = [\"/srv/a\", \"/srv/a\"]\n"));
        assert!(
            e.contains("(a).writable[1]: /srv/a meets writable /srv/a"),
            "{e}"
        );
    }

    #[test]
    fn config_dirs_below_etc_may_be_bound() {
        let f = crate::file::parse(
            Path::new("t.toml"),
            &format!("{ONE}binds = [\"/usr/share:/etc/nginx\"]\n"),
        )
        .unwrap();
        assert_eq!(f.islands[0].binds[0].1, "/etc/nginx");
        let e = err(&format!(
            "{ONE}binds = [\"/usr/share:/etc/ld.so.conf.d\"]\n"
        ));
        assert!(e.contains("atoll writes /etc/ld.so.conf.d"), "{e}");
    }
}

//! From OCI linux.cgroupsPath to one cgroup path per hierarchy, and the one-line form of that
//! result kept in the state file.

use crate::error::CgroupError;

/// What the configuration asked for, before looking at any hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Requested {
    /// "/a/b": the same path from the root of every hierarchy.
    Absolute(String),
    /// "a/b": below the calling process's own cgroup, per hierarchy (runc's rule).
    Relative(String),
}

/// Resolves linux.cgroupsPath. None means "/atoll/<id>". runc's systemd form "slice:prefix:name"
/// is mapped to the path systemd would use: "/<expanded slice>/<prefix>-<name>.scope" (or
/// "/<expanded slice>/<name>" when prefix is empty), without talking to systemd.
pub(crate) fn resolve(cgroups_path: Option<&str>, id: &str) -> Result<Requested, CgroupError> {
    let raw = match cgroups_path {
        None | Some("") => {
            let p = format!("/atoll/{id}");
            return Ok(Requested::Absolute(clean(&p, &p)?));
        }
        Some(p) => p,
    };
    if let Some(p) = systemd_path(raw, id)? {
        return Ok(Requested::Absolute(clean(&p, raw)?));
    }
    if raw.starts_with('/') {
        Ok(Requested::Absolute(clean(raw, raw)?))
    } else {
        Ok(Requested::Relative(clean(&format!("/{raw}"), raw)?))
    }
}

/// "slice:prefix:name" → Some(path). A plain path has no ':' at all, or a different count.
fn systemd_path(raw: &str, id: &str) -> Result<Option<String>, CgroupError> {
    let parts: Vec<&str> = raw.split(':').collect();
    if raw.starts_with('/') || parts.len() != 3 {
        return Ok(None);
    }
    let (slice, prefix, name) = (parts[0], parts[1], parts[2]);
    let bad = |why| CgroupError::BadPath {
        path: raw.to_string(),
        why,
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let name = if name.is_empty() { id } else { name };
    let unit = if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}-{name}.scope")
    };
    if unit.contains('/') {
        return Err(bad("a systemd unit name cannot contain '/'"));
    }
    Ok(Some(format!(
        "{}/{unit}",
        expand_slice(slice).map_err(bad)?
    )))
}

/// systemd slice naming: "a-b-c.slice" lives at "/a.slice/a-b.slice/a-b-c.slice".
fn expand_slice(slice: &str) -> Result<String, &'static str> {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err("the slice must end in \".slice\"");
    };
    if stem.contains('/') {
        return Err("a slice name cannot contain '/'");
    }
    if stem == "-" {
        return Ok(String::new());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err("malformed slice name");
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for (i, part) in stem.split('-').enumerate() {
        if i > 0 {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

/// `exec --cgroup`: where below the container's cgroup an exec'd process goes, as runc 1.1
/// takes the flag: one "PATH" for every hierarchy, or "CONTROLLER[,CONTROLLER]:PATH" for the v1
/// hierarchies of those controllers (the others keep the container's cgroup). Paths are
/// relative to the container's cgroup, cleaned, never with "..".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubCgroup {
    All(String),
    PerController(Vec<(String, String)>),
}

impl SubCgroup {
    /// The values of every `--cgroup` flag; None when there are none.
    pub fn parse(args: &[String]) -> Result<Option<SubCgroup>, CgroupError> {
        let bad = |arg: &str, why| CgroupError::BadPath {
            path: arg.to_string(),
            why,
        };
        let mut per = Vec::new();
        for arg in args {
            let (controllers, sub) = match arg.split_once(':') {
                None if args.len() == 1 => return Ok(Some(SubCgroup::All(clean_sub(arg)?))),
                None => {
                    return Err(bad(
                        arg,
                        "with several --cgroup flags each needs a <controller>: prefix",
                    ))
                }
                Some((_, rest)) if rest.contains(':') => {
                    return Err(bad(arg, "use [<controller>[,<controller>]:]<path>"))
                }
                Some(pair) => pair,
            };
            let sub = clean_sub(sub)?;
            for c in controllers.split(',') {
                if c.is_empty() {
                    return Err(bad(arg, "empty <controller> prefix"));
                }
                if per.iter().any(|(have, _)| have == c) {
                    return Err(bad(arg, "a controller is given more than once"));
                }
                per.push((c.to_string(), sub.clone()));
            }
        }
        Ok((!per.is_empty()).then_some(SubCgroup::PerController(per)))
    }
}

/// A sub-cgroup path as "/a/b", or "" for the container's cgroup itself (runc joins "/" and ""
/// onto it the same way).
fn clean_sub(sub: &str) -> Result<String, CgroupError> {
    if sub.split('/').all(|c| c.is_empty() || c == ".") {
        return Ok(String::new());
    }
    clean(&format!("/{sub}"), sub)
}

/// Collapses "//" and "."; refuses ".." (it could leave the hierarchy) and the characters the
/// saved form uses as separators.
fn clean(path: &str, original: &str) -> Result<String, CgroupError> {
    let bad = |why| CgroupError::BadPath {
        path: original.to_string(),
        why,
    };
    if path.contains(';') || path.contains('\n') || path.contains('\0') {
        return Err(bad("';', newline and NUL are not allowed"));
    }
    let mut out = String::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(bad("\"..\" is not allowed")),
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        return Err(bad(
            "a container needs its own cgroup, not a hierarchy root",
        ));
    }
    Ok(out)
}

/// Joins a process's own cgroup ("/", "/user.slice") and a relative request ("/a/b").
pub(crate) fn under(parent: &str, rel: &str) -> String {
    let parent = parent.trim_end_matches('/');
    format!("{parent}{rel}")
}

/// The saved form: the first hierarchy's path, then "controllers:path" for each hierarchy whose
/// path differs (possible only for relative requests), separated by ';'.
pub(crate) fn encode_saved(paths: &[(String, String)]) -> String {
    let Some((_, first)) = paths.first() else {
        return String::new();
    };
    let mut out = first.clone();
    for (controllers, p) in paths.iter().skip(1) {
        if p != first {
            out.push(';');
            out.push_str(controllers);
            out.push(':');
            out.push_str(p);
        }
    }
    out
}

/// Inverse of `encode_saved`: the common path and the per-hierarchy overrides.
pub(crate) fn decode_saved(saved: &str) -> Result<(String, Vec<(String, String)>), CgroupError> {
    let mut parts = saved.split(';');
    let base = parts.next().unwrap_or_default();
    let base = clean(base, saved)?;
    let mut overrides = Vec::new();
    for part in parts {
        let Some((controllers, p)) = part.split_once(':') else {
            return Err(CgroupError::BadPath {
                path: saved.to_string(),
                why: "not a saved cgroup path",
            });
        };
        overrides.push((controllers.to_string(), clean(p, saved)?));
    }
    Ok((base, overrides))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sub_cgroups() {
        let parse = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            SubCgroup::parse(&args)
        };
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&["/"]).unwrap(), Some(SubCgroup::All(String::new())));
        assert_eq!(
            parse(&["cpu:"]).unwrap(),
            Some(SubCgroup::PerController(vec![(
                "cpu".into(),
                String::new()
            )]))
        );
        assert_eq!(
            parse(&["a//b/."]).unwrap(),
            Some(SubCgroup::All("/a/b".into()))
        );
        assert_eq!(
            parse(&["cpu,memory:x", "pids:/y"]).unwrap(),
            Some(SubCgroup::PerController(vec![
                ("cpu".into(), "/x".into()),
                ("memory".into(), "/x".into()),
                ("pids".into(), "/y".into()),
            ]))
        );
        for bad in [
            &["../x"][..],
            &["a/../../b"],
            &["a", "b"],
            &["cpu:a", "b"],
            &[":a"],
            &["cpu,:a"],
            &["cpu:a", "cpu:b"],
            &["a:b:c"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    use super::*;

    #[test]
    fn default_absolute_relative() {
        assert_eq!(
            resolve(None, "c1").unwrap(),
            Requested::Absolute("/atoll/c1".into())
        );
        assert_eq!(
            resolve(Some("/a//b/./c/"), "x").unwrap(),
            Requested::Absolute("/a/b/c".into())
        );
        assert_eq!(
            resolve(Some("a/b"), "x").unwrap(),
            Requested::Relative("/a/b".into())
        );
        assert!(resolve(Some("/a/../../etc"), "x").is_err());
        assert!(resolve(Some("/"), "x").is_err());
        assert_eq!(under("/", "/a/b"), "/a/b");
        assert_eq!(under("/job/x", "/a"), "/job/x/a");
    }

    #[test]
    fn systemd_form() {
        assert_eq!(
            resolve(Some("system.slice:docker:abc"), "x").unwrap(),
            Requested::Absolute("/system.slice/docker-abc.scope".into())
        );
        assert_eq!(
            resolve(Some("user-1000-app.slice:atoll:c1"), "x").unwrap(),
            Requested::Absolute(
                "/user.slice/user-1000.slice/user-1000-app.slice/atoll-c1.scope".into()
            )
        );
        assert_eq!(
            resolve(Some(":atoll:"), "id7").unwrap(),
            Requested::Absolute("/system.slice/atoll-id7.scope".into())
        );
        assert_eq!(
            resolve(Some("-.slice::my.slice"), "x").unwrap(),
            Requested::Absolute("/my.slice".into())
        );
        assert!(resolve(Some("bad:atoll:x"), "x").is_err());
        // Two colons in an absolute path is still a plain path.
        assert_eq!(
            resolve(Some("/a:b:c"), "x").unwrap(),
            Requested::Absolute("/a:b:c".into())
        );
    }

    #[test]
    fn saved_round_trip() {
        let same = vec![
            ("cpu".to_string(), "/a".to_string()),
            ("memory".to_string(), "/a".to_string()),
        ];
        assert_eq!(encode_saved(&same), "/a");
        assert_eq!(decode_saved("/a").unwrap(), ("/a".to_string(), vec![]));
        let differ = vec![
            ("cpu".to_string(), "/a".to_string()),
            ("memory".to_string(), "/job/x/a".to_string()),
            ("name=systemd".to_string(), "/a".to_string()),
        ];
        let s = encode_saved(&differ);
        assert_eq!(s, "/a;memory:/job/x/a");
        assert_eq!(
            decode_saved(&s).unwrap(),
            (
                "/a".to_string(),
                vec![("memory".to_string(), "/job/x/a".to_string())]
            )
        );
        assert!(decode_saved("/a;bogus").is_err());
    }
}

//! A config mount's option strings, sorted into what the kernel wants where: mount attributes
//! (mount_setattr), propagation, bind flags, and the filesystem's own parameters (fsconfig).
//! Strings are borrowed from the spec, so parsing allocates only the two short lists.

use atoll_sys::mount as sysm;

/// One config mount's options.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Options<'a> {
    pub bind: bool,
    pub recursive_bind: bool,
    /// MOUNT_ATTR_* bits to set and clear on the new mount.
    pub attr_set: u64,
    pub attr_clr: u64,
    /// Same, applied recursively ("rro", "rnosuid", ...: mount_setattr with AT_RECURSIVE).
    pub rattr_set: u64,
    pub rattr_clr: u64,
    /// MS_PRIVATE/MS_SLAVE/MS_SHARED/MS_UNBINDABLE and whether recursive.
    pub propagation: Option<(u64, bool)>,
    /// Superblock flags fsconfig understands ("sync", "dirsync", "lazytime", "mand").
    pub sb_flags: Vec<&'a str>,
    /// Filesystem data: key or key=value, passed to fsconfig.
    pub data: Vec<(&'a str, Option<&'a str>)>,
    /// Some(recursive) for "idmap" / "ridmap".
    pub idmap: Option<bool>,
}

/// The MOUNT_ATTR_* bits an option sets and clears, if it is a mount attribute (mount(8)'s
/// spelling; the atime options clear the whole atime field, as mount_setattr(2) requires).
fn attr_bits(opt: &str) -> Option<(u64, u64)> {
    Some(match opt {
        "ro" => (sysm::MOUNT_ATTR_RDONLY, 0),
        "rw" => (0, sysm::MOUNT_ATTR_RDONLY),
        "nosuid" => (sysm::MOUNT_ATTR_NOSUID, 0),
        "suid" => (0, sysm::MOUNT_ATTR_NOSUID),
        "nodev" => (sysm::MOUNT_ATTR_NODEV, 0),
        "dev" => (0, sysm::MOUNT_ATTR_NODEV),
        "noexec" => (sysm::MOUNT_ATTR_NOEXEC, 0),
        "exec" => (0, sysm::MOUNT_ATTR_NOEXEC),
        "noatime" => (sysm::MOUNT_ATTR_NOATIME, sysm::MOUNT_ATTR__ATIME),
        "relatime" => (sysm::MOUNT_ATTR_RELATIME, sysm::MOUNT_ATTR__ATIME),
        "strictatime" => (sysm::MOUNT_ATTR_STRICTATIME, sysm::MOUNT_ATTR__ATIME),
        "nodiratime" => (sysm::MOUNT_ATTR_NODIRATIME, 0),
        "diratime" => (0, sysm::MOUNT_ATTR_NODIRATIME),
        "nosymfollow" => (sysm::MOUNT_ATTR_NOSYMFOLLOW, 0),
        "symfollow" => (0, sysm::MOUNT_ATTR_NOSYMFOLLOW),
        "atime" | "norelatime" | "nostrictatime" | "async" | "nomand" | "defaults" => (0, 0),
        _ => return None,
    })
}

/// Add (set, clr) to a set/clear pair; a later option wins over an earlier one.
fn merge(set: &mut u64, clr: &mut u64, (s, c): (u64, u64)) {
    *set = (*set & !c) | s;
    *clr = (*clr & !s) | c;
}

pub fn parse_options(opts: &[String]) -> Options<'_> {
    let mut o = Options::default();
    for opt in opts.iter().map(String::as_str) {
        if let Some(bits) = attr_bits(opt) {
            merge(&mut o.attr_set, &mut o.attr_clr, bits);
            continue;
        }
        let prop = |p: u64, recursive: bool| Some((p, recursive));
        match opt {
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive_bind = true
            }
            "private" => o.propagation = prop(libc::MS_PRIVATE, false),
            "rprivate" => o.propagation = prop(libc::MS_PRIVATE, true),
            "shared" => o.propagation = prop(libc::MS_SHARED, false),
            "rshared" => o.propagation = prop(libc::MS_SHARED, true),
            "slave" => o.propagation = prop(libc::MS_SLAVE, false),
            "rslave" => o.propagation = prop(libc::MS_SLAVE, true),
            "unbindable" => o.propagation = prop(libc::MS_UNBINDABLE, false),
            "runbindable" => o.propagation = prop(libc::MS_UNBINDABLE, true),
            "idmap" => o.idmap = Some(false),
            "ridmap" => o.idmap = Some(true),
            "sync" | "dirsync" | "lazytime" | "mand" => o.sb_flags.push(opt),
            "tmpcopyup" | "remount" | "nolazytime" => {}
            _ => {
                // Recursive attribute options from runtime-spec 1.1: "rro", "rnosuid", ...
                let recursive = opt
                    .strip_prefix('r')
                    .and_then(attr_bits)
                    .filter(|(s, c)| s | c != 0);
                match (recursive, opt.split_once('=')) {
                    (Some(bits), _) => merge(&mut o.rattr_set, &mut o.rattr_clr, bits),
                    (None, Some((k, v))) => o.data.push((k, Some(v))),
                    (None, None) => o.data.push((opt, None)),
                }
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_sorted() {
        let opts = s(&["nosuid", "strictatime", "mode=755", "size=65536k", "ro"]);
        let o = parse_options(&opts);
        assert_eq!(
            o.attr_set,
            sysm::MOUNT_ATTR_NOSUID | sysm::MOUNT_ATTR_STRICTATIME | sysm::MOUNT_ATTR_RDONLY
        );
        // mount_setattr(2): an atime mode is set by clearing the whole atime field.
        assert_eq!(o.attr_clr, sysm::MOUNT_ATTR__ATIME);
        assert_eq!(
            o.data,
            vec![("mode", Some("755")), ("size", Some("65536k"))]
        );
        assert!(!o.bind);
    }

    #[test]
    fn later_option_wins() {
        let opts = s(&["ro", "rw"]);
        let o = parse_options(&opts);
        assert_eq!(o.attr_set & sysm::MOUNT_ATTR_RDONLY, 0);
        assert_ne!(o.attr_clr & sysm::MOUNT_ATTR_RDONLY, 0);
        // Same for the recursive forms: mount_setattr(2) refuses a bit both set and cleared.
        let opts = s(&["rro", "rrw"]);
        let o = parse_options(&opts);
        assert_eq!((o.rattr_set, o.rattr_clr), (0, sysm::MOUNT_ATTR_RDONLY));
    }

    #[test]
    fn recursive_and_bind() {
        let opts = s(&["rbind", "rro", "rprivate", "newinstance", "ridmap"]);
        let o = parse_options(&opts);
        assert!(o.bind && o.recursive_bind);
        assert_eq!(o.rattr_set, sysm::MOUNT_ATTR_RDONLY);
        assert_eq!(o.propagation, Some((libc::MS_PRIVATE, true)));
        assert_eq!(o.data, vec![("newinstance", None)]);
        assert_eq!(o.idmap, Some(true));
    }

    #[test]
    fn superblock_flags_and_unknown_r_words() {
        // "rdefaults" is no attribute: it stays filesystem data for the kernel to judge.
        let opts = s(&["sync", "rdefaults", "defaults", "tmpcopyup"]);
        let o = parse_options(&opts);
        assert_eq!(o.sb_flags, vec!["sync"]);
        assert_eq!(o.data, vec![("rdefaults", None)]);
        assert_eq!(
            (o.attr_set, o.attr_clr, o.rattr_set, o.rattr_clr),
            (0, 0, 0, 0)
        );
    }
}

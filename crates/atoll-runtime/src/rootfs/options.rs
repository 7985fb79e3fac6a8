//! Mount options: the strings of a config mount sorted into what the kernel wants where.

use atoll_sys::mount as sysm;

/// One config mount's options, sorted into what the kernel wants where.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Options {
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
    pub sb_flags: Vec<String>,
    /// Filesystem data: key or key=value, passed to fsconfig.
    pub data: Vec<(String, Option<String>)>,
    pub idmap: Option<bool>, // Some(recursive)
}

pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options::default();
    for opt in opts {
        let (set, clr): (u64, u64) = match opt.as_str() {
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
            _ => {
                parse_other(&mut o, opt);
                continue;
            }
        };
        o.attr_set = (o.attr_set & !clr) | set;
        o.attr_clr = (o.attr_clr & !set) | clr;
        if opt == "noatime" || opt == "relatime" || opt == "strictatime" {
            o.attr_clr |= sysm::MOUNT_ATTR__ATIME;
        }
    }
    o
}

fn parse_other(o: &mut Options, opt: &str) {
    let prop = |p: u64| Some((p, false));
    let rprop = |p: u64| Some((p, true));
    match opt {
        "bind" => o.bind = true,
        "rbind" => {
            o.bind = true;
            o.recursive_bind = true
        }
        "private" => o.propagation = prop(libc::MS_PRIVATE),
        "rprivate" => o.propagation = rprop(libc::MS_PRIVATE),
        "shared" => o.propagation = prop(libc::MS_SHARED),
        "rshared" => o.propagation = rprop(libc::MS_SHARED),
        "slave" => o.propagation = prop(libc::MS_SLAVE),
        "rslave" => o.propagation = rprop(libc::MS_SLAVE),
        "unbindable" => o.propagation = prop(libc::MS_UNBINDABLE),
        "runbindable" => o.propagation = rprop(libc::MS_UNBINDABLE),
        "idmap" => o.idmap = Some(false),
        "ridmap" => o.idmap = Some(true),
        "sync" | "dirsync" | "lazytime" | "mand" => o.sb_flags.push(opt.to_string()),
        "tmpcopyup" | "remount" | "nolazytime" => {}
        _ => {
            // Recursive attribute options from runtime-spec 1.1: "rro", "rnosuid", ...
            if let Some(base) = opt.strip_prefix('r') {
                let one = parse_options(&[base.to_string()]);
                if (one.attr_set | one.attr_clr) != 0 && one.data.is_empty() {
                    o.rattr_set |= one.attr_set;
                    o.rattr_clr |= one.attr_clr;
                    return;
                }
            }
            match opt.split_once('=') {
                Some((k, v)) => o.data.push((k.to_string(), Some(v.to_string()))),
                None => o.data.push((opt.to_string(), None)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_sorted() {
        let o = parse_options(&s(&[
            "nosuid",
            "strictatime",
            "mode=755",
            "size=65536k",
            "ro",
        ]));
        assert_eq!(
            o.attr_set,
            sysm::MOUNT_ATTR_NOSUID | sysm::MOUNT_ATTR_STRICTATIME | sysm::MOUNT_ATTR_RDONLY
        );
        assert_eq!(
            o.data,
            vec![
                ("mode".into(), Some("755".into())),
                ("size".into(), Some("65536k".into()))
            ]
        );
        assert!(!o.bind);
    }

    #[test]
    fn later_option_wins() {
        let o = parse_options(&s(&["ro", "rw"]));
        assert_eq!(o.attr_set & sysm::MOUNT_ATTR_RDONLY, 0);
        assert_ne!(o.attr_clr & sysm::MOUNT_ATTR_RDONLY, 0);
    }

    #[test]
    fn recursive_and_bind() {
        let o = parse_options(&s(&["rbind", "rro", "rprivate", "newinstance", "ridmap"]));
        assert!(o.bind && o.recursive_bind);
        assert_eq!(o.rattr_set, sysm::MOUNT_ATTR_RDONLY);
        assert_eq!(o.propagation, Some((libc::MS_PRIVATE, true)));
        assert_eq!(o.data, vec![("newinstance".into(), None)]);
        assert_eq!(o.idmap, Some(true));
    }
}

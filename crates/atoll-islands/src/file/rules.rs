//! Small rules both islands and shares are checked against: the names atoll accepts and the
//! paths inside an island that belong to its own mounts.

/// Paths inside an island that its own mounts and root need (bundle.rs builds them): a data
/// dir or a bind there would hide the kernel's view (/proc, /sys), the devices (/dev) or the
/// host's programs (/usr, /bin, /lib*), or make the runtime create a mount point in a host
/// directory bound read-only.
const RESERVED_INSIDE: &[&str] = &[
    "proc", "sys", "dev", "usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
];
/// Private tmpfs mounts of an island: a path below them is fine, the mount point itself is not.
const TMPFS_INSIDE: &[&str] = &["tmp", "run", "var"];

/// Why `inside` cannot hold a data dir or a bind, if it cannot.
pub(super) fn reserved_inside(inside: &str) -> Option<String> {
    let parts: Vec<&str> = inside
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    match parts.as_slice() {
        [] => Some("it is the island's root".into()),
        [top, ..] if RESERVED_INSIDE.contains(top) => Some(format!(
            "/{top} belongs to the island's own mounts and root"
        )),
        [top] if TMPFS_INSIDE.contains(top) => Some(format!(
            "/{top} is the island's private tmpfs (a path below it is fine)"
        )),
        _ => None,
    }
}

/// What atoll writes or binds into an island's /etc (bundle.rs): a mount there would hide the
/// island's users, names or loader paths. Anything else below /etc (a service's config dir such
/// as /etc/nginx) may be a mount point.
pub(crate) const ETC_GENERATED: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "hostname",
    "nsswitch.conf",
    "resolv.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "services",
    "protocols",
    "localtime",
    "mime.types",
    "alternatives",
];

/// Why `inside` cannot be the mount point of a bind, a tmpfs or a writable dir, if it cannot:
/// as [`reserved_inside`], except that a path below /etc is fine unless atoll writes it.
pub(super) fn reserved_for_mount(inside: &str) -> Option<String> {
    let parts: Vec<&str> = inside
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    match parts.as_slice() {
        ["etc", name, ..] if ETC_GENERATED.contains(name) => Some(format!(
            "atoll writes /etc/{name} for the island (its users, names and loader paths)"
        )),
        ["etc", _, ..] => None,
        _ => reserved_inside(inside),
    }
}

/// Names become hostnames, interface names (15 bytes) and nft comments: keep them plain.
pub(super) fn check_name(n: &str, max: usize) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= max
        && n.as_bytes()[0].is_ascii_lowercase()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n:?} is not a valid name: 1 to {max} characters of a-z, 0-9 and '-', starting with a letter"
        ))
    }
}

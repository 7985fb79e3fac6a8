//! Layer 2, files: the tenant's own /etc/resolv.conf, /etc/hosts and /etc/nsswitch.conf, read
//! through its root without following its symlinks out of its tree.
//!
//! A running tenant's files are read through `/proc/PID/root` opened as a pathrs Root: every
//! lookup resolves inside it (openat2 RESOLVE_IN_ROOT, so `..` and absolute symlinks stop at
//! the tenant's `/`), only regular files are opened (a FIFO planted as /etc/hosts would block
//! the reader), and at most 64 KiB of each is read. An island that does not run is read on the
//! host side, in the /etc `atoll up` wrote for it (IslandPlan.dir/etc), the same way.
//!
//! Checks: each file present and readable (a missing nsswitch.conf is not a fault: glibc then
//! uses `hosts: dns files`, musl ignores the file). With `--to ISLAND`: the tenant's hosts file
//! maps the island's name to the address the plan gives it (fix: the `[[link]]` to add, or a
//! re-up, which rewrites the hosts file). With `--dns NAME`: in the hosts file => ok; else
//! nsswitch must ask DNS and resolv.conf must name a nameserver, whose address the walk then
//! follows (`Outcome.nameserver`). Evidence quotes the lines read ("/etc/hosts: 10.1.0.2 db").

use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use pathrs::Root;

use crate::report::{Layer, LayerReport};
use crate::subject::Subject;
use crate::target::Peer;
use crate::Ctx;

pub struct Outcome {
    pub report: LayerReport,
    /// For `--dns NAME` that the files do not answer: the nameserver a lookup would ask.
    pub nameserver: Option<Ipv4Addr>,
}

/// A larger /etc/hosts is not one an operator wrote by hand; doctor reads no further.
const MAX_FILE: u64 = 64 << 10;

const RESOLV: &str = "/etc/resolv.conf";
const HOSTS: &str = "/etc/hosts";
const NSSWITCH: &str = "/etc/nsswitch.conf";

/// Where the tenant's files are read from.
struct Tree {
    root: Root,
    /// How the evidence names a file: "/etc/hosts" for a live tenant, the host path otherwise.
    host_prefix: Option<PathBuf>,
}

impl Tree {
    fn open(s: &Subject) -> Result<Tree, String> {
        if let Some(r) = &s.root {
            // /proc/PID/root is a magic link: opening it (on the host's /proc, which doctor
            // trusts) gives the tenant's root directory; everything below resolves in it.
            let fd = rustix::fs::open(
                r,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| format!("open {}: {e}", r.display()))?;
            let root = Root::from_fd(fd);
            return Ok(Tree {
                root,
                host_prefix: None,
            });
        }
        let Some(i) = &s.island else {
            return Err("the container is not running and its files are not atoll's".into());
        };
        let dir = &i.island().dir;
        let root = Root::open(dir).map_err(|e| format!("open {} as a root: {e}", dir.display()))?;
        Ok(Tree {
            root,
            host_prefix: Some(dir.clone()),
        })
    }

    fn label(&self, file: &str) -> String {
        match &self.host_prefix {
            None => file.to_string(),
            Some(p) => p.join(file.trim_start_matches('/')).display().to_string(),
        }
    }

    /// The file's text; Ok(None) when it does not exist; Err names why it cannot be read.
    fn read(&self, file: &str) -> Result<Option<String>, String> {
        let rel = Path::new(file.trim_start_matches('/'));
        let h = match self.root.resolve(rel) {
            Ok(h) => h,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(format!("resolve: {e}")),
        };
        // fstat on the O_PATH handle: nothing is opened for reading before the type is known.
        let st = rustix::fs::fstat(&h).map_err(|e| format!("fstat: {e}"))?;
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if kind != rustix::fs::FileType::RegularFile {
            return Err(format!("not a regular file ({kind:?})"));
        }
        if st.st_size as u64 > MAX_FILE {
            return Err(format!(
                "{} bytes, more than doctor reads ({MAX_FILE})",
                st.st_size
            ));
        }
        // Reopen the resolved inode for reading through the host's own /proc (doctor runs on
        // the host, whose /proc no tenant controls): the file checked above, nothing else.
        // pathrs's reopen re-verifies procfs on every call (about 40 syscalls); this is one.
        let fd = rustix::fs::open(
            format!("/proc/self/fd/{}", h.as_fd().as_raw_fd()),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOCTTY,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| format!("open: {e}"))?;
        let f = std::fs::File::from(fd);
        let mut buf = Vec::new();
        f.take(MAX_FILE)
            .read_to_end(&mut buf)
            .map_err(|e| format!("read: {e}"))?;
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }
}

fn is_missing(e: &pathrs::error::Error) -> bool {
    matches!(
        e.kind(),
        pathrs::error::ErrorKind::OsError(Some(n)) if n == libc_enoent() || n == libc_enotdir()
    )
}

fn libc_enoent() -> i32 {
    rustix::io::Errno::NOENT.raw_os_error()
}

fn libc_enotdir() -> i32 {
    rustix::io::Errno::NOTDIR.raw_os_error()
}

// ---- parsing -----------------------------------------------------------------------------------

/// Text before a `#` comment, trimmed.
fn content(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

/// The sources of the `hosts:` line of nsswitch.conf ("files", "dns", ...), without the
/// `[STATUS=action]` items; and the line as written.
pub fn nsswitch_hosts(text: &str) -> Option<(Vec<String>, String)> {
    text.lines().find_map(|l| {
        let c = content(l);
        let rest = c.strip_prefix("hosts")?.trim_start().strip_prefix(':')?;
        let mut sources = Vec::new();
        let mut in_action = false;
        for w in rest.split_whitespace() {
            if w.starts_with('[') {
                in_action = true;
            }
            if !in_action {
                sources.push(w.to_string());
            }
            if w.ends_with(']') {
                in_action = false;
            }
        }
        Some((sources, c.to_string()))
    })
}

/// One /etc/hosts entry: the address, its names (canonical name and aliases), the line.
#[derive(Debug, PartialEq, Eq)]
pub struct HostsEntry {
    pub addr: String,
    pub names: Vec<String>,
    pub line: String,
}

pub fn hosts_entries(text: &str) -> Vec<HostsEntry> {
    text.lines()
        .filter_map(|l| {
            let c = content(l);
            let mut w = c.split_whitespace();
            let addr = w.next()?.to_string();
            let names: Vec<String> = w.map(str::to_string).collect();
            (!names.is_empty()).then(|| HostsEntry {
                addr,
                names,
                line: c.to_string(),
            })
        })
        .collect()
}

/// The `nameserver` lines of resolv.conf, in order, as written.
pub fn nameservers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let c = content(l.split(';').next().unwrap_or(""));
            let mut w = c.split_whitespace();
            (w.next()? == "nameserver").then(|| w.next().map(str::to_string))?
        })
        .collect()
}

/// Name lookups compare case-insensitively (RFC 4343) and ignore one trailing dot.
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn lookup<'a>(entries: &'a [HostsEntry], name: &str) -> Vec<&'a HostsEntry> {
    entries
        .iter()
        .filter(|e| e.names.iter().any(|n| same_name(n, name)))
        .collect()
}

// ---- the check ---------------------------------------------------------------------------------

struct Files {
    hosts: Option<String>,
    resolv: Option<String>,
    nsswitch: Option<String>,
}

pub fn check(c: &Ctx) -> Outcome {
    let out = |report| Outcome {
        report,
        nameserver: None,
    };
    let tree = match Tree::open(c.subject) {
        Ok(t) => t,
        Err(why) => {
            return out(LayerReport::not_checked(
                Layer::Files,
                format!("cannot read the tenant's files: {why}"),
            ))
        }
    };
    let mut ev = Vec::new();
    let mut read = |file: &str| -> Result<Option<String>, LayerReport> {
        match tree.read(file) {
            Ok(Some(t)) => Ok(Some(t)),
            Ok(None) => {
                ev.push(format!("{}: absent", tree.label(file)));
                Ok(None)
            }
            Err(why) => Err(LayerReport::fault(
                Layer::Files,
                format!("{} cannot be read: {why}", tree.label(file)),
                format!(
                    "make {file} inside the tenant a regular, readable file of at most {} KiB",
                    MAX_FILE >> 10
                ),
            )),
        }
    };
    let files = match (|| {
        Ok::<_, LayerReport>(Files {
            nsswitch: read(NSSWITCH)?,
            hosts: read(HOSTS)?,
            resolv: read(RESOLV)?,
        })
    })() {
        Ok(f) => f,
        Err(r) => return out(r.with_evidence(ev)),
    };
    let l = |f: &str| tree.label(f);

    // nsswitch: which sources a host lookup asks, in order.
    let sources = match files.nsswitch.as_deref().and_then(nsswitch_hosts) {
        Some((src, line)) => {
            ev.push(format!("{}: {line}", l(NSSWITCH)));
            src
        }
        None => {
            if files.nsswitch.is_some() {
                ev.push(format!("{}: no hosts: line", l(NSSWITCH)));
            }
            ev.push("hosts lookups: dns, files (glibc's default without a hosts: line)".into());
            vec!["dns".into(), "files".into()]
        }
    };
    let uses = |s: &str| sources.iter().any(|x| x == s);
    let entries = files
        .hosts
        .as_deref()
        .map(hosts_entries)
        .unwrap_or_default();
    let servers = files.resolv.as_deref().map(nameservers).unwrap_or_default();

    let mut report = LayerReport::ok(
        Layer::Files,
        format!(
            "read {}, {} and {}",
            short(&l(HOSTS), files.hosts.is_some()),
            short(&l(RESOLV), files.resolv.is_some()),
            short(&l(NSSWITCH), files.nsswitch.is_some())
        ),
    );
    let mut nameserver = None;

    // `--to ISLAND` first; a fault there ends the layer, an answer there still lets `--dns`
    // be asked.
    let peer = to_peer(c, &entries, &l(HOSTS), uses("files"), &mut ev);
    let peer_fault = peer
        .as_ref()
        .is_some_and(|r| r.verdict == crate::Verdict::Fault);
    if let Some(r) = peer {
        report = r;
    }
    if let (false, Some(name)) = (peer_fault, c.dns) {
        let found = lookup(&entries, name);
        if uses("files") && !found.is_empty() {
            for e in &found {
                ev.push(format!("{}: {}", l(HOSTS), e.line));
            }
            report = LayerReport::ok(
                Layer::Files,
                format!("{name} is in {}: {}", l(HOSTS), found[0].addr),
            );
        } else if !uses("dns") {
            ev.push(format!("{}: no entry for {name}", l(HOSTS)));
            report = LayerReport::fault(
                Layer::Files,
                format!(
                    "{name} is not in {} and {} does not ask DNS (hosts: {})",
                    l(HOSTS),
                    l(NSSWITCH),
                    sources.join(" ")
                ),
                no_dns_fix(c.subject, name),
            );
        } else {
            ev.push(format!("{}: no entry for {name}", l(HOSTS)));
            for s in &servers {
                ev.push(format!("{}: nameserver {s}", l(RESOLV)));
            }
            match servers.iter().find_map(|s| s.parse::<Ipv4Addr>().ok()) {
                None if servers.is_empty() => {
                    ev.push(format!("{}: no nameserver line", l(RESOLV)));
                    report = LayerReport::fault(
                        Layer::Files,
                        format!(
                            "no nameserver in {}: {name} is not in {} and a DNS lookup has no server to ask",
                            l(RESOLV),
                            l(HOSTS)
                        ),
                        no_nameserver_fix(c.subject),
                    );
                }
                None => {
                    report = LayerReport::not_checked(
                        Layer::Files,
                        format!(
                            "{name} is asked of nameserver {} (IPv6: doctor follows IPv4 only)",
                            servers[0]
                        ),
                    );
                }
                Some(ns) => {
                    nameserver = Some(ns);
                    report = LayerReport::ok(
                        Layer::Files,
                        format!("{name} is not in {}; DNS asks nameserver {ns}", l(HOSTS)),
                    );
                }
            }
        }
    }
    Outcome {
        report: report.with_evidence(ev),
        nameserver,
    }
}

fn short(label: &str, present: bool) -> String {
    if present {
        label.to_string()
    } else {
        format!("{label} (absent)")
    }
}

/// `--to ISLAND`: the tenant's hosts file must give the island's name the address the plan
/// gives it. None when the question names no island.
fn to_peer(
    c: &Ctx,
    entries: &[HostsEntry],
    hosts: &str,
    files_asked: bool,
    ev: &mut Vec<String>,
) -> Option<LayerReport> {
    let r = c.target?;
    let Peer::Island(name) = &r.target.peer else {
        return None;
    };
    let me = c.subject.island.as_ref()?;
    let plan = &me.plan;
    let found = lookup(entries, name);
    for e in &found {
        ev.push(format!("{hosts}: {}", e.line));
    }
    let re_up = format!(
        "{hosts} is written by `atoll up`: atoll down {} && atoll up {}",
        plan.name,
        plan.file.display()
    );
    let Some(addr) = r.addr else {
        ev.push(format!("{hosts}: no entry for {name}"));
        let mine = &me.island().spec.name;
        return Some(LayerReport::fault(
            Layer::Files,
            format!("{name} is not in {hosts}: no [[link]] joins {mine} and {name}"),
            format!(
                "add to {}:\n[[link]]\nbetween = [\"{mine}\", \"{name}\"]\nthen atoll down {} && atoll up {}",
                plan.file.display(),
                plan.name,
                plan.file.display()
            ),
        ));
    };
    if !files_asked {
        return Some(LayerReport::fault(
            Layer::Files,
            format!("the hosts: line of /etc/nsswitch.conf does not ask files, so {name} is never looked up in {hosts}"),
            re_up,
        ));
    }
    let want = addr.to_string();
    match found.first() {
        None => {
            ev.push(format!("{hosts}: no entry for {name}"));
            Some(LayerReport::fault(
                Layer::Files,
                format!("{name} is not in {hosts} (the plan gives it {addr})"),
                re_up,
            ))
        }
        // The first entry wins (glibc and musl read the file in order).
        Some(e) if e.addr != want => Some(LayerReport::fault(
            Layer::Files,
            format!(
                "{hosts} maps {name} to {}, the plan gives it {addr}",
                e.addr
            ),
            re_up,
        )),
        Some(_) => Some(LayerReport::ok(
            Layer::Files,
            format!("{name} resolves to {addr} in {hosts}"),
        )),
    }
}

fn no_dns_fix(s: &Subject, name: &str) -> String {
    match &s.island {
        Some(i) => format!(
            "islands resolve only the names of linked islands, from /etc/hosts; to reach {name}, \
             name an island of project {} (and [[link]] it) or use its address",
            i.plan.name
        ),
        None => "add `dns` to the hosts: line of /etc/nsswitch.conf in the image".into(),
    }
}

fn no_nameserver_fix(s: &Subject) -> String {
    match &s.island {
        Some(i) => format!(
            "islands have no DNS server (no route off the machine): name a linked island of project {} instead",
            i.plan.name
        ),
        None => "give the container a nameserver line in its /etc/resolv.conf (podman run --dns ADDRESS; for a bundle, the file bound at /etc/resolv.conf)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsswitch_sources_skip_actions_and_comments() {
        let (s, line) = nsswitch_hosts(
            "# comment\npasswd: files\nhosts:  files mdns4_minimal [NOTFOUND=return] dns # x\n",
        )
        .unwrap();
        assert_eq!(s, ["files", "mdns4_minimal", "dns"]);
        assert_eq!(line, "hosts:  files mdns4_minimal [NOTFOUND=return] dns");
        assert_eq!(nsswitch_hosts("passwd: files\n"), None);
        assert_eq!(nsswitch_hosts("hostsx: dns\n"), None);
    }

    #[test]
    fn hosts_names_and_aliases_match_without_case() {
        let e =
            hosts_entries("127.0.0.1 localhost\n# 10.0.0.9 db\n10.1.0.2\tdb db.demo\n10.1.0.3\n");
        assert_eq!(e.len(), 2);
        assert_eq!(lookup(&e, "DB.demo.")[0].addr, "10.1.0.2");
        assert_eq!(lookup(&e, "db")[0].line, "10.1.0.2\tdb db.demo");
        assert!(lookup(&e, "web").is_empty());
    }

    #[test]
    fn nameservers_in_order() {
        let n =
            nameservers("# none\nsearch x\nnameserver 10.0.0.1\nnameserver ::1 ; c\nnameserver\n");
        assert_eq!(n, ["10.0.0.1", "::1"]);
        assert!(nameservers("# atoll: no DNS\n").is_empty());
    }
}

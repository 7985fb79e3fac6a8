//! The islands file (TOML): parsing and validation. Every error names the file, the line and
//! the field, so a user can fix a file without reading atoll's source. The reference is
//! docs/islands-file.md.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::FileError;
use crate::net::Subnet;

/// Capabilities an island may never hold: they let a tenant rewrite the network, leave its
/// namespaces or reach the kernel directly, which the border guard and the islands model forbid.
pub const FORBIDDEN_CAPS: &[&str] = &[
    "CAP_NET_ADMIN",
    "CAP_SYS_ADMIN",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_PTRACE",
    "CAP_SYS_BOOT",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_SYSLOG",
    "CAP_SYS_TIME",
    "CAP_AUDIT_CONTROL",
    "CAP_DAC_READ_SEARCH",
];

/// Every capability name the kernel knows (capability(7)).
const KNOWN_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The default pool that links without a `subnet` take their /30 from.
pub const DEFAULT_POOL: &str = "10.77.0.0/16";
/// The uid an island runs as when the file says nothing: not root.
pub const DEFAULT_UID: u32 = 1000;
/// The pids limit of an island when neither it nor its project sets one (podman's default):
/// ample for a service, and a fork bomb stops there instead of at the host's pid_max, which
/// every tenant shares.
pub const DEFAULT_PIDS: i64 = 2048;
/// The highest pid_max the kernel allows (PID_MAX_LIMIT, 4M on 64-bit).
const PID_MAX_LIMIT: i64 = 1 << 22;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<Spanned<String>>,
    subnet: Option<Spanned<String>>,
    data_root: Option<Spanned<PathBuf>>,
    log_drops: Option<bool>,
    guard: Option<Spanned<String>>,
    memory: Option<Spanned<toml::Value>>,
    pids: Option<Spanned<toml::Value>>,
    cpu: Option<Spanned<toml::Value>>,
    #[serde(default)]
    island: Vec<RawIsland>,
    #[serde(default)]
    link: Vec<RawLink>,
    #[serde(default)]
    allow: Vec<RawAllow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIsland {
    name: Spanned<String>,
    command: Spanned<Vec<String>>,
    user: Option<Spanned<u32>>,
    group: Option<u32>,
    #[serde(default)]
    caps: Vec<Spanned<String>>,
    hostname: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    data: Option<Spanned<String>>,
    cwd: Option<Spanned<String>>,
    memory: Option<Spanned<toml::Value>>,
    pids: Option<Spanned<toml::Value>>,
    cpu: Option<Spanned<toml::Value>>,
    #[serde(default)]
    binds: Vec<Spanned<String>>,
    guard: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    between: Spanned<Vec<Spanned<String>>>,
    subnet: Option<Spanned<String>>,
    addresses: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    from: Spanned<String>,
    to: Spanned<String>,
    proto: Spanned<String>,
    #[serde(default)]
    ports: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    both: bool,
}

/// A validated islands file.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub path: PathBuf,
    pub name: String,
    pub pool: Subnet,
    pub data_root: Option<PathBuf>,
    pub log_drops: bool,
    pub guard: Guard,
    pub islands: Vec<Island>,
    pub links: Vec<Link>,
    pub allows: Vec<Allow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Guard {
    Enforce,
    Detect,
    Off,
}

impl Guard {
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::Enforce => "enforce",
            Guard::Detect => "detect",
            Guard::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Island {
    pub name: String,
    pub command: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub caps: Vec<String>,
    pub hostname: String,
    pub env: BTreeMap<String, String>,
    pub data: String,
    pub cwd: String,
    /// The effective limits (the island's own, else the project's, else the default); None
    /// only where the file said "max".
    pub memory: Option<i64>,
    pub pids: Option<i64>,
    pub cpu: Option<f64>,
    /// Extra read-only binds: (host path, path inside).
    pub binds: Vec<(PathBuf, String)>,
    pub guard: Guard,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Indexes into `File::islands`.
    pub a: usize,
    pub b: usize,
    pub subnet: Subnet,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Allow {
    pub from: usize,
    pub to: usize,
    /// Index into `File::links`.
    pub link: usize,
    pub proto: Proto,
    pub ports: Vec<(u16, u16)>,
    pub both: bool,
}

/// Read and validate an islands file.
pub fn load(path: &Path) -> Result<File, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        path: path.to_path_buf(),
        line: 0,
        col: 0,
        field: String::new(),
        msg: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Validate the text of an islands file; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<File, FileError> {
    let cx = Cx { path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
    let name = match &raw.name {
        Some(n) => {
            check_name(n.get_ref(), 12).map_err(|m| cx.err(n.span(), "name", m))?;
            n.get_ref().clone()
        }
        None => {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("islands")
                .to_string();
            check_name(&stem, 12).map_err(|m| {
                cx.err(
                    0..0,
                    "name",
                    format!("no `name` given and the file name {m}"),
                )
            })?;
            stem
        }
    };
    let pool = match &raw.subnet {
        Some(s) => Subnet::parse(s.get_ref()).map_err(|m| cx.err(s.span(), "subnet", m))?,
        None => Subnet::parse(DEFAULT_POOL).expect("default pool parses"),
    };
    let guard = match &raw.guard {
        Some(g) => parse_guard(g).map_err(|m| cx.err(g.span(), "guard", m))?,
        None => Guard::Enforce,
    };
    if raw.island.is_empty() {
        return Err(cx.err(0..0, "island", "the file names no [[island]]".into()));
    }
    let project = Limits::read(&cx, [&raw.memory, &raw.pids, &raw.cpu], |f| f.to_string())?;
    let mut islands = Vec::new();
    for (i, ri) in raw.island.iter().enumerate() {
        islands.push(island(&cx, i, ri, guard, &project, &islands)?);
    }
    let links = links(&cx, &raw.link, &islands, &pool)?;
    let allows = allows(&cx, &raw.allow, &islands, &links)?;
    Ok(File {
        path: path.to_path_buf(),
        name,
        pool,
        data_root: match &raw.data_root {
            Some(d) => Some(check_data_root(&cx, d)?),
            None => None,
        },
        log_drops: raw.log_drops.unwrap_or(true),
        guard,
        islands,
        links,
        allows,
    })
}

struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn err(
        &self,
        span: std::ops::Range<usize>,
        field: impl Into<String>,
        msg: String,
    ) -> FileError {
        let (line, col) = if span.is_empty() && span.start == 0 {
            (0, 0)
        } else {
            line_col(self.text, span.start)
        };
        FileError {
            path: self.path.to_path_buf(),
            line,
            col,
            field: field.into(),
            msg,
        }
    }
}

impl Cx<'_> {
    /// A TOML syntax or type error, on one line, with the field it is about when the text
    /// parses far enough to tell (a type error such as `user = -1` or `env = { A = 1 }`).
    fn toml_error(&self, e: &toml::de::Error) -> FileError {
        let span = e.span().unwrap_or(0..0);
        let field = e
            .span()
            .and_then(|s| field_at(self.text, s.start))
            .unwrap_or_default();
        let msg = e.message().trim().replace('\n', "; ");
        let msg = if !msg.is_empty() {
            msg
        } else if span.start >= self.text.trim_end().len() {
            "the file ends where a value or a closing bracket is expected (cut short?)".into()
        } else {
            "a value or a closing bracket is expected here".into()
        };
        let mut err = self.err(span, field, msg);
        if e.span().is_some() && err.line == 0 {
            (err.line, err.col) = (1, 1);
        }
        err
    }
}

/// The dotted path of the key whose value holds byte `offset` (`island[0].env.A`), found by
/// parsing the text again with spans. None where the text does not parse as TOML.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    table_field(doc.as_table(), offset, "")
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn table_field(t: &toml_edit::Table, offset: usize, prefix: &str) -> Option<String> {
    t.iter()
        .find_map(|(k, item)| item_field(item, offset, &join(prefix, k)))
}

fn item_field(item: &toml_edit::Item, offset: usize, path: &str) -> Option<String> {
    match item {
        toml_edit::Item::Value(v) => value_field(v, offset, path),
        toml_edit::Item::Table(t) => table_field(t, offset, path),
        toml_edit::Item::ArrayOfTables(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, t)| table_field(t, offset, &format!("{path}[{i}]"))),
        toml_edit::Item::None => None,
    }
}

fn value_field(v: &toml_edit::Value, offset: usize, path: &str) -> Option<String> {
    let span = v.span()?;
    if !(span.start <= offset && offset < span.end.max(span.start + 1)) {
        return None;
    }
    let inner = match v {
        toml_edit::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| value_field(x, offset, &format!("{path}[{i}]"))),
        toml_edit::Value::InlineTable(t) => t
            .iter()
            .find_map(|(k, x)| value_field(x, offset, &join(path, k))),
        _ => None,
    };
    Some(inner.unwrap_or_else(|| path.to_string()))
}

/// `data_root` is a host path that `up` creates: relative, it would land wherever atoll was
/// started from.
fn check_data_root(cx: &Cx<'_>, d: &Spanned<PathBuf>) -> Result<PathBuf, FileError> {
    let p = d.get_ref();
    let dotdot = p.components().any(|c| c == std::path::Component::ParentDir);
    if !p.is_absolute() || dotdot {
        return Err(cx.err(
            d.span(),
            "data_root",
            format!(
                "{:?} must be an absolute host path without '..'",
                p.display().to_string()
            ),
        ));
    }
    Ok(p.clone())
}

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
fn reserved_inside(inside: &str) -> Option<String> {
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

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// Names become hostnames, interface names (15 bytes) and nft comments: keep them plain.
fn check_name(n: &str, max: usize) -> Result<(), String> {
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

fn parse_guard(g: &Spanned<String>) -> Result<Guard, String> {
    match g.get_ref().as_str() {
        "enforce" => Ok(Guard::Enforce),
        "detect" => Ok(Guard::Detect),
        "off" => Ok(Guard::Off),
        other => Err(format!(
            "{other:?} is not a guard mode (enforce, detect or off)"
        )),
    }
}

fn island(
    cx: &Cx<'_>,
    i: usize,
    ri: &RawIsland,
    file_guard: Guard,
    project: &Limits,
    before: &[Island],
) -> Result<Island, FileError> {
    let name = ri.name.get_ref().clone();
    let f = |field: &str| format!("island[{i}] ({name}).{field}");
    check_name(&name, 15).map_err(|m| cx.err(ri.name.span(), f("name"), m))?;
    if before.iter().any(|b| b.name == name) {
        return Err(cx.err(
            ri.name.span(),
            f("name"),
            format!("island {name:?} is named twice"),
        ));
    }
    let command = ri.command.get_ref().clone();
    let Some(prog) = command.first() else {
        return Err(cx.err(
            ri.command.span(),
            f("command"),
            "the command is empty: give the program and its arguments".into(),
        ));
    };
    if !prog.starts_with('/') {
        return Err(cx.err(
            ri.command.span(),
            f("command"),
            format!("{prog:?} must be an absolute path (islands have no shell to search PATH)"),
        ));
    }
    if !Path::new(prog).exists() {
        return Err(cx.err(
            ri.command.span(),
            f("command"),
            format!("{prog} does not exist on this host (an island's root is the host's own /usr)"),
        ));
    }
    let uid = ri
        .user
        .as_ref()
        .map(|u| *u.get_ref())
        .unwrap_or(DEFAULT_UID);
    if uid > 65535 {
        return Err(cx.err(
            ri.user.as_ref().map(|u| u.span()).unwrap_or(0..0),
            f("user"),
            format!("uid {uid} is outside the island's 65536 mapped ids"),
        ));
    }
    let gid = ri.group.unwrap_or(uid);
    if gid > 65535 {
        return Err(cx.err(
            ri.name.span(),
            f("group"),
            format!("gid {gid} is outside the island's 65536 mapped ids"),
        ));
    }
    let mut caps = Vec::new();
    for c in &ri.caps {
        let up = c.get_ref().to_ascii_uppercase();
        let full = if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        };
        if !KNOWN_CAPS.contains(&full.as_str()) {
            return Err(cx.err(
                c.span(),
                f("caps"),
                format!(
                    "{:?} is not a capability (see capabilities(7))",
                    c.get_ref()
                ),
            ));
        }
        if FORBIDDEN_CAPS.contains(&full.as_str()) {
            return Err(cx.err(
                c.span(),
                f("caps"),
                format!("{full} is never granted to an island: it would let the tenant leave its island or rewrite the network"),
            ));
        }
        if !caps.contains(&full) {
            caps.push(full);
        }
    }
    let hostname = match &ri.hostname {
        Some(h) => {
            check_name(h.get_ref(), 63).map_err(|m| cx.err(h.span(), f("hostname"), m))?;
            h.get_ref().clone()
        }
        None => name.clone(),
    };
    let inside = |s: &Option<Spanned<String>>, field: &str, default: &str| {
        let v = s
            .as_ref()
            .map(|v| v.get_ref().clone())
            .unwrap_or(default.into());
        if !v.starts_with('/') || v.split('/').any(|c| c == "..") {
            return Err(cx.err(
                s.as_ref().map(|v| v.span()).unwrap_or(0..0),
                f(field),
                format!("{v:?} must be an absolute path inside the island, without '..'"),
            ));
        }
        Ok(v)
    };
    let data = inside(&ri.data, "data", "/data")?;
    if let Some(why) = reserved_inside(&data) {
        return Err(cx.err(
            ri.data.as_ref().map(|v| v.span()).unwrap_or(0..0),
            f("data"),
            format!("{data:?} cannot hold the island's data: {why}"),
        ));
    }
    let cwd = inside(&ri.cwd, "cwd", &data)?;
    let own = Limits::read(cx, [&ri.memory, &ri.pids, &ri.cpu], f)?;
    let memory = Said::pick(own.memory, project.memory, None);
    let pids = Said::pick(own.pids, project.pids, Some(DEFAULT_PIDS));
    let cpu = Said::pick(own.cpu, project.cpu, None);
    let mut binds = Vec::new();
    for b in &ri.binds {
        let (host, at) = match b.get_ref().split_once(':') {
            Some((h, a)) => (h.to_string(), a.to_string()),
            None => (b.get_ref().clone(), b.get_ref().clone()),
        };
        if !host.starts_with('/') || !at.starts_with('/') || at.split('/').any(|c| c == "..") {
            return Err(cx.err(
                b.span(),
                f("binds"),
                format!(
                    "{:?}: want HOST_PATH[:PATH_INSIDE], both absolute",
                    b.get_ref()
                ),
            ));
        }
        if let Some(why) = reserved_inside(&at) {
            return Err(cx.err(
                b.span(),
                f("binds"),
                format!("{at:?} cannot be bound into: {why}"),
            ));
        }
        if !Path::new(&host).exists() {
            return Err(cx.err(
                b.span(),
                f("binds"),
                format!("{host} does not exist on this host"),
            ));
        }
        binds.push((PathBuf::from(host), at));
    }
    let guard = match &ri.guard {
        Some(g) => parse_guard(g).map_err(|m| cx.err(g.span(), f("guard"), m))?,
        None => file_guard,
    };
    Ok(Island {
        name,
        command,
        uid,
        gid,
        caps,
        hostname,
        env: ri.env.clone(),
        data,
        cwd,
        memory,
        pids,
        cpu,
        binds,
        guard,
    })
}

/// A limit as the file gives it: a value, or "max" (no limit, asked for explicitly).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Said<T> {
    Max,
    Value(T),
}

impl<T> Said<T> {
    /// The island's own setting wins, then the project's, then atoll's default.
    fn pick(own: Option<Said<T>>, project: Option<Said<T>>, default: Option<T>) -> Option<T> {
        match own.or(project) {
            Some(Said::Max) => None,
            Some(Said::Value(v)) => Some(v),
            None => default,
        }
    }
}

/// memory, pids and cpu as one level of the file (the project or an island) sets them.
struct Limits {
    memory: Option<Said<i64>>,
    pids: Option<Said<i64>>,
    cpu: Option<Said<f64>>,
}

type RawLimit = Option<Spanned<toml::Value>>;

impl Limits {
    fn read(
        cx: &Cx<'_>,
        [memory, pids, cpu]: [&RawLimit; 3],
        field: impl Fn(&str) -> String,
    ) -> Result<Limits, FileError> {
        fn one<T>(
            cx: &Cx<'_>,
            raw: &RawLimit,
            field: String,
            parse: fn(&toml::Value) -> Result<T, String>,
        ) -> Result<Option<Said<T>>, FileError> {
            let Some(v) = raw else { return Ok(None) };
            match v.get_ref() {
                toml::Value::String(s) if s.trim() == "max" => Ok(Some(Said::Max)),
                other => parse(other)
                    .map(|x| Some(Said::Value(x)))
                    .map_err(|m| cx.err(v.span(), field, m)),
            }
        }
        Ok(Limits {
            memory: one(cx, memory, field("memory"), parse_bytes)?,
            pids: one(cx, pids, field("pids"), parse_pids)?,
            cpu: one(cx, cpu, field("cpu"), parse_cpu)?,
        })
    }
}

fn parse_pids(v: &toml::Value) -> Result<i64, String> {
    match v {
        toml::Value::Integer(n) if (1..=PID_MAX_LIMIT).contains(n) => Ok(*n),
        toml::Value::Integer(n) => Err(format!(
            "{n} is not a pids limit: from 1 to {PID_MAX_LIMIT}, or \"max\""
        )),
        other => Err(format!(
            "a {} is not a pids limit (say 512, or \"max\")",
            other.type_str()
        )),
    }
}

fn parse_cpu(v: &toml::Value) -> Result<f64, String> {
    let c = match v {
        toml::Value::Float(c) => *c,
        toml::Value::Integer(n) => *n as f64,
        _ => f64::NAN,
    };
    if c > 0.0 && c <= 1024.0 {
        Ok(c)
    } else {
        Err("must be a number of CPUs above 0 (0.5 = half a CPU), or \"max\"".into())
    }
}

/// "64M", "1G", "512k" or a plain number of bytes.
fn parse_bytes(v: &toml::Value) -> Result<i64, String> {
    let s = match v {
        toml::Value::Integer(i) if *i > 0 => return Ok(*i),
        toml::Value::String(s) => s.trim().to_string(),
        other => {
            return Err(format!(
                "a {} is not a size (say \"64M\")",
                other.type_str()
            ))
        }
    };
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1i64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s.as_str(), 1),
    };
    match num.trim().parse::<i64>() {
        Ok(n) if n > 0 => n
            .checked_mul(mult)
            .ok_or_else(|| format!("{s:?} is too large")),
        _ => Err(format!("{s:?} is not a size (say \"64M\")")),
    }
}

fn links(
    cx: &Cx<'_>,
    raw: &[RawLink],
    islands: &[Island],
    pool: &Subnet,
) -> Result<Vec<Link>, FileError> {
    let find = |n: &Spanned<String>, field: String| {
        islands
            .iter()
            .position(|i| i.name == *n.get_ref())
            .ok_or_else(|| {
                cx.err(
                    n.span(),
                    field,
                    format!("no island is named {:?}", n.get_ref()),
                )
            })
    };
    // Explicit subnets first, so the pool hands out only what no link asked for.
    let mut taken: Vec<(Subnet, String)> = Vec::new();
    let mut out: Vec<Option<Link>> = vec![None; raw.len()];
    let mut seen_pairs = BTreeSet::new();
    let mut addrs: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for (i, rl) in raw.iter().enumerate() {
        let f = |field: &str| format!("link[{i}].{field}");
        let between = rl.between.get_ref();
        if between.len() != 2 {
            return Err(cx.err(
                rl.between.span(),
                f("between"),
                format!("a link joins exactly two islands, not {}", between.len()),
            ));
        }
        let a = find(&between[0], f("between"))?;
        let b = find(&between[1], f("between"))?;
        if a == b {
            return Err(cx.err(
                rl.between.span(),
                f("between"),
                format!("a link cannot join {:?} to itself", islands[a].name),
            ));
        }
        if !seen_pairs.insert((a.min(b), a.max(b))) {
            return Err(cx.err(
                rl.between.span(),
                f("between"),
                format!(
                    "{} and {} are already linked",
                    islands[a].name, islands[b].name
                ),
            ));
        }
        let Some(s) = &rl.subnet else { continue };
        let subnet = Subnet::parse(s.get_ref()).map_err(|m| cx.err(s.span(), f("subnet"), m))?;
        if subnet.prefix > 30 {
            return Err(cx.err(
                s.span(),
                f("subnet"),
                format!("{subnet} is too small: a link needs at least a /30"),
            ));
        }
        if let Some((o, who)) = taken.iter().find(|(t, _)| t.overlaps(&subnet)) {
            return Err(cx.err(
                s.span(),
                f("subnet"),
                format!("{subnet} overlaps {o} of {who}"),
            ));
        }
        taken.push((subnet, format!("link[{i}]")));
        let (addr_a, addr_b) = match &rl.addresses {
            Some(list) => {
                let v = list.get_ref();
                if v.len() != 2 {
                    return Err(cx.err(
                        list.span(),
                        f("addresses"),
                        "give two addresses, one per island in `between` order".into(),
                    ));
                }
                let mut two = [Ipv4Addr::UNSPECIFIED; 2];
                for (k, a) in v.iter().enumerate() {
                    let ip: Ipv4Addr = a.get_ref().parse().map_err(|_| {
                        cx.err(
                            a.span(),
                            f("addresses"),
                            format!("{:?} is not an IPv4 address", a.get_ref()),
                        )
                    })?;
                    if !subnet.usable(ip) {
                        return Err(cx.err(
                            a.span(),
                            f("addresses"),
                            format!("{ip} is not a usable host address of {subnet}"),
                        ));
                    }
                    two[k] = ip;
                }
                if two[0] == two[1] {
                    return Err(cx.err(
                        list.span(),
                        f("addresses"),
                        format!("both ends have the address {}", two[0]),
                    ));
                }
                (two[0], two[1])
            }
            None => (subnet.host(1), subnet.host(2)),
        };
        for (ip, who) in [(addr_a, a), (addr_b, b)] {
            if let Some(prev) = addrs.insert(ip, islands[who].name.clone()) {
                return Err(cx.err(
                    s.span(),
                    f("addresses"),
                    format!("duplicate address {ip} (already {prev}'s)"),
                ));
            }
        }
        out[i] = Some(Link {
            a,
            b,
            subnet,
            addr_a,
            addr_b,
        });
    }
    // Links without a subnet take the next free /30 of the pool.
    let mut next = 0u32;
    for (i, rl) in raw.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        if rl.addresses.is_some() {
            return Err(cx.err(
                rl.between.span(),
                format!("link[{i}].addresses"),
                "addresses need an explicit subnet".into(),
            ));
        }
        let subnet = loop {
            let Some(s) = pool.nth_30(next) else {
                return Err(cx.err(
                    rl.between.span(),
                    format!("link[{i}]"),
                    format!("the pool {pool} has no free /30 left"),
                ));
            };
            next += 1;
            if !taken.iter().any(|(t, _)| t.overlaps(&s)) {
                break s;
            }
        };
        taken.push((subnet, format!("link[{i}]")));
        let between = rl.between.get_ref();
        let a = find(&between[0], format!("link[{i}].between"))?;
        let b = find(&between[1], format!("link[{i}].between"))?;
        out[i] = Some(Link {
            a,
            b,
            subnet,
            addr_a: subnet.host(1),
            addr_b: subnet.host(2),
        });
    }
    Ok(out
        .into_iter()
        .map(|l| l.expect("every link set"))
        .collect())
}

fn allows(
    cx: &Cx<'_>,
    raw: &[RawAllow],
    islands: &[Island],
    links: &[Link],
) -> Result<Vec<Allow>, FileError> {
    let mut out = Vec::new();
    for (i, ra) in raw.iter().enumerate() {
        let f = |field: &str| format!("allow[{i}].{field}");
        let find = |n: &Spanned<String>, field: &str| {
            islands
                .iter()
                .position(|x| x.name == *n.get_ref())
                .ok_or_else(|| {
                    cx.err(
                        n.span(),
                        f(field),
                        format!("no island is named {:?}", n.get_ref()),
                    )
                })
        };
        let from = find(&ra.from, "from")?;
        let to = find(&ra.to, "to")?;
        let Some(link) = links
            .iter()
            .position(|l| (l.a, l.b) == (from, to) || (l.a, l.b) == (to, from))
        else {
            return Err(cx.err(
                ra.to.span(),
                f("to"),
                format!(
                    "no [[link]] joins {} and {}: a rule needs a link to act on",
                    islands[from].name, islands[to].name
                ),
            ));
        };
        let proto = match ra.proto.get_ref().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            other => {
                return Err(cx.err(
                    ra.proto.span(),
                    f("proto"),
                    format!("{other:?} is not a protocol (tcp, udp or icmp)"),
                ))
            }
        };
        let mut ports = Vec::new();
        for p in &ra.ports {
            ports.push(parse_ports(p.get_ref()).map_err(|m| cx.err(p.span(), f("ports"), m))?);
        }
        match proto {
            Proto::Icmp if !ports.is_empty() => {
                return Err(cx.err(ra.proto.span(), f("ports"), "icmp has no ports".into()))
            }
            Proto::Tcp | Proto::Udp if ports.is_empty() => {
                return Err(cx.err(
                    ra.proto.span(),
                    f("ports"),
                    format!("{} needs ports (say ports = [5432])", ra.proto.get_ref()),
                ))
            }
            _ => {}
        }
        out.push(Allow {
            from,
            to,
            link,
            proto,
            ports,
            both: ra.both,
        });
    }
    Ok(out)
}

/// 5432, "5432" or "8000-8080".
fn parse_ports(v: &toml::Value) -> Result<(u16, u16), String> {
    let one = |n: i64| {
        if (1..=65535).contains(&n) {
            Ok(n as u16)
        } else {
            Err(format!("port {n} is out of range (1-65535)"))
        }
    };
    let num = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| format!("{s:?} is not a port"))
            .and_then(one)
    };
    match v {
        toml::Value::Integer(n) => one(*n).map(|p| (p, p)),
        toml::Value::String(s) => match s.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (num(lo)?, num(hi)?);
                if lo > hi {
                    return Err(format!("range {s:?} runs backwards"));
                }
                Ok((lo, hi))
            }
            None => num(s).map(|p| (p, p)),
        },
        other => Err(format!(
            "a {} is not a port or a range like \"8000-8080\"",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<File, FileError> {
        parse(Path::new("t.toml"), text)
    }

    const GOOD: &str = r#"
name = "demo"
[[island]]
name = "db"
command = ["/bin/sh", "-c", "sleep 1"]
memory = "64M"
[[island]]
name = "backup"
command = ["/bin/sh"]
caps = ["net_bind_service"]
[[island]]
name = "web"
command = ["/bin/sh"]
[[link]]
between = ["db", "backup"]
subnet = "10.77.0.0/30"
[[link]]
between = ["web", "db"]
[[allow]]
from = "backup"
to = "db"
proto = "tcp"
ports = [5432, "6000-6010"]
"#;

    #[test]
    fn a_good_file_parses_and_allocates() {
        let f = p(GOOD).unwrap();
        assert_eq!(f.name, "demo");
        assert_eq!(f.islands.len(), 3);
        assert_eq!(f.islands[0].memory, Some(64 << 20));
        assert_eq!(f.islands[1].caps, vec!["CAP_NET_BIND_SERVICE".to_string()]);
        assert_eq!(f.islands[0].uid, DEFAULT_UID);
        assert_eq!(f.links[0].addr_a, Ipv4Addr::new(10, 77, 0, 1));
        // The second link skips the /30 the first one took.
        assert_eq!(f.links[1].subnet.to_string(), "10.77.0.4/30");
        assert_eq!(f.allows[0].ports, vec![(5432, 5432), (6000, 6010)]);
        assert_eq!(f.allows[0].link, 0);
    }

    fn err(text: &str) -> String {
        p(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = err(&GOOD.replace(
            "between = [\"web\", \"db\"]",
            "between = [\"web\", \"dbx\"]",
        ));
        assert!(e.starts_with("t.toml:18:"), "{e}");
        assert!(
            e.contains("link[1].between") && e.contains("\"dbx\""),
            "{e}"
        );

        let e = err(&GOOD.replace("ports = [5432,", "ports = [70000,"));
        assert!(
            e.contains("allow[0].ports") && e.contains("70000 is out of range"),
            "{e}"
        );

        let e = err(&GOOD.replace("to = \"db\"", "to = \"web\""));
        assert!(e.contains("no [[link]] joins backup and web"), "{e}");

        let e = err(&GOOD.replace("command = [\"/bin/sh\"]\ncaps", "command = []\ncaps"));
        assert!(
            e.contains("island[1] (backup).command") && e.contains("empty"),
            "{e}"
        );

        let e = err(&GOOD.replace(
            "name = \"web\"\ncommand = [\"/bin/sh\"]\n",
            "name = \"web\"\n",
        ));
        assert!(e.contains("missing field `command`"), "{e}");
        assert!(e.starts_with("t.toml:11:"), "{e}");

        let e = err(&GOOD.replace("net_bind_service", "net_admin"));
        assert!(e.contains("CAP_NET_ADMIN is never granted"), "{e}");
    }

    #[test]
    fn subnets_and_addresses_are_checked() {
        let two = GOOD.replace(
            "[[link]]\nbetween = [\"web\", \"db\"]",
            "[[link]]\nbetween = [\"web\", \"db\"]\nsubnet = \"10.77.0.0/29\"",
        );
        let e = err(&two);
        assert!(e.contains("overlaps 10.77.0.0/30"), "{e}");

        let dup = GOOD.replace(
            "[[link]]\nbetween = [\"web\", \"db\"]",
            "[[link]]\nbetween = [\"web\", \"db\"]\nsubnet = \"10.78.0.0/24\"\naddresses = [\"10.78.0.9\", \"10.78.0.9\"]",
        );
        assert!(
            err(&dup).contains("both ends have the address"),
            "{}",
            err(&dup)
        );

        let twice = format!("{GOOD}\n[[link]]\nbetween = [\"backup\", \"db\"]\n");
        assert!(err(&twice).contains("already linked"));

        let small = GOOD.replace("10.77.0.0/30", "10.77.0.0/31");
        assert!(err(&small).contains("at least a /30"));
    }

    const ONE: &str = "name = \"x\"\n[[island]]\nname = \"a\"\ncommand = [\"/bin/sh\"]\n";

    #[test]
    fn a_cut_short_file_says_so() {
        let e = err(&format!("{ONE}env = {{ A = "));
        assert!(e.starts_with("t.toml:5:"), "{e}");
        assert!(e.contains("cut short"), "{e}");
        // toml's own messages span lines: they are joined into one.
        let e = err(&format!("{ONE}caps = ["));
        assert!(
            !e.contains('\n') && e.contains("invalid array; expected `]`"),
            "{e}"
        );
    }

    #[test]
    fn type_errors_name_the_field() {
        let e = err(&format!("{ONE}user = -1\n"));
        assert!(e.starts_with("t.toml:5:8: island[0].user: "), "{e}");
        let e = err(&format!("{ONE}env = {{ A = \"ok\", B = 1 }}\n"));
        assert!(e.starts_with("t.toml:5:"), "{e}");
        assert!(e.contains("island[0].env.B: "), "{e}");
        let e = err(&format!("{ONE}[island.env]\nA = 1\n"));
        assert!(e.contains(": island[0].env.A: "), "{e}");
        let e = err(&format!("{ONE}caps = [\"chown\", 1]\n"));
        assert!(e.contains("island[0].caps[1]: "), "{e}");
    }

    #[test]
    fn a_relative_data_root_is_refused() {
        let e = err(&format!("data_root = \"rel/data\"\n{ONE}"));
        assert!(e.starts_with("t.toml:1:13: data_root: "), "{e}");
        assert!(e.contains("absolute"), "{e}");
        let e = err(&format!("data_root = \"/srv/../etc\"\n{ONE}"));
        assert!(e.contains("data_root: "), "{e}");
        assert!(p(&format!("data_root = \"/srv/islands\"\n{ONE}")).is_ok());
    }

    #[test]
    fn data_and_binds_stay_off_the_islands_own_mounts() {
        for bad in [
            "/proc",
            "/sys/x",
            "/dev",
            "/usr/local/data",
            "/etc",
            "/",
            "/tmp",
            "//proc/",
            "/./lib64",
            "/var",
        ] {
            let e = err(&format!("{ONE}data = \"{bad}\"\n"));
            assert!(
                e.starts_with("t.toml:5:8: island[0] (a).data: "),
                "{bad}: {e}"
            );
        }
        for good in ["/data", "/srv/db", "/tmp/x", "/var/lib/db"] {
            assert!(p(&format!("{ONE}data = \"{good}\"\n")).is_ok(), "{good}");
        }
        let e = err(&format!("{ONE}binds = [\"/usr/share:/proc/x\"]\n"));
        assert!(
            e.contains("island[0] (a).binds: \"/proc/x\" cannot be bound"),
            "{e}"
        );
    }

    #[test]
    fn limits_default_then_project_then_island() {
        // No limit anywhere: pids 2048, memory and cpu unlimited.
        let f = p(ONE).unwrap();
        let i = &f.islands[0];
        assert_eq!((i.memory, i.pids, i.cpu), (None, Some(DEFAULT_PIDS), None));
        // The project's defaults apply to an island that says nothing...
        let text = ONE.replace(
            "name = \"x\"\n",
            "name = \"x\"\nmemory = \"256M\"\npids = 512\ncpu = 2\n",
        );
        let i = &p(&text).unwrap().islands[0];
        assert_eq!(
            (i.memory, i.pids, i.cpu),
            (Some(256 << 20), Some(512), Some(2.0))
        );
        // ...and the island's own values win, "max" included (raised explicitly).
        let own = format!("{text}memory = \"1G\"\npids = \"max\"\ncpu = 0.5\n");
        let i = &p(&own).unwrap().islands[0];
        assert_eq!((i.memory, i.pids, i.cpu), (Some(1 << 30), None, Some(0.5)));
        let e = err(&format!("pids = 0\n{ONE}"));
        assert!(
            e.starts_with("t.toml:1:8: pids: 0 is not a pids limit"),
            "{e}"
        );
        let e = err(&format!("{ONE}pids = \"lots\"\n"));
        assert!(e.contains("island[0] (a).pids: "), "{e}");
        let e = err(&format!("{ONE}cpu = -1\n"));
        assert!(e.contains("island[0] (a).cpu: "), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = err(&GOOD.replace("memory = \"64M\"", "memroy = \"64M\""));
        assert!(e.contains("memroy"), "{e}");
        assert!(e.starts_with("t.toml:6:"), "{e}");
    }
}

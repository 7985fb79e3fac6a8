//! The islands file's rules: names, paths, capabilities, limits, links and flows. Each check
//! names the field it refuses; what the file leaves out gets its default here.

use super::rules::{check_name, reserved_for_mount, reserved_inside};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::syntax::{Cx, RawAllow, RawFile, RawIsland, RawLimit, RawLink};
use super::*;
use crate::error::FileError;
use crate::net::Subnet;

/// Check every field of `raw` and resolve names to indexes and defaults to values.
pub(super) fn file(cx: &Cx<'_>, raw: RawFile) -> Result<File, FileError> {
    let path = cx.path;
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
    let project = Limits::read(cx, [&raw.memory, &raw.pids, &raw.cpu], |f| f.to_string())?;
    let mut islands = Vec::new();
    for (i, ri) in raw.island.iter().enumerate() {
        islands.push(island(cx, i, ri, guard, &project, &islands)?);
    }
    super::devices::grants(cx, &raw.island, &mut islands)?;
    let links = links(cx, &raw.link, &islands)?;
    let allows = allows(cx, &raw.allow, &islands, &links)?;
    let data_root = match &raw.data_root {
        Some(d) => Some(check_data_root(cx, d)?),
        None => None,
    };
    let shares = super::share::shares(
        cx,
        &raw.share,
        &islands,
        &data_root
            .clone()
            .unwrap_or_else(|| Path::new(super::DATA_ROOT).join(&name)),
    )?;
    Ok(File {
        path: path.to_path_buf(),
        name,
        pool,
        data_root,
        log_drops: raw.log_drops.unwrap_or(true),
        guard,
        islands,
        links,
        allows,
        shares,
    })
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
    let image = super::image::read(cx, ri, &f)?;
    let command = match (&ri.command, &image) {
        (Some(c), _) => c.get_ref().clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => {
            return Err(cx.err(
                ri.name.span(),
                f("command"),
                "missing field `command` (or an `image` whose Entrypoint/Cmd runs)".into(),
            ))
        }
    };
    let span = ri.command.as_ref().map(|c| c.span()).unwrap_or(0..0);
    if let Some(c) = &ri.command {
        let Some(prog) = command.first() else {
            return Err(cx.err(
                c.span(),
                f("command"),
                "the command is empty: give the program and its arguments".into(),
            ));
        };
        // An image island's command is a path in the image, checked when it is pulled.
        if image.is_none() {
            if !prog.starts_with('/') {
                return Err(cx.err(
                    span,
                    f("command"),
                    format!(
                        "{prog:?} must be an absolute path (islands have no shell to search PATH)"
                    ),
                ));
            }
            if !Path::new(prog).exists() {
                return Err(cx.err(
                    span,
                    f("command"),
                    format!("{prog} does not exist on this host (an island's root is the host's own /usr)"),
                ));
            }
        }
    }
    let uid = ri
        .user
        .as_ref()
        .map(|u| *u.get_ref())
        .unwrap_or(DEFAULT_UID);
    if uid > 65535 {
        let passed = if ri
            .identity
            .as_ref()
            .is_some_and(|i| i.get_ref() == "passthrough")
        {
            " (a passthrough uid is one of them: 0..65535)"
        } else {
            ""
        };
        return Err(cx.err(
            ri.user.as_ref().map(|u| u.span()).unwrap_or(0..0),
            f("user"),
            format!("uid {uid} is outside the island's 65536 mapped ids{passed}"),
        ));
    }
    let gid = ri.group.as_ref().map(|g| *g.get_ref()).unwrap_or(uid);
    if gid > 65535 {
        return Err(cx.err(
            ri.group.as_ref().map(|g| g.span()).unwrap_or(0..0),
            f("group"),
            format!("gid {gid} is outside the island's 65536 mapped ids"),
        ));
    }
    let identity = super::share::identity(cx, &ri.identity, uid, gid, f("identity"))?;
    let caps = capabilities(cx, &ri.caps, f("caps"))?;
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
    let binds = binds(cx, &ri.binds, f("binds"))?;
    let (tmpfs, writable) =
        super::mounts::extra_mounts(cx, &ri.tmpfs, &ri.writable, &data, &binds, f)?;
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
        tmpfs,
        writable,
        guard,
        identity,
        devices: Vec::new(),
        shared: false,
        image,
    })
}

/// Capability names as the kernel spells them (`net_bind_service` → `CAP_NET_BIND_SERVICE`),
/// each known to the caps crate and none of [`FORBIDDEN_CAPS`]; duplicates dropped.
fn capabilities(
    cx: &Cx<'_>,
    raw: &[Spanned<String>],
    field: String,
) -> Result<Vec<String>, FileError> {
    let mut caps = Vec::new();
    for c in raw {
        let up = c.get_ref().to_ascii_uppercase();
        let full = if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        };
        let Ok(cap) = full.parse::<caps::Capability>() else {
            return Err(cx.err(
                c.span(),
                field.clone(),
                format!(
                    "{:?} is not a capability (see capabilities(7))",
                    c.get_ref()
                ),
            ));
        };
        if FORBIDDEN_CAPS.contains(&cap) {
            return Err(cx.err(
                c.span(),
                field.clone(),
                format!("{cap} is never granted to an island: it would let the tenant leave its island or rewrite the network"),
            ));
        }
        if !caps.contains(&full) {
            caps.push(full);
        }
    }
    Ok(caps)
}

/// `HOST[:INSIDE]` read-only binds: both absolute, INSIDE off the island's own mounts, HOST
/// present on this host.
fn binds(
    cx: &Cx<'_>,
    raw: &[Spanned<String>],
    field: String,
) -> Result<Vec<(PathBuf, String)>, FileError> {
    let mut binds = Vec::new();
    for b in raw {
        let (host, at) = match b.get_ref().split_once(':') {
            Some((h, a)) => (h.to_string(), a.to_string()),
            None => (b.get_ref().clone(), b.get_ref().clone()),
        };
        if !host.starts_with('/') || !at.starts_with('/') || at.split('/').any(|c| c == "..") {
            return Err(cx.err(
                b.span(),
                field.clone(),
                format!(
                    "{:?}: want HOST_PATH[:PATH_INSIDE], both absolute",
                    b.get_ref()
                ),
            ));
        }
        if let Some(why) = reserved_for_mount(&at) {
            return Err(cx.err(
                b.span(),
                field.clone(),
                format!("{at:?} cannot be bound into: {why}"),
            ));
        }
        if !Path::new(&host).exists() {
            return Err(cx.err(
                b.span(),
                field.clone(),
                format!("{host} does not exist on this host"),
            ));
        }
        binds.push((PathBuf::from(host), at));
    }
    Ok(binds)
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

fn links(cx: &Cx<'_>, raw: &[RawLink], islands: &[Island]) -> Result<Vec<Link>, FileError> {
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
    let mut taken: Vec<(Subnet, String)> = Vec::new();
    let mut out = Vec::with_capacity(raw.len());
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
        let Some(s) = &rl.subnet else {
            if rl.addresses.is_some() {
                return Err(cx.err(
                    rl.between.span(),
                    f("addresses"),
                    "addresses need an explicit subnet".into(),
                ));
            }
            out.push(Link { a, b, net: None });
            continue;
        };
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
        out.push(Link {
            a,
            b,
            net: Some(LinkNet {
                subnet,
                addr_a,
                addr_b,
            }),
        });
    }
    Ok(out)
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

//! The islands file (TOML): what it says, validated. [`syntax`] reads the text, [`validate`]
//! checks it; every error names the file, the line and the field, so a user can fix a file
//! without reading atoll's source. The reference is docs/islands-file.md.

mod devices;
pub mod image;
mod mounts;
mod rules;
mod share;
mod syntax;
mod validate;

#[cfg(test)]
pub(crate) use rules::ETC_GENERATED;
pub(crate) use share::inside_data;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use caps::Capability;

use crate::error::FileError;
use crate::net::Subnet;

/// Capabilities an island may never hold: they let a tenant rewrite the network, leave its
/// namespaces or reach the kernel directly, which the border guard and the islands model forbid.
pub const FORBIDDEN_CAPS: &[Capability] = &[
    Capability::CAP_NET_ADMIN,
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SYS_MODULE,
    Capability::CAP_SYS_RAWIO,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_SYS_BOOT,
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
    Capability::CAP_MAC_ADMIN,
    Capability::CAP_MAC_OVERRIDE,
    Capability::CAP_SYSLOG,
    Capability::CAP_SYS_TIME,
    Capability::CAP_AUDIT_CONTROL,
    Capability::CAP_DAC_READ_SEARCH,
];

/// Where islands' data lives on the host unless the file says `data_root`.
pub const DATA_ROOT: &str = "/var/lib/atoll/islands";
/// The default pool that links without a `subnet` take their /30 from.
pub const DEFAULT_POOL: &str = "10.77.0.0/16";
/// The uid an island runs as when the file says nothing: not root.
pub const DEFAULT_UID: u32 = 1000;
/// The pids limit of an island when neither it nor its project sets one (podman's default):
/// ample for a service, and a fork bomb stops there instead of at the host's pid_max, which
/// every tenant shares.
pub const DEFAULT_PIDS: i64 = 2048;
/// The highest pid_max the kernel allows (PID_MAX_LIMIT, 4M on 64-bit).
pub(crate) const PID_MAX_LIMIT: i64 = 1 << 22;

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
    pub shares: Vec<Share>,
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
    /// Private tmpfs mounts (paths inside), owned by the island's user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    /// Writable dirs (paths inside) kept in `<data_root>/.writable/<island>/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writable: Vec<String>,
    pub guard: Guard,
    #[serde(default)]
    pub identity: Identity,
    /// Device grants (`devices`), resolved; `shared`: may use a GPU another island uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<crate::devices::grant::Grant>,
    #[serde(default)]
    pub shared: bool,
    /// `image`: the island's root comes from a container image (crate::image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<image::ImageSpec>,
}

/// Whose host uid an island's user is (docs/identities.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    /// host_base + uid: a host range no other island and no host account has.
    #[default]
    Private,
    /// The island's user (uid and gid) is the same number on the host: NFS with AUTH_SYS sees it.
    Passthrough,
}

/// A `[[share]]`: one host directory, mounted into several islands.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Share {
    pub name: String,
    /// Canonical: no symlink on the way.
    pub host: PathBuf,
    /// Host uid and gid that own what the islands write.
    pub owner: u32,
    pub group: u32,
    pub identity: ShareIdentity,
    pub mounts: Vec<ShareMount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareIdentity {
    /// Each private island's user is the owner through an idmapped mount.
    Idmap,
    /// A network filesystem mounted with sec=krb5: the server checks a credential; plain bind.
    Kerberos,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShareMount {
    /// Index into `File::islands`.
    pub island: usize,
    /// Where it appears inside the island.
    pub path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Indexes into `File::islands`.
    pub a: usize,
    pub b: usize,
    /// The subnet and addresses the file gives; None: the plan takes a /30 of the pool.
    pub net: Option<LinkNet>,
}

/// A link's subnet and the addresses of its two ends (`a`, then `b`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkNet {
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
    let cx = syntax::Cx { path, text };
    validate::file(&cx, syntax::read(&cx)?)
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
        assert_eq!(f.links[0].net.unwrap().addr_a, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(f.links[1].net, None, "the plan takes it from the pool");
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
        // The island is named by its `name` line (the table has no span of its own).
        assert!(e.starts_with("t.toml:12:"), "{e}");

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
        for cut in ["env = ", "hostname = \"a", "caps = [\"chown\",", "[[link"] {
            let e = err(&format!("{ONE}{cut}"));
            assert!(e.starts_with("t.toml:5:"), "{cut}: {e}");
            let msg = e.rsplit(": ").next().unwrap_or_default();
            assert!(msg.len() > 10, "{cut}: a message, not an empty one: {e}");
        }
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

//! One error type per domain: `NetlinkError` for rtnetlink requests, `NetError` for the rest
//! (namespaces, sysctls, the nft process). Every variant names the operation and its operand.
//! A cause is printed once: a wrapped error is the variant's #[source] and the message does not
//! repeat it; an errno kept as a plain field is shown by name in the message and is no source.

use std::fmt;
use std::path::PathBuf;

use rustix::io::Errno;

/// An rtnetlink request the kernel refused, or a reply we could not make sense of.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel NACKed a request: `RTM_NEWLINK veth "atab12a" peer "to-db" in "/run/x/db": EEXIST`
    /// (the socket's netns is named unless it is the host's).
    #[error("{op} {operand}{}: {}{}", InNetns(netns), ErrnoName(*errno), reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Nack {
        op: &'static str,
        operand: String,
        netns: String,
        errno: Errno,
        /// The kernel's extended-ACK text (NLMSGERR_ATTR_MSG), when it gave one.
        reason: Option<String>,
    },
    /// A socket call on the rtnetlink socket failed.
    #[error("{op} on the rtnetlink socket in {netns}: {}", ErrnoName(*errno))]
    Socket {
        op: &'static str,
        netns: String,
        errno: Errno,
    },
    /// A reply that does not parse, or that answers a request we did not send.
    #[error("rtnetlink reply in {netns}: {what}")]
    Protocol { netns: String, what: String },
}

/// Everything else atoll-net does.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// A syscall on a namespace file: `bind-mount netns on "/run/atoll/ns/db": EEXIST`.
    #[error("{op} {path:?}: {}", ErrnoName(*errno))]
    Netns {
        op: &'static str,
        path: PathBuf,
        errno: Errno,
    },
    /// A file operation on a namespace path (directory creation, unlink).
    #[error("{op} {path:?}")]
    NetnsFile {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `Netns::open` on something that is not a network namespace.
    #[error("open netns {path:?}: not a network namespace (f_type {f_type:#x})")]
    NotNetns { path: PathBuf, f_type: i64 },
    /// `Netns::create` where a namespace is already pinned.
    #[error("create netns {path:?}: a namespace is already mounted there")]
    NetnsExists { path: PathBuf },
    /// Switching the calling thread's network namespace.
    #[error("setns into {target}: {}", ErrnoName(*errno))]
    Setns { target: String, errno: Errno },
    /// A write under /proc/sys/net, done from inside `netns`.
    #[error("write {value:?} to /proc/{key} in {netns}")]
    Sysctl {
        key: String,
        value: String,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    /// A read under /proc/sys/net, done from inside `netns` (diagnosis).
    #[error("read /proc/{key} in {netns}")]
    SysctlRead {
        key: String,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    /// An interface a plan step refers to does not exist (yet) in that namespace.
    #[error("interface {ifname:?} not found in {netns}")]
    NoSuchInterface { ifname: String, netns: String },
    /// A ruleset that cannot be rendered safely (quote in a comment, bad interface name).
    #[error("firewall table {table:?}: {what}")]
    InvalidRuleset { table: String, what: String },
    /// Running `nft`.
    #[error("nft {what} for table {table:?}: {detail}")]
    Nft {
        what: &'static str,
        table: String,
        detail: String,
    },
    /// The netfilter queue of a hold (`firewall::hold`): `netfilter queue 41017: bind: the
    /// kernel refused it: EBUSY`.
    #[error("netfilter queue {queue}: {op}: {detail}")]
    Nfqueue {
        queue: u16,
        op: &'static str,
        /// The kernel's answer, where it refused the request.
        errno: Option<Errno>,
        detail: String,
    },
    /// A socket call of a probe or a socket-diagnostics dump: `connect to 10.1.0.2:5432 in
    /// "/run/atoll/islands/p/netns/db": EPERM`.
    #[error("{op} {operand} in {netns}: {}", ErrnoName(*errno))]
    Socket {
        op: &'static str,
        operand: String,
        netns: String,
        errno: Errno,
    },
    /// A plan or teardown that failed in several places; teardown never stops at the first.
    /// Link group 0 is every host link nobody grouped: deleting it would take the host's own
    /// interfaces. Only a hand-edited plan can ask for it.
    #[error("delete link group 0: refused (it holds every ungrouped host link)")]
    GroupZero,
    #[error("{} errors, first: {}", .0.len(), with_causes(&.0[0]))]
    Many(Vec<NetError>),
}

/// An error and its causes on one line ("write ... in db: Permission denied"): the variants
/// above return their cause from `source()` and do not print it themselves.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// " in <netns>" for an island's socket, nothing for the host's.
struct InNetns<'a>(&'a str);

impl fmt::Display for InNetns<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            "host" => Ok(()),
            ns => write!(f, " in {ns}"),
        }
    }
}

/// Errno as its symbolic name (`EEXIST`), the form kernel docs and man pages use.
pub(crate) struct ErrnoName(pub Errno);

impl fmt::Display for ErrnoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            Errno::PERM => "EPERM",
            Errno::NOENT => "ENOENT",
            Errno::SRCH => "ESRCH",
            Errno::INTR => "EINTR",
            Errno::IO => "EIO",
            Errno::BADF => "EBADF",
            Errno::AGAIN => "EAGAIN",
            Errno::NOMEM => "ENOMEM",
            Errno::ACCESS => "EACCES",
            Errno::BUSY => "EBUSY",
            Errno::EXIST => "EEXIST",
            Errno::NODEV => "ENODEV",
            Errno::NOTDIR => "ENOTDIR",
            Errno::INVAL => "EINVAL",
            Errno::NFILE => "ENFILE",
            Errno::MFILE => "EMFILE",
            Errno::NOSPC => "ENOSPC",
            Errno::RANGE => "ERANGE",
            Errno::NAMETOOLONG => "ENAMETOOLONG",
            Errno::NOSYS => "ENOSYS",
            Errno::AFNOSUPPORT => "EAFNOSUPPORT",
            Errno::ADDRNOTAVAIL => "EADDRNOTAVAIL",
            Errno::NETDOWN => "ENETDOWN",
            Errno::NETUNREACH => "ENETUNREACH",
            Errno::HOSTUNREACH => "EHOSTUNREACH",
            Errno::CONNREFUSED => "ECONNREFUSED",
            Errno::TIMEDOUT => "ETIMEDOUT",
            Errno::INPROGRESS => "EINPROGRESS",
            Errno::NOBUFS => "ENOBUFS",
            Errno::MSGSIZE => "EMSGSIZE",
            Errno::OPNOTSUPP => "EOPNOTSUPP",
            Errno::PROTONOSUPPORT => "EPROTONOSUPPORT",
            _ => return write!(f, "errno {}", self.0.raw_os_error()),
        };
        write!(f, "{name}")
    }
}

impl NetError {
    /// Fold the errors of a teardown that kept going: none is Ok, one is itself, more is `Many`.
    pub(crate) fn collect(mut errors: Vec<NetError>) -> Result<(), NetError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(NetError::Many(errors)),
        }
    }
}

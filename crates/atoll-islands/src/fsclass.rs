//! Which filesystems can take an idmapped mount, by statfs(2) f_type (linux/magic.h), and how
//! to say so when one cannot. Read while the islands file is checked (before anything exists)
//! and again when shares are planned.

use std::path::Path;

/// What statfs says of a share's filesystem, as far as idmapped mounts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsClass {
    /// A local filesystem: the kernel decides at mount_setattr (most take idmaps since 5.12-6.x).
    Local(u64),
    /// The server checks the uid that travels on the wire (AUTH_SYS) or a credential: an
    /// idmapped mount is refused by the kernel and would mean nothing to the server.
    Network(&'static str),
    /// FUSE allows MOUNT_ATTR_IDMAP only when its server opts in (FUSE_ALLOW_IDMAP, Linux 6.12),
    /// which statfs cannot tell.
    Fuse,
}

// linux/magic.h and the filesystems' own headers.
const NFS_SUPER_MAGIC: u64 = 0x6969;
const SMB_SUPER_MAGIC: u64 = 0x517b;
const CIFS_SUPER_MAGIC: u64 = 0xff53_4d42;
const SMB2_SUPER_MAGIC: u64 = 0xfe53_4d42;
const V9FS_MAGIC: u64 = 0x0102_1997;
const AFS_FS_MAGIC: u64 = 0x6b41_4653;
const CODA_SUPER_MAGIC: u64 = 0x7375_7245;
const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;

/// The class of a filesystem by its statfs f_type.
pub fn classify_magic(magic: u64) -> FsClass {
    match magic {
        NFS_SUPER_MAGIC => FsClass::Network("nfs"),
        SMB_SUPER_MAGIC | CIFS_SUPER_MAGIC | SMB2_SUPER_MAGIC => FsClass::Network("cifs/smb"),
        V9FS_MAGIC => FsClass::Network("9p"),
        AFS_FS_MAGIC => FsClass::Network("afs"),
        CODA_SUPER_MAGIC => FsClass::Network("coda"),
        FUSE_SUPER_MAGIC => FsClass::Fuse,
        other => FsClass::Local(other),
    }
}

// f_type's type differs between architectures (i64, u32, ...): the cast is no-op only on some;
// the low 32 bits are the magic.
#[allow(clippy::unnecessary_cast)]
pub fn classify(st: &rustix::fs::StatFs) -> FsClass {
    classify_magic(st.f_type as u64 & 0xffff_ffff)
}

impl FsClass {
    pub fn name(self) -> String {
        match self {
            FsClass::Local(m) => format!("a local filesystem, f_type {m:#x}"),
            FsClass::Network(n) => n.to_string(),
            FsClass::Fuse => "fuse".into(),
        }
    }
}

/// Why share `name` cannot be idmapped for the islands `private`, and the two ways out.
pub fn cannot_idmap(name: &str, host: &Path, class: FsClass, private: &[&str]) -> String {
    let why = match class {
        FsClass::Fuse => "a FUSE filesystem, which takes an idmapped mount only when its server opts in (FUSE_ALLOW_IDMAP) and statfs cannot tell whether it did".to_string(),
        _ => format!(
            "{}, which takes no idmapped mount: the server checks the uid each request carries, and would see an island's private host uid (1000001001 for uid 1001 of the first island) rather than the owner; a user namespace's identity does not extend past this machine",
            class.name(),
        ),
    };
    format!(
        "share {name:?}: {} is on {why}. Islands {} need an idmap there. Ways out: give each of them identity = \"passthrough\" with user/group equal to the share's owner (its uid is then the host's, a weaker isolation), or mount the export with sec=krb5 and set identity = \"kerberos\" on the share (the server checks a Kerberos credential, not a uid); see docs/identities.md",
        host.display(),
        private.join(", ")
    )
}

//! Compiling, caching and installing a filter.

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use atoll_sys::seccomp::{self as sys, SockFilter};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::LinuxSeccomp;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp.{field}: {msg}")]
    Field { field: String, msg: String },
    #[error("libseccomp: {op}: {msg}")]
    Lib { op: String, msg: String },
    #[error("seccomp(SECCOMP_SET_MODE_FILTER, flags {flags:#x}): {source}")]
    Install {
        flags: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp listener {path}: {op}: {source}")]
    Listener {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn field(field: impl Into<String>, msg: impl Into<String>) -> SeccompError {
    SeccompError::Field { field: field.into(), msg: msg.into() }
}

fn lib(op: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let op = op.into();
    move |e| SeccompError::Lib { op, msg: e.to_string() }
}

/// A compiled program, ready to install.
#[derive(Debug, Clone)]
pub struct Filter {
    prog: Vec<SockFilter>,
    flags: u32,
    notify: bool,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
}

/// The spec's enum values as the strings the spec writes ("SCMP_ACT_ERRNO").
fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

impl Filter {
    pub fn compile(spec: &LinuxSeccomp) -> Result<Filter, SeccompError> {
        let (prog, notify) = compile_prog(spec)?;
        Filter::assemble(spec, prog, notify)
    }

    /// As `compile`, reusing `cache_dir/<key>.bpf` when present (the key covers the profile, the
    /// libseccomp version and the machine).
    pub fn compile_cached(spec: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter, SeccompError> {
        let key = cache_key(spec);
        let path = cache_dir.join(format!("{key:016x}.bpf"));
        if let Ok(bytes) = std::fs::read(&path) {
            if let Some((prog, notify)) = decode(&bytes) {
                return Filter::assemble(spec, prog, notify);
            }
        }
        let (prog, notify) = compile_prog(spec)?;
        // The cache is an optimisation: failing to write it is not an error.
        let _cache_is_optional = store(cache_dir, &path, &prog, notify);
        Filter::assemble(spec, prog, notify)
    }

    fn assemble(spec: &LinuxSeccomp, prog: Vec<SockFilter>, notify: bool) -> Result<Filter, SeccompError> {
        let mut flags = 0;
        for (i, f) in spec.flags().as_deref().unwrap_or(&[]).iter().enumerate() {
            flags |= match name(f).as_str() {
                "SECCOMP_FILTER_FLAG_TSYNC" => sys::SECCOMP_FILTER_FLAG_TSYNC,
                "SECCOMP_FILTER_FLAG_LOG" => sys::SECCOMP_FILTER_FLAG_LOG,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => sys::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => sys::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
                other => return Err(field(format!("flags[{i}]"), format!("unknown flag {other:?}"))),
            };
        }
        if notify {
            if spec.listener_path().is_none() {
                return Err(field("listenerPath", "SCMP_ACT_NOTIFY is used but no listenerPath is set"));
            }
            // TSYNC and NEW_LISTENER cannot be combined unless TSYNC_ESRCH; we run one thread.
            flags &= !sys::SECCOMP_FILTER_FLAG_TSYNC;
            flags |= sys::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        }
        Ok(Filter {
            prog,
            flags,
            notify,
            listener_path: spec.listener_path().clone(),
            listener_metadata: spec.listener_metadata().clone(),
        })
    }

    pub fn uses_notify(&self) -> bool {
        self.notify
    }
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }
    pub fn listener_metadata(&self) -> Option<&str> {
        self.listener_metadata.as_deref()
    }
    pub fn program(&self) -> &[SockFilter] {
        &self.prog
    }

    /// Install on the calling thread. No allocation: callable between clone and execve.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        sys::seccomp_set_mode_filter(self.flags, &self.prog).map_err(|source| SeccompError::Install { flags: self.flags, source })
    }
}

fn action(act: &str, errno: Option<u32>, default_errno: Option<u32>, at: &str) -> Result<ScmpAction, SeccompError> {
    let val = match act {
        "SCMP_ACT_ERRNO" => Some(errno.or(default_errno).unwrap_or(libc::EPERM as u32) as i32),
        "SCMP_ACT_TRACE" => Some(errno.or(default_errno).unwrap_or(libc::EPERM as u32) as i32),
        _ => None,
    };
    ScmpAction::from_str(act, val).map_err(|_| field(at, format!("unknown action {act:?}")))
}

fn compile_prog(spec: &LinuxSeccomp) -> Result<(Vec<SockFilter>, bool), SeccompError> {
    let default_errno = spec.default_errno_ret();
    let default_name = name(&spec.default_action());
    let default = action(&default_name, None, default_errno, "defaultAction")?;
    let mut notify = default == ScmpAction::Notify;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("seccomp_init"))?;
    ctx.set_ctl_nnp(false).map_err(lib("seccomp_attr_set NNP"))?;
    let archs: Vec<ScmpArch> = spec
        .architectures()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .map(|(i, a)| ScmpArch::from_str(&name(a)).map_err(|_| field(format!("architectures[{i}]"), format!("unknown architecture {:?}", name(a)))))
        .collect::<Result<_, _>>()?;
    for a in &archs {
        ctx.add_arch(*a).map_err(lib(format!("seccomp_arch_add {a:?}")))?;
    }
    for (i, sc) in spec.syscalls().as_deref().unwrap_or(&[]).iter().enumerate() {
        let at = format!("syscalls[{i}]");
        let act_name = name(&sc.action());
        let act = action(&act_name, sc.errno_ret(), default_errno, &format!("{at}.action"))?;
        if act == ScmpAction::Notify {
            notify = true;
        }
        if act == default {
            continue; // libseccomp refuses rules equal to the default action
        }
        let mut conds = Vec::new();
        for (j, a) in sc.args().as_deref().unwrap_or(&[]).iter().enumerate() {
            let op_name = name(&a.op());
            let op = ScmpCompareOp::from_str(&op_name).map_err(|_| field(format!("{at}.args[{j}].op"), format!("unknown operator {op_name:?}")))?;
            let op = if op_name == "SCMP_CMP_MASKED_EQ" { ScmpCompareOp::MaskedEqual(a.value()) } else { op };
            let datum = if op_name == "SCMP_CMP_MASKED_EQ" { a.value_two().unwrap_or(0) } else { a.value() };
            conds.push(ScmpArgCompare::new(a.index() as u32, op, datum));
        }
        for nm in sc.names() {
            // A name this libseccomp (or this architecture) does not know is skipped, as runc does.
            let Ok(sys) = ScmpSyscall::from_name(nm) else { continue };
            let r = if conds.is_empty() { ctx.add_rule(act, sys) } else { ctx.add_rule_conditional(act, sys, &conds) };
            r.map_err(lib(format!("{at}: add rule for {nm}")))?;
        }
    }
    let mut memfd = memfd()?;
    ctx.export_bpf(&memfd).map_err(lib("seccomp_export_bpf"))?;
    let mut bytes = Vec::new();
    memfd.rewind().and_then(|_| memfd.read_to_end(&mut bytes)).map_err(|e| SeccompError::Lib { op: "read exported BPF".into(), msg: e.to_string() })?;
    let prog = bytes
        .chunks_exact(8)
        .map(|c| SockFilter { code: u16::from_ne_bytes([c[0], c[1]]), jt: c[2], jf: c[3], k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]) })
        .collect();
    Ok((prog, notify))
}

fn memfd() -> Result<std::fs::File, SeccompError> {
    let fd = rustix::fs::memfd_create("atoll-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| SeccompError::Lib { op: "memfd_create".into(), msg: e.to_string() })?;
    Ok(std::fs::File::from(fd))
}

/// FNV-1a over the canonical JSON of the profile, the libseccomp version and the arch. Written
/// here because the key only has to be stable for one machine's cache.
fn cache_key(spec: &LinuxSeccomp) -> u64 {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let v = libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json.iter().chain(v.as_bytes()).chain(std::env::consts::ARCH.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const MAGIC: &[u8; 8] = b"ATOLLBPF";

fn store(dir: &Path, path: &Path, prog: &[SockFilter], notify: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::with_capacity(16 + prog.len() * 8);
    out.extend_from_slice(MAGIC);
    out.push(u8::from(notify));
    for f in prog {
        out.extend_from_slice(&f.code.to_ne_bytes());
        out.push(f.jt);
        out.push(f.jf);
        out.extend_from_slice(&f.k.to_ne_bytes());
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&out)?;
    std::fs::rename(&tmp, path)
}

fn decode(bytes: &[u8]) -> Option<(Vec<SockFilter>, bool)> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (&notify, body) = rest.split_first()?;
    if body.is_empty() || body.len() % 8 != 0 || notify > 1 {
        return None;
    }
    let prog = body
        .chunks_exact(8)
        .map(|c| SockFilter { code: u16::from_ne_bytes([c[0], c[1]]), jt: c[2], jf: c[3], k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]) })
        .collect();
    Some((prog, notify == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn compiles_and_caches() {
        let s = spec(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#);
        let f = Filter::compile(&s).unwrap();
        assert!(!f.program().is_empty());
        let dir = std::env::temp_dir().join(format!("atoll-seccomp-test-{}", std::process::id()));
        let a = Filter::compile_cached(&s, &dir).unwrap();
        let b = Filter::compile_cached(&s, &dir).unwrap();
        assert_eq!(a.program(), b.program());
        assert_eq!(a.program(), f.program());
        // A corrupt entry is ignored and rewritten.
        for e in std::fs::read_dir(&dir).unwrap() {
            std::fs::write(e.unwrap().path(), b"junk").unwrap();
        }
        assert_eq!(Filter::compile_cached(&s, &dir).unwrap().program(), f.program());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        let e = Filter::compile(&spec(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#)).unwrap_err();
        assert!(e.to_string().contains("listenerPath"), "{e}");
        let e = serde_json::from_str::<LinuxSeccomp>(r#"{"defaultAction":"SCMP_ACT_FOO"}"#).unwrap_err();
        assert!(e.to_string().contains("SCMP_ACT_FOO"), "{e}");
    }
}

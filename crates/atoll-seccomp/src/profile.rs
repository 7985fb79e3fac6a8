//! OCI `linux.seccomp` → a checked plan of libseccomp rules (pure: no libseccomp context, no
//! syscalls), then the plan → an exported BPF program. Every refusal names its field.

use std::io::{Read, Seek};
use std::str::FromStr;

use atoll_sys::seccomp::{self as sys, SockFilter};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArg, LinuxSeccompFilterFlag as Flag, LinuxSeccompOperator as Op};

use crate::SeccompError;

/// The kernel clamps a larger SECCOMP_RET_ERRNO value to MAX_ERRNO (kernel/seccomp.c); refusing
/// it keeps the errno the container sees equal to the one the config names.
const MAX_ERRNO: u32 = 4095;

/// seccomp_data has six argument slots.
const MAX_ARGS: usize = 6;

/// Syscalls the runtime itself makes between installing the filter and handing the listener fd
/// out: notifying on them would block the container's init forever, with nobody to answer.
const NOTIFY_DEADLOCKS: &[&str] = &["sendmsg"];

/// A profile that passed every check that does not need libseccomp.
#[derive(Debug)]
pub(crate) struct Plan {
    default: ScmpAction,
    arches: Vec<(usize, ScmpArch)>,
    rules: Vec<Rule>,
    /// seccomp(2) flags, NEW_LISTENER included when `notify`.
    pub flags: u32,
    pub notify: bool,
}

#[derive(Debug)]
struct Rule {
    index: usize,
    action: ScmpAction,
    names: Vec<String>,
    /// Each inner Vec is one libseccomp rule (its conditions ANDed); several inner Vecs are ORed.
    cond_sets: Vec<Vec<ScmpArgCompare>>,
}

impl Plan {
    pub fn from_spec(spec: &LinuxSeccomp) -> Result<Plan, SeccompError> {
        let default = action(spec.default_action(), spec.default_errno_ret(), "defaultErrnoRet")?;
        if default == ScmpAction::Notify {
            // Every call the runtime makes after install, the fd hand-over included, would block.
            return Err(SeccompError::profile("defaultAction", "SCMP_ACT_NOTIFY cannot be the default action"));
        }
        let arches = spec
            .architectures()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let name = spec_name(a);
                ScmpArch::from_str(&name).map(|arch| (i, arch)).map_err(|_| SeccompError::profile(format!("architectures[{i}]"), format!("unknown {name:?}")))
            })
            .collect::<Result<_, _>>()?;
        let mut notify = false;
        let mut rules = Vec::new();
        for (i, sc) in spec.syscalls().as_deref().unwrap_or_default().iter().enumerate() {
            let act = action(sc.action(), sc.errno_ret(), &format!("syscalls[{i}].errnoRet"))?;
            if act == ScmpAction::Notify {
                notify = true;
                if let Some(n) = sc.names().iter().find(|n| NOTIFY_DEADLOCKS.contains(&n.as_str())) {
                    return Err(SeccompError::profile(format!("syscalls[{i}].action"), format!("SCMP_ACT_NOTIFY on {n:?} would block the runtime while it hands the listener fd out")));
                }
            }
            if act == default {
                continue; // libseccomp refuses a rule equal to the default action (EACCES); runc skips it too
            }
            let args = sc.args().as_deref().unwrap_or_default();
            let conds = args.iter().enumerate().map(|(j, a)| condition(a, &format!("syscalls[{i}].args[{j}]"))).collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule { index: i, action: act, names: sc.names().clone(), cond_sets: cond_sets(args, conds) });
        }
        let flags = flags(spec, notify)?;
        Ok(Plan { default, arches, rules, flags, notify })
    }

    /// Build the filter with libseccomp and export it as classic BPF.
    pub fn compile(&self) -> Result<Vec<SockFilter>, SeccompError> {
        let lib = |field: String, op: String| move |source| SeccompError::Libseccomp { field, op, source };
        let mut ctx = ScmpFilterContext::new(self.default).map_err(lib("defaultAction".into(), "seccomp_init".into()))?;
        // We never let libseccomp load the filter, but say it anyway: no_new_privs is the
        // runtime's decision (process.noNewPrivileges), not the filter's.
        ctx.set_ctl_nnp(false).map_err(lib("defaultAction".into(), "seccomp_attr_set(SCMP_FLTATR_CTL_NNP)".into()))?;
        for (i, arch) in &self.arches {
            ctx.add_arch(*arch).map_err(lib(format!("architectures[{i}]"), format!("seccomp_arch_add({arch:?})")))?;
        }
        for rule in &self.rules {
            for name in &rule.names {
                // A name this libseccomp does not know for the native arch is skipped, as runc does:
                // profiles list syscalls of newer kernels and other architectures.
                let Ok(nr) = ScmpSyscall::from_name(name) else { continue };
                for conds in &rule.cond_sets {
                    ctx.add_rule_conditional(rule.action, nr, conds)
                        .map_err(lib(format!("syscalls[{}]", rule.index), format!("seccomp_rule_add({name:?})")))?;
                }
            }
        }
        let prog = export(&ctx)?;
        if prog.len() > sys::BPF_MAXINSNS {
            return Err(SeccompError::profile("syscalls", format!("compiles to {} BPF instructions; the kernel accepts at most {}", prog.len(), sys::BPF_MAXINSNS)));
        }
        Ok(prog)
    }
}

/// An OCI enum value as config.json spells it ("SCMP_ARCH_X86_64").
fn spec_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// OCI action (+ errnoRet) → libseccomp action. The spec: errnoRet defaults to EPERM, and an
/// errnoRet on an action that takes none is an error.
fn action(act: Act, errno: Option<u32>, errno_field: &str) -> Result<ScmpAction, SeccompError> {
    let no_errno = |a: ScmpAction| match errno {
        None => Ok(a),
        Some(_) => Err(SeccompError::profile(errno_field, format!("{} takes no errno; only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do", spec_name(&act)))),
    };
    match act {
        Act::ScmpActKill | Act::ScmpActKillThread => no_errno(ScmpAction::KillThread),
        Act::ScmpActKillProcess => no_errno(ScmpAction::KillProcess),
        Act::ScmpActTrap => no_errno(ScmpAction::Trap),
        Act::ScmpActNotify => no_errno(ScmpAction::Notify),
        Act::ScmpActLog => no_errno(ScmpAction::Log),
        Act::ScmpActAllow => no_errno(ScmpAction::Allow),
        Act::ScmpActErrno => match errno.unwrap_or(libc::EPERM as u32) {
            e if e <= MAX_ERRNO => Ok(ScmpAction::Errno(e as i32)),
            e => Err(SeccompError::profile(errno_field, format!("{e} is above the kernel's largest errno ({MAX_ERRNO})"))),
        },
        Act::ScmpActTrace => match u16::try_from(errno.unwrap_or(libc::EPERM as u32)) {
            Ok(msg) => Ok(ScmpAction::Trace(msg)),
            Err(_) => Err(SeccompError::profile(errno_field, "SCMP_ACT_TRACE takes a 16-bit message")),
        },
    }
}

/// One OCI arg → one libseccomp comparison. For SCMP_CMP_MASKED_EQ `value` is the mask and
/// `valueTwo` the datum (seccomp_rule_add(3): SCMP_CMP_MASKED_EQ, mask, datum).
fn condition(a: &LinuxSeccompArg, at: &str) -> Result<ScmpArgCompare, SeccompError> {
    if a.index() >= MAX_ARGS {
        return Err(SeccompError::profile(format!("{at}.index"), format!("{} is out of range: a syscall has {MAX_ARGS} arguments (0-5)", a.index())));
    }
    let (op, datum) = match a.op() {
        Op::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        Op::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        Op::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        Op::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        Op::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        Op::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        Op::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(a.value()), a.value_two().unwrap_or(0)),
    };
    Ok(ScmpArgCompare::new(a.index() as u32, op, datum))
}

/// libseccomp cannot AND two comparisons on the same argument; profiles that list one argument
/// several times (Docker's `personality`, `clone`) mean "any of them", so, like runc, each
/// comparison then becomes a rule of its own.
fn cond_sets(args: &[LinuxSeccompArg], conds: Vec<ScmpArgCompare>) -> Vec<Vec<ScmpArgCompare>> {
    let mut seen = [false; MAX_ARGS];
    let repeated = args.iter().any(|a| std::mem::replace(&mut seen[a.index()], true));
    if repeated {
        conds.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conds]
    }
}

fn flags(spec: &LinuxSeccomp, notify: bool) -> Result<u32, SeccompError> {
    let mut flags = 0;
    for (i, f) in spec.flags().as_deref().unwrap_or_default().iter().enumerate() {
        flags |= match f {
            Flag::SeccompFilterFlagTsync => sys::SECCOMP_FILTER_FLAG_TSYNC,
            Flag::SeccompFilterFlagLog => sys::SECCOMP_FILTER_FLAG_LOG,
            Flag::SeccompFilterFlagSpecAllow => sys::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            Flag::SeccompFilterFlagWaitKillableRecv if notify => sys::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            Flag::SeccompFilterFlagWaitKillableRecv => {
                // The kernel refuses it without NEW_LISTENER (EINVAL); say why here instead.
                return Err(SeccompError::profile(format!("flags[{i}]"), "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs an SCMP_ACT_NOTIFY rule"));
            }
        };
    }
    if notify {
        if spec.listener_path().is_none() {
            return Err(SeccompError::profile("listenerPath", "SCMP_ACT_NOTIFY is used but no listenerPath is set"));
        }
        flags |= sys::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if flags & sys::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            // The kernel allows TSYNC with NEW_LISTENER only together with TSYNC_ESRCH (5.7+).
            flags |= sys::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    }
    Ok(flags)
}

/// seccomp_export_bpf writes to a fd (the in-memory variant needs libseccomp 2.6): a memfd.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<SockFilter>, SeccompError> {
    let io = |op| move |source| SeccompError::Export { op, source };
    let fd = rustix::fs::memfd_create("atoll-seccomp-bpf", rustix::fs::MemfdFlags::CLOEXEC).map_err(|e| io("memfd_create")(e.into()))?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&file).map_err(|source| SeccompError::Libseccomp { field: "syscalls".into(), op: "seccomp_export_bpf".into(), source })?;
    let mut bytes = Vec::new();
    file.rewind().map_err(io("rewind memfd"))?;
    file.read_to_end(&mut bytes).map_err(io("read memfd"))?;
    decode_program(&bytes).ok_or_else(|| io("decode")(std::io::Error::from_raw_os_error(libc::EINVAL)))
}

/// Native-endian `struct sock_filter`s, 8 bytes each, as the kernel and seccomp_export_bpf use.
pub(crate) fn decode_program(bytes: &[u8]) -> Option<Vec<SockFilter>> {
    if bytes.is_empty() || bytes.len() % 8 != 0 || bytes.len() / 8 > sys::BPF_MAXINSNS {
        return None;
    }
    let insn = |c: &[u8]| SockFilter { code: u16::from_ne_bytes([c[0], c[1]]), jt: c[2], jf: c[3], k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]) };
    Some(bytes.chunks_exact(8).map(insn).collect())
}

pub(crate) fn encode_program(prog: &[SockFilter], out: &mut Vec<u8>) {
    for f in prog {
        out.extend_from_slice(&f.code.to_ne_bytes());
        out.extend_from_slice(&[f.jt, f.jf]);
        out.extend_from_slice(&f.k.to_ne_bytes());
    }
}

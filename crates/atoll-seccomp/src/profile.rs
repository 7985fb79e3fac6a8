//! OCI `linux.seccomp` → a checked plan of libseccomp rules (pure: no libseccomp context, no
//! syscalls), then the plan → an exported BPF program. Every refusal names its field.

use std::io::{Read, Seek};
use std::str::FromStr;

use atoll_sys::seccomp::{self as sys, SockFilter};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArg, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Op,
};

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
    /// (index in `architectures`, the spec's name, libseccomp's value)
    arches: Vec<(usize, String, ScmpArch)>,
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

/// Part of the BPF cache key: changes whenever the way a profile is compiled changes.
pub const CODEGEN: &str = "tree-v1";

impl Plan {
    pub fn from_spec(spec: &LinuxSeccomp) -> Result<Plan, SeccompError> {
        let default = action(
            spec.default_action(),
            spec.default_errno_ret(),
            "defaultErrnoRet",
        )?;
        if default == ScmpAction::Notify {
            // Every call the runtime makes after install, the fd hand-over included, would block.
            return Err(SeccompError::profile(
                "defaultAction",
                "SCMP_ACT_NOTIFY cannot be the default action",
            ));
        }
        let arches = spec
            .architectures()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let name = spec_name(a);
                ScmpArch::from_str(&name)
                    .map(|arch| (i, name.clone(), arch))
                    .map_err(|_| {
                        SeccompError::profile(
                            format!("architectures[{i}]"),
                            format!("unknown {name:?}"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut notify = false;
        let mut rules = Vec::new();
        for (i, sc) in spec
            .syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let act = action(
                sc.action(),
                sc.errno_ret(),
                &format!("syscalls[{i}].errnoRet"),
            )?;
            if act == ScmpAction::Notify {
                notify = true;
                if let Some(n) = sc
                    .names()
                    .iter()
                    .find(|n| NOTIFY_DEADLOCKS.contains(&n.as_str()))
                {
                    return Err(SeccompError::profile(format!("syscalls[{i}].action"), format!("SCMP_ACT_NOTIFY on {n:?} would block the runtime while it hands the listener fd out")));
                }
            }
            if act == default {
                continue; // libseccomp refuses a rule equal to the default action (EACCES); runc skips it too
            }
            let args = sc.args().as_deref().unwrap_or_default();
            let conds = args
                .iter()
                .enumerate()
                .map(|(j, a)| condition(a, &format!("syscalls[{i}].args[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule {
                index: i,
                action: act,
                names: sc.names().clone(),
                cond_sets: cond_sets(args, conds),
            });
        }
        let flags = flags(spec, notify)?;
        Ok(Plan {
            default,
            arches,
            rules,
            flags,
            notify,
        })
    }

    /// Build the filter with libseccomp and export it as classic BPF.
    ///
    /// Rules are laid out as a binary tree of syscall numbers (SCMP_FLTATR_CTL_OPTIMIZE=2): an
    /// unlisted syscall passes O(log n) comparisons instead of one per rule, which keeps a
    /// profile with the guard's traps as fast as one without (bench/islands-guard.sh).
    pub fn compile(&self) -> Result<Vec<SockFilter>, SeccompError> {
        let lib = |field: String, op: String| {
            move |source| SeccompError::Libseccomp { field, op, source }
        };
        let mut ctx = ScmpFilterContext::new(self.default)
            .map_err(lib("defaultAction".into(), "seccomp_init".into()))?;
        // We never let libseccomp load the filter, but say it anyway: no_new_privs is the
        // runtime's decision (process.noNewPrivileges), not the filter's.
        ctx.set_ctl_nnp(false).map_err(lib(
            "defaultAction".into(),
            "seccomp_attr_set(SCMP_FLTATR_CTL_NNP)".into(),
        ))?;
        // libseccomp before 2.5 has no binary tree: keep its linear layout.
        let _ = ctx.set_ctl_optimize(2);
        for (i, name, arch) in &self.arches {
            // libseccomp older than the architecture (LoongArch before 2.5.5) fails here: EINVAL.
            ctx.add_arch(*arch).map_err(lib(
                format!("architectures[{i}]"),
                format!("seccomp_arch_add({name})"),
            ))?;
        }
        for rule in &self.rules {
            for name in &rule.names {
                // A name this libseccomp does not know for the native arch is skipped, as runc does:
                // profiles list syscalls of newer kernels and other architectures.
                let Ok(nr) = ScmpSyscall::from_name(name) else {
                    continue;
                };
                for conds in &rule.cond_sets {
                    let added = ctx.add_rule_conditional(rule.action, nr, conds);
                    added.map_err(|source| SeccompError::Libseccomp {
                        field: format!("syscalls[{}]", rule.index),
                        op: format!("seccomp_rule_add({name:?})"),
                        source,
                    })?;
                }
            }
        }
        let prog = export(&ctx)?;
        if prog.len() > sys::BPF_MAXINSNS {
            return Err(SeccompError::profile(
                "syscalls",
                format!(
                    "compiles to {} BPF instructions; the kernel accepts at most {}",
                    prog.len(),
                    sys::BPF_MAXINSNS
                ),
            ));
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
        Some(_) => Err(SeccompError::profile(
            errno_field,
            format!(
                "{} takes no errno; only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do",
                spec_name(&act)
            ),
        )),
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
            e => Err(SeccompError::profile(
                errno_field,
                format!("{e} is above the kernel's largest errno ({MAX_ERRNO})"),
            )),
        },
        Act::ScmpActTrace => match u16::try_from(errno.unwrap_or(libc::EPERM as u32)) {
            Ok(msg) => Ok(ScmpAction::Trace(msg)),
            Err(_) => Err(SeccompError::profile(
                errno_field,
                "SCMP_ACT_TRACE takes a 16-bit message",
            )),
        },
    }
}

/// One OCI arg → one libseccomp comparison. For SCMP_CMP_MASKED_EQ `value` is the mask and
/// `valueTwo` the datum (seccomp_rule_add(3): SCMP_CMP_MASKED_EQ, mask, datum).
fn condition(a: &LinuxSeccompArg, at: &str) -> Result<ScmpArgCompare, SeccompError> {
    if a.index() >= MAX_ARGS {
        return Err(SeccompError::profile(
            format!("{at}.index"),
            format!(
                "{} is out of range: a syscall has {MAX_ARGS} arguments (0-5)",
                a.index()
            ),
        ));
    }
    let (op, datum) = match a.op() {
        Op::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        Op::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        Op::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        Op::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        Op::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        Op::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        Op::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(a.value()),
            a.value_two().unwrap_or(0),
        ),
    };
    Ok(ScmpArgCompare::new(a.index() as u32, op, datum))
}

/// libseccomp cannot AND two comparisons on the same argument; profiles that list one argument
/// several times (Docker's `personality`, `clone`) mean "any of them", so, like runc, each
/// comparison then becomes a rule of its own.
fn cond_sets(args: &[LinuxSeccompArg], conds: Vec<ScmpArgCompare>) -> Vec<Vec<ScmpArgCompare>> {
    let mut seen = [false; MAX_ARGS];
    let repeated = args
        .iter()
        .any(|a| std::mem::replace(&mut seen[a.index()], true));
    if repeated {
        conds.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conds]
    }
}

fn flags(spec: &LinuxSeccomp, notify: bool) -> Result<u32, SeccompError> {
    let mut flags = 0;
    for (i, f) in spec
        .flags()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        flags |= match f {
            Flag::SeccompFilterFlagTsync => sys::SECCOMP_FILTER_FLAG_TSYNC,
            Flag::SeccompFilterFlagLog => sys::SECCOMP_FILTER_FLAG_LOG,
            Flag::SeccompFilterFlagSpecAllow => sys::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            Flag::SeccompFilterFlagWaitKillableRecv if notify => {
                sys::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
            Flag::SeccompFilterFlagWaitKillableRecv => {
                // The kernel refuses it without NEW_LISTENER (EINVAL); say why here instead.
                return Err(SeccompError::profile(
                    format!("flags[{i}]"),
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs an SCMP_ACT_NOTIFY rule",
                ));
            }
        };
    }
    if notify {
        if spec.listener_path().is_none() {
            return Err(SeccompError::profile(
                "listenerPath",
                "SCMP_ACT_NOTIFY is used but no listenerPath is set",
            ));
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
    let fd = rustix::fs::memfd_create("atoll-seccomp-bpf", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| io("memfd_create")(e.into()))?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&file)
        .map_err(|source| SeccompError::Libseccomp {
            field: "syscalls".into(),
            op: "seccomp_export_bpf".into(),
            source,
        })?;
    let mut bytes = Vec::new();
    file.rewind().map_err(io("rewind memfd"))?;
    file.read_to_end(&mut bytes).map_err(io("read memfd"))?;
    decode_program(&bytes)
        .ok_or_else(|| io("decode")(std::io::Error::from_raw_os_error(libc::EINVAL)))
}

/// Native-endian `struct sock_filter`s, 8 bytes each, as the kernel and seccomp_export_bpf use.
pub(crate) fn decode_program(bytes: &[u8]) -> Option<Vec<SockFilter>> {
    let chunks = bytes.chunks_exact(8);
    if bytes.is_empty() || !chunks.remainder().is_empty() || chunks.len() > sys::BPF_MAXINSNS {
        return None;
    }
    let insn = |c: &[u8]| SockFilter {
        code: u16::from_ne_bytes([c[0], c[1]]),
        jt: c[2],
        jf: c[3],
        k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
    };
    Some(chunks.map(insn).collect())
}

pub(crate) fn encode_program(prog: &[SockFilter], out: &mut Vec<u8>) {
    for f in prog {
        out.extend_from_slice(&f.code.to_ne_bytes());
        out.extend_from_slice(&[f.jt, f.jf]);
        out.extend_from_slice(&f.k.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{run_bpf, spec};
    use crate::Filter;

    fn err(json: &str) -> String {
        Filter::compile(&spec(json)).unwrap_err().to_string()
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":1}"#,
                "linux.seccomp.defaultErrnoRet: SCMP_ACT_ALLOW takes no errno",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"},{"names":["rmdir"],"action":"SCMP_ACT_KILL","errnoRet":1}]}"#,
                "linux.seccomp.syscalls[1].errnoRet: SCMP_ACT_KILL takes no errno",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":5000}]}"#,
                "linux.seccomp.syscalls[0].errnoRet: 5000 is above",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_TRACE","errnoRet":70000}]}"#,
                "linux.seccomp.syscalls[0].errnoRet: SCMP_ACT_TRACE takes a 16-bit",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":0,"op":"SCMP_CMP_EQ"},{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
                "linux.seccomp.syscalls[0].args[1].index: 6 is out of range",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "linux.seccomp.listenerPath: SCMP_ACT_NOTIFY is used but no listenerPath",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/x"}"#,
                "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/x","syscalls":[{"names":["mkdir","sendmsg"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY on \"sendmsg\"",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
                "linux.seccomp.flags[1]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs",
            ),
        ];
        for (json, want) in cases {
            let got = err(json);
            assert!(
                got.starts_with(want),
                "{json}\n  got:  {got}\n  want: {want}…"
            );
        }
    }

    #[test]
    fn unknown_strings_are_refused_when_the_config_is_parsed() {
        for (json, word) in [
            (r#"{"defaultAction":"SCMP_ACT_FOO"}"#, "SCMP_ACT_FOO"),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}"#,
                "SCMP_ARCH_VAX",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NOPE"]}"#,
                "SECCOMP_FILTER_FLAG_NOPE",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}"#,
                "SCMP_CMP_XX",
            ),
        ] {
            let e = serde_json::from_str::<LinuxSeccomp>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(word), "{e}");
        }
    }

    #[test]
    fn flags_follow_the_profile() {
        let f = |json| Filter::compile(&spec(json)).unwrap().flags();
        assert_eq!(f(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#), 0);
        assert_eq!(
            f(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#
            ),
            sys::SECCOMP_FILTER_FLAG_TSYNC
                | sys::SECCOMP_FILTER_FLAG_LOG
                | sys::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        let notify = Filter::compile(&spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock","listenerMetadata":"m","flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],"syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        ))
        .unwrap();
        assert!(notify.uses_notify());
        assert_eq!(
            notify.listener_path(),
            Some(std::path::Path::new("/run/agent.sock"))
        );
        assert_eq!(notify.listener_metadata(), Some("m"));
        assert_eq!(
            notify.flags(),
            sys::SECCOMP_FILTER_FLAG_TSYNC
                | sys::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
                | sys::SECCOMP_FILTER_FLAG_NEW_LISTENER
                | sys::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        );
    }

    #[cfg(target_arch = "x86_64")]
    mod program {
        use super::*;

        const X86_64: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
        const I386: u32 = 0x4000_0003; // AUDIT_ARCH_I386
        const ALLOW: u32 = 0x7fff_0000;
        const ERRNO: u32 = 0x0005_0000;
        const NO_ARGS: [u64; 6] = [0; 6];

        fn prog(json: &str) -> Vec<SockFilter> {
            Filter::compile(&spec(json)).unwrap().program().to_vec()
        }

        #[test]
        fn a_small_profile_does_what_it_says() {
            let p = prog(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                    {"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":1234},
                    {"names":["rmdir"],"action":"SCMP_ACT_ERRNO"},
                    {"names":["getppid","no_such_syscall_in_any_kernel"],"action":"SCMP_ACT_KILL_PROCESS"},
                    {"names":["getpgrp"],"action":"SCMP_ACT_TRAP"},
                    {"names":["getpid"],"action":"SCMP_ACT_TRACE","errnoRet":7},
                    {"names":["getuid"],"action":"SCMP_ACT_LOG"},
                    {"names":["getgid"],"action":"SCMP_ACT_ALLOW"}]}"#,
            );
            let run = |nr: libc::c_long| run_bpf(&p, X86_64, nr as i32, NO_ARGS);
            assert_eq!(run(libc::SYS_getcwd), ERRNO | 1234);
            assert_eq!(
                run(libc::SYS_rmdir),
                ERRNO | libc::EPERM as u32,
                "errnoRet defaults to EPERM"
            );
            assert_eq!(run(libc::SYS_getppid), 0x8000_0000);
            assert_eq!(run(libc::SYS_getpgrp), 0x0003_0000);
            assert_eq!(run(libc::SYS_getpid), 0x7ff0_0007);
            assert_eq!(run(libc::SYS_getuid), 0x7ffc_0000);
            assert_eq!(run(libc::SYS_getgid), ALLOW);
            assert_eq!(run(libc::SYS_mkdir), ALLOW);
            // A foreign architecture is not the default action: libseccomp kills it.
            assert_eq!(run_bpf(&p, I386, 183, NO_ARGS) & 0x7fff_0000, 0);
        }

        #[test]
        fn default_errno_and_extra_architectures() {
            let p = prog(
                r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                    "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ALLOW"},{"names":["rmdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
            );
            assert_eq!(run_bpf(&p, X86_64, libc::SYS_getcwd as i32, NO_ARGS), ALLOW);
            assert_eq!(
                run_bpf(&p, X86_64, libc::SYS_mkdir as i32, NO_ARGS),
                ERRNO | 38
            );
            assert_eq!(
                run_bpf(&p, I386, 183, NO_ARGS),
                ALLOW,
                "getcwd is 183 on i386"
            );
            assert_eq!(
                run_bpf(&p, I386, 39, NO_ARGS),
                ERRNO | 38,
                "mkdir is 39 on i386"
            );
        }

        #[test]
        fn argument_comparisons() {
            let p = prog(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                    {"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1,"args":[{"index":2,"value":448,"op":"SCMP_CMP_EQ"}]},
                    {"names":["socket"],"action":"SCMP_ACT_ERRNO","errnoRet":2,"args":[{"index":0,"value":40,"op":"SCMP_CMP_EQ"},{"index":1,"value":2,"op":"SCMP_CMP_NE"}]},
                    {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":3,"args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"},{"index":0,"value":131072,"op":"SCMP_CMP_EQ"}]},
                    {"names":["clone"],"action":"SCMP_ACT_ERRNO","errnoRet":4,"args":[{"index":0,"value":2080505856,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
                    {"names":["setns"],"action":"SCMP_ACT_ERRNO","errnoRet":5,"args":[{"index":1,"value":4294967296,"op":"SCMP_CMP_GE"}]},
                    {"names":["kill"],"action":"SCMP_ACT_ERRNO","errnoRet":6,"args":[{"index":1,"value":9,"op":"SCMP_CMP_LT"}]},
                    {"names":["tkill"],"action":"SCMP_ACT_ERRNO","errnoRet":7,"args":[{"index":1,"value":9,"op":"SCMP_CMP_LE"}]},
                    {"names":["tgkill"],"action":"SCMP_ACT_ERRNO","errnoRet":8,"args":[{"index":2,"value":9,"op":"SCMP_CMP_GT"}]}]}"#,
            );
            let run = |nr: libc::c_long, args: [u64; 6]| run_bpf(&p, X86_64, nr as i32, args);
            assert_eq!(run(libc::SYS_mkdirat, [0, 0, 0o700, 0, 0, 0]), ERRNO | 1);
            assert_eq!(run(libc::SYS_mkdirat, [0, 0, 0o755, 0, 0, 0]), ALLOW);
            // Two different arguments: both must hold.
            assert_eq!(run(libc::SYS_socket, [40, 1, 0, 0, 0, 0]), ERRNO | 2);
            assert_eq!(run(libc::SYS_socket, [40, 2, 0, 0, 0, 0]), ALLOW);
            assert_eq!(run(libc::SYS_socket, [2, 1, 0, 0, 0, 0]), ALLOW);
            // The same argument twice: either may hold (runc's rule).
            assert_eq!(run(libc::SYS_personality, [8, 0, 0, 0, 0, 0]), ERRNO | 3);
            assert_eq!(
                run(libc::SYS_personality, [0x20000, 0, 0, 0, 0, 0]),
                ERRNO | 3
            );
            assert_eq!(run(libc::SYS_personality, [0, 0, 0, 0, 0, 0]), ALLOW);
            // MASKED_EQ: value is the mask, valueTwo the datum: no namespace flag set.
            assert_eq!(run(libc::SYS_clone, [0x11, 0, 0, 0, 0, 0]), ERRNO | 4);
            assert_eq!(
                run(libc::SYS_clone, [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]),
                ALLOW
            );
            // 64-bit comparisons look at the high word too.
            assert_eq!(run(libc::SYS_setns, [0, 1 << 32, 0, 0, 0, 0]), ERRNO | 5);
            assert_eq!(run(libc::SYS_setns, [0, 0xffff_ffff, 0, 0, 0, 0]), ALLOW);
            assert_eq!(run(libc::SYS_kill, [0, 8, 0, 0, 0, 0]), ERRNO | 6);
            assert_eq!(run(libc::SYS_kill, [0, 9, 0, 0, 0, 0]), ALLOW);
            assert_eq!(run(libc::SYS_tkill, [0, 9, 0, 0, 0, 0]), ERRNO | 7);
            assert_eq!(run(libc::SYS_tkill, [0, 10, 0, 0, 0, 0]), ALLOW);
            assert_eq!(run(libc::SYS_tgkill, [0, 0, 10, 0, 0, 0]), ERRNO | 8);
            assert_eq!(run(libc::SYS_tgkill, [0, 0, 9, 0, 0, 0]), ALLOW);
        }

        #[test]
        fn notify_and_rules_equal_to_the_default() {
            let p = prog(
                r#"{"defaultAction":"SCMP_ACT_ERRNO","listenerPath":"/x","syscalls":[
                    {"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"},
                    {"names":["rmdir"],"action":"SCMP_ACT_ERRNO"},
                    {"names":["getcwd"],"action":"SCMP_ACT_ALLOW"}]}"#,
            );
            assert_eq!(
                run_bpf(&p, X86_64, libc::SYS_mkdir as i32, NO_ARGS),
                0x7fc0_0000
            );
            assert_eq!(
                run_bpf(&p, X86_64, libc::SYS_rmdir as i32, NO_ARGS),
                ERRNO | libc::EPERM as u32
            );
            assert_eq!(run_bpf(&p, X86_64, libc::SYS_getcwd as i32, NO_ARGS), ALLOW);
        }

        #[test]
        fn program_bytes_round_trip() {
            let p = prog(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
            );
            let mut bytes = Vec::new();
            encode_program(&p, &mut bytes);
            assert_eq!(decode_program(&bytes).unwrap(), p);
            assert!(decode_program(&bytes[1..]).is_none());
            assert!(decode_program(&[]).is_none());
        }
    }
}

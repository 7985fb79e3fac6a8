//! process.scheduler: the policy and its parameters, set with sched_setattr(2) by the process
//! itself before execve (init and exec alike), while it still holds CAP_SYS_NICE. Atoll checks
//! only what cannot be passed to the kernel at all; the rest the kernel accepts or refuses, and
//! a refusal names the field and the values.

use atoll_sys::process::{sched_setattr, SchedAttr};
use oci_spec::runtime::{LinuxSchedulerFlag as Flag, LinuxSchedulerPolicy as Policy, Scheduler};

use crate::error::{field, Result, RuntimeError};

/// The kernel's numbers for the policies (include/uapi/linux/sched.h). SCHED_ISO is reserved
/// there and not implemented: the kernel answers EINVAL, which is the error the config gets.
fn policy_number(p: Policy) -> u32 {
    match p {
        Policy::SchedOther => 0,
        Policy::SchedFifo => 1,
        Policy::SchedRr => 2,
        Policy::SchedBatch => 3,
        Policy::SchedIso => 4,
        Policy::SchedIdle => 5,
        Policy::SchedDeadline => 6,
    }
}

/// The SCHED_FLAG_* bit of a flag (include/uapi/linux/sched.h).
fn flag_bit(f: Flag) -> u64 {
    let bit = match f {
        Flag::SchedResetOnFork => libc::SCHED_FLAG_RESET_ON_FORK,
        Flag::SchedFlagReclaim => libc::SCHED_FLAG_RECLAIM,
        Flag::SchedFlagDLOverrun => libc::SCHED_FLAG_DL_OVERRUN,
        Flag::SchedFlagKeepPolicy => libc::SCHED_FLAG_KEEP_POLICY,
        Flag::SchedFlagKeepParams => libc::SCHED_FLAG_KEEP_PARAMS,
        Flag::SchedFlagUtilClampMin => libc::SCHED_FLAG_UTIL_CLAMP_MIN,
        Flag::SchedFlagUtilClampMax => libc::SCHED_FLAG_UTIL_CLAMP_MAX,
    };
    bit as u64
}

/// The sched_attr for `s`. A negative priority has no sched_attr form (the field is unsigned).
pub fn attr(s: &Scheduler) -> Result<SchedAttr> {
    let priority = s.priority().unwrap_or(0);
    let priority = u32::try_from(priority).map_err(|_| {
        field(
            "process.scheduler.priority",
            format!("{priority} is negative"),
        )
    })?;
    Ok(SchedAttr {
        policy: policy_number(*s.policy()),
        flags: s.flags().iter().flatten().fold(0, |a, f| a | flag_bit(*f)),
        nice: s.nice().unwrap_or(0),
        priority,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..SchedAttr::default()
    })
}

/// Apply process.scheduler to the calling thread, which becomes the container's process.
pub fn apply(s: Option<&Scheduler>) -> Result<()> {
    let Some(s) = s else { return Ok(()) };
    let a = attr(s)?;
    sched_setattr(&a).map_err(|source| RuntimeError::FieldSys {
        field: "process.scheduler".into(),
        op: format!(
            "sched_setattr(policy {} ({}), nice {}, priority {}, flags {:#x}, runtime {}, \
             deadline {}, period {})",
            s.policy(),
            a.policy,
            a.nice,
            a.priority,
            a.flags,
            a.runtime,
            a.deadline,
            a.period
        ),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(json: &str) -> Scheduler {
        let spec = crate::spec::parse_process(
            format!(r#"{{"cwd":"/","user":{{"uid":0,"gid":0}},"scheduler":{json}}}"#).as_bytes(),
        )
        .unwrap();
        spec.scheduler().clone().unwrap()
    }

    #[test]
    fn spec_flag_names_become_the_kernels_bits() {
        let s = sched(
            r#"{"policy":"SCHED_DEADLINE","runtime":10,"deadline":20,"period":30,
               "flags":["SCHED_FLAG_RESET_ON_FORK","SCHED_FLAG_RECLAIM","SCHED_FLAG_DL_OVERRUN",
                        "SCHED_FLAG_KEEP_POLICY","SCHED_FLAG_KEEP_PARAMS",
                        "SCHED_FLAG_UTIL_CLAMP_MIN","SCHED_FLAG_UTIL_CLAMP_MAX"]}"#,
        );
        let a = attr(&s).unwrap();
        assert_eq!(a.policy, 6);
        assert_eq!(a.flags, 0x7f);
        assert_eq!((a.runtime, a.deadline, a.period), (10, 20, 30));
    }

    #[test]
    fn negative_priority_is_named() {
        let s = sched(r#"{"policy":"SCHED_FIFO","priority":-1}"#);
        let e = attr(&s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: process.scheduler.priority: -1 is negative"
        );
    }
}

//! Linux security modules: the AppArmor profile and SELinux labels a config asks for. They are
//! checked at create against what this host has enabled (a label the host cannot apply refuses
//! the container before anything is made), then applied: the exec label is written to procfs by
//! the process itself just before it drops its privileges, and takes effect at its execve; the
//! mount label becomes a `context=` option of the mounts that take one.

use std::io::Write;

use oci_spec::runtime::{Mount, Process, Spec};
use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle};

use crate::error::{Result, RuntimeError};

/// `/sys/module/apparmor/parameters/enabled` reads "Y" when AppArmor is active: a kernel built
/// with it but booted without it (another major LSM, or `apparmor=0`) reads "N".
const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
/// selinuxfs is mounted here exactly when SELinux is enabled (it is how userspace talks to it).
const SELINUXFS: &str = "/sys/fs/selinux";
/// statfs(2) f_type of selinuxfs (linux/magic.h SELINUX_MAGIC).
const SELINUX_MAGIC: u64 = 0xf97c_ff8c;

pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string(APPARMOR_ENABLED).is_ok_and(|s| s.trim_start().starts_with('Y'))
}

pub fn selinux_enabled() -> bool {
    rustix::fs::statfs(SELINUXFS).is_ok_and(|s| s.f_type as u64 == SELINUX_MAGIC)
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// A label goes into one procfs write or one mount option: a NUL would cut it short and a
/// newline would let it say more than the config shows.
fn check_text(what: &str, v: &str) -> Result<()> {
    if v.contains(['\0', '\n']) {
        return Err(refused(what, format!("{v:?} contains a NUL or a newline")));
    }
    Ok(())
}

fn refused(what: &str, msg: String) -> RuntimeError {
    RuntimeError::Lsm {
        what: what.to_string(),
        msg,
    }
}

/// Refuse an AppArmor profile when AppArmor is not enabled. `what` names where it came from.
pub fn require_apparmor(what: &str, profile: &str) -> Result<()> {
    check_text(what, profile)?;
    if apparmor_enabled() {
        return Ok(());
    }
    Err(refused(
        what,
        format!(
            "profile {profile:?} cannot be applied: AppArmor is not enabled on this host \
             ({APPARMOR_ENABLED} is not \"Y\")"
        ),
    ))
}

/// Refuse an SELinux label when SELinux is not enabled. `what` names where it came from.
pub fn require_selinux(what: &str, label: &str) -> Result<()> {
    check_text(what, label)?;
    if selinux_enabled() {
        return Ok(());
    }
    Err(refused(
        what,
        format!(
            "label {label:?} cannot be applied: SELinux is not enabled on this host \
             (no selinuxfs at {SELINUXFS})"
        ),
    ))
}

/// Refuse a process whose AppArmor profile or SELinux label this host cannot apply. `at` names
/// the process object in the error ("config.json: process").
pub fn check_process(process: &Process, at: &str) -> Result<()> {
    if let Some(p) = nonempty(process.apparmor_profile()) {
        require_apparmor(&format!("{at}.apparmorProfile"), p)?;
    }
    if let Some(l) = nonempty(process.selinux_label()) {
        require_selinux(&format!("{at}.selinuxLabel"), l)?;
    }
    Ok(())
}

/// The create-time check: the process's labels and `linux.mountLabel`.
pub fn check(spec: &Spec) -> Result<()> {
    if let Some(p) = spec.process() {
        check_process(p, "config.json: process")?;
    }
    if let Some(l) = spec
        .linux()
        .as_ref()
        .and_then(|l| nonempty(l.mount_label()))
    {
        require_selinux("config.json: linux.mountLabel", l)?;
    }
    Ok(())
}

/// An exec'd process runs under the container's profile and label unless it names its own: a
/// process started by `exec` must not leave the confinement its container was created with.
pub fn inherit(process: &mut Process, container: Option<&Process>) {
    let Some(c) = container else { return };
    if nonempty(process.apparmor_profile()).is_none() {
        process.set_apparmor_profile(c.apparmor_profile().clone());
    }
    if nonempty(process.selinux_label()).is_none() {
        process.set_selinux_label(c.selinux_label().clone());
    }
}

/// Whether a mount of this type takes `linux.mountLabel` as `context=`: every filesystem but a
/// bind (it keeps its source's labels), and proc, sysfs, mqueue and cgroup, whose labels the
/// policy fixes (runc's rule).
fn takes_mount_label(m: &Mount) -> bool {
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = m.options().as_deref().unwrap_or(&[]);
    let bind = typ == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
    let has_context = opts.iter().any(|o| o.starts_with("context="));
    !bind && !has_context && !matches!(typ, "" | "proc" | "sysfs" | "mqueue" | "cgroup" | "cgroup2")
}

/// Add `context=<linux.mountLabel>` to the mounts that take it, so the init mounts them with the
/// label (fsconfig passes it to SELinux as one string: no quoting). Called once at load, after
/// [`check`] has made sure SELinux is there to read it.
pub fn label_mounts(spec: &mut Spec) {
    let Some(label) = spec
        .linux()
        .as_ref()
        .and_then(|l| nonempty(l.mount_label()))
        .map(str::to_string)
    else {
        return;
    };
    let Some(mounts) = spec.mounts().clone() else {
        return;
    };
    let mounts = mounts
        .into_iter()
        .map(|mut m| {
            if takes_mount_label(&m) {
                let mut o = m.options().clone().unwrap_or_default();
                o.push(format!("context={label}"));
                m.set_options(Some(o));
            }
            m
        })
        .collect();
    spec.set_mounts(Some(mounts));
}

/// Write the process's exec label: AppArmor's `exec <profile>` (attr/apparmor/exec, or the
/// shared attr/exec on kernels before 5.8 that lack the AppArmor directory), SELinux's label
/// to attr/exec. Both take effect at this thread's next execve (proc(5), /proc/pid/attr/exec).
/// Called by the process itself after the pivot and before capabilities, uid and seccomp
/// change: the write is its own (the kernel refuses a write to another task's attr), and a
/// seccomp profile need not allow it.
pub fn set_exec_label(process: &Process) -> Result<()> {
    let profile = nonempty(process.apparmor_profile());
    let label = nonempty(process.selinux_label());
    if profile.is_none() && label.is_none() {
        return Ok(());
    }
    let proc =
        ProcfsHandle::new().map_err(crate::error::pathrs("open a private procfs for the LSM"))?;
    if let Some(p) = profile {
        let f = "process.apparmorProfile";
        let value = format!("exec {p}");
        match write_attr(&proc, "attr/apparmor/exec", &value) {
            Err(Attr::Missing) => write_attr(&proc, "attr/exec", &value),
            r => r,
        }
        .map_err(|e| e.named(f, &value))?;
    }
    if let Some(l) = label {
        write_attr(&proc, "attr/exec", l).map_err(|e| e.named("process.selinuxLabel", l))?;
    }
    Ok(())
}

enum Attr {
    /// The file does not exist: this kernel has no such attr.
    Missing,
    /// What failed, with the path and the cause.
    Failed(String),
}

impl Attr {
    fn named(self, f: &str, value: &str) -> RuntimeError {
        match self {
            Attr::Missing => refused(
                f,
                format!("cannot write {value:?}: no /proc/thread-self/attr/exec on this kernel"),
            ),
            Attr::Failed(e) => refused(f, format!("cannot write {value:?}: {e}")),
        }
    }
}

fn write_attr(proc: &ProcfsHandle, sub: &str, value: &str) -> std::result::Result<(), Attr> {
    let path = format!("/proc/thread-self/{sub}");
    let mut file = proc
        .open(ProcfsBase::ProcThreadSelf, sub, OpenFlags::O_WRONLY)
        .map_err(|e| match e.kind() {
            pathrs::error::ErrorKind::OsError(Some(libc::ENOENT)) => Attr::Missing,
            _ => Attr::Failed(format!("open {path}: {e}")),
        })?;
    // One write(2): the kernel parses each write to an attr file as a whole.
    match file.write(value.as_bytes()) {
        Ok(n) if n == value.len() => Ok(()),
        Ok(n) => Err(Attr::Failed(format!(
            "write {path}: short write ({n} of {} bytes)",
            value.len()
        ))),
        Err(e) => Err(Attr::Failed(format!("write {path}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn mount_label_goes_on_tmpfs_not_on_proc_or_binds() {
        let mut s = spec(
            r#"{"ociVersion":"1.2.0","linux":{"mountLabel":"system_u:object_r:x_t:s0:c1,c2"},
                "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                          {"destination":"/tmp","type":"tmpfs","source":"tmpfs","options":["nosuid"]},
                          {"destination":"/d","type":"bind","source":"/x","options":["rbind"]},
                          {"destination":"/e","source":"/x","options":["bind"]},
                          {"destination":"/f","type":"tmpfs","options":["context=mine"]}]}"#,
        );
        label_mounts(&mut s);
        let opts: Vec<Vec<String>> = s
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.options().clone().unwrap_or_default())
            .collect();
        assert_eq!(opts[0], Vec::<String>::new());
        assert_eq!(
            opts[1],
            ["nosuid", "context=system_u:object_r:x_t:s0:c1,c2"]
        );
        assert_eq!(opts[2], ["rbind"]);
        assert_eq!(opts[3], ["bind"]);
        assert_eq!(opts[4], ["context=mine"]);
    }

    #[test]
    fn labels_with_a_newline_are_refused() {
        let s = spec(
            r#"{"ociVersion":"1.2.0","process":{"cwd":"/","user":{"uid":0,"gid":0},"apparmorProfile":"a\nb"}}"#,
        );
        let e = check(&s).unwrap_err().to_string();
        assert!(e.contains("process.apparmorProfile"), "{e}");
    }

    #[test]
    fn exec_inherits_the_container_labels() {
        let c: Process = serde_json::from_str(
            r#"{"cwd":"/","user":{"uid":0,"gid":0},"apparmorProfile":"ctr","selinuxLabel":"l"}"#,
        )
        .unwrap();
        let mut p: Process =
            serde_json::from_str(r#"{"cwd":"/","user":{"uid":0,"gid":0},"apparmorProfile":"own"}"#)
                .unwrap();
        inherit(&mut p, Some(&c));
        assert_eq!(p.apparmor_profile().as_deref(), Some("own"));
        assert_eq!(p.selinux_label().as_deref(), Some("l"));
    }
}

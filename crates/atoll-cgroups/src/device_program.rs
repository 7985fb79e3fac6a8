//! cgroup v2 device access: load the program built by `devices::program` and attach it to the
//! cgroup, replacing the programs attached before (attach first, so no moment goes unfiltered).

use std::os::fd::AsFd;
use std::path::Path;

use atoll_sys::bpf::{self, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI};
use rustix::fs::{Mode, OFlags};

use crate::devices::{self, DeviceRule};
use crate::error::{CgroupError, Errno};

pub(crate) fn install(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let insns: Vec<u64> = devices::program(rules)
        .into_iter()
        .map(|i| i.encode())
        .collect();
    let err = |op, detail: String| CgroupError::Bpf {
        op,
        path: dir.to_path_buf(),
        detail,
    };
    let prog = bpf::bpf_prog_load_cgroup_device(&insns, c"Apache-2.0", "atoll_devices")
        .map_err(|e| err("BPF_PROG_LOAD", e.to_string()))?;
    let cgroup = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CgroupError::Open {
        path: dir.to_path_buf(),
        errno: Errno(e.raw_os_error()),
    })?;
    let old = bpf::bpf_prog_query(cgroup.as_fd(), BPF_CGROUP_DEVICE)
        .map_err(|e| err("BPF_PROG_QUERY", errno_text(&e)))?;
    bpf::bpf_prog_attach(
        cgroup.as_fd(),
        prog.as_fd(),
        BPF_CGROUP_DEVICE,
        BPF_F_ALLOW_MULTI,
    )
    .map_err(|e| err("BPF_PROG_ATTACH", errno_text(&e)))?;
    // The new program is in place; a failure to remove an old one leaves the container more
    // restricted (every attached program must allow), never less, but is still reported.
    let mut errors = Vec::new();
    for id in old {
        let detached = bpf::bpf_prog_get_fd_by_id(id)
            .and_then(|old| bpf::bpf_prog_detach(cgroup.as_fd(), old.as_fd(), BPF_CGROUP_DEVICE));
        if let Err(e) = detached {
            errors.push(err(
                "BPF_PROG_DETACH",
                format!("program id {id}: {}", errno_text(&e)),
            ));
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CgroupError::Many(errors)),
    }
}

fn errno_text(e: &std::io::Error) -> String {
    Errno::of(e).to_string()
}

#[cfg(test)]
mod tests {
    //! Root test on the host's real cgroup2 hierarchy (the unified one on hybrid hosts, which
    //! needs no controllers for device programs).
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};

    use super::*;
    use crate::devices::{DeviceKind, ACC_MKNOD, ACC_READ, ACC_WRITE};

    fn allow_char(major: u32, minor: u32) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind: DeviceKind::Char,
            major: Some(major),
            minor: Some(minor),
            access: ACC_READ | ACC_WRITE | ACC_MKNOD,
        }
    }

    /// Runs a shell that joins `dir`, then reports whether it may open /dev/zero and /dev/null.
    fn probe(dir: &Path) -> String {
        let script = "read x
            if head -c1 /dev/zero | wc -c | grep -q 1; then echo zero-ok; else echo zero-denied; fi
            if (: < /dev/null); then echo null-ok; else echo null-denied; fi";
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Opened here, before joining: the shell's complaints about denied opens go nowhere.
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let joined = crate::fs::write(&dir.join("cgroup.procs"), &child.id().to_string());
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut out = String::new();
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        while reader.read_line(&mut out).unwrap() > 0 {}
        child.wait().unwrap();
        joined.unwrap();
        out.replace('\n', " ").trim().to_string()
    }

    struct RemoveDir(std::path::PathBuf);

    impl Drop for RemoveDir {
        fn drop(&mut self) {
            if let Err(e) = crate::cgroup::rmdir_retrying(&self.0) {
                eprintln!("cleanup: {e}");
            }
        }
    }

    #[test]
    fn program_denies_devices_outside_the_rules() {
        let v2 = crate::layout::layout()
            .ok()
            .and_then(|l| l.mounts.iter().find(|m| m.v2).cloned());
        let missing = atoll_testkit::gate::missing_root().or_else(|| {
            v2.is_none()
                .then(|| "no cgroup2 hierarchy mounted".to_string())
        });
        if !atoll_testkit::gate::gate("program_denies_devices_outside_the_rules", missing) {
            return;
        }
        let dir = v2
            .expect("gate checked it")
            .mount_point
            .join(format!("atoll-test-bpf-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let _cleanup = RemoveDir(dir.clone());

        install(&dir, &[allow_char(1, 5)]).unwrap();
        assert_eq!(probe(&dir), "zero-ok null-denied");

        // Replacing: the new program allows /dev/null too, and the old one is gone.
        install(&dir, &[allow_char(1, 5), allow_char(1, 3)]).unwrap();
        let fd = rustix::fs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert_eq!(
            bpf::bpf_prog_query(fd.as_fd(), BPF_CGROUP_DEVICE)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(probe(&dir), "zero-ok null-ok");

        // Last rule wins: a later deny of /dev/zero overrides the earlier allow.
        let mut deny_zero = allow_char(1, 5);
        deny_zero.allow = false;
        install(&dir, &[allow_char(1, 5), allow_char(1, 3), deny_zero]).unwrap();
        assert_eq!(probe(&dir), "zero-denied null-ok");
    }
}

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

//! The create and exec paths under conditions the caller imposes: a seccomp profile that answers
//! clone3 with ENOSYS (Docker's default profile, atoll's own islands), and init failures that
//! must reach the user whatever their timing.

mod common;
use common::*;

use atoll_sys::seccomp::{seccomp_set_mode_filter, SockFilter};

/// A filter that fails clone3 with ENOSYS and allows everything else, as Docker's default profile
/// does. clone3 has the same number (435) on every architecture (the unified syscall table
/// since Linux 5.3), so the filter needs no arch check.
fn clone3_enosys_filter() -> Vec<SockFilter> {
    let stmt = |code: u32, k: u32| SockFilter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    vec![
        // A = seccomp_data.nr
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        SockFilter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_clone3 as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Run `f` on a thread of its own under the clone3-ENOSYS filter: a seccomp filter installed
/// without TSYNC binds only the calling thread, and every process it starts inherits it
/// (seccomp(2)), so atoll runs under it while this test process stays unfiltered. As root the
/// filter needs no no_new_privs (CAP_SYS_ADMIN suffices), which would change what atoll may do.
fn under_clone3_enosys<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        seccomp_set_mode_filter(0, &clone3_enosys_filter()).expect("install the test filter");
        f()
    })
    .join()
    .expect("filtered thread")
}

/// The cgroup2 path (the "0::" line of /proc/PID/cgroup) of `pid`, if the host has cgroup2.
fn cgroup2_of(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

#[test]
fn run_and_exec_work_where_clone3_is_answered_enosys() {
    if !can_run() {
        return;
    }

    let mut b = Bundle::new("clone3enosys");
    b.set_args(&["sh", "-c", "echo ran; exit 3"]);
    let (code, out, err) = {
        let mut cmd = b.atoll();
        let id = b.id("fg");
        cmd.args(["run", "--bundle"]).arg(&b.dir).arg(&id);
        under_clone3_enosys(move || decode(cmd.output().unwrap()))
    };
    assert_eq!(code, 3, "run under clone3=ENOSYS: {err}");
    assert_eq!(out.trim(), "ran");

    // Detached, then exec: both land in the container's cgroup even though CLONE_INTO_CGROUP
    // (clone3 only) was unavailable.
    b.set_args(&["sleep", "1000"]);
    let id = b.id("bg");
    let pidfile = b.dir.join("exec.pid");
    let (code, err) = {
        let mut cmd = b.atoll();
        let errfile = b.dir.join("run-d.err");
        cmd.args(["run", "-d", "--bundle"])
            .arg(&b.dir)
            .arg(&id)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&errfile).unwrap());
        let st = under_clone3_enosys(move || cmd.status().unwrap());
        (
            st.code().unwrap_or(-1),
            std::fs::read_to_string(&errfile).unwrap_or_default(),
        )
    };
    assert_eq!(code, 0, "run -d under clone3=ENOSYS: {err}");
    let (code, out, err) = {
        let mut cmd = b.atoll();
        cmd.args(["exec", &id, "sh", "-c", "echo in; exit 4"]);
        under_clone3_enosys(move || decode(cmd.output().unwrap()))
    };
    assert_eq!(code, 4, "exec under clone3=ENOSYS: {err}");
    assert_eq!(out.trim(), "in");
    let (code, err) = {
        let mut cmd = b.atoll();
        let errfile = b.dir.join("exec-d.err");
        cmd.args(["exec", "-d", "--pid-file"])
            .arg(&pidfile)
            .args([&id, "sleep", "1000"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&errfile).unwrap());
        let st = under_clone3_enosys(move || cmd.status().unwrap());
        (
            st.code().unwrap_or(-1),
            std::fs::read_to_string(&errfile).unwrap_or_default(),
        )
    };
    assert_eq!(code, 0, "exec -d under clone3=ENOSYS: {err}");
    let state: serde_json::Value = serde_json::from_str(&b.cmd(&["state", &id]).1).unwrap();
    let init = state["pid"].as_i64().unwrap() as i32;
    let exec: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for pid in [init, exec] {
        if let Some(cg) = cgroup2_of(pid) {
            assert!(
                cg.contains(&id),
                "pid {pid} in the container's cgroup2: {cg}"
            );
        }
    }
    assert_eq!(b.cmd(&["delete", "--force", &id]).0, 0);
}

/// `create` fails in the init (a bind mount whose source is missing) 40 times, with the CPUs
/// busy: every time the user reads the init's own error naming the field, never a bare socket
/// error. The bind comes before the cgroup mount, so the init fails before it reads the cgroup
/// messages the parent sends meanwhile; a peer that exits with messages unread resets the socket,
/// and the reset is reported before the error it left (net/core/datagram.c).
#[test]
fn init_error_always_reaches_the_user() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("initerr");
    b.set_args(&["true"]);
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    let at = mounts
        .iter()
        .position(|m| m["type"] == "cgroup" || m["type"] == "cgroup2")
        .unwrap_or(mounts.len());
    mounts.insert(
        at,
        serde_json::json!({
            "destination": "/mnt", "type": "bind", "source": "/nonexistent/atoll-test",
            "options": ["rbind"]
        }),
    );
    b.save();
    let field = format!("mounts[{at}].source");
    // Busy CPUs delay the parent's wake-up past the init's exit: the window of the reset.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burners: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut failures = vec![];
    for i in 0..40 {
        let id = b.id("initerr");
        let (code, err) = b.create(&id, &[]);
        if code == 0 || !err.contains(&field) || !err.contains("/nonexistent/atoll-test") {
            failures.push(format!("try {i}: exit {code}: {err}"));
        }
        if b.root.join(&id).exists() {
            failures.push(format!("try {i}: state left"));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in burners {
        t.join().unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A hostname far beyond what the kernel keeps: the error names the field and its length,
/// short, instead of a lost message ("init exited before it was ready").
#[test]
fn huge_hostname_is_named() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("hugehost");
    b.set_args(&["true"]);
    b.config["hostname"] = "h".repeat(10 << 20).into();
    b.save();
    let id = b.id("hugehost");
    let (code, err) = b.create(&id, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("hostname: 10485760 bytes"),
        "{}",
        &err[..err.len().min(400)]
    );
    assert!(err.len() < 1024, "a short message: {} bytes", err.len());
}

/// A memory limit the init cannot live in: it is OOM-killed before it can report, and the
/// error says so (from the memory cgroup's oom_kill counter) instead of "exited".
#[test]
fn init_oom_killed_by_a_tiny_memory_limit_is_named() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("tinymem");
    b.set_args(&["true"]);
    b.config["linux"]["resources"]["memory"] = serde_json::json!({"limit": 4096});
    b.save();
    let id = b.id("tinymem");
    let (code, err) = b.create(&id, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("OOM kill"), "{err}");
    assert!(err.contains("memory.limit"), "{err}");
}

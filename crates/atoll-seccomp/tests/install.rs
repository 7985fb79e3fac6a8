//! Installing real filters, each on a thread of its own: a filter installed without TSYNC binds
//! only the calling thread (seccomp(2)), so the test process and its other threads stay
//! unfiltered, and no fork is needed. No root needed: each thread sets no_new_privs first (a
//! per-thread flag, prctl(2)), as the kernel then allows any thread to install a filter. A
//! thread's checks use raw syscalls through rustix, so no library call the filter denies gets
//! in the way; its result is its return value.

use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::Duration;

use atoll_seccomp::Filter;
use atoll_sys::seccomp::{self as sys, AddfdTarget, SeccompNotifResp};
use rustix::fs::{Mode, OFlags, CWD};
use rustix::io::Errno;

fn filter(json: &str) -> Filter {
    Filter::compile(&serde_json::from_str(json).unwrap()).unwrap()
}

/// Run `body` on a new thread (the only one the filter will bind); 0 = all as expected.
fn spawn(body: impl FnOnce() -> i32 + Send + 'static) -> JoinHandle<i32> {
    std::thread::spawn(body)
}

fn exit_code(t: JoinHandle<i32>) -> i32 {
    t.join().expect("filtered thread panicked")
}

/// Filtered side: no_new_privs, then the filter. Codes 90+ are setup failures.
fn confine(f: &Filter) -> Result<Option<OwnedFd>, i32> {
    rustix::thread::set_no_new_privs(true).map_err(|_| 90)?;
    f.install().map_err(|_| 91)
}

const MISSING_PARENT: &std::ffi::CStr = c"/nonexistent-atoll-seccomp-test/dir";

#[test]
fn errno_rules_and_argument_checks_hold_in_the_kernel() {
    let f = filter(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1234,"args":[{"index":2,"value":448,"op":"SCMP_CMP_EQ"}]},
            {"names":["rmdir","unlinkat"],"action":"SCMP_ACT_ERRNO","errnoRet":95}]}"#,
    );
    assert!(!f.uses_notify());
    let t = spawn(move || {
        if let Err(code) = confine(&f) {
            return code;
        }
        // mode 0700 (448) is denied with the profile's errno; 0755 reaches the kernel (ENOENT).
        if rustix::fs::mkdirat(CWD, MISSING_PARENT, Mode::from_raw_mode(0o700))
            != Err(Errno::from_raw_os_error(1234))
        {
            return 1;
        }
        if rustix::fs::mkdirat(CWD, MISSING_PARENT, Mode::from_raw_mode(0o755)) != Err(Errno::NOENT)
        {
            return 2;
        }
        if rustix::fs::unlinkat(CWD, MISSING_PARENT, rustix::fs::AtFlags::REMOVEDIR)
            != Err(Errno::from_raw_os_error(95))
        {
            return 3;
        }
        0
    });
    assert_eq!(exit_code(t), 0, "1: mkdirat 0700 not ERRNO(1234); 2: mkdirat 0755 not ENOENT; 3: rmdir not ERRNO(95); 9x: setup");
}

#[test]
fn the_default_errno_applies_to_everything_not_listed() {
    let f = filter(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1235,"syscalls":[
            {"names":["exit_group","exit","mkdirat"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    let t = spawn(move || {
        if let Err(code) = confine(&f) {
            return code;
        }
        if rustix::fs::unlinkat(CWD, MISSING_PARENT, rustix::fs::AtFlags::REMOVEDIR)
            != Err(Errno::from_raw_os_error(1235))
        {
            return 1;
        }
        if rustix::fs::mkdirat(CWD, MISSING_PARENT, Mode::from_raw_mode(0o755)) != Err(Errno::NOENT)
        {
            return 2;
        }
        0
    });
    assert_eq!(
        exit_code(t),
        0,
        "1: rmdir not ERRNO(1235); 2: mkdirat not allowed; 9x: setup"
    );
}

#[test]
fn a_cached_program_installs_like_a_fresh_one() {
    let dir = std::env::temp_dir().join(format!(
        "atoll-seccomp-install-cache.{}",
        std::process::id()
    ));
    let spec = serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1236}]}"#).unwrap();
    Filter::compile_cached(&spec, &dir).unwrap();
    let (f, used) = Filter::compile_cached_reporting(&spec, &dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(used, atoll_seccomp::CacheUse::Hit);
    let t = spawn(move || {
        if let Err(code) = confine(&f) {
            return code;
        }
        (rustix::fs::mkdirat(CWD, MISSING_PARENT, Mode::from_raw_mode(0o755))
            != Err(Errno::from_raw_os_error(1236))) as i32
    });
    assert_eq!(exit_code(t), 0);
}

/// Wait for the listener to have a notification, so a broken thread fails the test instead of
/// hanging it (dropping the listener on the way out fails its pending call with ENOSYS).
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>) {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let ten_s = rustix::event::Timespec {
        tv_sec: Duration::from_secs(10).as_secs() as i64,
        tv_nsec: 0,
    };
    let n = rustix::event::poll(&mut fds, Some(&ten_s)).expect("poll");
    assert!(n > 0, "no notification within 10 s");
}

#[test]
fn notify_hands_the_calls_to_the_supervisor() {
    let f = filter(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/unused/in/this/test",
            "syscalls":[{"names":["mkdir","mkdirat","openat"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    );
    assert!(f.uses_notify());
    let null_rdev = rustix::fs::stat("/dev/null").unwrap().st_rdev;
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let t = spawn(move || {
        let _receiver_gone_is_caught_below = tid_tx.send(rustix::thread::gettid().as_raw_pid());
        let listener = match confine(&f) {
            Ok(Some(fd)) => fd,
            Ok(None) => return 92,
            Err(code) => return code,
        };
        if atoll_sys::socket::send_with_fd(theirs.as_fd(), b"L", Some(listener.as_fd())).is_err() {
            return 93;
        }
        drop(listener);
        // The supervisor fails this one with EOWNERDEAD.
        if rustix::fs::mkdirat(CWD, MISSING_PARENT, Mode::from_raw_mode(0o755))
            != Err(Errno::OWNERDEAD)
        {
            return 1;
        }
        // The supervisor answers this one with its own /dev/null, placed in our table by ADDFD.
        let Ok(fd) = rustix::fs::openat(
            CWD,
            c"/nonexistent-atoll-seccomp-test/file",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return 2;
        };
        match rustix::fs::fstat(&fd) {
            Ok(st) if st.st_rdev == null_rdev => 0,
            _ => 3,
        }
    });
    let tid = tid_rx.recv().expect("the filtered thread's id");

    let mut byte = [0u8; 1];
    let (n, listener) = atoll_sys::socket::recv_with_fd(ours.as_fd(), &mut byte).unwrap();
    let Some(listener) = listener else {
        panic!(
            "the thread sent no listener fd ({n} bytes); its code {}",
            exit_code(t)
        )
    };

    wait_readable(listener.as_fd());
    let n = sys::seccomp_notif_recv(listener.as_fd()).unwrap();
    assert_eq!(
        n.pid as i32, tid,
        "the notification names the filtered thread"
    );
    assert_eq!(i64::from(n.data.nr), libc::SYS_mkdirat);
    assert_eq!(n.data.args[2], 0o755);
    assert!(sys::seccomp_notif_id_valid(listener.as_fd(), n.id).unwrap());
    sys::seccomp_notif_send(
        listener.as_fd(),
        &SeccompNotifResp::fail(n.id, libc::EOWNERDEAD),
    )
    .unwrap();
    assert!(
        !sys::seccomp_notif_id_valid(listener.as_fd(), n.id).unwrap(),
        "an answered id is no longer valid"
    );

    wait_readable(listener.as_fd());
    let n = sys::seccomp_notif_recv(listener.as_fd()).unwrap();
    assert_eq!(i64::from(n.data.nr), libc::SYS_openat);
    let null = std::fs::File::open("/dev/null").unwrap();
    let target_fd = sys::seccomp_notif_addfd(
        listener.as_fd(),
        n.id,
        null.as_fd(),
        AddfdTarget::Lowest,
        true,
        true,
    )
    .unwrap();
    assert!(target_fd >= 0);

    assert_eq!(
        exit_code(t),
        0,
        "1: mkdirat not EOWNERDEAD; 2: openat failed; 3: fd is not /dev/null; 9x: setup"
    );
}

//! What `atoll` prints when something fails: one line, every cause in it exactly once (no
//! "Not a directory (os error 20): Not a directory (os error 20)"), also when the cause
//! happened in the container's init and crossed the sync socket as text.

mod common;
use common::*;

use std::process::Command;

/// A scratch directory with a regular file in it, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("atoll-errors-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file"), "").unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs atoll with `args`, expects failure, returns stderr.
fn fails(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(ATOLL).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    err
}

fn assert_once(stderr: &str, cause: &str) {
    assert_eq!(
        stderr.matches(cause).count(),
        1,
        "{cause:?} should appear exactly once in: {stderr}"
    );
}

#[test]
fn a_syscall_error_names_its_errno_once() {
    let s = Scratch::new("root");
    let under_file = s.0.join("file/sub");
    let err = fails(&["--root".as_ref(), under_file.as_os_str(), "list".as_ref()]);
    assert!(err.starts_with("atoll: read "), "{err}");
    assert_once(&err, "Not a directory (os error 20)");

    // A valid config.json, so that create gets as far as making its state directory.
    let spec = Command::new(ATOLL)
        .arg("spec")
        .arg("--bundle")
        .arg(&s.0)
        .status()
        .unwrap();
    assert!(spec.success());
    std::fs::create_dir_all(s.0.join("rootfs")).unwrap();
    let config = s.0.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["process"]["terminal"] = false.into();
    std::fs::write(&config, c.to_string()).unwrap();
    let file = s.0.join("file");
    let err = fails(&[
        "--root".as_ref(),
        file.as_os_str(),
        "create".as_ref(),
        "--bundle".as_ref(),
        s.0.as_os_str(),
        "x".as_ref(),
    ]);
    assert_once(&err, "File exists (os error 17)");
}

#[test]
fn a_state_file_that_does_not_parse_says_why_once() {
    let s = Scratch::new("state");
    std::fs::create_dir_all(s.0.join("root/broken")).unwrap();
    std::fs::write(s.0.join("root/broken/state.json"), "{").unwrap();
    let root = s.0.join("root");
    let err = fails(&[
        "--root".as_ref(),
        root.as_os_str(),
        "state".as_ref(),
        "broken".as_ref(),
    ]);
    assert!(err.contains("state.json"), "{err}");
    assert_once(&err, "EOF while parsing");
}

/// The init's error reaches the user with its errno: init sends its whole chain as text.
#[test]
fn an_init_error_keeps_its_errno() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("errors-init");
    // Above fs.nr_open: setrlimit(2) answers EPERM even for root, in the init.
    b.config["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1u64 << 30, "hard": 1u64 << 30}]);
    b.save();
    let (code, _, err) = b.run("rlimit");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("setrlimit RLIMIT_NOFILE"), "{err}");
    assert_once(&err, "Operation not permitted (os error 1)");
}

/// A hook that cannot start names the hook and the errno once.
#[test]
fn a_hook_error_names_the_hook_and_errno_once() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("errors-hook");
    b.config["hooks"] = serde_json::json!({"createRuntime": [{"path": "/nonexistent/atoll-hook"}]});
    b.save();
    let (code, _, err) = b.run("hook");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("createRuntime hook #0 (/nonexistent/atoll-hook)"),
        "{err}"
    );
    assert_once(&err, "No such file or directory (os error 2)");
}

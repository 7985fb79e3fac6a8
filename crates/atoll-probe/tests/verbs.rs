//! The probe answers `ok` or `errno=N` with the kernel's own errno, and refuses a wrong call
//! with exit 2. No root needed. (This test is also why `cargo test --workspace` builds the probe
//! binary that crates/atoll/tests/escape_corpus.rs copies into its containers.)

use std::process::Command;

const PROBE: &str = env!("CARGO_BIN_EXE_atoll-probe");

fn probe(args: &[&str]) -> (i32, String) {
    let out = Command::new(PROBE)
        .args(args)
        .output()
        .expect("run atoll-probe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn answers_with_the_kernels_errno() {
    assert_eq!(probe(&["open-ro", "/"]), (0, "ok".into()));
    assert_eq!(
        probe(&["open-ro", "/nonexistent-atoll-probe-test"]),
        (0, "errno=2".into())
    );
    // AF_MAX is far below 4000: the kernel has no such family.
    assert_eq!(probe(&["socket", "4000"]), (0, "errno=97".into()));
    assert_eq!(
        probe(&["setns-path", "/nonexistent-atoll-probe-test", "net"]),
        (0, "errno=2".into())
    );
}

#[test]
fn a_wrong_call_is_a_usage_error_not_an_answer() {
    for args in [
        &["no-such-verb"][..],
        &["setns-path", "/", "no-such-ns"],
        &["keyctl-search", "not-a-number", "x"],
    ] {
        let (code, out) = probe(args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.is_empty(), "{args:?} printed an answer: {out}");
    }
}

//! The skip gate. A root test that cannot run here (no root, no busybox, no cgroupfs) did not
//! check anything, so it must never look like a pass where it matters: under
//! `ATOLL_TESTS_MUST_RUN=1` (CI, scripts/test.sh) a missing requirement panics; locally the test
//! returns after saying why on the terminal (written to stderr directly, so libtest's output
//! capture does not hide it). Tests that need a host of another shape (cgroup v1 only, hybrid)
//! are `#[ignore = "the shape"]` instead and use [`require_host`].

use std::io::Write;
use std::path::PathBuf;

/// Whether CI asked that every test run (`ATOLL_TESTS_MUST_RUN=1`).
pub fn must_run() -> bool {
    std::env::var("ATOLL_TESTS_MUST_RUN").as_deref() == Ok("1")
}

/// `None` if this process has root, else why not.
pub fn missing_root() -> Option<String> {
    (!rustix::process::geteuid().is_root()).then(|| "not running as root".to_string())
}

/// The host's busybox (busybox-static), which the test rootfs is made of.
pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// `None` if busybox is installed, else why the test cannot run.
pub fn missing_busybox() -> Option<String> {
    busybox()
        .is_none()
        .then(|| "busybox-static is not installed (apt-get install busybox-static)".to_string())
}

/// `None` if a cgroup filesystem (v1 or v2) is mounted, else why not.
pub fn missing_cgroupfs() -> Option<String> {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "));
    (!mounted).then(|| "no cgroup filesystem mounted".to_string())
}

/// The first of `missing` that is `Some`: `first_missing([missing_root(), missing_busybox()])`.
pub fn first_missing<const N: usize>(missing: [Option<String>; N]) -> Option<String> {
    missing.into_iter().flatten().next()
}

/// Whether `test` can run, given what this host lacks (`None`: nothing). Panics under
/// `ATOLL_TESTS_MUST_RUN=1` when something is missing; otherwise says so and returns false.
pub fn gate(test: &str, missing: Option<String>) -> bool {
    decide(test, missing, must_run())
}

fn decide(test: &str, missing: Option<String>, must_run: bool) -> bool {
    let Some(why) = missing else {
        return true;
    };
    if must_run {
        panic!("{test}: cannot run: {why} (ATOLL_TESTS_MUST_RUN=1 makes that a failure)");
    }
    let _terminal_gone_is_fine = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why} (not a pass: set ATOLL_TESTS_MUST_RUN=1 to make it a failure)"
    );
    false
}

/// For `#[ignore]`d tests that need a host of a particular shape: they run only when asked for
/// (scripts/test.sh asks where the host has the shape), so a host without it is a failure.
pub fn require_host(test: &str, missing: Option<String>) {
    if let Some(why) = missing {
        panic!("{test}: this host lacks what the test needs: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_missing_runs() {
        assert!(decide("t", None, true));
        assert!(decide("t", None, false));
    }

    #[test]
    fn a_local_skip_does_not_run() {
        assert!(!decide("t", Some("not running as root".into()), false));
    }

    #[test]
    #[should_panic(expected = "t: cannot run: not running as root")]
    fn under_must_run_a_skip_is_a_failure() {
        decide("t", Some("not running as root".into()), true);
    }

    #[test]
    #[should_panic(expected = "this host lacks what the test needs: net_cls is mounted")]
    fn a_shaped_test_on_the_wrong_host_fails() {
        require_host("t", Some("net_cls is mounted".into()));
    }

    #[test]
    fn first_missing_names_the_first_gap() {
        assert_eq!(
            first_missing([None, Some("b".into()), Some("c".into())]).as_deref(),
            Some("b")
        );
        assert_eq!(first_missing::<2>([None, None]), None);
    }
}

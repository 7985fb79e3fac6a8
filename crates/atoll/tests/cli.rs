//! The command line as a user meets it: bad flag values are errors naming the flag (never a
//! panic or a wrapped number).

mod common;

use std::process::Command;

use common::{decode, ATOLL};

/// Run atoll with a private, empty --root; (exit code, stdout, stderr).
fn atoll(args: &[&str]) -> (i32, String, String) {
    let root = std::env::temp_dir().join(format!("atoll-cli-{}", std::process::id()));
    let r = decode(
        Command::new(ATOLL)
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .unwrap(),
    );
    let _ = std::fs::remove_dir_all(&root);
    r
}

#[test]
fn bad_numeric_flag_values_are_errors_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["events", "--interval", "-1s", "c1"], "--interval"),
        (&["events", "--interval", "infs", "c1"], "--interval"),
        (&["events", "--interval", "nan", "c1"], "--interval"),
        (&["events", "--interval", "1e300s", "c1"], "--interval"),
        (&["events", "--interval", "0s", "c1"], "--interval"),
        (&["update", "--memory", "99999999999999G", "c1"], "--memory"),
        (&["update", "--memory", "-5", "c1"], "--memory"),
        (
            &["update", "--memory-swap", "9223372036854775807k", "c1"],
            "--memory-swap",
        ),
        (
            &["update", "--memory-reservation", "1x", "c1"],
            "--memory-reservation",
        ),
        (&["update", "--pids-limit", "-7", "c1"], "--pids-limit"),
        (&["update", "--cpu-quota", "-2", "c1"], "--cpu-quota"),
        (&["update", "--blkio-weight", "5", "c1"], "--blkio-weight"),
        (&["update", "--cpu-share=-1", "c1"], "--cpu-share"),
        // The alias atoll had before it took runc's spelling.
        (&["update", "--cpu-shares=-1", "c1"], "--cpu-share"),
        (&["update", "--cpu-rt-runtime=-2", "c1"], "--cpu-rt-runtime"),
        (&["update", "--cpu-rt-period=x", "c1"], "--cpu-rt-period"),
        (&["update", "--memory", "1.2.3m", "c1"], "--memory"),
        (
            &["run", "--preserve-fds", "4294967295", "c1"],
            "--preserve-fds",
        ),
        (
            &["create", "--preserve-fds", "2147483645", "c1"],
            "--preserve-fds",
        ),
        (
            &["exec", "--preserve-fds", "4294967295", "c1", "true"],
            "--preserve-fds",
        ),
        (
            &["exec", "--additional-gids=-1", "c1", "true"],
            "--additional-gids",
        ),
    ];
    for (args, flag) in cases {
        let (code, out, err) = atoll(args);
        assert!(
            code != 0 && !err.contains("panicked") && err.contains(flag),
            "atoll {}: exit {code}, want an error naming {flag}\n{out}{err}",
            args.join(" ")
        );
    }
}

#[test]
fn usage_errors_exit_1_as_in_runc() {
    // clap's own exit code for a usage error is 2; runc (and its clients' checks) use 1.
    for args in [
        &["update", "--bogus", "c1"][..],
        &["--log-format", "yaml", "list"],
        &["run", "--detach"],
    ] {
        let (code, out, err) = atoll(args);
        assert_eq!(code, 1, "atoll {}\n{out}{err}", args.join(" "));
    }
    assert_eq!(atoll(&["--help"]).0, 0);
    assert_eq!(atoll(&["--version"]).0, 0);
}

#[test]
fn largest_preserve_fds_passes_the_parser() {
    // Parsed; then refused because this caller has no fd 3 to preserve (a failed exec: 255).
    let (code, out, err) = atoll(&["exec", "--preserve-fds", "2147483644", "c1", "true"]);
    assert!(
        code == 255 && err.contains("unable to stat preserved-fd 0 (of 2147483644)"),
        "exit {code}\n{out}{err}"
    );
}

#[test]
fn good_numeric_flag_values_pass_the_parser() {
    // Parsed, then refused only because the container does not exist.
    for args in [
        &["update", "--memory", "-1", "--pids-limit", "-1", "c1"][..],
        &["update", "--memory", "512m", "--cpu-quota", "-1", "c1"],
        &[
            "update",
            "--memory-swap",
            "8388607T",
            "--blkio-weight",
            "0",
            "c1",
        ],
        &["events", "--interval", "250ms", "c1"],
        &["update", "--memory", "1.5g", "--cpu-share", "512", "c1"],
        &["update", "--memory", "1 GiB", "--cpu-shares", "512", "c1"],
        &[
            "update",
            "--cpu-rt-period",
            "1000000",
            "--cpu-rt-runtime",
            "-1",
            "c1",
        ],
    ] {
        let (code, out, err) = atoll(args);
        assert!(
            code != 0 && err.contains("container \"c1\" does not exist"),
            "atoll {}: exit {code}\n{out}{err}",
            args.join(" ")
        );
    }
}

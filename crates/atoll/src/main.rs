//! atoll: the command line. Global flags and verbs follow runc's, so containerd's shim, podman
//! and Kubernetes (RuntimeClass) can drive atoll unchanged. The work happens in atoll-runtime.

mod cli;
mod cmd;
mod demo;
mod flags;
mod log;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // runc exits 1 on a usage error (clap's default is 2); --help and --version exit 0.
        Err(e) => {
            let _best_effort = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    // Before atoll opens any file of its own (the --log file among them): see there.
    if let Err(e) = cmd::check_preserved_fds(&cli) {
        eprintln!("atoll: {e:#}");
        std::process::exit(failure_code(&cli));
    }
    let sink = match log::init(&cli) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("atoll: {e:#}");
            std::process::exit(1);
        }
    };
    let code = match cmd::dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            // One line, each cause once (atoll_runtime::error::report also skips the cause a
            // foreign error type prints and returns from source()).
            let line = atoll_runtime::error::report(e.as_ref());
            log::error(&sink, &anyhow::Error::msg(line));
            failure_code(&cli)
        }
    };
    if cli.debug {
        let hwm = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .map(str::to_string)
            });
        tracing::debug!(?hwm, code, "exit");
    }
    std::process::exit(code);
}

/// The exit status of a verb that failed: runc exits 255 when `exec` fails (so a client can tell
/// "exec failed" from a process that exited 1) and 1 for every other verb but doctor.
fn failure_code(cli: &cli::Cli) -> i32 {
    match cli.verb {
        cli::Verb::Exec(_) => 255,
        // 1 is doctor's "a fault was found"; 2 says it could not look.
        cli::Verb::Doctor(_) => 2,
        _ => 1,
    }
}

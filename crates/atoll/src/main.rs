//! atoll: the command line. Global flags and verbs follow runc's, so containerd's shim, podman
//! and Kubernetes (RuntimeClass) can drive atoll unchanged. The work happens in atoll-runtime.

mod cli;
mod cmd;
mod demo;
mod flags;
mod log;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    log::init(&cli);
    let code = match cmd::dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            // One line, each cause once (atoll_runtime::error::report also skips the cause a
            // foreign error type prints and returns from source()). runc exits 1 on any error.
            let line = atoll_runtime::error::report(e.as_ref());
            log::error(&cli, &anyhow::Error::msg(line));
            1
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

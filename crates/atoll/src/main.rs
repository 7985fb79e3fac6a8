//! atoll: the command line. Global flags and verbs follow runc's, so containerd's shim, podman
//! and Kubernetes (RuntimeClass) can drive atoll unchanged. The work happens in atoll-runtime.

mod cli;
mod cmd;
mod log;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    log::init(&cli);
    let code = match cmd::dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            log::error(&cli, &e);
            1
        }
    };
    std::process::exit(code);
}

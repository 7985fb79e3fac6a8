//! atoll-cdi: resolves CDI device names (`vendor/class=name`) for `atoll up`, which runs it from
//! beside its own executable only when an islands file names a CDI device. A process of its own
//! because the CDI crate links an HTTP and TLS stack that every `atoll run` would otherwise map.
//!
//! ```text
//! atoll-cdi [--spec-dir DIR]... NAME...
//!   stdout, exit 0: {"devices": [{"name": NAME, "specs": [FILE...], "edits": SPEC}
//!                              | {"name": NAME, "error": MESSAGE}, ...]}   (one per NAME, in order)
//!   stderr, exit 1: a spec that does not parse or validate, naming its file and field
//! ```
//! SPEC is an empty runtime spec (config.json) with the name's edits applied by the crate:
//! `linux.devices`, `linux.resources.devices`, `mounts`, `process.env`, `hooks`. What of it an
//! island may have is atoll's decision, not this helper's.

mod registry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Where CDI specs live (the CDI spec's "Spec Directories"): static, then generated.
const CDI_SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

#[derive(Parser)]
#[command(
    name = "atoll-cdi",
    version = concat!(env!("CARGO_PKG_VERSION"), " (container-device-interface 1.1)"),
    about = "Resolve CDI device names to runtime-spec edits (JSON on stdout)")]
struct Args {
    /// A CDI spec directory, later ones winning (default: /etc/cdi, /var/run/cdi).
    #[arg(long = "spec-dir", value_name = "DIR")]
    spec_dirs: Vec<PathBuf>,
    /// CDI names: vendor/class=name.
    #[arg(value_name = "NAME", required = true)]
    names: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dirs = if args.spec_dirs.is_empty() {
        CDI_SPEC_DIRS.iter().map(PathBuf::from).collect()
    } else {
        args.spec_dirs
    };
    let reg = match registry::Registry::load(dirs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let devices: Vec<serde_json::Value> = args
        .names
        .iter()
        .map(|name| match reg.resolve(name) {
            Ok(r) => serde_json::json!({"name": name, "specs": r.specs, "edits": r.edits}),
            Err(e) => serde_json::json!({"name": name, "error": e}),
        })
        .collect();
    println!("{}", serde_json::json!({ "devices": devices }));
    ExitCode::SUCCESS
}

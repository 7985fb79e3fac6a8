//! Writes atoll's shell completions (bash, zsh, fish) and man pages from the same clap
//! definitions the binary parses with (crates/atoll/src/cli.rs, compiled here as a module), so
//! they cannot drift from the flags. A separate program rather than a build script of the atoll
//! crate: the shipped binary's build (scripts/build.sh) then compiles nothing more, and the
//! packaging script chooses where the files go.
//!
//!     cargo run -p atoll-docgen -- OUTDIR
//!
//! OUTDIR/completions/{atoll.bash,_atoll,atoll.fish} and OUTDIR/man/atoll.1, atoll-VERB.1, ...

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

// The binary's own flag and verb definitions; `crate::flags` is what cli.rs names its value
// parsers by. Nothing here reads the parsed fields.
#[allow(dead_code)]
#[path = "../../atoll/src/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "../../atoll/src/flags.rs"]
mod flags;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: atoll-docgen OUTDIR");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atoll-docgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(out: &Path) -> Result<(), String> {
    let completions = out.join("completions");
    let man = out.join("man");
    for dir in [&completions, &man] {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let mut cmd = cli::Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "atoll", &completions).map_err(|e| {
            format!(
                "write {shell} completion into {}: {e}",
                completions.display()
            )
        })?;
    }
    // One page per verb and sub-verb (atoll-island-exec.1), each linked from its parent's page.
    clap_mangen::generate_to(cli::Cli::command(), &man)
        .map_err(|e| format!("write man pages into {}: {e}", man.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The files the Debian package installs exist and are not empty, and every verb has a page.
    #[test]
    fn writes_completions_and_a_page_per_verb() {
        let dir = std::env::temp_dir().join(format!("atoll-docgen-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_all(&dir).unwrap();
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        assert!(read(dir.join("completions/atoll.bash")).contains("--preserve-fds"));
        assert!(read(dir.join("completions/_atoll")).starts_with("#compdef atoll"));
        assert!(read(dir.join("completions/atoll.fish")).contains("complete -c atoll"));
        let top = read(dir.join("man/atoll.1"));
        assert!(top.contains(".TH atoll 1"), "{top}");
        for verb in cli::Cli::command().get_subcommands() {
            let page = dir.join(format!("man/atoll-{}.1", verb.get_name()));
            assert!(read(page).contains(".SH NAME"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

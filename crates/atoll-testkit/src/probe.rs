//! Where the atoll-probe binary (and the atoll-cdi helper) is. Each is a bin of its own
//! package, so another package's tests cannot name it with `CARGO_BIN_EXE_*`; cargo puts it
//! beside the test binaries' `deps/` folder (`cargo test --workspace` builds it).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The probe built by the same cargo profile as the running test, checked to be newer than
/// every source file of the atoll-probe package. Panics with what to run when it is missing or
/// stale: a probe that does not match its source would test something else.
pub fn probe() -> PathBuf {
    built("atoll-probe")
}

/// The atoll-cdi helper that the atoll under test runs from beside itself to resolve CDI
/// names: checked like [`probe`].
pub fn cdi_helper() -> PathBuf {
    built("atoll-cdi")
}

fn built(package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // <target>/<profile>/deps/<test>-<hash>  ->  <target>/<profile>/<package>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join(package))
        .expect("test binary is not inside a cargo target dir");
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build it first: cargo build -p {package} (scripts/test.sh's \
                 `cargo test --workspace` does)",
                path.display()
            )
        });
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(package);
    if let Some(newer) = newest(&src).filter(|(t, _)| *t > built) {
        panic!(
            "{} is older than {}: rebuild it: cargo build -p {package}",
            path.display(),
            newer.1.display()
        );
    }
    path
}

/// The newest file under `dir` (sources and Cargo.toml), skipping nothing but unreadable entries.
fn newest(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut best: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        let candidate = if p.is_dir() {
            newest(&p)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, p))
        };
        if let Some(c) = candidate {
            if best.as_ref().is_none_or(|b| c.0 > b.0) {
                best = Some(c);
            }
        }
    }
    best
}

//! The islands file → atoll_islands::file::parse, the entry point `atoll up` reads a file with.

use std::path::Path;
use std::time::Duration;

#[test]
fn islands_file_never_panics() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/islands_file");
    let runs = atoll_testkit::fuzz::run("islands_file", &corpus, Duration::from_secs(5), |input| {
        let text = String::from_utf8_lossy(input);
        let _ = atoll_islands::file::parse(Path::new("fuzz.toml"), &text);
    });
    eprintln!("islands_file: {runs} inputs");
}

//! config.json → the spec checks every `create`/`run` makes before anything exists:
//! atoll_runtime::spec::{load, namespaces, validate, rootfs}.

use std::path::Path;
use std::time::Duration;

#[test]
fn config_json_never_panics() {
    let bundle = std::env::temp_dir().join(format!("atoll-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/config_json");
    // The node's guard policy as a fresh host has it (no /etc/atoll/config.toml read).
    let node = atoll_runtime::guard::GuardNode::defaults(Path::new("/run/atoll"));
    let runs = atoll_testkit::fuzz::run("config_json", &corpus, Duration::from_secs(5), |input| {
        std::fs::write(bundle.join("config.json"), input).unwrap();
        let Ok(spec) = atoll_runtime::spec::load(&bundle, &node) else {
            return;
        };
        let Ok(ns) = atoll_runtime::spec::namespaces(&spec) else {
            return;
        };
        let _ = atoll_runtime::spec::validate(&spec, &ns);
        let _ = atoll_runtime::spec::rootfs(&bundle, &spec);
    });
    std::fs::remove_dir_all(&bundle).unwrap();
    eprintln!("config_json: {runs} inputs");
}

//! An OCI seccomp profile (`linux.seccomp`) → atoll_seccomp::Filter::compile, the compiler the
//! runtime calls at create.

use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::LinuxSeccomp;

#[test]
fn seccomp_profile_never_panics() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/seccomp_profile");
    let runs = atoll_testkit::fuzz::run(
        "seccomp_profile",
        &corpus,
        Duration::from_secs(5),
        |input| {
            if let Ok(profile) = serde_json::from_slice::<LinuxSeccomp>(input) {
                let _ = atoll_seccomp::Filter::compile(&profile);
            }
        },
    );
    eprintln!("seccomp_profile: {runs} inputs");
}

//! Fuzz tests of the parsers users feed, run by `cargo test -p atoll-fuzz` (and so by
//! scripts/test.sh): tests/config_json.rs, tests/islands_file.rs, tests/seccomp_profile.rs. Each
//! feeds its corpus (corpus/<target>/: real inputs) and seeded mutations of it to the public
//! entry point for a few seconds; an error is fine, a panic fails the test and saves the input.
//! `ATOLL_FUZZ_SECS=60 cargo test -p atoll-fuzz --release` runs longer; `ATOLL_FUZZ_SEED=N`
//! replays one run. No crate code lives here.

#!/usr/bin/env bash
# The test command: install requirements, check style, run every test as root on real
# namespaces and cgroups (a missing requirement fails instead of skipping), then the OCI
# conformance suite against atoll and runc.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export ATOLL_TESTS_MUST_RUN=1
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads=2
if [ -x scripts/conformance/build.sh ] && [ "${ATOLL_SKIP_CONFORMANCE:-0}" != 1 ]; then
  cargo build --release -p atoll
  scripts/conformance/build.sh
  scripts/conformance/compare.sh "$PWD/target/release/atoll"
fi

#!/usr/bin/env bash
# Build the atoll binary as shipped: release, statically linked (glibc and libseccomp), hot
# functions first (crates/atoll/link/cc-ordered), and beside it the two helpers `atoll up` runs:
# atoll-image (islands' `image`s, docs/images.md) and atoll-cdi (CDI device names,
# docs/devices.md). Prints atoll's path; target/atoll links to it (target/atoll-image and
# target/atoll-cdi to the helpers).
#
#   scripts/build.sh            # -> target/atoll
#   scripts/build.sh -q         # quiet cargo
#   CARGO_TARGET_DIR=/tmp/t CARGO_PROFILE_RELEASE_STRIP=none scripts/build.sh   # elsewhere, with symbols
#
# Why static: a short-lived runtime process pays for every page it maps. Dynamically linked,
# `atoll run` maps 1.5 MiB of ld.so, libc, libgcc_s and libseccomp before doing anything;
# statically linked it maps only the C library code it calls, laid out with its own hot code,
# and skips the dynamic loader's symbol resolution (docs/bench.md has the figures).
# `cargo build --release -p atoll` still works and gives a dynamically linked binary.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
libdir=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo "${host%%-*}-linux-gnu")
[ -r "$libdir/libc.a" ] || { echo "build.sh: $libdir/libc.a missing (apt-get install libc6-dev)" >&2; exit 1; }
[ -r "$libdir/libseccomp.a" ] || { echo "build.sh: $libdir/libseccomp.a missing (apt-get install libseccomp-dev)" >&2; exit 1; }
# --target keeps +crt-static off the host's build scripts and proc macros. The linker wrapper is
# set here, not in .cargo/config.toml, so that other builds (tests, cargo build) link as usual;
# it links anything but the atoll binary exactly as cc would.
target_var="CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')"
env "${target_var}_RUSTFLAGS=-C target-feature=+crt-static" \
    "${target_var}_LINKER=$PWD/crates/atoll/link/cc-ordered" \
    LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="$libdir" \
    cargo build --release -p atoll --bin atoll --target "$host" "$@" >&2
# Each helper in a cargo run of its own: cargo unifies the features of shared dependencies
# across the packages of one build, and the helpers' (tokio, oci-spec's image types, the CDI
# crate's HTTP and TLS stack) would change atoll's own code and its memory at run time.
for pkg in atoll-image atoll-cdi; do
    env "${target_var}_RUSTFLAGS=-C target-feature=+crt-static" \
        cargo build --release -p "$pkg" --bin "$pkg" --target "$host" "$@" >&2
done
out=${CARGO_TARGET_DIR:-target}/$host/release/atoll
# how much of crates/atoll/link/hot-functions.txt still names real functions (stale: run
# scripts/order-functions.sh)
stats=$(ls -t "${CARGO_TARGET_DIR:-target}/$host/release/deps/"atoll-*.order.stats 2>/dev/null | head -1)
[ -n "$stats" ] && echo "build.sh: hot-function layout: $(cat "$stats")" >&2
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    ln -sfn "$host/release/atoll" target/atoll
    ln -sfn "$host/release/atoll-image" target/atoll-image
    ln -sfn "$host/release/atoll-cdi" target/atoll-cdi
    out=target/atoll
fi
realpath -s "$out"

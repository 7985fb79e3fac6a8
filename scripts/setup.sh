#!/usr/bin/env bash
# Install what atoll builds and tests with on Debian/Ubuntu (as root). Idempotent.
set -euo pipefail
need=()
# podman, conmon, containerd and python3-grpcio (a CRI client): the side-by-side client tests
# (crates/atoll/tests/clients.rs); man-db and binutils (readelf): the Debian package and its test
# (scripts/deb.sh, crates/atoll/tests/package.rs); graphviz (`atoll graph` lays out with its `dot`)
# and chromium (crates/atoll/tests/graph.rs draws the SVG headless and measures it); bindfs (a FUSE
# filesystem that takes no idmapped mount: the share refusal in crates/atoll/tests/shares.rs).
for pkg in libseccomp-dev libc6-dev pkg-config busybox-static runc crun bubblewrap iproute2 nftables python3 procps time \
           podman conmon containerd python3-grpcio man-db binutils chromium graphviz bindfs; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo (Rust >= 1.85) is required: install it with rustup or Debian's cargo package" >&2
  exit 1
fi
# CRIU for `atoll checkpoint`/`restore` (docs/checkpoint.md): built from Debian's source when the
# installed one cannot dump an inet socket on this kernel; cached after the first run.
"$(dirname "$0")/criu.sh"

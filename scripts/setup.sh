#!/usr/bin/env bash
# Install what atoll builds and tests with on Debian/Ubuntu (as root). Idempotent.
set -euo pipefail
need=()
for pkg in libseccomp-dev libc6-dev pkg-config busybox-static runc crun bubblewrap iproute2 nftables python3 procps time; do
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

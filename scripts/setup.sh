#!/usr/bin/env bash
# Install what atoll builds and tests with on Debian/Ubuntu (as root). Idempotent.
#   scripts/setup.sh        # everything the tests use
#   scripts/setup.sh demo   # only what building atoll and `atoll demo` need (scripts/demo.sh)
set -euo pipefail
mode=${1:-test}
need=()
demo_pkgs=(libseccomp-dev libc6-dev pkg-config busybox-static iproute2 nftables python3)
# podman, conmon, containerd and python3-grpcio (a CRI client): the side-by-side client tests
# (crates/atoll/tests/clients.rs); man-db and binutils (readelf): the Debian package and its test
# (scripts/deb.sh, crates/atoll/tests/package.rs); graphviz (`atoll graph` lays out with its `dot`)
# and chromium (crates/atoll/tests/graph.rs draws the SVG headless and measures it); bindfs (a FUSE
# filesystem that takes no idmapped mount: the share refusal in crates/atoll/tests/shares.rs);
# nginx-light and postgresql (15 on Debian 12): services from the host's /usr as islands
# (crates/atoll/tests/services.rs); skopeo (atoll-image pulls islands' `image`s through its
# proxy: crates/atoll/tests/images.rs); docker-registry (a registry of that test's own on
# 127.0.0.1 for `docker://`; the system service its package enables is stopped and disabled);
# systemd (the guard's units under a `systemd --user` manager of the test's own, for the fd store:
# crates/atoll/tests/guard_default.rs).
test_pkgs=(runc crun bubblewrap procps time podman conmon containerd python3-grpcio man-db binutils
           chromium graphviz bindfs nginx-light postgresql skopeo docker-registry systemd)
pkgs=("${demo_pkgs[@]}")
[ "$mode" = demo ] || pkgs+=("${test_pkgs[@]}")
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
  # Debian enables a registry on :5000 for every interface; the tests start their own.
  if [[ " ${need[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null \
     && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo (Rust >= 1.85) is required: install it with rustup or Debian's cargo package" >&2
  exit 1
fi
# CRIU for `atoll checkpoint`/`restore` (docs/checkpoint.md): built from Debian's source when the
# installed one cannot dump an inet socket on this kernel; cached after the first run.
[ "$mode" = demo ] || "$(dirname "$0")/criu.sh"

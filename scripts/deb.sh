#!/usr/bin/env bash
# Build a Debian package of atoll: the binary as shipped (scripts/build.sh: static, hot functions
# first), shell completions and man pages generated from the clap definitions (atoll-docgen), and
# the docs. Prints the .deb's path.
#
#   scripts/deb.sh                    # -> target/debian/atoll_<version>_<arch>.deb
#   scripts/deb.sh --binary PATH      # package this binary (and the atoll-cdi beside it) instead
#                                     # of building one
#   scripts/deb.sh --out DIR          # write the .deb into DIR
#   dpkg -i target/debian/atoll_*.deb # install; dpkg -r atoll removes it
#
# dpkg-deb on a staged tree rather than cargo-deb: the binary must be the one build.sh links
# (its own target triple, flags and linker wrapper), and dpkg-deb is already on every Debian
# host, where `cargo install cargo-deb` would compile a few hundred crates first.
set -euo pipefail
cd "$(dirname "$0")/.."
binary= out=target/debian
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        *) echo "deb.sh: unknown argument '$1' (--binary PATH, --out DIR)" >&2; exit 2 ;;
    esac
done
for tool in dpkg-deb dpkg gzip; do
    command -v "$tool" >/dev/null || { echo "deb.sh: $tool missing (apt-get install dpkg-dev)" >&2; exit 1; }
done
[ -n "$binary" ] || binary=$(scripts/build.sh -q)
[ -x "$binary" ] || { echo "deb.sh: $binary is not an executable" >&2; exit 1; }
# `atoll up` runs the CDI helper from beside atoll (docs/devices.md): it ships in the same folder.
helper=$(dirname "$binary")/atoll-cdi
[ -x "$helper" ] || { echo "deb.sh: $helper missing (scripts/build.sh builds it beside atoll)" >&2; exit 1; }
# A dynamically linked binary (one with an ELF interpreter) would need Depends: lines this script
# does not compute.
for b in "$binary" "$helper"; do
    if readelf -l "$b" | grep -q 'program interpreter'; then
        echo "deb.sh: $b is dynamically linked; package the static one scripts/build.sh makes" >&2
        exit 1
    fi
done
version=$("$binary" --version | awk '{ print $2 }')
[ -n "$version" ] || { echo "deb.sh: '$binary --version' printed no version" >&2; exit 1; }
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cargo run -q -p atoll-docgen -- "$stage/gen" >&2
root=$stage/root
install -D -m 0755 "$binary" "$root/usr/bin/atoll"
install -D -m 0755 "$helper" "$root/usr/bin/atoll-cdi"
install -D -m 0644 "$stage/gen/completions/atoll.bash" "$root/usr/share/bash-completion/completions/atoll"
install -D -m 0644 "$stage/gen/completions/_atoll" "$root/usr/share/zsh/vendor-completions/_atoll"
install -D -m 0644 "$stage/gen/completions/atoll.fish" "$root/usr/share/fish/vendor_completions.d/atoll.fish"
install -d "$root/usr/share/man/man1"
for page in "$stage"/gen/man/*.1; do
    # -n: no name or time stamp in the gzip header, so the same input gives the same package.
    gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"
done
# The guard's units (docs/threat-model.md), installed but not enabled, pointed at /usr/bin.
for unit in contrib/systemd/atoll-guard.service contrib/systemd/atoll-guard.socket; do
    install -d "$root/lib/systemd/system"
    sed 's|/usr/local/bin/atoll|/usr/bin/atoll|g' "$unit" > "$root/lib/systemd/system/$(basename "$unit")"
    chmod 0644 "$root/lib/systemd/system/$(basename "$unit")"
done
grep -q '^ExecStart=/usr/bin/atoll ' "$root/lib/systemd/system/atoll-guard.service" \
    || { echo "deb.sh: atoll-guard.service has no ExecStart=/usr/local/bin/atoll to point at /usr/bin" >&2; exit 1; }
doc=$root/usr/share/doc/atoll
install -D -m 0644 README.md "$doc/README.md"
install -m 0644 docs/*.md "$doc/"
cat > "$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: atoll

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
find "$root" -type d -exec chmod 0755 {} +

install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<EOF
Package: atoll
Version: $version
Architecture: $arch
Maintainer: atoll developers <atoll@localhost>
Section: admin
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Description: Linux islands for many tenants, on a runc-compatible OCI runtime
 atoll runs OCI containers with runc's command line (so containerd, podman and
 Kubernetes RuntimeClass can use it) and turns one host into private islands
 for many tenants, with a default-deny nftables border guard between them.
 The binaries (atoll, and atoll-cdi, its CDI device-name resolver) are
 statically linked.
EOF
mkdir -p "$out"
deb=$out/atoll_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
realpath "$deb"

#!/usr/bin/env bash
# Install a CRIU that works on this kernel at /usr/local/sbin/criu (as root, Debian). Idempotent:
# a second run only re-reads the cached smoke-test stamp and does nothing.
#
# Why a build: Debian 12's criu 3.17 fails here (vDSO), and CRIU < 4.2 fails every dump of a
# process holding an inet socket on kernels >= 6.16 (getsockopt SOL_SOCKET 16 is EOPNOTSUPP
# there; fixed upstream in 4.2). `criu check` misses the second bug, so the smoke test below dumps
# a process holding a TCP socket. The source is Debian's own package from sid, built as is.
set -euo pipefail
prefix=/usr/local/sbin
criu=$prefix/criu
stamp_dir=/var/lib/atoll
stamp=$stamp_dir/criu-check   # read by `atoll checkpoint` (its preflight): version, kernel, inet dump ok
kernel=$(uname -r)
quiet() { local log; log=$(mktemp); if ! "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi; rm -f "$log"; }

# The smoke test: `criu check`, then a dump of a process (its own session, no tty) that holds a
# listening TCP socket on loopback. Writes the stamp only when both pass.
smoke_test() {
  local dir pid ver
  "$criu" check >/dev/null 2>&1 || { echo "criu: '$criu check' fails on kernel $kernel" >&2; return 1; }
  dir=$(mktemp -d)
  # Started from a subshell so it is not this shell's job (no "Killed" notice when the dump ends it).
  pid=$( (setsid python3 -c 'import socket,time
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(1); time.sleep(60)' </dev/null >/dev/null 2>&1 & echo $!) )
  sleep 0.3
  if ! "$criu" dump -t "$pid" -D "$dir" -o dump.log -v2 >/dev/null 2>&1; then
    echo "criu: dumping a process that holds a TCP socket fails ($dir/dump.log):" >&2
    grep -E 'Error|error' "$dir/dump.log" | head -5 >&2 || true
    kill "$pid" 2>/dev/null || true
    return 1
  fi
  kill "$pid" 2>/dev/null || true
  rm -rf "$dir"
  ver=$("$criu" --version | awk '/^Version:/ { print $2 }')
  mkdir -p "$stamp_dir"
  printf 'version=%s\nkernel=%s\ninet_dump=ok\n' "$ver" "$kernel" >"$stamp.tmp"
  mv "$stamp.tmp" "$stamp"
}

if [ -x "$criu" ] && [ -f "$stamp" ] && grep -qx "kernel=$kernel" "$stamp" &&
   grep -qx "version=$("$criu" --version 2>/dev/null | awk '/^Version:/ { print $2 }')" "$stamp"; then
  exit 0
fi
if [ -x "$criu" ] && smoke_test 2>/dev/null; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# A deb-src entry for sid that reuses the URI of the machine's own Debian source (the mirror
# this machine is allowed to reach), so `apt-get source` finds CRIU 4.2.
src=/etc/apt/sources.list.d/atoll-criu-src.sources
if [ ! -f "$src" ]; then
  uri=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  uri=${uri:-http://deb.debian.org/debian}
  printf 'Types: deb-src\nURIs: %s\nSuites: sid\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" >"$src"
  quiet apt-get update -q
fi
deps=(gcc make pkg-config python3 libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler
      libnl-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev libnftables-dev uuid-dev libaio-dev
      iptables xz-utils)
need=()
for pkg in "${deps[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
  quiet apt-get install -y -q --no-install-recommends "${need[@]}"
fi

work=$(mktemp -d /var/tmp/atoll-criu.XXXXXX)
chmod 0755 "$work"   # apt downloads as its _apt user
trap 'rm -rf "$work"' EXIT
# Only the upstream tarball is needed (apt checks it against the Sources index hash); a mirror
# that lacks the Debian diff makes `apt-get source` fail after fetching it, which is fine here.
(cd "$work" && apt-get source --download-only -q criu/sid >"$work/fetch.log" 2>&1) || true
orig=$(ls "$work"/criu_*.orig.tar.* 2>/dev/null | head -1 || true)
if [ -z "$orig" ]; then
  echo "setup: could not download CRIU's source from Debian sid:" >&2
  cat "$work/fetch.log" >&2
  exit 1
fi
tar -xf "$orig" -C "$work"
srcdir=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'criu-*' | head -1)
echo "setup: building CRIU from $(basename "$orig") (make -j2 criu)" >&2
quiet make -C "$srcdir" -j2 criu
install -D -m 0755 "$srcdir/criu/criu" "$criu"
smoke_test

#!/usr/bin/env bash
# Build the OCI runtime-tools validation suite offline, from Debian packages.
#
#   scripts/conformance/build.sh
#
# Idempotent. Installs what it needs with apt-get, fetches Debian's source
# package golang-github-opencontainers-runtime-tools into
# scripts/conformance/work/, and builds into scripts/conformance/work/bin/:
#   runtimetest              static helper the suite copies into bundles
#   rootfs-<goarch>.tar.gz   busybox rootfs made from Debian's busybox-static
#   validation/<name>.t      one binary per validation test program
#
# Only Debian's mirrors are needed: no GitHub, no Go module proxy. Go code is
# built in GOPATH mode against /usr/share/gocode (Debian's golang-*-dev
# packages); github.com/mndrix/tap-go, which Debian does not package, is
# replaced by our own implementation in scripts/conformance/tap-go/.
#
# Environment:
#   CONFORMANCE_WORK   work dir (default scripts/conformance/work)
#   CONFORMANCE_SUITES Debian suites to try for the source, in order
#                      (default "bookworm trixie sid")
#   CONFORMANCE_SKIP_APT=1  do not run apt-get install (packages already there)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${CONFORMANCE_WORK:-$HERE/work}"
SRCPKG=golang-github-opencontainers-runtime-tools
SUITES="${CONFORMANCE_SUITES:-bookworm trixie sid}"

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || [ "${CONFORMANCE_SKIP_APT:-}" = 1 ] ||
    die "run as root (apt-get install), or set CONFORMANCE_SKIP_APT=1"

mkdir -p "$WORK"

# --- 1. packages -----------------------------------------------------------
PKGS=(
    golang-go ca-certificates xz-utils patch
    busybox-static runc
    golang-github-blang-semver-dev
    golang-github-google-uuid-dev
    golang-github-hashicorp-go-multierror-dev
    golang-github-mrunalp-fileutils-dev
    golang-github-opencontainers-specs-dev
    golang-github-opencontainers-selinux-dev
    golang-github-sirupsen-logrus-dev
    golang-github-stretchr-testify-dev
    golang-gocapability-dev
    golang-github-urfave-cli-dev
    golang-github-xeipuuv-gojsonschema-dev
    golang-golang-x-sys-dev
    golang-gopkg-yaml.v3-dev
)
if [ "${CONFORMANCE_SKIP_APT:-}" != 1 ]; then
    missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$WORK/apt-install.log" 2>&1 ||
            { tail -20 "$WORK/apt-install.log" >&2; die "apt-get install failed"; }
    fi
fi
command -v go >/dev/null || PATH="/usr/lib/go/bin:$PATH"
command -v go >/dev/null || die "go not found after installing golang-go"
[ -x /bin/busybox ] || die "/bin/busybox missing (busybox-static)"

# --- 2. source ---------------------------------------------------------------
# A private apt configuration with deb-src entries derived from the system's
# own Debian mirror, so the system's sources are left untouched. bookworm is
# tried first; its pool may no longer carry the tarballs, so newer suites
# follow (the code still builds against bookworm's golang-*-dev packages).
mirror_uri() {
    local uri=""
    # deb822 .sources files
    uri="$(grep -hs -A5 -E '^Types:.*\bdeb\b' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' |
        grep -E '/debian/?$' | grep -v security | head -n1 || true)"
    if [ -z "$uri" ]; then
        # one-line format
        uri="$(grep -hs -E '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed -E 's/\[[^]]*\]//' | awk '{print $2}' |
            grep -E '/debian/?$' | grep -v security | head -n1 || true)"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

SRCDIR_LINK="$WORK/src/current"
if [ ! -f "$WORK/src/.extracted" ] || [ ! -d "$SRCDIR_LINK/validation" ]; then
    MIRROR="$(mirror_uri)"
    KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
    DL="$WORK/download"
    rm -rf "$DL" "$WORK/src"
    mkdir -p "$DL" "$WORK/src"
    got=""
    for suite in $SUITES; do
        A="$WORK/apt/$suite"
        mkdir -p "$A/lists/partial" "$A/etc"
        echo "deb-src [signed-by=$KEYRING] $MIRROR $suite main" >"$A/etc/sources.list"
        APTO=(-o "Dir::Etc::SourceList=$A/etc/sources.list" -o "Dir::Etc::SourceParts=$A/etc/none"
              -o "Dir::State::Lists=$A/lists" -o "APT::Sandbox::User=root" -q)
        log "fetching $SRCPKG source from $MIRROR $suite"
        if ! apt-get "${APTO[@]}" update >"$A/update.log" 2>&1; then
            log "apt-get update for $suite failed (see $A/update.log)"; continue
        fi
        showsrc="$(apt-cache "${APTO[@]}" showsrc "$SRCPKG" 2>/dev/null || true)"
        [ -n "$showsrc" ] || { log "$SRCPKG not in $suite"; continue; }
        # the first stanza is the newest version
        stanza="$(printf '%s\n' "$showsrc" | awk 'BEGIN{RS=""} NR==1')"
        version="$(printf '%s\n' "$stanza" | awk '/^Version:/ {print $2; exit}')"
        rm -f "$DL"/*
        # The .dsc itself may 404 on some mirrors while the tarballs are
        # there: we only need the tarballs, whose hashes we check below.
        (cd "$DL" && apt-get "${APTO[@]}" source --download-only "$SRCPKG=$version" >"$A/source.log" 2>&1) || true
        ok=1; n=0
        while read -r sum size name; do
            case "$name" in *.dsc) continue ;; esac
            n=$((n + 1))
            if [ ! -f "$DL/$name" ] || [ "$(sha256sum "$DL/$name" | cut -d' ' -f1)" != "$sum" ]; then
                ok=0
            fi
        done < <(printf '%s\n' "$stanza" | awk '/^Checksums-Sha256:/ {f=1; next} /^[^ ]/ {f=0} f && NF==3 {print}')
        if [ "$ok" = 1 ] && [ "$n" -ge 1 ] && ls "$DL"/*.orig.tar.* >/dev/null 2>&1; then
            got="$suite $version"; break
        fi
        log "could not download a verified $SRCPKG $version from $suite (see $A/source.log)"
    done
    [ -n "$got" ] || die "no source for $SRCPKG from suites: $SUITES"
    log "got $SRCPKG $got"
    tar -xf "$DL"/*.orig.tar.* -C "$WORK/src"
    top="$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d | head -n1)"
    [ -d "$top/validation" ] || die "unexpected source layout in $top"
    if ls "$DL"/*.debian.tar.* >/dev/null 2>&1; then
        tar -xf "$DL"/*.debian.tar.* -C "$top"
        if [ -f "$top/debian/patches/series" ]; then
            while read -r p; do
                case "$p" in ''|'#'*) continue ;; esac
                patch -d "$top" -p1 --forward -s <"$top/debian/patches/$p" || die "patch $p failed"
            done <"$top/debian/patches/series"
        fi
    fi
    ln -sfn "$(basename "$top")" "$SRCDIR_LINK"
    echo "$got" >"$WORK/src/.extracted"
fi
SRC="$(cd "$SRCDIR_LINK" && pwd -P)"

# --- 3. build ----------------------------------------------------------------
GP="$WORK/gopath"
mkdir -p "$GP/src/github.com/opencontainers" "$GP/src/github.com/mndrix"
ln -sfn "$SRC" "$GP/src/github.com/opencontainers/runtime-tools"
ln -sfn "$HERE/tap-go" "$GP/src/github.com/mndrix/tap-go"
export GO111MODULE=off GOPATH="$GP:/usr/share/gocode" GOCACHE="$WORK/gocache"
export GOPROXY=off GOFLAGS= GOTOOLCHAIN=local
GOARCH_="$(go env GOARCH)"
BIN="$WORK/bin"
mkdir -p "$BIN/validation"

cd "$GP/src/github.com/opencontainers/runtime-tools"
log "go test tap-go shim"
go test -count=1 github.com/mndrix/tap-go >/dev/null
log "building runtimetest (static)"
CGO_ENABLED=0 go build -tags "netgo osusergo" -o "$BIN/runtimetest" ./cmd/runtimetest
log "building validation programs"
go build -o "$BIN/validation/" ./validation/...
# drop binaries of tests that no longer exist in the source
for b in "$BIN"/validation/*; do
    [ -d "./validation/$(basename "$b")" ] || rm -f "$b"
done
n="$(find "$BIN/validation" -type f -perm -u+x | wc -l)"
[ "$n" -gt 0 ] || die "no validation binaries built"

# --- 4. rootfs -----------------------------------------------------------------
# Same layout as the rootfs the upstream suite ships (bin/ with busybox and
# its applet links, etc/passwd, etc/group, empty dev/ proc/ sys/), made from
# the local busybox-static so nothing is downloaded.
ROOTFS_TGZ="$BIN/rootfs-$GOARCH_.tar.gz"
BB_SUM="$(sha256sum /bin/busybox | cut -d' ' -f1)"
if [ ! -f "$ROOTFS_TGZ" ] || [ "$(cat "$ROOTFS_TGZ.busybox" 2>/dev/null)" != "$BB_SUM" ]; then
    log "building $(basename "$ROOTFS_TGZ") from /bin/busybox"
    R="$WORK/rootfs.tmp"
    rm -rf "$R"
    mkdir -p "$R/bin" "$R/dev" "$R/etc" "$R/proc" "$R/sys"
    cp /bin/busybox "$R/bin/busybox"
    chmod 0755 "$R/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
    done
    cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$R/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
users:x:100:
nogroup:x:65534:
EOF
    tar --numeric-owner --owner=0 --group=0 -czf "$ROOTFS_TGZ.tmp" -C "$R" .
    mv "$ROOTFS_TGZ.tmp" "$ROOTFS_TGZ"
    echo "$BB_SUM" >"$ROOTFS_TGZ.busybox"
    rm -rf "$R"
fi

log "ok: $n validation programs in $BIN/validation ($(cat "$WORK/src/.extracted"))"

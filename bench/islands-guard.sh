#!/usr/bin/env bash
# The guard's idle cost inside islands. Not a test: prints medians and the ratio.
# Two islands of one project run the same syscall-heavy loop (N getpid calls, atoll-probe bound
# in read-only): `plain` with the islands' default seccomp profile and the guard off, `guarded`
# with the same profile plus the guard's trap rules (enforce). Every island has a seccomp
# filter, so this is the comparison an island user sees; bench/guard.sh compares against no
# filter at all.
#
#   bench/islands-guard.sh            # N=5000000, ROUNDS=7
#   (needs cargo build --release -p atoll -p atoll-probe: the probe is a test-only package)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/islands-guard.sh must run as root" >&2; exit 1; }
N=${N:-5000000} ROUNDS=${ROUNDS:-7}
ATOLL=$(realpath "${ATOLL:-target/release/atoll}")
PROBE=$(realpath "${PROBE:-target/release/atoll-probe}")
work=$(mktemp -d /tmp/atoll-islands-guard.XXXXXX)
chmod 755 "$work"  # islands reach their data dirs as unprivileged host uids
trap '"$ATOLL" down benchguard >/dev/null 2>&1 || true; rm -rf "$work" /var/log/atoll/islands/benchguard' EXIT
cat > "$work/islands.toml" <<TOML
name = "benchguard"
data_root = "$work/data"
[[island]]
name = "plain"
command = ["/bin/busybox", "sleep", "3600"]
binds = ["$PROBE:/opt/atoll-probe"]
guard = "off"
[[island]]
name = "guarded"
command = ["/bin/busybox", "sleep", "3600"]
binds = ["$PROBE:/opt/atoll-probe"]
guard = "enforce"
TOML
"$ATOLL" up "$work/islands.toml" >/dev/null
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
plain=() guarded=()
run() { "$ATOLL" island exec "benchguard/$1" -- /opt/atoll-probe getpid-loop "$N"; }
for r in $(seq "$ROUNDS"); do # interleaved, first one then the other, so drift hits both alike
    if [ $((r % 2)) = 1 ]; then
        plain+=("$(run plain)"); guarded+=("$(run guarded)")
    else
        guarded+=("$(run guarded)"); plain+=("$(run plain)")
    fi
done
p=$(printf '%s\n' "${plain[@]}" | median)
g=$(printf '%s\n' "${guarded[@]}" | median)
echo "getpid loop in an island, ns per call (median of $ROUNDS x $N):"
echo "  guard off: $p   guard on: $g   ratio on/off: $(awk -v a="$g" -v b="$p" 'BEGIN {printf "%.3f", a / b}')"
echo "  raw off: ${plain[*]}"
echo "  raw on:  ${guarded[*]}"

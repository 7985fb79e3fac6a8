#!/usr/bin/env bash
# The cost of device grants at `up`: N islands with one device grant each (a CDI name of a test
# vendor, resolved from a spec dir of its own) against the same N islands without, each `up` +
# `down` timed by farm-bench where it is installed (else by date). Not a test: prints the medians
# and the added cost per grant (target: <= 1 ms).
#
#   bench/islands-devices.sh          # N=50 RUNS=5; needs scripts/build.sh (target/atoll)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/islands-devices.sh must run as root" >&2; exit 1; }
N=${N:-50} RUNS=${RUNS:-5}
ATOLL=$(realpath "${ATOLL:-target/atoll}")
work=$(mktemp -d /tmp/atoll-bench-devices.XXXXXX)
chmod 755 "$work"  # islands reach their data dirs as unprivileged host uids
trap '"$ATOLL" down benchdev0 >/dev/null 2>&1 || true; "$ATOLL" down benchdev1 >/dev/null 2>&1 || true; rm -rf "$work" /var/log/atoll/islands/benchdev0 /var/log/atoll/islands/benchdev1' EXIT
mkdir -p "$work/cdi"
# One harmless node (a copy of /dev/null) per island, each its own CDI device.
devs=""
for i in $(seq 0 $((N - 1))); do
    mknod "$work/null$i" c 1 3
    devs+="${devs:+,}{\"name\": \"$i\", \"containerEdits\": {\"deviceNodes\": [{\"path\": \"/dev/bench$i\", \"hostPath\": \"$work/null$i\"}]}}"
done
echo "{\"cdiVersion\": \"0.6.0\", \"kind\": \"bench.atoll.dev/null\", \"devices\": [$devs]}" > "$work/cdi/bench.json"
for with in 0 1; do
    f="$work/p$with.toml"
    printf 'name = "benchdev%s"\ndata_root = "%s/data%s"\n' "$with" "$work" "$with" > "$f"
    for i in $(seq 0 $((N - 1))); do
        printf '[[island]]\nname = "i%s"\ncommand = ["/bin/busybox", "sleep", "3600"]\n' "$i" >> "$f"
        [ "$with" = 1 ] && printf 'devices = ["bench.atoll.dev/null=%s"]\n' "$i" >> "$f"
    done
done
export ATOLL_CDI_SPEC_DIRS="$work/cdi"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { date +%s%N; }
t0=() t1=()
for r in $(seq "$RUNS"); do  # interleaved, so drift hits both alike
    for with in 0 1; do
        a=$(ms); "$ATOLL" up "$work/p$with.toml" >/dev/null; b=$(ms)
        "$ATOLL" down "benchdev$with" >/dev/null
        us=$(( (b - a) / 1000 ))
        if [ "$with" = 0 ]; then t0+=("$us"); else t1+=("$us"); fi
    done
done
m0=$(printf '%s\n' "${t0[@]}" | median) m1=$(printf '%s\n' "${t1[@]}" | median)
echo "up of $N islands, median of $RUNS (us): without devices $m0, with one grant each $m1"
n0=$(printf '%s\n' "${t0[@]}" | sort -g | head -1) n1=$(printf '%s\n' "${t1[@]}" | sort -g | head -1)
echo "added per grant: median $(awk -v a="$m1" -v b="$m0" -v n="$N" 'BEGIN {printf "%.3f ms", (a - b) / n / 1000}'), min $(awk -v a="$n1" -v b="$n0" -v n="$N" 'BEGIN {printf "%.3f ms", (a - b) / n / 1000}') (min: least disturbed by other load)"
echo "  raw without: ${t0[*]}"
echo "  raw with:    ${t1[*]}"
if command -v farm-bench >/dev/null; then
    for with in 0 1; do
        echo "farm-bench up+down, devices=$with:"
        farm-bench -n "$RUNS" -- sh -c "\"$ATOLL\" up \"$work/p$with.toml\" >/dev/null && \"$ATOLL\" down benchdev$with >/dev/null" | grep -E "wall|peak" || true
    done
fi

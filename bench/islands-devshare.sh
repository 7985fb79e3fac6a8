#!/usr/bin/env bash
# The cost of device grants and shares at `up` (issue 11's bench): `up` of N islands, each
# with one device grant (a CDI name of a test vendor: a copy of /dev/null, resolved by the
# atoll-cdi helper) and one [[share]] (an idmapped bind of a host dir), against the same N
# islands with only the grants, only the shares, and neither. Rounds alternate the four, so
# drift hits all alike. Not a test: prints medians and the added cost per device grant and per
# share (target: <= 1 ms each).
#
#   bench/islands-devshare.sh         # N=50 ROUNDS=5; needs scripts/build.sh (target/atoll,
#                                     # target/.../atoll-cdi beside it)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/islands-devshare.sh must run as root" >&2; exit 1; }
N=${N:-50} ROUNDS=${ROUNDS:-5}
ATOLL=$(realpath "${ATOLL:-target/atoll}")
[ -x "$(dirname "$ATOLL")/atoll-cdi" ] || { echo "no atoll-cdi beside $ATOLL (scripts/build.sh)" >&2; exit 1; }
work=$(mktemp -d /tmp/atoll-bench-devshare.XXXXXX)
chmod 755 "$work"  # islands reach their data dirs as unprivileged host uids
kinds="none dev share both"
cleanup() {
    for k in $kinds; do "$ATOLL" down "bds$k" >/dev/null 2>&1 || true; done
    rm -rf "$work"
    for k in $kinds; do rm -rf "/var/log/atoll/islands/bds$k"; done
}
trap cleanup EXIT
mkdir -p "$work/cdi"
devs=""
for i in $(seq 0 $((N - 1))); do
    mknod "$work/null$i" c 1 3
    devs+="${devs:+,}{\"name\": \"$i\", \"containerEdits\": {\"deviceNodes\": [{\"path\": \"/dev/bench$i\", \"hostPath\": \"$work/null$i\"}]}}"
    mkdir -p "$work/share/s$i"
    chown 1001:1001 "$work/share/s$i"
done
echo "{\"cdiVersion\": \"0.6.0\", \"kind\": \"bench.atoll.dev/null\", \"devices\": [$devs]}" > "$work/cdi/bench.json"
export ATOLL_CDI_SPEC_DIRS="$work/cdi"
for k in $kinds; do
    f="$work/$k.toml"
    printf 'name = "bds%s"\ndata_root = "%s/data-%s"\n' "$k" "$work" "$k" > "$f"
    for i in $(seq 0 $((N - 1))); do
        printf '[[island]]\nname = "i%s"\ncommand = ["/bin/busybox", "sleep", "3600"]\n' "$i" >> "$f"
        case $k in dev|both) printf 'devices = ["bench.atoll.dev/null=%s"]\n' "$i" >> "$f" ;; esac
        case $k in share|both)
            printf '[[share]]\nname = "s%d"\nhost = "%s"\nowner = 1001\nislands = ["i%d"]\n' \
                "$i" "$work/share/s$i" "$i" >> "$f" ;;
        esac
    done
done
# Microseconds of one `up` (then `down`, not timed).
one() {
    local t0 t1
    t0=$(date +%s%N)
    "$ATOLL" up "$work/$1.toml" >/dev/null
    t1=$(date +%s%N)
    "$ATOLL" down "bds$1" >/dev/null
    rm -rf "$work/data-$1"
    echo $(((t1 - t0) / 1000))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for k in $kinds; do one "$k" >/dev/null; : > "$work/t-$k"; done   # warm-up
for _ in $(seq "$ROUNDS"); do
    for k in $kinds; do one "$k" >> "$work/t-$k"; done
done
declare -A m
for k in $kinds; do
    m[$k]=$(median < "$work/t-$k")
    printf 'up of %s islands, %-5s median %6d us   raw: %s\n' "$N" "$k:" "${m[$k]}" "$(tr '\n' ' ' < "$work/t-$k")"
done
per() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN {printf "%.3f ms", (a - b) / n / 1000}'; }
echo "added per device grant: $(per "${m[dev]}" "${m[none]}") (devices only vs none), $(per "${m[both]}" "${m[share]}") (both vs shares only)"
echo "added per share:        $(per "${m[share]}" "${m[none]}") (shares only vs none), $(per "${m[both]}" "${m[dev]}") (both vs devices only)"
echo "added per island with one of each: $(per "${m[both]}" "${m[none]}") (target <= 2 ms: 1 ms each)"

#!/usr/bin/env bash
# The cost of shares on `up`. Not a test: prints medians; see docs/bench.md.
# `up` + `down` of N islands (no links), each with one [[share]] of its own (an idmapped bind
# of a host dir), against the same N islands without shares; the added cost per share is
# (median with - median without) / N.
#
#   bench/shares.sh                  # N=50, ROUNDS=7
#   N=20 ROUNDS=5 ATOLL=target/atoll bench/shares.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/shares.sh must run as root" >&2; exit 1; }
N=${N:-50} ROUNDS=${ROUNDS:-7}
ATOLL=${ATOLL:-$(ls target/atoll 2>/dev/null || echo target/debug/atoll)}
ATOLL=$(realpath "$ATOLL")
work=$(mktemp -d /tmp/atoll-shares-bench.XXXXXX)
trap '"$ATOLL" down bshw >/dev/null 2>&1 || true; "$ATOLL" down bshn >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
chmod 755 "$work"

# $1: project name, $2: "share" or "none".
file() {
    echo "name = \"$1\""
    echo "data_root = \"$work/data-$1\""
    for i in $(seq 0 $((N - 1))); do
        printf '[[island]]\nname = "i%d"\ncommand = ["/bin/busybox", "sleep", "3600"]\n' "$i"
        if [ "$2" = share ]; then
            mkdir -p "$work/share/s$i"
            chown 1001:1001 "$work/share/s$i"
            printf '[[share]]\nname = "s%d"\nhost = "%s"\nowner = 1001\nislands = ["i%d"]\n' \
                "$i" "$work/share/s$i" "$i"
        fi
    done
}
file bshw share > "$work/with.toml"
file bshn none > "$work/without.toml"

# Milliseconds of one `up` (then `down`, not timed).
one() {
    local t0 t1
    t0=$(date +%s%N)
    "$ATOLL" up "$1" >/dev/null
    t1=$(date +%s%N)
    "$ATOLL" down "$2" >/dev/null
    rm -rf "$work/data-$2"
    echo $(((t1 - t0) / 1000))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== up of $N islands, with one share each and without ($ROUNDS rounds, alternating)"
: > "$work/w" ; : > "$work/n"
one "$work/with.toml" bshw >/dev/null   # warm-up
one "$work/without.toml" bshn >/dev/null
for _ in $(seq "$ROUNDS"); do
    one "$work/with.toml" bshw >> "$work/w"
    one "$work/without.toml" bshn >> "$work/n"
done
w=$(median < "$work/w") n=$(median < "$work/n")
echo "with shares:    median $((w / 1000)) ms"
echo "without shares: median $((n / 1000)) ms"
echo "added per share: $(((w - n) / N)) us (target <= 1000 us)"

#!/usr/bin/env bash
# `atoll graph` of a live project of N islands (default 100): a chain plus a cross link every
# 7 islands, one allow rule per link, brought up with `up --net-only` (links, addresses and the
# border guard are real; no island is started: the graph reads the same plan, the same nft
# counters and one state lookup per island either way). Not a test: prints the median wall time
# per layout and its ratio to the target (1 s for 100 islands). There is nothing to compare
# side by side: no other runtime draws its tenants.
#
#   bench/graph.sh                 # N=100, ROUNDS=7, target/release/atoll
#   ATOLL=target/debug/atoll N=50 bench/graph.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/graph.sh must run as root" >&2; exit 1; }
N=${N:-100} ROUNDS=${ROUNDS:-7} NAME=${NAME:-benchgraph}
ATOLL=$(realpath "${ATOLL:-target/release/atoll}")
work=$(mktemp -d /tmp/atoll-bench-graph.XXXXXX)
trap '"$ATOLL" down "$NAME" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
{
    echo "name = \"$NAME\""
    echo 'subnet = "10.101.0.0/16"'
    echo 'log_drops = false'
    for i in $(seq 0 $((N - 1))); do
        printf '[[island]]\nname = "i%d"\ncommand = ["/bin/busybox", "sleep", "3600"]\n' "$i"
    done
    link() {
        printf '[[link]]\nbetween = ["i%d", "i%d"]\n' "$1" "$2"
        printf '[[allow]]\nfrom = "i%d"\nto = "i%d"\nproto = "tcp"\nports = [%d]\n' "$1" "$2" $((5000 + $2))
    }
    for i in $(seq 1 $((N - 1))); do link $((i - 1)) "$i"; done
    for i in $(seq 0 7 $((N - 8))); do link "$i" $((i + 7)); done
} > "$work/islands.toml"
"$ATOLL" up --net-only "$work/islands.toml" >/dev/null
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for layout in graphviz builtin; do
    times=()
    for _ in $(seq "$ROUNDS"); do
        t0=$(date +%s%N)
        "$ATOLL" graph "$NAME" --layout "$layout" --svg "$work/graph.svg"
        t1=$(date +%s%N)
        times+=("$(( (t1 - t0) / 1000000 ))")
    done
    m=$(printf '%s\n' "${times[@]}" | median)
    echo "atoll graph, $N islands live, layout $layout: median $m ms of $ROUNDS (target 1000 ms, ratio $(awk -v m="$m" 'BEGIN {printf "%.2f", m / 1000}'))"
    echo "  raw ms: ${times[*]}"
done

#!/usr/bin/env bash
# How long `atoll doctor` takes to answer on a 10-island project (target: under 200 ms), for a
# healthy flow, a flow the border guard drops (the probe waits out its timeout) and a peer that
# does not listen; and `atoll status` with its per-island verdicts. Not a test: prints
# farm-bench's min/median/max per question.
#
#   bench/doctor.sh          # needs scripts/build.sh (the release binary) and farm-bench
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/doctor.sh must run as root" >&2; exit 1; }
ATOLL=$(realpath "${ATOLL:-target/release/atoll}")
RUNS=${RUNS:-20}
work=$(mktemp -d /tmp/atoll-bench-doctor.XXXXXX)
chmod 755 "$work"
trap '"$ATOLL" down benchdoc >/dev/null 2>&1 || true; rm -rf "$work" /var/log/atoll/islands/benchdoc' EXIT
{
    echo "name = \"benchdoc\""
    echo "data_root = \"$work/data\""
    for i in $(seq 0 9); do
        printf '[[island]]\nname = "i%d"\ncommand = ["/bin/busybox", "nc", "-ll", "-p", "5432", "-e", "busybox", "echo", "i%d"]\n' "$i" "$i"
    done
    for i in $(seq 0 8); do
        printf '[[link]]\nbetween = ["i%d", "i%d"]\n' "$i" $((i + 1))
        printf '[[allow]]\nfrom = "i%d"\nto = "i%d"\nproto = "tcp"\nports = [5432, 6000]\n' "$i" $((i + 1))
    done
} > "$work/islands.toml"
"$ATOLL" up "$work/islands.toml" >/dev/null
echo "== atoll doctor on a 10-island project ($RUNS runs each; target: median under 200 ms)"
ask() {
    local what=$1; shift
    echo "-- $what: atoll $*"
    farm-bench -n "$RUNS" -- "$ATOLL" "$@" | grep -E "wall|peak" || true
}
ask "healthy flow (all five layers ok)" doctor benchdoc/i4 --to i5:5432
ask "dropped by the border guard (the reverse of an allow)" doctor benchdoc/i5 --to i4:5432
ask "peer not listening" doctor benchdoc/i4 --to i5:6000
ask "no question (process, files, network)" doctor benchdoc/i4
ask "status with per-island verdicts" status benchdoc

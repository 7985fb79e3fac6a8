#!/usr/bin/env bash
# Run the OCI validation suite for runc and for atoll and compare.
#
#   scripts/conformance/compare.sh ATOLL_BIN
#
# Needs root and scripts/conformance/build.sh first. Uses /usr/sbin/runc
# (Debian's runc package, installed if missing; override with RUNC=...).
# Prints both summaries; exits 1 if atoll passes fewer TAP assertions than
# runc, 2 on setup errors, 0 otherwise. TAP output goes to
# scripts/conformance/work/results/<runtime>/ and work/<runtime>.tap.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${CONFORMANCE_WORK:-$HERE/work}"
RESULTS="${CONFORMANCE_RESULTS:-$WORK/results}"
RUNC="${RUNC:-/usr/sbin/runc}"

die() { printf 'compare.sh: error: %s\n' "$*" >&2; exit 2; }
[ $# = 1 ] || die "usage: compare.sh ATOLL_BIN"
ATOLL="$1"
[ -x "$ATOLL" ] || die "atoll binary not executable: $ATOLL"
ATOLL="$(cd "$(dirname "$ATOLL")" && pwd -P)/$(basename "$ATOLL")"

if [ ! -x "$RUNC" ] && [ "$RUNC" = /usr/sbin/runc ]; then
    echo "compare.sh: installing Debian's runc" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >/dev/null 2>&1 ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >/dev/null 2>&1; } ||
        die "could not install runc"
fi
[ -x "$RUNC" ] || die "runc not found at $RUNC"

run_one() { # BIN -> prints run.sh output, leaves summary.env
    "$HERE/run.sh" "$1" "$WORK/$(basename "$1").tap" || die "run.sh failed for $1"
}

echo "=== runc: $RUNC ($("$RUNC" --version 2>/dev/null | head -n1))"
run_one "$RUNC"
echo
echo "=== atoll: $ATOLL ($("$ATOLL" --version 2>/dev/null | head -n1))"
run_one "$ATOLL"

load() { # DIR VAR-PREFIX
    local k v
    while IFS='=' read -r k v; do printf -v "$2_$k" '%s' "$v"; done <"$1/summary.env"
}
load "$RESULTS/$(basename "$RUNC")" R
load "$RESULTS/$(basename "$ATOLL")" A

echo
echo "=== comparison"
printf '%-8s %8s %8s %8s %8s %14s %8s\n' runtime passed failed skipped todo programs-ok wall
printf '%-8s %8d %8d %8d %8d %10d/%-3d %7ds\n' runc "$R_passed" "$R_failed" "$R_skipped" "$R_todo" "$R_programs_ok" "$R_programs" "$R_wall_s"
printf '%-8s %8d %8d %8d %8d %10d/%-3d %7ds\n' atoll "$A_passed" "$A_failed" "$A_skipped" "$A_todo" "$A_programs_ok" "$A_programs" "$A_wall_s"

# programs runc passes completely but atoll does not: the actionable list
ok_progs() { awk '$1 == "PASS" {print $2}' "$1" | sort; }
if [ -f "$RESULTS/$(basename "$RUNC")/programs.txt" ] && [ -f "$RESULTS/$(basename "$ATOLL")/programs.txt" ]; then
    regress="$(comm -23 <(ok_progs "$RESULTS/$(basename "$RUNC")/programs.txt") \
                        <(ok_progs "$RESULTS/$(basename "$ATOLL")/programs.txt") | tr '\n' ' ')"
    [ -z "$regress" ] || echo "compare.sh: programs passing for runc but not atoll: $regress"
fi

# The gate compares passed assertions, leaving out programs that are flaky
# for reasons of their own (pidfile kills a container running `true`, racing
# its exit: it passes or fails from run to run even for runc).
EXCLUDE="${CONFORMANCE_GATE_EXCLUDE-pidfile}"
gate_passed() { # programs.txt -> sum of ok= over non-excluded programs
    awk -v ex=" $EXCLUDE " '
        index(ex, " " $2 " ") == 0 { for (i = 3; i <= NF; i++) if ($i ~ /^ok=/) { sub(/^ok=/, "", $i); n += $i } }
        END { print n + 0 }' "$1"
}
R_gate="$(gate_passed "$RESULTS/$(basename "$RUNC")/programs.txt")"
A_gate="$(gate_passed "$RESULTS/$(basename "$ATOLL")/programs.txt")"
[ -z "$EXCLUDE" ] || echo "compare.sh: gate leaves out: $EXCLUDE"
if [ "$A_gate" -lt "$R_gate" ]; then
    echo "compare.sh: FAIL: atoll passed $A_gate assertions, runc $R_gate"
    exit 1
fi
echo "compare.sh: OK: atoll passed $A_gate assertions, runc $R_gate"
exit 0

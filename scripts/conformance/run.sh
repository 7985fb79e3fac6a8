#!/usr/bin/env bash
# Run the OCI runtime-tools validation suite against a runc-compatible runtime.
#
#   scripts/conformance/run.sh RUNTIME_BINARY [OUTFILE]
#
# Needs root and a prior scripts/conformance/build.sh. Every validation
# program runs with RUNTIME=<binary>, in a scratch directory holding
# runtimetest and rootfs-<arch>.tar.gz (the suite reads both from its working
# directory), under a per-test timeout. Per-test TAP (stdout) and stderr go to
# $CONFORMANCE_RESULTS/<runtime>/<test>.tap|.stderr; OUTFILE, if given, gets
# all TAP streams concatenated plus the summary.
#
# Prints one line per program and ends with
#   conformance: RUNTIME N passed, M failed
# where N/M count TAP "ok"/"not ok" assertions (SKIP results are counted
# apart, TODO failures too), preceded by skipped/todo counts and the number of
# programs that passed completely (exit 0, plan complete, no "not ok").
#
# Environment:
#   CONFORMANCE_TIMEOUT  seconds per program (default 60)
#   CONFORMANCE_TESTS    space-separated subset of program names
#   CONFORMANCE_RESULTS  results dir (default scripts/conformance/work/results)
#   CONFORMANCE_WORK     work dir (default scripts/conformance/work)
#
# Exit status: 0 when the suite ran (whatever the counts), 2 on usage or setup
# errors. Compare runtimes with compare.sh.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${CONFORMANCE_WORK:-$HERE/work}"
BIN="$WORK/bin"
TIMEOUT="${CONFORMANCE_TIMEOUT:-60}"

die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 2; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: run.sh RUNTIME_BINARY [OUTFILE]"
[ "$(id -u)" = 0 ] || die "the validation suite needs root"
RT_ARG="$1"
OUTFILE="${2:-}"
RT="$(command -v -- "$RT_ARG" 2>/dev/null || true)"
[ -n "$RT" ] && [ -x "$RT" ] || die "runtime binary not found or not executable: $RT_ARG"
RT="$(cd "$(dirname "$RT")" && pwd -P)/$(basename "$RT")"
RT_NAME="$(basename "$RT")"

ARCH="$(go env GOARCH 2>/dev/null || true)"
[ -n "$ARCH" ] || case "$(uname -m)" in
    x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; *) ARCH="$(uname -m)" ;;
esac
ROOTFS="$BIN/rootfs-$ARCH.tar.gz"
[ -x "$BIN/runtimetest" ] && [ -f "$ROOTFS" ] && [ -d "$BIN/validation" ] ||
    die "suite not built: run scripts/conformance/build.sh first"

if [ -n "${CONFORMANCE_TESTS:-}" ]; then
    TESTS=($CONFORMANCE_TESTS)
else
    TESTS=()
    for t in "$BIN"/validation/*; do [ -x "$t" ] && TESTS+=("$(basename "$t")"); done
fi
[ "${#TESTS[@]}" -gt 0 ] || die "no validation programs found in $BIN/validation"

RESULTS="${CONFORMANCE_RESULTS:-$WORK/results}/$RT_NAME"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
if [ -n "$OUTFILE" ]; then
    mkdir -p "$(dirname "$OUTFILE")"
    : >"$OUTFILE" || die "cannot write $OUTFILE"
fi

# Scratch: the suite's cwd (runtimetest + rootfs tarball) and TMPDIR, so
# every bundle it makes (os.MkdirTemp("", "ocitest")) lands here.
SCRATCH="$(mktemp -d /tmp/atoll-conformance.XXXXXX)"
cp "$BIN/runtimetest" "$SCRATCH/runtimetest"
cp "$ROOTFS" "$SCRATCH/rootfs-$ARCH.tar.gz"
# like /tmp: user-namespaced containers (linux_uid_mappings) must be able to
# reach their bundle as a non-root host uid
chmod 0755 "$SCRATCH"
mkdir -p "$SCRATCH/tmp"
chmod 1777 "$SCRATCH/tmp"

# Containers that existed before we started are not ours: never touch them.
list_ids() { "$RT" list -q 2>/dev/null | sed '/^[[:space:]]*$/d' | sort -u; }
BEFORE="$SCRATCH/ids.before"
list_ids >"$BEFORE"

STUCK="$SCRATCH/ids.stuck"   # containers that resisted delete -f: retried only at exit
: >"$STUCK"
cleanup_containers() { # [final]
    local id
    list_ids | comm -13 "$BEFORE" - | while read -r id; do
        if [ -z "${1:-}" ] && grep -qxF "$id" "$STUCK"; then continue; fi
        timeout 10 "$RT" kill "$id" KILL >/dev/null 2>&1 || true
        if ! timeout 10 "$RT" delete -f "$id" >/dev/null 2>&1; then
            printf 'run.sh: warning: could not delete container %s\n' "$id" >&2
            echo "$id" >>"$STUCK"
        fi
    done
}
cleanup_bundles() {
    # bundles may hold mounts if a runtime left them behind
    local m
    grep -F " $SCRATCH/" /proc/self/mounts 2>/dev/null | awk '{print $2}' | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$SCRATCH/tmp" 2>/dev/null
    mkdir -p "$SCRATCH/tmp"
    chmod 1777 "$SCRATCH/tmp"
}
final_cleanup() {
    cleanup_containers final
    cleanup_bundles
    rm -rf "$SCRATCH"
}
trap final_cleanup EXIT
trap 'exit 130' INT TERM

T_PASS=0 T_FAIL=0 T_SKIP=0 T_TODO=0 P_OK=0 P_TIMEOUT=0 P_ERR=0 P_YERR=0
FAILED_PROGS=()
START="$(date +%s)"

echo "conformance: running ${#TESTS[@]} programs against $RT (timeout ${TIMEOUT}s each)"
for name in "${TESTS[@]}"; do
    exe="$BIN/validation/$name"
    tap="$RESULTS/$name.tap"
    err="$RESULTS/$name.stderr"
    if [ ! -x "$exe" ]; then
        echo "conformance: no such program: $name" >&2
        P_ERR=$((P_ERR + 1)); FAILED_PROGS+=("$name"); continue
    fi
    t0="$(date +%s.%N)"
    (cd "$SCRATCH" && TMPDIR="$SCRATCH/tmp" RUNTIME="$RT" \
        timeout -k 10 "$TIMEOUT" "$exe" </dev/null >"$tap" 2>"$err")
    rc=$?
    t1="$(date +%s.%N)"
    cleanup_containers
    cleanup_bundles

    # Count top-level TAP lines only (YAML blocks and nested output are
    # indented). "ok ... # SKIP" is a skip, "not ok ... # TODO" a todo.
    # Some programs print several TAP streams: their plans add up. A YAML
    # block with an "error:" key that follows no test point is an error the
    # program reported without an assertion (counted in yerr).
    read -r p f s td plan yerr < <(awk '
        /^ok( |$)/      { if (tolower($0) ~ /# *skip/) s++; else p++; last = "point"; next }
        /^not ok( |$)/  { if (tolower($0) ~ /# *todo/) td++; else f++; last = "point"; next }
        /^1\.\.[0-9]+/  { sub(/^1\.\./, ""); plan += $1; seen = 1; last = ""; next }
        /^  ---/        { inyaml = 1; orphan = (last != "point"); next }
        /^  \.\.\./        { inyaml = 0; next }
        inyaml && orphan && /^  error:/ { yerr++; next }
        /^[^ ]/         { last = "" }
        END { printf "%d %d %d %d %d %d\n", p, f, s, td, (seen ? plan : -1), yerr }
    ' "$tap")
    total=$((p + f + s + td))
    T_PASS=$((T_PASS + p)); T_FAIL=$((T_FAIL + f)); T_SKIP=$((T_SKIP + s)); T_TODO=$((T_TODO + td))

    status=PASS; why=""
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        status=FAIL; why=" timeout"; P_TIMEOUT=$((P_TIMEOUT + 1))
    elif [ "$rc" != 0 ]; then
        status=FAIL; why=" exit=$rc"; P_ERR=$((P_ERR + 1))
    fi
    if [ "$f" -gt 0 ]; then status=FAIL; fi
    if [ "$yerr" -gt 0 ]; then status=FAIL; why="$why reported-error"; P_YERR=$((P_YERR + 1)); fi
    if [ "$rc" = 0 ] && [ ! -s "$tap" ]; then
        # *_fail programs expect the runtime to refuse the config: they print
        # nothing and exit 0 when it does, and die with exit 1 when it doesn't
        why="$why negative-test"
    elif [ "$plan" -lt 0 ]; then
        status=FAIL; why="$why no-plan"
    elif [ "$plan" != "$total" ]; then
        status=FAIL; why="$why plan=$plan ran=$total"
    elif [ "$total" = 0 ]; then
        # the hook programs report a violation only as a YAML "error:" block
        # (caught above) and otherwise print just "1..0"
        why="$why no-assertions"
    fi
    [ "$status" = PASS ] && P_OK=$((P_OK + 1)) || FAILED_PROGS+=("$name")
    printf '%-4s %-36s ok=%-3d not-ok=%-3d skip=%-3d todo=%-2d %5.1fs%s\n' \
        "$status" "$name" "$p" "$f" "$s" "$td" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$why" |
        tee -a "$RESULTS/programs.txt"
    if [ -n "$OUTFILE" ]; then
        {
            echo "# ===== $name ($status, exit $rc) ====="
            cat "$tap"
            if [ -s "$err" ]; then sed 's/^/# stderr: /' "$err"; fi
        } >>"$OUTFILE"
    fi
done

WALL=$(( $(date +%s) - START ))
{
    echo "conformance: programs: ${P_OK}/${#TESTS[@]} passed completely, ${P_TIMEOUT} timed out, ${P_ERR} exited non-zero, ${P_YERR} reported errors outside assertions"
    [ "${#FAILED_PROGS[@]}" -eq 0 ] || echo "conformance: failing programs: ${FAILED_PROGS[*]}"
    echo "conformance: assertions: ${T_SKIP} skipped, ${T_TODO} todo; wall ${WALL}s; TAP in $RESULTS"
    echo "conformance: $RT_NAME $T_PASS passed, $T_FAIL failed"
} | tee -a "${OUTFILE:-/dev/null}"
# machine-readable copy for compare.sh
printf 'runtime=%s\npassed=%d\nfailed=%d\nskipped=%d\ntodo=%d\nprograms=%d\nprograms_ok=%d\nwall_s=%d\n' \
    "$RT" "$T_PASS" "$T_FAIL" "$T_SKIP" "$T_TODO" "${#TESTS[@]}" "$P_OK" "$WALL" >"$RESULTS/summary.env"
exit 0

#!/usr/bin/env bash
# The guard's cost. Not a test: prints medians and ratios; see docs/bench.md.
#   1. a syscall-heavy loop (N getpid calls in atoll-probe) in a container without any seccomp
#      filter and with the guard's filter (org.atoll.guard=enforce): ns per call, and the ratio;
#   2. the round trip of a trapped setns that the guard allows (the container's own netns):
#      median ns per call, against the same call with no filter.
#
#   bench/guard.sh                   # N=5000000 getpid calls, ROUNDS=7, SETNS=5000
#   N=1000000 ROUNDS=3 bench/guard.sh
#   ATOLL=target/release/atoll PROBE=target/release/atoll-probe bench/guard.sh
#   (the probe is a test-only package: cargo build --release -p atoll -p atoll-probe)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/guard.sh must run as root" >&2; exit 1; }
N=${N:-5000000} ROUNDS=${ROUNDS:-7} SETNS=${SETNS:-5000}
ATOLL=${ATOLL:-$(ls target/release/atoll 2>/dev/null || echo target/debug/atoll)}
PROBE=${PROBE:-$(ls target/release/atoll-probe 2>/dev/null || echo target/debug/atoll-probe)}
ATOLL=$(realpath "$ATOLL") PROBE=$(realpath "$PROBE")
BUSYBOX=$(command -v busybox)

work=$(mktemp -d /tmp/atoll-guard-bench.XXXXXX)
guard_pid=
cleanup() {
    [ -n "$guard_pid" ] && kill "$guard_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

bundle=$work/bundle root=$work/state
mkdir -p "$bundle/rootfs"/{bin,proc,dev,sys,tmp,etc}
cp "$BUSYBOX" "$bundle/rootfs/bin/busybox"
cp "$PROBE" "$bundle/rootfs/bin/atoll-probe"
for lib in $(ldd "$PROBE" | grep -o '/[^ ]*'); do
    mkdir -p "$bundle/rootfs$(dirname "$lib")" && cp "$lib" "$bundle/rootfs$lib"
done
"$ATOLL" spec --bundle "$bundle"

# config.json with the probe's args; $2: "guard" puts it under the guard.
config() {
    python3 - "$bundle/config.json" "$work/guard.sock" "$1" "$2" "$3" <<'PY'
import json, sys
path, sock, verb, count, guard = sys.argv[1:6]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/atoll-probe", verb, count]
for s in ("bounding", "effective", "permitted"):
    caps = c["process"]["capabilities"][s]
    if "CAP_SYS_ADMIN" not in caps:
        caps.append("CAP_SYS_ADMIN")
c.pop("annotations", None)
if guard == "guard":
    c["annotations"] = {"org.atoll.guard": "enforce", "org.atoll.guard.socket": sock}
if guard == "seccomp":  # any filter at all, for comparison: default allow, one unrelated rule
    c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]}
else:
    c["linux"].pop("seccomp", None)
json.dump(c, open(path, "w"))
PY
}

n=0
probe() { # verb count guard|plain -> the probe's number
    config "$1" "$2" "$3"
    n=$((n + 1))
    "$ATOLL" --root "$root" run --bundle "$bundle" "bench-$n" </dev/null
}

"$ATOLL" guard serve --socket "$work/guard.sock" --alerts "$work/alerts.jsonl" >/dev/null 2>&1 &
guard_pid=$!
while [ ! -S "$work/guard.sock" ]; do sleep 0.05; done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
plain=() filtered=() guarded=()
for _ in $(seq "$ROUNDS"); do # interleaved, so drift hits all alike
    plain+=("$(probe getpid-loop "$N" plain)")
    filtered+=("$(probe getpid-loop "$N" seccomp)")
    guarded+=("$(probe getpid-loop "$N" guard)")
done
p=$(printf '%s\n' "${plain[@]}" | median)
f=$(printf '%s\n' "${filtered[@]}" | median)
g=$(printf '%s\n' "${guarded[@]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.4f", a/b}'; }
echo "getpid x $N, median ns/call of $ROUNDS runs: no filter $p, a one-rule filter $f, guard filter $g"
echo "  guard/no filter $(ratio "$g" "$p"), guard/one-rule filter $(ratio "$g" "$f"), one-rule/no filter $(ratio "$f" "$p")"
echo "  no filter:       ${plain[*]}"
echo "  one-rule filter: ${filtered[*]}"
echo "  guard filter:    ${guarded[*]}"

s_plain=$(probe setns-loop "$SETNS" plain)
s_guard=$(probe setns-loop "$SETNS" guard)
echo "setns(own netns) x $SETNS, median per call: no filter $s_plain ns, trapped and allowed by the guard $s_guard ns"
if [ -s "$work/alerts.jsonl" ]; then
    echo "unexpected alerts:" && cat "$work/alerts.jsonl"
fi

#!/usr/bin/env bash
# Side-by-side benchmark: atoll vs crun, runc, bubblewrap and unshare on the same busybox
# bundle. Not a test: it prints medians (p10/p90) and atoll/peer ratios and saves raw JSON
# under bench/results/. See docs/bench.md.
#
#   bench/run.sh                 # everything, default iteration counts
#   bench/run.sh --no-atoll      # peers only (e.g. while atoll does not build)
#   bench/run.sh --quick         # small counts, to check the script itself
#   bench/run.sh --v2-view       # hybrid host only: every runtime sees a pure cgroup v2 host (the
#                                # cgroup2 hierarchy mounted over /sys/fs/cgroup in the benchmark's
#                                # namespace). Its controllers stay bound to v1, so this measures
#                                # the v2 code paths (CLONE_INTO_CGROUP) without controller costs.
#   bench/run.sh --favordynmods  # with the cgroup "favordynmods" mount option on (docs/bench.md:
#                                # it takes the kernel's RCU wait out of every runtime's cgroup
#                                # move). HOST-WIDE; clearing it is not reliable (6.18 still
#                                # showed it after a remount without it), the script warns.
#   ATOLL=/path/to/atoll bench/run.sh
#
# Counts: N_RUN (50) N_LIFECYCLE (30) PARALLEL (50) ROUNDS (5) N_RSS (20) WARMUP (3);
# TESTS=run,lifecycle,parallel,rss; RUNTIMES="atoll crun runc bwrap unshare";
# NO_AMBIENT=1 drops runc spec's process.capabilities.ambient from the (shared) config.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

use_atoll=1
favordynmods=0
v2_view=0
while [ $# -gt 0 ]; do
    case "$1" in
        --no-atoll) use_atoll=0 ;;
        --favordynmods) favordynmods=1 ;;
        --v2-view) v2_view=1 ;;
        --quick) N_RUN=${N_RUN:-5} N_LIFECYCLE=${N_LIFECYCLE:-3} PARALLEL=${PARALLEL:-10}
                 ROUNDS=${ROUNDS:-2} N_RSS=${N_RSS:-3} WARMUP=${WARMUP:-1} ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

[ "$(id -u)" = 0 ] || { echo "bench/run.sh must run as root" >&2; exit 1; }

# ---------------------------------------------------------------- requirements
need_pkgs=()
[ -x /usr/bin/time ] || need_pkgs+=(time)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
command -v bwrap >/dev/null || need_pkgs+=(bubblewrap)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "installing: ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null
fi
if command -v file >/dev/null && ! file -L /bin/busybox | grep -q 'statically linked'; then
    echo "/bin/busybox must be statically linked (Debian: busybox-static)" >&2; exit 1
fi
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

declare -A path=(
    [crun]=$(command -v crun || true)
    [runc]=$(command -v runc || echo /usr/sbin/runc)
    [bwrap]=$(command -v bwrap || true)
    [unshare]=$(command -v unshare || true)
)
if [ "$use_atoll" = 1 ]; then
    path[atoll]=${ATOLL:-$repo/target/atoll}
fi

runtime_args=() skip_args=()
for rt in ${RUNTIMES:-atoll crun runc bwrap unshare}; do
    p=${path[$rt]:-}
    if [ "$rt" = atoll ] && [ "$use_atoll" = 0 ]; then
        skip_args+=(--skip "atoll=--no-atoll given"); continue
    fi
    if [ -z "$p" ] || [ ! -x "$p" ]; then
        why="not found${p:+ at $p}"
        [ "$rt" = atoll ] && why="$why (scripts/build.sh, or set ATOLL=)"
        echo "warning: $rt $why; skipped" >&2
        skip_args+=(--skip "$rt=$why"); continue
    fi
    runtime_args+=(--runtime "$rt=$p")
done
[ ${#runtime_args[@]} -gt 0 ] || { echo "no runtime to measure" >&2; exit 1; }

# ---------------------------------------------------------------- bundles
work=$(mktemp -d /tmp/atoll-bench.XXXXXX)
# measure a private copy of atoll: others may rebuild it while this runs
for i in "${!runtime_args[@]}"; do
    case "${runtime_args[$i]}" in
        atoll=*) mkdir -p "$work/bin"; cp "${runtime_args[$i]#atoll=}" "$work/bin/atoll"
                 atoll_src=${runtime_args[$i]#atoll=}
                 runtime_args[$i]="atoll=$work/bin/atoll" ;;
    esac
done
driver=(python3 "$repo/bench/driver.py" --work "$work" "${runtime_args[@]}")

# Same kind of mount namespace for every runtime: private, and on a hybrid cgroup host
# (cgroup v1 controllers + cgroup2 at /sys/fs/cgroup/unified) without the cgroup2 mount,
# because crun 1.8 refuses hybrid hosts. A small throwaway tmpfs takes its place: crun,
# then seeing a v1 host, still mkdirs /sys/fs/cgroup/unified/<id> and writes cgroup.procs
# there, which would otherwise land as plain files on the host's /sys/fs/cgroup tmpfs
# (hidden under the real unified mount). The whole measurement loop runs inside ONE such
# namespace, so no per-call wrapper cost is measured.
# --v2-view instead mounts the cgroup2 hierarchy over /sys/fs/cgroup: a pure v2 host to all.
ns_setup='
    if [ "$ATOLL_BENCH_V2_VIEW" = 1 ]; then
        mount -t cgroup2 atoll-bench-v2view /sys/fs/cgroup || exit 97
        exec "$@"
    fi
    if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null &&
       [ "$(stat -fc %T /sys/fs/cgroup/unified)" = cgroup2fs ] &&
       [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
        umount /sys/fs/cgroup/unified || umount -l /sys/fs/cgroup/unified || exit 97
        mount -t tmpfs -o size=256m,mode=755 atoll-bench-nounified /sys/fs/cgroup/unified ||
            exit 97
    fi
    exec "$@"'
# unshare without --fork execs sh, which execs the command: one process, one pid
in_ns() { unshare -m --propagation private -- sh -c "$ns_setup" sh "$@"; }

leftover_cgroups() {
    find /sys/fs/cgroup -mindepth 1 -maxdepth 6 -type d -name 'atbench*' 2>/dev/null || true
}

child=
fdm_mount= fdm_opts=
cleanup() {
    rc=$?
    trap - EXIT INT TERM
    if [ -n "$fdm_mount" ]; then
        # try to clear it; the kernels tried so far keep the flag (no "nofavordynmods" for
        # cgroup2, and a remount without the option leaves it), so say so when it stays
        mount -o "remount,$fdm_opts" "$fdm_mount" 2>/dev/null || true
        if findmnt -n -o OPTIONS "$fdm_mount" | tr , '\n' | grep -qx favordynmods; then
            echo "WARNING: favordynmods still shows on $fdm_mount after a remount without it (host-wide)" >&2
        fi
    fi
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null || true   # the driver deletes its containers
        wait "$child" 2>/dev/null || true
    fi
    # delete --force every container still in a state dir (crun needs the namespace too)
    in_ns "${driver[@]}" --cleanup-only || true
    rm -rf "$work"
    left=$(leftover_cgroups)
    if [ -n "$left" ]; then
        echo "WARNING: leftover cgroups after the benchmark (removing):" >&2
        echo "$left" >&2
        echo "$left" | sort -r | while read -r d; do rmdir "$d" 2>/dev/null || true; done
        still=$(leftover_cgroups)
        [ -z "$still" ] || { echo "could not remove: $still" >&2; }
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,proc,dev,sys,tmp,etc}
cp /bin/busybox "$rootfs/bin/busybox"
for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -s busybox "$rootfs/bin/$a"
done

# config.json from `runc spec`, terminal false, args ["/bin/true"]: the file every runtime
# gets. The echo (sanity check) and sleep (parallel test) bundles differ only in args.
tmpl=$work/spec
mkdir -p "$tmpl"
runc spec --bundle "$tmpl"
for b in true echo sleep; do
    mkdir -p "$work/bundle-$b"
    cp -a "$rootfs" "$work/bundle-$b/rootfs"
    python3 - "$tmpl/config.json" "$work/bundle-$b/config.json" "$b" "${NO_AMBIENT:-0}" <<'PY'
import json, sys
src, dst, kind, no_ambient = sys.argv[1:]
c = json.load(open(src))
if no_ambient == "1":
    # variant, for every runtime alike: runc spec's ambient set (not in inheritable, so runc
    # and crun skip raising it) removed
    c["process"]["capabilities"].pop("ambient", None)
c["process"]["terminal"] = False
c["process"]["args"] = {"true": ["/bin/true"],
                        "echo": ["/bin/echo", "atoll-bench-ok"],
                        # 30 s, not 5: a slow runtime must not see its first containers exit
                        # before the last one started; they are deleted --force anyway
                        "sleep": ["/bin/sleep", "30"]}[kind]
json.dump(c, open(dst, "w"), indent=1)
PY
done

mkdir -p "$repo/bench/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
json_out=$repo/bench/results/bench-$stamp.json
cgmode=legacy
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then cgmode=unified
elif mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then cgmode=hybrid; fi
export ATOLL_BENCH_V2_VIEW=0
if [ "$v2_view" = 1 ]; then
    [ "$cgmode" = hybrid ] || { echo "--v2-view is for hybrid hosts (this one: $cgmode)" >&2; exit 1; }
    export ATOLL_BENCH_V2_VIEW=1
fi
# favordynmods: the threadgroup rwsem that every cgroup move takes for writing stops being a
# per-cpu rwsem, so a writer no longer waits for an RCU grace period (kernel >= 6.0). It is one
# kernel-wide flag, set through whichever cgroup2 mount is remounted with the option.
fdm_state=off
fdm_any=$(findmnt -n -t cgroup2 -o TARGET | head -1)
if [ -n "$fdm_any" ] && findmnt -n -o OPTIONS "$fdm_any" | tr , '\n' | grep -qx favordynmods; then
    fdm_state="on (already set on this host)"
fi
if [ "$favordynmods" = 1 ]; then
    m=$(findmnt -n -t cgroup2 -o TARGET | head -1)
    [ -n "$m" ] || { echo "--favordynmods: no cgroup2 mount to set it on" >&2; exit 1; }
    if findmnt -n -o OPTIONS "$m" | tr , '\n' | grep -qx favordynmods; then
        fdm_state="on (already set by the host)"
    else
        fdm_opts=$(findmnt -n -o OPTIONS "$m")
        mount -o remount,favordynmods "$m" ||
            { echo "--favordynmods: the kernel refused it on $m (kernel < 6.0?)" >&2; exit 1; }
        fdm_mount=$m fdm_state="on (remounted $m for this run)"
    fi
fi

meta=$(python3 -c 'import json,sys; print(json.dumps({"host_cgroup_mode": sys.argv[1],
  "git_commit": sys.argv[2], "git_dirty": sys.argv[3] != "", "atoll_binary": sys.argv[4],
  "atoll_sha256": sys.argv[5], "config_variant": "no-ambient" if sys.argv[6] == "1" else "runc spec",
  "cgroup_favordynmods": sys.argv[7],
  "measured_in": "one private mount namespace (unshare -m) for all runtimes; " + ("the cgroup2 "
  "hierarchy mounted over /sys/fs/cgroup (--v2-view: a pure v2 host, controllers bound to v1)"
  if sys.argv[8] == "1" else
  "on a hybrid host the cgroup2 mount at /sys/fs/cgroup/unified is replaced by a throwaway tmpfs")}))' "$cgmode" \
  "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$(git -C "$repo" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null | head -1)" \
  "${atoll_src:-}" "$( [ -n "${atoll_src:-}" ] && sha256sum "$work/bin/atoll" | cut -c1-16)" \
  "${NO_AMBIENT:-0}" "$fdm_state" "$v2_view")

[ "$v2_view" = 1 ] && echo "--v2-view: all runtimes see the cgroup2 hierarchy at /sys/fs/cgroup (controllers bound to v1)"
echo "host cgroup mode: $cgmode; cgroup favordynmods: $fdm_state; work dir: $work; config: $( [ "${NO_AMBIENT:-0}" = 1 ] &&
    echo 'runc spec without process.capabilities.ambient (NO_AMBIENT=1)' || echo 'runc spec')"
# in the background so that a signal to this script is handled at once (see cleanup)
unshare -m --propagation private -- sh -c "$ns_setup" sh "${driver[@]}" "${skip_args[@]}" \
    --n-run "${N_RUN:-50}" --n-lifecycle "${N_LIFECYCLE:-30}" --parallel "${PARALLEL:-50}" \
    --rounds "${ROUNDS:-5}" --n-rss "${N_RSS:-20}" --warmup "${WARMUP:-3}" \
    --tests "${TESTS:-run,lifecycle,parallel,rss}" --json "$json_out" --meta "$meta" &
child=$!
status=0
wait "$child" || status=$?
child=
exit "$status"

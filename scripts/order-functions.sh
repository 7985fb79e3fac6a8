#!/usr/bin/env bash
# Record which functions the runtime's common verbs execute, in order of first call, into
# crates/atoll/link/hot-functions.txt, which the linker wrapper (crates/atoll/link/cc-ordered)
# lays out first. Run it as root after changes that move the hot path (new dependencies, a new
# compiler); a stale list costs memory, never correctness. It takes a few minutes.
#
# How: a build with symbols, a uprobe (tracefs) on every one of its functions, then a workload of
# run, create/start/state/exec/ps/list/kill/delete and run -d/delete --force on a busybox bundle.
# The guard supervisor that `create` would start is this binary re-executed: its functions, laid
# out among the runtime's, would spread `run`'s hot code over more 64 KiB windows (a larger RSS).
# So a supervisor from a copy of the binary (another inode: no uprobes) is started first.
# What it cannot see (a function whose first instruction has a VEX or LOCK prefix: its uprobe
# never fires) goes by hand in crates/atoll/link/hot-functions-extra.txt, left alone here.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
[ "$(id -u)" = 0 ] || { echo "order-functions.sh must run as root (uprobes)" >&2; exit 1; }
trace=/sys/kernel/tracing
[ -e $trace/uprobe_events ] || mount -t tracefs nodev $trace
work=$(mktemp -d /tmp/atoll-order.XXXXXX)
cid=atoll-order-$$
bin=
cleanup() {
    # a workload that failed half-way may leave containers behind
    if [ -n "$bin" ]; then
        for n in 1 2 3 4; do "$bin" delete --force "$cid-$n" >/dev/null 2>&1 || true; done
    fi
    [ -z "${sup_pid:-}" ] || kill -- -"$sup_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# the very build scripts/build.sh ships (a different profile compiles to other functions), plus
# the linker's map for the addresses its stripped symbols had
map=$work/atoll.map
bin=$(CARGO_TARGET_DIR=$work/target ATOLL_LINK_MAP=$map scripts/build.sh -q)
[ -s "$map" ] || { echo "order-functions: no linker map: is crates/atoll/link/cc-ordered the linker?" >&2; exit 1; }

bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for a in sh true sleep; do ln -s busybox "$bundle/rootfs/bin/$a"; done
(cd "$bundle" && "$bin" spec)
set_args() { python3 - "$bundle/config.json" "$@" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False; c["process"]["args"] = sys.argv[2:]
json.dump(c, open(p, "w"))
PY
}
cat >"$work/workload.sh" <<WL
set -e
A=$bin; b=$bundle; id=$cid
\$A run -b \$b \$id-1 </dev/null
\$A run -b \$b \$id-2 </dev/null
python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["process"]["args"]=["/bin/sleep","5"]; json.dump(c,open(p,"w"))' \$b/config.json
\$A create -b \$b \$id-3 </dev/null >/dev/null
\$A start \$id-3
\$A state \$id-3 >/dev/null
\$A exec \$id-3 /bin/true
\$A ps \$id-3 >/dev/null
\$A list >/dev/null
\$A kill \$id-3 KILL
sleep 0.3
\$A delete \$id-3
\$A run -d -b \$b \$id-4 </dev/null >/dev/null
\$A delete --force \$id-4
WL
set_args /bin/true
cp "$bin" "$work/atoll-supervisor"
setsid "$work/atoll-supervisor" guard serve >"$work/supervisor.log" 2>&1 &
sup_pid=$!
answers() { "$work/atoll-supervisor" guard status | python3 -c 'import json,sys; sys.exit(not json.load(sys.stdin)["supervisor"]["answers"])'; }
for _ in $(seq 100); do answers && break; sleep 0.05; done
answers || { cat "$work/supervisor.log" >&2; echo "order-functions: the supervisor does not answer" >&2; exit 1; }
python3 - "$bin" "$map" "$work/workload.sh" "$repo/crates/atoll/link/hot-functions.txt" <<'PY'
import os, re, subprocess, sys
binary, mapfile, workload, out = sys.argv[1:]
T = "/sys/kernel/tracing"
segs = []
for line in subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    f = line.split()
    if f and f[0] == "LOAD":
        segs.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
def file_offset(v):
    for off, va, size in segs:
        if va <= v < va + size:
            return v - va + off
# lld's map: "VMA LMA Size Align Name" lines; Name is an output section (".text"), an input
# section ("file.o:(.text._ZN...)") or, below it, a symbol with its size
syms, section = {}, None
for line in open(mapfile):
    f = line.split()
    if len(f) != 5 or not re.fullmatch(r"[0-9a-f]+", f[0]):
        continue
    name = f[4]
    if name.startswith(".") and ":(" not in name:
        section = name
    elif section == ".text" and ":(" not in name and int(f[2], 16) > 0:
        syms.setdefault(int(f[0], 16), name)
addrs = sorted(syms)
def put(name, text):
    with open(os.path.join(T, name), "w") as fh:
        fh.write(text)
put("uprobe_events", "")
put("trace", "")
put("buffer_size_kb", "65536")
fd = os.open(os.path.join(T, "uprobe_events"), os.O_WRONLY | os.O_APPEND)
for i, a in enumerate(addrs):
    off = file_offset(a)
    if off is not None:
        os.write(fd, f"p:atollorder/f{i} {binary}:0x{off:x}\n".encode())
os.close(fd)
try:
    put("events/atollorder/enable", "1")
    rc = subprocess.run(["bash", workload]).returncode
    put("events/atollorder/enable", "0")
    lost = sum(int(l.split()[-1]) for c in os.listdir(os.path.join(T, "per_cpu"))
               for l in open(os.path.join(T, "per_cpu", c, "stats")) if l.startswith("overrun:"))
    if lost:
        sys.exit(f"order-functions: the trace buffer overran ({lost} events lost); raise buffer_size_kb")
    first, seen = [], set()
    with open(os.path.join(T, "trace")) as fh:
        for line in fh:
            m = re.search(r"\bf(\d+):", line)
            if m and int(m.group(1)) not in seen:
                seen.add(int(m.group(1)))
                first.append(int(m.group(1)))
finally:
    put("uprobe_events", "")
if rc != 0:
    sys.exit(f"order-functions: the workload failed (exit {rc}); {out} left as it was")
names = []
for i in first:
    n = syms[addrs[i]]
    if n.startswith(("_ZN", "_R")):
        # the hash and LLVM's ".<number>" of a local copy change with the build: see cc-ordered
        n = re.sub(r"17h[0-9a-f]{16}E$", "", re.sub(r"\.[0-9]+$", "", n))
    if n not in names:
        names.append(n)
with open(out, "w") as fh:
    fh.write("".join(n + "\n" for n in names))
print(f"order-functions: {len(first)} of {len(addrs)} functions ran; {len(names)} names -> {out}")
PY

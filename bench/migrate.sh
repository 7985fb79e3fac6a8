#!/usr/bin/env bash
# The outage of `atoll migrate` seen by a TCP peer: an echo server island holding 0 (small),
# 10 MB, 100 MB and 1 GB resident is migrated while a peer island sends a line every 10 ms;
# the outage is the longest wait for an echo (freeze to the first echoed byte after thaw).
# Side by side: atoll's own lock-to-unlock outage, and CRIU's own time on the same images (the
# spans of its dump.log and restore.log), and that plus CRIU's two process starts: CRIU driven
# by hand (`criu dump`, `criu restore`) with the same images.
# Not a test; prints one table.
#
#   bench/migrate.sh            # ATOLL=target/atoll (scripts/build.sh) for the release binary
#   SIZES="0 0 0" BENCH_JSON=/tmp/r.json BENCH_KEEP=/tmp/img bench/migrate.sh
#                               # repeat a size; keep atoll's reports and CRIU's images/logs
#   GUARD=enforce SIZES="0 0 0" bench/migrate.sh   # the island under the escape guard (its
#                               # layer is put back on the restored tasks: docs/migrate.md)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/migrate.sh must run as root" >&2; exit 1; }
ATOLL=$(realpath "${ATOLL:-target/debug/atoll}")
SIZES=${SIZES:-"0 10 100 1024"}
P=benchmig
work=$(mktemp -d /tmp/atoll-bench-migrate.XXXXXX)
chmod 755 "$work"
cleanup() {
    [ -n "${client:-}" ] && kill "$client" 2>/dev/null || true
    "$ATOLL" down $P >/dev/null 2>&1 || true
    rm -rf "$work" /var/log/atoll/islands/$P
}
trap cleanup EXIT

cat > "$work/peer.py" <<'EOF'
import socket, sys, time, signal
s = socket.create_connection((sys.argv[1], 7000), timeout=60)
f = s.makefile("rb")
gap, n, last = 0.0, 0, time.monotonic()
def done(*_):
    print(f"{gap * 1000:.0f} {n}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    s.sendall(b"%d\n" % n)
    if f.readline() != b"%d\n" % n:
        print("BAD", n, flush=True)
        sys.exit(1)
    now = time.monotonic()
    gap = max(gap, now - last)
    last = now
    n += 1
    time.sleep(0.01)
EOF

# CRIU's elapsed seconds in one of its logs (its last timestamp).
span() { tail -1 "$1" | sed -E 's/^\(([0-9.]+)\).*/\1/'; }

# CRIU's start: its exec and dynamic libraries, up to its first own step (`criu --version`,
# median of 21 runs). A migration starts CRIU twice, and CRIU driven by hand pays the same two
# starts; the spans of its logs leave them out (a log's clock starts when the log opens).
criu_bin=/usr/local/sbin/criu
[ -x "$criu_bin" ] || criu_bin=$(command -v criu)
start_ms=$(python3 - "$criu_bin" <<'EOF'
import statistics, subprocess, sys, time
ts = []
for _ in range(21):
    t = time.monotonic()
    subprocess.run([sys.argv[1], "--version"], stdout=subprocess.DEVNULL, check=True)
    ts.append((time.monotonic() - t) * 1000)
print(f"{statistics.median(ts):.1f}")
EOF
)
printf '%-8s %12s %12s %12s %12s %12s %12s %12s %8s\n' resident peer-outage atoll-outage atoll-dump atoll-restore criu-own atoll-own criu-by-hand own/hand
for mb in $SIZES; do
    "$ATOLL" down $P >/dev/null 2>&1 || true
    cat > "$work/islands.toml" <<EOF
name = "$P"
data_root = "$work/data"
guard = "${GUARD:-off}"
[[island]]
name = "srv"
command = ["/usr/bin/python3", "-c", '''
import socket, threading
buf = bytearray($mb << 20)
for i in range(0, len(buf), 4096):
    buf[i] = 1
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            return
        c.sendall(d)
l = socket.socket()
l.bind(("0.0.0.0", 7000))
l.listen()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
''']
[[island]]
name = "cli"
command = ["/bin/busybox", "sleep", "1000000"]
[[link]]
between = ["srv", "cli"]
[[allow]]
from = "cli"
to = "srv"
proto = "tcp"
ports = [7000]
EOF
    "$ATOLL" up "$work/islands.toml" >/dev/null
    ip=$(python3 -c "import json; print(json.load(open('/run/atoll/islands/$P/plan.json'))['links'][0]['addr_a'])")
    # Wait for the server to have touched its memory and listen.
    for _ in $(seq 1 200); do
        nsenter --net=/run/atoll/islands/$P/netns/cli python3 -c "import socket; socket.create_connection(('$ip', 7000), timeout=1)" 2>/dev/null && break
        sleep 0.1
    done
    nsenter --net=/run/atoll/islands/$P/netns/cli python3 "$work/peer.py" "$ip" > "$work/peer.out" &
    client=$!
    sleep 1
    # Images in the project's state directory: a tmpfs, as /run is on most hosts.
    images=/run/atoll/islands/$P/images/srv
    out=$("$ATOLL" migrate --json --keep-images $P/srv)
    [ -n "${BENCH_JSON:-}" ] && echo "$out" >> "$BENCH_JSON"
    sleep 4
    kill "$client"; wait "$client" || true; client=
    read -r gap lines < "$work/peer.out"
    criu_own=$(python3 -c "print(f'{($(span "$images/dump.log") + $(span "$images/restore.log")) * 1000:.0f}')")
    echo "$out" | python3 -c "
import json, sys
r = json.load(sys.stdin)
ph = {p['name']: p['ms'] for p in r['phases']}
hand = $criu_own + 2 * $start_ms
print('%-8s %10s ms %9.0f ms %9.0f ms %9.0f ms %9s ms %9.0f ms %9.0f ms %7.1f%%' % ('$mb MB', '$gap', r['outage_ms'], ph['freeze+dump'], ph['restore'], '$criu_own', r['outage_ms'] - $criu_own, hand, (r['outage_ms'] - hand) / hand * 100))
"
    [ -n "${BENCH_KEEP:-}" ] && cp -r "$images" "$BENCH_KEEP.$mb"
    rm -rf "$images"
done
echo "peer-outage: the longest wait for an echo (a line every 10 ms), TCP's retransmission"
echo "backoff included; atoll-outage: lock of the source netns to unlock of the target;"
echo "criu-own: CRIU's dump.log + restore.log spans on the same images; atoll-own: the rest."
echo "criu-by-hand: criu-own + two CRIU starts (criu --version: $start_ms ms each), what"
echo "criu dump + criu restore cost by hand; own/hand: (atoll-outage - criu-by-hand) / criu-by-hand."
echo "--lazy-pages: not implemented by migrate; islands cannot use it on hosts with"
echo "vm.unprivileged_userfaultfd = 0 (docs/migrate.md)."

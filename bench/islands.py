#!/usr/bin/env python3
"""Islands benchmark (not a test): `atoll up` then `atoll down` of N islands in a chain of N-1
links with N-1 allow rules, for several N, side by side with the same plumbing done by `ip`
commands (netns + veth pair + addresses + up + delete, one process per step). Prints ms per
island and the ratio. Network only (`up --net-only`) and, for small N, with the islands started.

    bench/islands.py [--atoll PATH] [--sizes 10,100,300] [--full 10,50] [--ip-sizes 10,30]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

def chain(n, name, data_root=None):
    out = [f'name = "{name}"', 'subnet = "10.100.0.0/16"', "log_drops = false"]
    if data_root:
        out.append(f'data_root = "{data_root}"')
    for i in range(n):
        out += ["[[island]]", f'name = "i{i}"', 'command = ["/bin/busybox", "sleep", "3600"]']
    for i in range(n - 1):
        out += ["[[link]]", f'between = ["i{i}", "i{i+1}"]']
        out += ["[[allow]]", f'from = "i{i}"', f'to = "i{i+1}"', 'proto = "tcp"', "ports = [5432]"]
    return "\n".join(out) + "\n"

def timed(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr}")
    return dt

SETTLE = 0.0

def atoll_round(atoll, n, net_only, tmp):
    time.sleep(SETTLE)
    name = f"bench{n}{'n' if net_only else 'f'}"
    f = os.path.join(tmp, f"{name}.toml")
    open(f, "w").write(chain(n, name, os.path.join(tmp, "data")))
    up = [atoll, "up", f] + (["--net-only"] if net_only else [])
    t_up = timed(up)
    t_down = timed([atoll, "down", name])
    shutil.rmtree(os.path.join(tmp, "data"), ignore_errors=True)
    shutil.rmtree(f"/var/log/atoll/islands/{name}", ignore_errors=True)
    return t_up, t_down

def is_mount(path):
    """From mountinfo: os.path.ismount misses a bind mount of a dir onto itself."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)

def ip_round(n):
    """The same chain with iproute2: one process per step, veths deleted one by one."""
    time.sleep(SETTLE)
    def ip(*a):
        subprocess.run(["ip", *a], check=True, capture_output=True)
    t = time.perf_counter()
    for i in range(n):
        ip("netns", "add", f"atbip{i}")
        ip("-n", f"atbip{i}", "link", "set", "lo", "up")
    for i in range(n - 1):
        a, b = f"atbip{i}", f"atbip{i+1}"
        ip("link", "add", f"atbv{i}", "netns", a, "type", "veth", "peer", "name", f"atbw{i}", "netns", b)
        ip("-n", a, "addr", "add", f"10.101.{i // 64}.{(i % 64) * 4 + 1}/30", "dev", f"atbv{i}")
        ip("-n", b, "addr", "add", f"10.101.{i // 64}.{(i % 64) * 4 + 2}/30", "dev", f"atbw{i}")
        ip("-n", a, "link", "set", f"atbv{i}", "up")
        ip("-n", b, "link", "set", f"atbw{i}", "up")
    t_up = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(n - 1):
        ip("-n", f"atbip{i}", "link", "del", f"atbv{i}")
    for i in range(n):
        ip("netns", "del", f"atbip{i}")
    return t_up, time.perf_counter() - t

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--atoll", default=os.environ.get("ATOLL", "target/atoll"))
    ap.add_argument("--sizes", default="10,100,300")
    ap.add_argument("--full", default="10,50")
    ap.add_argument("--ip-sizes", default="10,30")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds to wait before each round, so the kernel has freed the previous "
                         "round's namespaces (cleanup_net runs in the background after down)")
    a = ap.parse_args()
    global SETTLE
    SETTLE = a.settle
    if os.geteuid() != 0:
        sys.exit("bench/islands.py must run as root")
    results = {"net_only": {}, "full": {}, "ip": {}}
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # islands reach their data dirs as unprivileged host uids
        print(f"settle {a.settle} s before each round")
        print(f"{'what':<28}{'N':>5}{'up ms/isl':>11}{'down ms/isl':>13}{'total ms/isl':>14}")
        def report(kind, n, rounds):
            ups = statistics.median(r[0] for r in rounds) * 1000 / n
            downs = statistics.median(r[1] for r in rounds) * 1000 / n
            results[kind][n] = {"up_ms_per_island": ups, "down_ms_per_island": downs}
            print(f"{kind:<28}{n:>5}{ups:>11.2f}{downs:>13.2f}{ups + downs:>14.2f}", flush=True)
            return ups + downs
        ip_sizes = [int(x) for x in a.ip_sizes.split(",") if x]
        netns_was_mounted = is_mount("/run/netns")
        for n in ip_sizes:
            report("ip", n, [ip_round(n) for _ in range(a.rounds)])
        # `ip netns add` makes /run/netns a mount point of its own: undo that if it did.
        if ip_sizes and not netns_was_mounted and is_mount("/run/netns") \
                and not os.listdir("/run/netns"):
            subprocess.run(["umount", "/run/netns"], check=False)
        for n in [int(x) for x in a.sizes.split(",") if x]:
            report("net_only", n, [atoll_round(a.atoll, n, True, tmp) for _ in range(a.rounds)])
        for n in [int(x) for x in a.full.split(",") if x]:
            report("full", n, [atoll_round(a.atoll, n, False, tmp) for _ in range(max(1, a.rounds - 1))])
    for n in results["ip"]:
        if n in results["net_only"]:
            r = results["net_only"][n]; i = results["ip"][n]
            print(f"atoll/ip ratio at N={n}: {(r['up_ms_per_island'] + r['down_ms_per_island']) / (i['up_ms_per_island'] + i['down_ms_per_island']):.3f}")
    os.makedirs("bench/results", exist_ok=True)
    path = f"bench/results/islands-{time.strftime('%Y%m%d-%H%M%S')}.json"
    json.dump(results, open(path, "w"), indent=1)
    print(f"raw: {path}")

if __name__ == "__main__":
    main()

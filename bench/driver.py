#!/usr/bin/env python3
"""Benchmark driver for bench/run.sh.

Runs every measurement loop for every runtime inside ONE private mount namespace
(run.sh starts it with `unshare -m` and, on a hybrid cgroup host, unmounts
/sys/fs/cgroup/unified first so crun 1.8 accepts the host). All runtimes are
therefore measured alike, without any per-call wrapper.

Not a test: it measures and reports; failures of a runtime are reported as
failures, never as (fast) samples.
"""

import argparse
import ctypes
import datetime
import json
import os
import platform
import random
import select
import signal
import statistics
import subprocess
import sys
import time

PREFIX = "atbench"  # every container id starts with this; used to find leftovers
CMD_TIMEOUT = 20.0  # seconds, per runtime invocation
DELETE_TIMEOUT = 10.0  # seconds, per cleanup `delete --force`
MAX_FAILURES = 3  # stop measuring a runtime in a test after this many failures

OCI = ("atoll", "crun", "runc")


def ms(ns):
    return ns / 1e6


# --------------------------------------------------------------------- process plumbing


def set_subreaper():
    """Orphaned container processes (after `create` exits) get reparented to us, so they
    can be reaped instead of lingering as zombies under a pid 1 that may not reap."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("warning: PR_SET_CHILD_SUBREAPER failed", file=sys.stderr)


def reap():
    """Reap any exited (reparented) children. Only called while no Popen is outstanding,
    so it never steals a status that subprocess is waiting for."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_child(p, timeout):
    """p.wait(timeout) without its polling. CPython's Popen.wait(timeout=...) polls with
    sleeps that double from 1 ms (wake-ups at about 1, 3, 7, 15, 31, 63 ms), so every timed
    command looked as if it ended on one of those steps. A pidfd becomes readable the moment
    the child exits."""
    fd = os.pidfd_open(p.pid)
    try:
        if not select.select([fd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(p.args, timeout)
    finally:
        os.close(fd)
    return p.wait()


class Runner:
    def __init__(self, work):
        self.work = work
        self.errlog = os.path.join(work, "stderr.log")

    def _stderr(self):
        return os.open(self.errlog, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def last_stderr(self):
        try:
            with open(self.errlog, errors="replace") as f:
                return f.read().strip()[-400:]
        except OSError:
            return ""

    def timed(self, cmd, stdout=subprocess.DEVNULL, timeout=CMD_TIMEOUT):
        """Run cmd, return (rc, elapsed_ns). rc is None on timeout/spawn failure."""
        err = self._stderr()
        try:
            t0 = time.perf_counter_ns()
            try:
                p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err)
            except OSError as e:
                return None, 0, str(e)
            try:
                rc = wait_child(p, timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                return None, time.perf_counter_ns() - t0, f"timeout after {timeout}s"
            return rc, time.perf_counter_ns() - t0, None
        finally:
            os.close(err)

    def quiet(self, cmd, timeout=CMD_TIMEOUT):
        err = self._stderr()
        try:
            return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=err, timeout=timeout).returncode
        except (subprocess.TimeoutExpired, OSError):
            return None
        finally:
            os.close(err)


# lists of Popen objects that may still run when a signal interrupts a test
OUTSTANDING = []


def wait_outstanding():
    """Let interrupted `run -d` calls finish, so cleanup sees every container they make."""
    for procs in OUTSTANDING:
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    OUTSTANDING.clear()


def wait_pid_exit(pid, timeout):
    """Wait until pid has exited (zombie or gone). Works for non-children via pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        return bool(p.poll(timeout * 1000))
    finally:
        os.close(fd)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


# --------------------------------------------------------------------- runtimes


class Runtime:
    def __init__(self, name, path, work):
        self.name = name
        self.path = path
        self.root = os.path.join(work, "state", name)
        self.work = work
        self.oci = name in OCI
        if self.oci:
            os.makedirs(self.root, exist_ok=True)

    def g(self, *a):
        return [self.path, "--root", self.root, *a]

    def run_cmd(self, cid, bundle):
        if self.oci:
            return self.g("run", "--bundle", bundle, cid)
        rootfs = os.path.join(bundle, "rootfs")
        args = json.load(open(os.path.join(bundle, "config.json")))["process"]["args"]
        if self.name == "bwrap":
            return [self.path, "--unshare-all", "--ro-bind", rootfs, "/", "--proc", "/proc",
                    "--dev", "/dev", *args]
        if self.name == "unshare":
            # same namespaces as the runc-spec config: pid, net, ipc, uts, mount
            return [self.path, "-fmnuip", "--mount-proc=/proc", f"--root={rootfs}", *args]
        raise ValueError(self.name)

    def force_delete(self, runner, ids):
        """delete --force the given containers; returns those whose state is still there."""
        if not self.oci:
            return []
        for cid in ids:
            if not os.path.exists(os.path.join(self.root, cid)):
                continue
            if runner.quiet(self.g("delete", "--force", cid), timeout=DELETE_TIMEOUT) != 0 and \
                    os.path.exists(os.path.join(self.root, cid)):
                print(f"cleanup: {self.name} delete --force {cid} failed: "
                      f"{runner.last_stderr()[:200]}", file=sys.stderr, flush=True)
        reap()
        return [cid for cid in ids if os.path.exists(os.path.join(self.root, cid))]

    def force_delete_all(self, runner):
        """Delete every container in this runtime's state dir. Returns the ids it found."""
        if not self.oci or not os.path.isdir(self.root):
            return []
        ids = sorted(d for d in os.listdir(self.root) if d.startswith(PREFIX))
        self.force_delete(runner, ids)
        return ids


# --------------------------------------------------------------------- statistics


def summarize(samples):
    if not samples:
        return None
    s = sorted(samples)
    if len(s) >= 2:
        q = statistics.quantiles(s, n=10, method="inclusive")
        p10, p90 = q[0], q[-1]
    else:
        p10 = p90 = s[0]
    return {"n": len(s), "median": statistics.median(s), "p10": p10, "p90": p90,
            "min": s[0], "max": s[-1], "mean": statistics.fmean(s)}


class Result:
    def __init__(self, unit):
        self.unit = unit
        self.samples = []
        self.failures = []
        self.extra = {}

    def failed(self):
        return bool(self.failures)

    def fail(self, msg):
        self.failures.append(msg)

    def give_up(self):
        return len(self.failures) >= MAX_FAILURES

    def to_json(self):
        return {"unit": self.unit, "status": "failed" if self.failures else "ok",
                "failures": self.failures, "summary": summarize(self.samples),
                "samples": self.samples, **self.extra}


# --------------------------------------------------------------------- the tests


def sanity(rts, runner, bundles):
    """Every runtime must print the marker from the echo bundle, or it is failed throughout."""
    ok = {}
    for rt in rts:
        cid = f"{PREFIX}-{rt.name}-sanity"
        out = os.path.join(runner.errlog + ".out")
        with open(out, "w") as f:
            rc, _, err = runner.timed(rt.run_cmd(cid, bundles["echo"]), stdout=f)
        text = open(out).read()
        if rc == 0 and "atoll-bench-ok" in text:
            ok[rt.name] = None
        else:
            ok[rt.name] = (f"sanity run failed: rc={rc} {err or ''} stdout={text.strip()[:100]!r} "
                           f"stderr={runner.last_stderr()!r}")
            rt.force_delete(runner, [cid])
        reap()
    return ok


def shuffled(rts, rng):
    order = list(rts)
    rng.shuffle(order)
    return order


def test_run(rts, runner, bundles, n, warmup, rng, rss=False):
    """`run` of /bin/true (foreground), interleaved; or its peak RSS under GNU time."""
    res = {rt.name: Result("KiB" if rss else "ms") for rt in rts}
    rssfile = os.path.join(runner.work, "rss.txt")
    for i in range(warmup + n):
        for rt in shuffled(rts, rng):
            r = res[rt.name]
            if r.give_up():
                continue
            cid = f"{PREFIX}-{rt.name}-{'rss' if rss else 'run'}-{i}"
            cmd = rt.run_cmd(cid, bundles["true"])
            if rss:
                cmd = ["/usr/bin/time", "-f", "%M", "-o", rssfile, *cmd]
            rc, dt, err = runner.timed(cmd)
            reap()
            if rc != 0:
                r.fail(f"iter {i}: rc={rc} {err or ''} {runner.last_stderr()}".strip())
                rt.force_delete(runner, [cid])
                continue
            if rt.oci and os.path.exists(os.path.join(rt.root, cid)):
                r.fail(f"iter {i}: `run` left state behind for {cid}")
                rt.force_delete(runner, [cid])
                continue
            if i < warmup:
                continue
            if rss:
                try:
                    r.samples.append(int(open(rssfile).read().split()[-1]))
                except (OSError, ValueError, IndexError) as e:
                    r.fail(f"iter {i}: cannot read GNU time output: {e}")
            else:
                r.samples.append(ms(dt))
    return res


def test_lifecycle(rts, runner, bundles, n, warmup, rng):
    """create + start + wait-until-stopped + delete of /bin/true."""
    rts = [rt for rt in rts if rt.oci]
    res = {rt.name: Result("ms") for rt in rts}
    for rt in rts:
        res[rt.name].extra["phases_ms"] = {"create": [], "start": [], "wait": [], "delete": []}
    pidfile = os.path.join(runner.work, "lifecycle.pid")
    for i in range(warmup + n):
        for rt in shuffled(rts, rng):
            r = res[rt.name]
            if r.give_up():
                continue
            cid = f"{PREFIX}-{rt.name}-life-{i}"
            if os.path.exists(pidfile):
                os.unlink(pidfile)
            phases = {}

            def step(name, cmd):
                rc, dt, err = runner.timed(cmd)
                phases[name] = dt
                if rc != 0:
                    raise RuntimeError(f"{name}: rc={rc} {err or ''} {runner.last_stderr()}")

            try:
                t0 = time.perf_counter_ns()
                step("create", rt.g("create", "--bundle", bundles["true"], "--pid-file",
                                    pidfile, cid))
                try:
                    pid = int(open(pidfile).read().strip())
                except (OSError, ValueError) as e:
                    raise RuntimeError(f"create: no usable --pid-file: {e}")
                step("start", rt.g("start", cid))
                tw = time.perf_counter_ns()
                if not wait_pid_exit(pid, 20):
                    raise RuntimeError("container process did not exit within 20s")
                phases["wait"] = time.perf_counter_ns() - tw
                step("delete", rt.g("delete", cid))
                total = time.perf_counter_ns() - t0
            except RuntimeError as e:
                r.fail(f"iter {i}: {e}")
                reap()
                rt.force_delete(runner, [cid])
                continue
            reap()
            if os.path.exists(os.path.join(rt.root, cid)):
                r.fail(f"iter {i}: `delete` left state behind for {cid}")
                rt.force_delete(runner, [cid])
                continue
            if i >= warmup:
                r.samples.append(ms(total))
                for k, v in phases.items():
                    r.extra["phases_ms"][k].append(ms(v))
    for rt in rts:
        ph = res[rt.name].extra["phases_ms"]
        res[rt.name].extra["phase_medians_ms"] = {
            k: (statistics.median(v) if v else None) for k, v in ph.items()}
    return res


def test_parallel(rts, runner, bundles, count, rounds, rng):
    """`count` x `run -d` of the sleep bundle launched at once; wall time until every
    `run -d` has returned (all started); verified via --pid-file; then delete --force."""
    rts = [rt for rt in rts if rt.oci]
    res = {rt.name: Result("ms") for rt in rts}
    for rnd in range(rounds):
        for rt in shuffled(rts, rng):
            r = res[rt.name]
            if r.give_up():
                continue
            ids = [f"{PREFIX}-{rt.name}-par-{rnd}-{j}" for j in range(count)]
            pidfiles = [os.path.join(runner.work, f"par-{j}.pid") for j in range(count)]
            for pf in pidfiles:
                if os.path.exists(pf):
                    os.unlink(pf)
            errs = [os.open(os.path.join(runner.work, f"par-{j}.err"),
                            os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) for j in range(count)]
            procs = []
            t0 = time.perf_counter_ns()
            try:
                OUTSTANDING.append(procs)
                for cid, pf, e in zip(ids, pidfiles, errs):
                    procs.append(subprocess.Popen(
                        rt.g("run", "-d", "--bundle", bundles["sleep"], "--pid-file", pf, cid),
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=e))
                deadline = time.monotonic() + 120
                rcs = []
                for p in procs:
                    try:
                        rcs.append(wait_child(p, max(0.1, deadline - time.monotonic())))
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                        rcs.append(None)
                wall = time.perf_counter_ns() - t0
            finally:
                for e in errs:
                    os.close(e)
                OUTSTANDING.remove(procs)
            # untimed verification: every container's process must be alive now
            bad = []
            for j, (rc, pf) in enumerate(zip(rcs, pidfiles)):
                if rc != 0:
                    msg = open(os.path.join(runner.work, f"par-{j}.err"),
                               errors="replace").read().strip()[-200:]
                    bad.append(f"{ids[j]}: rc={rc} {msg}")
                    continue
                try:
                    pid = int(open(pf).read().strip())
                except (OSError, ValueError):
                    bad.append(f"{ids[j]}: no pid file")
                    continue
                if not pid_alive(pid):
                    bad.append(f"{ids[j]}: process {pid} not running after start")
            # clean up: delete --force all, 10 at a time (untimed)
            tc = time.perf_counter_ns()
            pending = list(ids)
            while pending:
                batch, pending = pending[:10], pending[10:]
                ps = []
                OUTSTANDING.append(ps)
                for cid in batch:
                    ps.append(subprocess.Popen(
                        rt.g("delete", "--force", cid), stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                for p in ps:
                    try:
                        p.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                OUTSTANDING.remove(ps)
            reap()
            left = rt.force_delete(runner, ids)
            r.extra.setdefault("cleanup_ms", []).append(ms(time.perf_counter_ns() - tc))
            if left:
                r.fail(f"round {rnd}: delete --force left {len(left)} containers")
            if bad:
                r.fail(f"round {rnd}: {len(bad)}/{count} failed; first: {bad[0]}")
                continue
            r.samples.append(ms(wall))
    return res


# --------------------------------------------------------------------- cgroups


def cgroup_mounts():
    """Mount points of real cgroup (v1) and cgroup2 filesystems in this namespace. The
    throwaway tmpfs that run.sh mounts over /sys/fs/cgroup/unified is not one of them."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            if right.split()[0] in ("cgroup", "cgroup2"):
                mounts.append(left.split()[4].replace("\\040", " "))
    return sorted(set(mounts))


def cgroup_leftovers():
    """Directories named like our containers anywhere under the mounted cgroup trees."""
    found = []
    for base in cgroup_mounts():
        for dirpath, dirnames, _ in os.walk(base):
            for d in dirnames:
                if PREFIX in d:
                    found.append(os.path.join(dirpath, d))
            dirnames[:] = [d for d in dirnames if PREFIX not in d]
    return sorted(found)


def by_runtime(paths):
    """Leftover cgroup dirs grouped by the runtime named in the container id."""
    out = {}
    for p in paths:
        name = os.path.basename(p)[len(PREFIX) + 1:].split("-", 1)[0]
        out.setdefault(name, []).append(p)
    return out


def short(paths, k=4):
    return f"{len(paths)} dir(s): " + ", ".join(paths[:k]) + (" ..." if len(paths) > k else "")


def remove_cgroups(paths):
    """Kill what is still inside our containers' cgroups (processes this benchmark made,
    that `delete --force` did not remove), then rmdir, deepest first."""
    import signal as _s
    killed = set()
    for p in paths:
        for dirpath, _, files in os.walk(p):
            if "cgroup.procs" in files:
                try:
                    pids = [int(x) for x in open(os.path.join(dirpath, "cgroup.procs")).read().split()]
                except (OSError, ValueError):
                    continue
                for pid in pids:
                    if pid not in killed:
                        try:
                            os.kill(pid, _s.SIGKILL)
                            killed.add(pid)
                        except OSError:
                            pass
    if killed:
        print(f"cleanup: killed {len(killed)} process(es) left in atbench cgroups: "
              f"{sorted(killed)[:10]}", file=sys.stderr, flush=True)
        time.sleep(0.5)
        reap()
    for p in sorted(paths, key=len, reverse=True):
        for dirpath, dirnames, _ in os.walk(p, topdown=False):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


# --------------------------------------------------------------------- report

TESTS = [
    ("run", "run /bin/true", "ms"),
    ("lifecycle", "create+start+wait+delete", "ms"),
    ("parallel", "parallel run -d (all started)", "ms"),
    ("rss", "peak RSS during run", "KiB"),
]


def ratio_line(label, results, order):
    med = {k: v.to_json()["summary"]["median"] for k, v in results.items()
           if not v.failed() and v.samples}
    if "atoll" in med:
        peers = [p for p in order if p != "atoll" and p in med]
        base = "atoll"
    else:  # atoll skipped/failed: show peers against crun for reference
        peers = [p for p in order if p not in ("atoll", "crun") and p in med]
        base = "crun" if "crun" in med else None
    if not base or not peers:
        return None, {}
    ratios = {f"{base}/{p}": med[base] / med[p] for p in peers if med[p] > 0}
    return f"{label}: " + ", ".join(f"{k} = {v:.2f}" for k, v in ratios.items()), ratios


def verdict(ok):
    return "PASS" if ok else "FAIL"


def targets(all_res, failed_rts):
    """failed_rts: runtimes that failed the sanity run (skipped ones are not in it)."""
    def med(test, rt):
        r = all_res.get(test, {}).get(rt)
        if r is None or r.failed() or not r.samples:
            return None
        return statistics.median(r.samples)

    def atoll_failed(test):
        r = all_res.get(test, {}).get("atoll")
        return "atoll" in failed_rts or (r is not None and r.failed())

    out = []

    def add(desc, a, b, cond, test):
        if a is None and atoll_failed(test):
            out.append({"target": desc, "status": "FAIL", "detail": "atoll failed this test"})
        elif a is None or b is None:
            out.append({"target": desc, "status": "N/A",
                        "detail": "atoll or the peer was not measured or failed"})
        else:
            out.append({"target": desc, "status": verdict(cond(a, b)),
                        "detail": f"{a:.2f} vs {b:.2f}"})

    add("atoll run median <= 0.8 x crun", med("run", "atoll"), med("run", "crun"),
        lambda a, b: a <= 0.8 * b, "run")
    add("atoll run median <= 0.35 x runc", med("run", "atoll"), med("run", "runc"),
        lambda a, b: a <= 0.35 * b, "run")
    add("atoll peak RSS <= crun", med("rss", "atoll"), med("rss", "crun"), lambda a, b: a <= b,
        "rss")
    add("atoll 50 parallel starts faster than crun", med("parallel", "atoll"),
        med("parallel", "crun"), lambda a, b: a < b, "parallel")
    return out


def report(all_res, order, skipped, failed_rts):
    lines = []
    lines.append(f"{'test':<32}{'runtime':<9}{'n':>4}{'median':>10}{'p10':>10}{'p90':>10}"
                 f"{'mean':>10}  unit")
    for key, label, unit in TESTS:
        if key not in all_res:
            continue
        for name in order:
            if name not in all_res[key]:
                continue
            r = all_res[key][name]
            s = summarize(r.samples)
            if r.failed():
                first = r.failures[0]
                lines.append(f"{label:<32}{name:<9}  FAILED ({len(r.failures)} failure(s)): "
                             f"{first[:150]}")
            elif s is None:
                lines.append(f"{label:<32}{name:<9}  no samples")
            else:
                fmt = "{:>10.0f}" if unit == "KiB" else "{:>10.2f}"
                lines.append(f"{label:<32}{name:<9}{s['n']:>4}" + fmt.format(s["median"])
                             + fmt.format(s["p10"]) + fmt.format(s["p90"])
                             + fmt.format(s["mean"]) + f"  {unit}")
        if key == "lifecycle":
            for name in order:
                r = all_res[key].get(name)
                if r and not r.failed() and r.samples:
                    pm = r.extra["phase_medians_ms"]
                    lines.append(f"{'':<32}{name:<9}  phases (median ms): " + ", ".join(
                        f"{k} {v:.2f}" for k, v in pm.items() if v is not None))
    for name, why in skipped.items():
        what = "FAILED" if name in failed_rts else "SKIPPED"
        lines.append(f"{'(all tests)':<32}{name:<9}  {what}: {why[:300]}")
    lines.append("")
    ratios = {}
    for key, label, _ in TESTS:
        if key in all_res:
            line, rr = ratio_line(label, all_res[key], order)
            if line:
                lines.append(line)
                ratios[key] = rr
    lines.append("")
    tg = targets(all_res, failed_rts)
    lines.append("targets (issue):")
    for t in tg:
        lines.append(f"  [{t['status']}] {t['target']} ({t['detail']})")
    return "\n".join(lines), ratios, tg


# --------------------------------------------------------------------- main


def versions(rts):
    v = {}
    for rt in rts:
        try:
            out = subprocess.run([rt.path, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
            v[rt.name] = {"path": rt.path, "version": out.strip().splitlines()[0] if out else "?"}
        except (OSError, subprocess.TimeoutExpired) as e:
            v[rt.name] = {"path": rt.path, "version": f"? ({e})"}
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--runtime", action="append", default=[], help="name=path")
    ap.add_argument("--skip", action="append", default=[], help="name=reason")
    ap.add_argument("--n-run", type=int, default=50)
    ap.add_argument("--n-lifecycle", type=int, default=30)
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n-rss", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tests", default="run,lifecycle,parallel,rss")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--meta", default="{}", help="extra JSON metadata from run.sh")
    ap.add_argument("--cleanup-only", action="store_true")
    a = ap.parse_args()

    set_subreaper()

    def interrupted(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    runner = Runner(a.work)
    rts = [Runtime(*spec.split("=", 1), a.work) for spec in a.runtime]
    order = [n for n in ("atoll", "crun", "runc", "bwrap", "unshare") if n in
             {rt.name for rt in rts}]
    rts.sort(key=lambda rt: order.index(rt.name))
    skipped = dict(s.split("=", 1) for s in a.skip)

    def cleanup():
        wait_outstanding()
        left = {}
        for rt in rts:
            ids = rt.force_delete_all(runner)
            if ids:
                left[rt.name] = ids
        reap()
        cg = cgroup_leftovers()
        if cg:
            remove_cgroups(cg)  # kills what delete --force left running
        for rt in rts:  # a container whose processes are gone now may delete
            stuck = rt.force_delete(runner, left.get(rt.name, []))
            if stuck:
                print(f"cleanup: {rt.name} could not delete {stuck}", file=sys.stderr)
        still = cgroup_leftovers()
        if still:
            remove_cgroups(still)
        return left, cg, cgroup_leftovers()

    if a.cleanup_only:
        left, cg, still = cleanup()
        for k, v in left.items():
            print(f"cleanup: deleted {len(v)} leftover {k} container(s)")
        if cg:
            print(f"cleanup: removed leftover cgroups: {short(cg)}")
        if still:
            print(f"cleanup: could NOT remove cgroups: {short(still)}")
        return 0

    bundles = {k: os.path.join(a.work, f"bundle-{k}") for k in ("true", "echo", "sleep")}
    rng = random.Random(a.seed)
    tests = a.tests.split(",")
    cg_before = cgroup_leftovers()
    meta = json.loads(a.meta)
    meta.update({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(), "cpus": os.cpu_count(),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "runtimes": versions(rts), "skipped": skipped,
        "params": {"n_run": a.n_run, "n_lifecycle": a.n_lifecycle, "parallel": a.parallel,
                   "rounds": a.rounds, "n_rss": a.n_rss, "warmup": a.warmup, "seed": a.seed},
        "cgroup_leftovers_before": cg_before,
    })

    if cg_before:
        print(f"warning: atbench cgroups exist BEFORE this run (an earlier run's): "
              f"{short(cg_before)}; they will be counted as leftovers", flush=True)
    print("sanity check (each runtime must run the echo bundle) ...", flush=True)
    bad = sanity(rts, runner, bundles)
    failed_rts = {name for name, why in bad.items() if why}
    for name, why in bad.items():
        if why:
            print(f"  {name}: FAILED: {why}", flush=True)
            skipped[name] = why
    live = [rt for rt in rts if not bad.get(rt.name)]
    print("  ok: " + " ".join(rt.name for rt in live), flush=True)

    all_res = {}
    interrupt = None
    try:
        if "run" in tests:
            print(f"[1/4] run /bin/true x{a.n_run} (+{a.warmup} warmup), interleaved ...",
                  flush=True)
            all_res["run"] = test_run(live, runner, bundles, a.n_run, a.warmup, rng)
        if "lifecycle" in tests:
            print(f"[2/4] create+start+wait+delete x{a.n_lifecycle} ...", flush=True)
            all_res["lifecycle"] = test_lifecycle(live, runner, bundles, a.n_lifecycle,
                                                  a.warmup, rng)
        if "parallel" in tests:
            print(f"[3/4] {a.parallel} parallel run -d x{a.rounds} rounds ...", flush=True)
            all_res["parallel"] = test_parallel(live, runner, bundles, a.parallel, a.rounds, rng)
        if "rss" in tests:
            print(f"[4/4] peak RSS (GNU time %M) x{a.n_rss} ...", flush=True)
            all_res["rss"] = test_run(live, runner, bundles, a.n_rss, 1, rng, rss=True)
    except KeyboardInterrupt as e:
        interrupt = str(e) or "SIGINT"
    finally:
        # a second signal must not cut the cleanup short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        left, cg, still = cleanup()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if interrupt:
        print(f"\ninterrupted ({interrupt}); containers deleted, nothing saved", file=sys.stderr)
        if cg:
            print(f"cleanup: LEFTOVER CGROUPS found: {short(cg)}; could not remove: "
                  f"{short(still)}", file=sys.stderr)
        return 130

    text, ratios, tg = report(all_res, order, skipped, failed_rts)
    print()
    print(text)
    if left:
        print(f"\ncleanup: had to delete leftover containers: "
              f"{ {k: len(v) for k, v in left.items()} }")
    if cg:
        for name, paths in by_runtime(cg).items():
            print(f"cleanup: LEFTOVER CGROUPS of {name} (runtime bug), removed: {short(paths)}")
        if still:
            print(f"cleanup: could NOT remove: {short(still)}")
    else:
        print("cleanup: no leftover cgroups (checked every mounted cgroup hierarchy)")
    meta["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    if a.json:
        doc = {"meta": meta, "failed_sanity": sorted(failed_rts),
               "results": {k: {n: r.to_json() for n, r in v.items()} for k, v in all_res.items()},
               "ratios": ratios, "targets": tg,
               "cleanup": {"leftover_containers": left, "leftover_cgroups": by_runtime(cg),
                           "unremovable_cgroups": still},
               "report": text}
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"\nraw results: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

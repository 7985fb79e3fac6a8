#!/usr/bin/env bash
# A single OCI container, shown from inside: build atoll, make a bundle from the host's
# busybox-static (nothing to download), and run a container in its own namespaces, cgroup,
# user namespace and seccomp profile, showing each from inside. Everything is removed after.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
ATOLL=$(scripts/build.sh -q)
work=$(mktemp -d /tmp/atoll-demo.XXXXXX)
root="$work/state"
chmod 755 "$work"  # the container's root (uid 100000 on the host) must reach its rootfs
trap '"$ATOLL" --root "$root" delete --force demo >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs"/{bin,proc,dev,sys,tmp,etc}
cp /bin/busybox "$work/bundle/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/bundle/rootfs/bin/$a"; done
"$ATOLL" spec --bundle "$work/bundle"
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["user"] = {"uid": 1000, "gid": 1000}
cap = ["CAP_NET_BIND_SERVICE"]
c["process"]["capabilities"] = {k: cap for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
c["process"]["args"] = ["sh", "-c", """
echo "hostname:      $(hostname)"
echo "pid 1:         $(cat /proc/1/comm) (own pid namespace; $(ls /proc | grep -c '^[0-9]') processes visible)"
echo "uid:           $(id -u) inside; uid_map: $(cat /proc/self/uid_map | tr -s ' ')"
echo "capabilities:  CapEff $(grep CapEff /proc/self/status | cut -f2) (CAP_NET_BIND_SERVICE only)"
echo "no_new_privs:  $(grep NoNewPrivs /proc/self/status | cut -f2)"
echo "seccomp:       mode $(grep '^Seccomp:' /proc/self/status | cut -f2); mkdir -> $(mkdir /tmp/x 2>&1 | sed 's/.*: //')"
echo "network:       $(ls /sys/class/net | tr '\\n' ' ')(loopback only)"
echo "memory limit:  $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
nc -l -p 80 & sleep 0.2
echo "port 80:       $(netstat -ltn | grep -c ':80 ') listener bound as uid $(id -u)"
kill %1
"""]
c["linux"]["namespaces"].append({"type": "user"})
c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
c["linux"]["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
json.dump(c, open(p, "w"), indent=1)
PY
echo "== atoll run: a container built from the host's busybox"
"$ATOLL" --root "$root" run --bundle "$work/bundle" demo
echo "== done: the container and its cgroup are removed ($("$ATOLL" --version))"

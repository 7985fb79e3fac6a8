#!/usr/bin/env bash
# Device grants on a machine with an NVIDIA GPU (target: an H200). Not run in CI, which has no
# GPU: run it by hand, as root, on such a machine, after scripts/build.sh (or set ATOLL).
#
# It writes a CDI spec for GPU 0 (`nvidia-ctk cdi generate` where NVIDIA's toolkit is
# installed and GPU_CHECK_NVIDIA_CTK=1, else one written from the /dev/nvidia* nodes), brings up
# two islands of one project, `gpu` granted nvidia.com/gpu=0 and `nogpu` without, runs
# `nvidia-smi -L` in each and prints what each saw, then tears down. An island's root is the
# host's own /usr, so nvidia-smi and libnvidia-ml are the host's: only the device nodes are
# granted. Exit 0 when `gpu` lists a GPU and `nogpu` lists none.
#
#   scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "gpu-check.sh must run as root" >&2; exit 1; }
ATOLL=$(realpath "${ATOLL:-target/atoll}")
SMI=$(command -v nvidia-smi) || { echo "gpu-check.sh: no nvidia-smi on this host" >&2; exit 1; }
[ -c /dev/nvidia0 ] || { echo "gpu-check.sh: no /dev/nvidia0 (driver not loaded?)" >&2; exit 1; }
case "$SMI" in /usr/*) ;; *) echo "gpu-check.sh: $SMI is outside /usr: islands would not see it" >&2; exit 1 ;; esac
work=$(mktemp -d /tmp/atoll-gpu-check.XXXXXX)
chmod 755 "$work"
trap '"$ATOLL" down gpucheck >/dev/null 2>&1 || true; rm -rf "$work" /var/log/atoll/islands/gpucheck' EXIT
mkdir -p "$work/cdi"
if [ "${GPU_CHECK_NVIDIA_CTK:-0}" = 1 ] && command -v nvidia-ctk >/dev/null; then
    # The toolkit's hooks write into the container's /etc (ldcache), read-only in an island.
    nvidia-ctk cdi generate --output="$work/cdi/nvidia.yaml" --device-name-strategy=index \
        --disable-hook all
else
    nodes=""
    for n in /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia0; do
        [ -c "$n" ] && nodes+="${nodes:+, }{\"path\": \"$n\"}"
    done
    echo "{\"cdiVersion\": \"0.6.0\", \"kind\": \"nvidia.com/gpu\", \"devices\": [{\"name\": \"0\", \"containerEdits\": {\"deviceNodes\": [$nodes]}}]}" \
        > "$work/cdi/nvidia.json"
fi
echo "== CDI spec"; cat "$work"/cdi/*
cat > "$work/islands.toml" <<TOML
name = "gpucheck"
data_root = "$work/data"
[[island]]
name = "gpu"
command = ["/bin/sleep", "600"]
devices = ["nvidia.com/gpu=0"]
[[island]]
name = "nogpu"
command = ["/bin/sleep", "600"]
TOML
ATOLL_CDI_SPEC_DIRS="$work/cdi" "$ATOLL" up "$work/islands.toml"
"$ATOLL" status gpucheck
rc=0
for i in gpu nogpu; do
    echo "== island $i: ls /dev; nvidia-smi -L"
    "$ATOLL" island exec "gpucheck/$i" -- /bin/ls /dev || true
    out=$("$ATOLL" island exec "gpucheck/$i" -- "$SMI" -L 2>&1) || true
    echo "$out"
    if [ "$i" = gpu ]; then
        echo "$out" | grep -q '^GPU 0:' || { echo "FAIL: the granted island sees no GPU"; rc=1; }
    else
        echo "$out" | grep -q '^GPU ' && { echo "FAIL: the island without a grant sees a GPU"; rc=1; }
    fi
done
[ "$rc" = 0 ] && echo "OK: gpu sees GPU 0, nogpu sees none"
exit "$rc"

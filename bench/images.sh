#!/usr/bin/env bash
# Images benchmark (not a test; docs/images.md, docs/bench.md). As root, with podman and skopeo:
#
#   bench/images.sh [ATOLL] [ROUNDS]     # default target/atoll (atoll-image next to it), 5 rounds
#
# 1. Unpack: the first island from an image pays for its layers. atoll-image pulls an
#    oci-archive into an empty store (skopeo reads it, atoll-image hashes and unpacks), against
#    `skopeo copy` of the same archive to an OCI layout plus `tar -x` of its layer: MB/s of the
#    unpacked tree, medians.
# 2. Start: `atoll up` of a one-island project whose image is already in the store, against the
#    same project with a host-/usr island (same command), medians of ROUNDS each; then the
#    per-island cost inside one `up` of 10 islands from one image against 10 host islands.
# The image is busybox-static plus a copy of the host's python3 standard library (tens of MB
# of small and large files, like a service's image); nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
atoll=$(realpath "${1:-target/atoll}")
rounds=${2:-5}
command -v skopeo >/dev/null && command -v podman >/dev/null || { echo "needs skopeo and podman" >&2; exit 1; }
tmp=$(mktemp -d /tmp/atoll-bench-images.XXXXXX)
chmod 755 "$tmp"
name=localhost/atoll-bench-images-$$:b
export ATOLL_IMAGE_STORE=$tmp/store
cleanup() {
  for p in bimgi bimgh bimgi10 bimgh10; do "$atoll" down "$p" >/dev/null 2>&1 || true; done
  podman rmi -f "$name" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

root=$tmp/rootfs
mkdir -p "$root/bin" "$root/usr/lib" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
ln -s busybox "$root/bin/sleep"
py=$(ls -d /usr/lib/python3.* 2>/dev/null | head -1)
[ -n "$py" ] && cp -a "$py" "$root/usr/lib/"
tar -C "$root" -cf "$tmp/rootfs.tar" .
podman import -q --change 'CMD ["/bin/sleep", "3600"]' "$tmp/rootfs.tar" "$name" >/dev/null
podman save -q --format oci-archive -o "$tmp/img.tar" "$name"
ref=oci-archive:$tmp/img.tar
mb=$(du -sm --apparent-size "$root" | cut -f1)
files=$(find "$root" | wc -l)
echo "image: $mb MB unpacked, $files entries, one layer ($ref)"

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }
helper=$(dirname "$atoll")/atoll-image

a=(); s=()
for _ in $(seq "$rounds"); do
  rm -rf "$tmp/store"; sync; t0=$(now)
  "$helper" pull "$tmp/store" "$ref" >/dev/null
  t1=$(now); a+=("$(echo "$t1 - $t0" | bc)")
  rm -rf "$tmp/layout" "$tmp/x"; mkdir -p "$tmp/x"; sync; t0=$(now)
  skopeo copy -q "$ref" "oci:$tmp/layout:b" >/dev/null
  layer=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1]+'/index.json'))['manifests'][0]['digest'].split(':')[1]; print(json.load(open(sys.argv[1]+'/blobs/sha256/'+m))['layers'][0]['digest'].split(':')[1])" "$tmp/layout")
  tar -C "$tmp/x" -xf "$tmp/layout/blobs/sha256/$layer"
  t1=$(now); s+=("$(echo "$t1 - $t0" | bc)")
done
ta=$(printf '%s\n' "${a[@]}" | median); ts=$(printf '%s\n' "${s[@]}" | median)
printf 'unpack  atoll-image pull: %.0f ms (%.0f MB/s)   skopeo copy + tar -x: %.0f ms (%.0f MB/s)   ratio %.2f\n' \
  "$(echo "$ta * 1000" | bc)" "$(echo "$mb / $ta" | bc -l)" "$(echo "$ts * 1000" | bc)" "$(echo "$mb / $ts" | bc -l)" "$(echo "$ta / $ts" | bc -l)"

project() { # NAME N IMAGE? -> file
  local f=$tmp/$1.toml
  printf 'name = "%s"\ndata_root = "%s/data"\nlog_drops = false\n' "$1" "$tmp" > "$f"
  for i in $(seq "$2"); do
    printf '[[island]]\nname = "i%s"\ncommand = ["/bin/busybox", "sleep", "3600"]\n' "$i" >> "$f"
    [ -n "${3:-}" ] && printf 'image = "%s"\n' "$3" >> "$f"
  done
  echo "$f"
}
up_ms() { # FILE NAME -> ms of `atoll up`; its debug log goes to $tmp/NAME.log
  local t0 t1; sync; t0=$(now); "$atoll" --debug --log "$tmp/$2.log" up "$1" >/dev/null; t1=$(now)
  "$atoll" down "$2" >/dev/null
  echo "($t1 - $t0) * 1000" | bc
}
# The part of `up` an image changes, timed inside it: from the plan on disk ("planned") until
# every island's bundle is written and every image root mounted ("image roots mounted"; the
# roots are mounted by a thread while the guard starts, so this span holds the guard's start
# for both kinds), medians over the rounds of one project's debug log. Steadier on a loaded
# machine than the whole `up`.
bundle_ms() { # NAME -> median ms
  python3 - "$tmp/$1.log" <<'PY'
import sys, datetime, statistics
t = {}
d = []
for line in open(sys.argv[1]):
    stamp = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
    if line.rstrip().endswith("planned"):
        t = {"planned": stamp}
    elif line.rstrip().endswith("image roots mounted") and "planned" in t:
        d.append((stamp - t.pop("planned")) * 1000)
print("%.2f" % statistics.median(d))
PY
}
fi1=$(project bimgi 1 "$ref"); fh1=$(project bimgh 1)
fi10=$(project bimgi10 10 "$ref"); fh10=$(project bimgh10 10)
"$atoll" up "$fi1" >/dev/null; "$atoll" down bimgi >/dev/null   # the store holds the image now
rm -f "$tmp"/*.log
i1=(); h1=(); i10=(); h10=()
for _ in $(seq "$rounds"); do
  i1+=("$(up_ms "$fi1" bimgi)"); h1+=("$(up_ms "$fh1" bimgh)")
  i10+=("$(up_ms "$fi10" bimgi10)"); h10+=("$(up_ms "$fh10" bimgh10)")
done
m() { printf '%s\n' "$@" | median; }
# Rounds alternate image and host projects: the median of each round's difference drifts less
# with this shared machine's load than the difference of the two medians.
paired() { # N then the image figures then the host figures -> median of per-round differences
  local n=$1; shift
  local a=("${@:1:n}") b=("${@:n+1:n}") d=() k
  for k in $(seq 0 $((n - 1))); do d+=("$(echo "${a[k]} - ${b[k]}" | bc -l)"); done
  m "${d[@]}"
}
mi1=$(m "${i1[@]}"); mh1=$(m "${h1[@]}"); mi10=$(m "${i10[@]}"); mh10=$(m "${h10[@]}")
d1=$(paired "$rounds" "${i1[@]}" "${h1[@]}"); d10=$(paired "$rounds" "${i10[@]}" "${h10[@]}")
printf 'start   up of 1 island: image %.1f ms, host /usr %.1f ms (%+.2f ms; paired median %+.2f ms)\n' \
  "$mi1" "$mh1" "$(echo "$mi1 - $mh1" | bc -l)" "$d1"
printf 'start   up of 10 islands: image %.1f ms, host /usr %.1f ms (%+.2f ms per island; paired %+.2f ms)\n' \
  "$mi10" "$mh10" "$(echo "($mi10 - $mh10) / 10" | bc -l)" "$(echo "$d10 / 10" | bc -l)"
b1=$(bundle_ms bimgi); bh=$(bundle_ms bimgh); b10=$(bundle_ms bimgi10); bh10=$(bundle_ms bimgh10)
printf 'inside  bundles, guard and roots of 1 island: image %.2f ms, host /usr %.2f ms (%+.2f ms)\n' "$b1" "$bh" "$(echo "$b1 - $bh" | bc -l)"
printf 'inside  bundles, guard and roots of 10 islands: image %.2f ms, host /usr %.2f ms (%+.2f ms per island)\n' \
  "$b10" "$bh10" "$(echo "($b10 - $bh10) / 10" | bc -l)"

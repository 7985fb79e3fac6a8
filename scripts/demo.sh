#!/usr/bin/env bash
# atoll's main job: install what the demo needs (busybox-static for the islands' small servers,
# nftables for the border guard), build atoll, and run `atoll demo`: four islands built from the
# host's own read-only /usr (nothing to download), three private links, a default-deny border
# guard that lets two named flows across; each claim is proved live, then everything is removed.
# Traffic stays between network namespaces the demo made; no island has a route off the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo >/dev/null
atoll=$(scripts/build.sh -q)
exec "$atoll" demo "$@"

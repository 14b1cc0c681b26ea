#!/usr/bin/env bash
# Runs the demo (scripts/demo.ts: the simulated cluster, vif install, vif connect)
# after set-up (scripts/setup.sh). Needs root
# and /dev/net/tun; it builds network namespaces and removes them at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export PATH="$ROOT/.tools/node_modules/.bin:$PATH"
exec deno task demo "$@"

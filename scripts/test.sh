#!/usr/bin/env bash
# Runs every test: set-up first (scripts/setup.sh), then `deno task test` with
# the project's Deno. Extra arguments go to `deno test` (e.g. --filter router).
# Ends with the line "N passed, N failed" and deno test's exit code.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export PATH="$ROOT/.tools/node_modules/.bin:$PATH"

log="$(mktemp -t vif-test.XXXXXX)"
trap 'rm -f "$log"' EXIT

set +e
deno task test "$@" </dev/null 2>&1 | tee "$log"
code=${PIPESTATUS[0]}
set -e

# deno test closes with "ok | 12 passed (3 steps) | 0 failed | 1 ignored (3s)"
# or "FAILED | ..."; add up every such line (colours stripped).
summary="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
  /^(ok|FAILED) \| [0-9]+ passed/ {
    found = 1
    for (i = 1; i <= NF; i++) {
      if ($i == "passed") passed += $(i - 1)
      if ($i == "failed") failed += $(i - 1)
      if ($i == "ignored") ignored += $(i - 1)
    }
  }
  END {
    if (!found) exit 1
    line = passed + 0 " passed, " failed + 0 " failed"
    if (ignored > 0) line = line ", " ignored " skipped"
    print line
  }')" || summary=""

echo
if [[ -n "$summary" ]]; then
  echo "$summary"
else
  echo "test: deno test printed no summary line (exit code $code)"
fi
exit "$code"

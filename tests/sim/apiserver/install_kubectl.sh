#!/usr/bin/env bash
# Puts Debian's kubectl (package kubernetes-client, 1.20) at
# .tools/kubernetes-client/usr/bin/kubectl without installing the package:
# on images where another package (google-cloud-cli) owns /usr/bin/kubectl,
# `apt-get install kubernetes-client` fails on the file conflict. The binary is
# static, so the unpacked .deb runs as it is. Idempotent; prints the path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
DEST="$ROOT/.tools/kubernetes-client"
KUBECTL="$DEST/usr/bin/kubectl"

if [[ -x "$KUBECTL" ]]; then
  echo "$KUBECTL"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" # apt's _apt user downloads into it
cd "$work"
if ! apt-get download -qq kubernetes-client >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get download -qq kubernetes-client >/dev/null
fi
mkdir -p "$DEST.tmp"
dpkg-deb -x kubernetes-client_*.deb "$DEST.tmp"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "$KUBECTL"

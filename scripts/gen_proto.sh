#!/usr/bin/env bash
# Regenerates mod/rpc/gen/ from mod/rpc/proto/ with protoc and protobuf-es.
# Needs protoc (Debian: protobuf-compiler) and npm; the generated code is
# checked in, so only a change to the .proto needs this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLUGIN_VERSION=2.17.0 # keep equal to @bufbuild/protobuf in deno.json
command -v protoc >/dev/null || {
  echo "gen_proto: protoc is missing" >&2
  echo "Install it: apt-get install protobuf-compiler" >&2
  exit 1
}
tools="$ROOT/.tools/protoc-gen-es"
if [[ ! -x "$tools/node_modules/.bin/protoc-gen-es" ]]; then
  npm install --prefix "$tools" --no-save --no-audit --no-fund "@bufbuild/protoc-gen-es@$PLUGIN_VERSION" >/dev/null
fi
rm -rf "$ROOT/mod/rpc/gen"
mkdir -p "$ROOT/mod/rpc/gen"
protoc \
  --plugin="protoc-gen-es=$tools/node_modules/.bin/protoc-gen-es" \
  --es_out="$ROOT/mod/rpc/gen" \
  --es_opt=target=ts,import_extension=ts \
  -I "$ROOT/mod/rpc/proto" \
  "$ROOT"/mod/rpc/proto/vif/v1/*.proto
# protobuf-es imports "@bufbuild/protobuf"; deno.json's import map pins it.
echo "gen_proto: wrote $(cd "$ROOT" && ls mod/rpc/gen/vif/v1/)"

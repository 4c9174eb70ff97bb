#!/usr/bin/env bash
# Builds redact.wasm (a component of world weir:plugin/typed-plugin@0.1.0) next to this script
# with componentize-qjs (QuickJS snapshotted with Wizer). Needs node (18+) and npm; the tools
# are pinned in package.json/package-lock.json beside this script and installed there with
# `npm ci` when node_modules is missing. No Rust, no network once node_modules exists.
# Usage: build.sh [output.wasm]   (default: <this dir>/redact.wasm). Works from any cwd.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${1:-$here/redact.wasm}"
wit="$root/plugins-sdk/wit/plugin.wit"

if [ ! -x "$here/node_modules/.bin/componentize-qjs" ] || [ ! -d "$here/node_modules/@bytecodealliance/jco-transpile" ]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

# --sync: the non-async QuickJS runtime (the default one uses the component-model async ABI,
#         which a wasmtime host must enable on purpose).
# --stub-wasi: QuickJS's WASI imports become traps inside the component, so it imports only
#         weir:plugin (the Weir host links no WASI).
# --module-root: what Wizer may read while snapshotting (default would depend on the cwd).
"$here/node_modules/.bin/componentize-qjs" \
    --wit "$wit" --world typed-plugin --js "$here/redact.js" --module-root "$here" \
    --sync --stub-wasi -o "$out" >/dev/null
node "$here/check.mjs" "$out"
echo "built $out ($(wc -c <"$out") bytes)"

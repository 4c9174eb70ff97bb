#!/usr/bin/env bash
# Builds size-guard.wasm (a component of world weir:plugin/bytes-plugin@0.1.0) next to this
# script. Needs clang (14+) and wasm-ld (Debian: clang-14 lld-14), node (18+) + npm, and
# @bytecodealliance/jco-transpile pinned in package.json/package-lock.json beside this script
# (installed there with `npm ci` when node_modules is missing), driven by componentize.mjs.
# Usage: build.sh [output.wasm]   (default: <this dir>/size-guard.wasm). Works from any cwd.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${1:-$here/size-guard.wasm}"
wit="$root/plugins-sdk/wit/plugin.wit"

CC="${CC:-}"
if [ -z "$CC" ]; then
    for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
        if command -v "$c" >/dev/null 2>&1; then CC="$c"; break; fi
    done
fi
[ -n "$CC" ] || { echo "build.sh: no clang found (apt-get install clang-14 lld-14)" >&2; exit 1; }
# clang --target=wasm32 calls wasm-ld; Debian's lld-14 installs it as wasm-ld-14 only.
ver="$("$CC" -dumpversion | cut -d. -f1)"
ldflag=()
if ! command -v wasm-ld >/dev/null 2>&1 && command -v "wasm-ld-$ver" >/dev/null 2>&1; then
    ldflag=("-fuse-ld=$(command -v "wasm-ld-$ver")")
fi

if [ ! -d "$here/node_modules/@bytecodealliance/jco-transpile" ]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$CC" --target=wasm32-unknown-unknown -Os -ffreestanding -nostdlib -mbulk-memory \
    -Wall -Wextra -Werror \
    "${ldflag[@]}" -Wl,--no-entry -Wl,--stack-first -Wl,-z,stack-size=65536 -Wl,--strip-all \
    -o "$tmp/core.wasm" "$here/size_guard.c"
node "$here/componentize.mjs" "$wit" "$tmp/core.wasm" "$out"
echo "built $out ($(wc -c <"$out") bytes)"

#!/usr/bin/env bash
# CI for the VS Code extension: install (cached), compile, unit tests, package the plain .vsix
# and the platform .vsix that carries QUILL_BIN, then the end-to-end test in code-server with
# the platform .vsix and no other quill. Prints QUILL-VSCODE-E2E-PASSED at the end on success.
#
#   editors/vscode/test/ci.sh        (QUILL_BIN defaults to <repo>/target/debug/quill)
#
# Cache: ${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}/vscode (Node 24, code-server, playwright-core).
set -euo pipefail
EXT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$EXT_DIR"
t0=$SECONDS
step() { echo "== vscode: $* ($((SECONDS - t0)) s)"; }

step "toolchain"
# shellcheck source=setup.sh
. "$EXT_DIR/test/setup.sh"

step "npm ci"
# node_modules is reused while package-lock.json is unchanged
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.quill-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" >node_modules/.quill-lock-hash
else
  echo "node_modules up to date"
fi

step "compile + unit tests (npm test)"
npm test

REPO="$(cd "$EXT_DIR/../.." && pwd)"
QUILL_BIN="${QUILL_BIN:-$REPO/target/debug/quill}"
[ -x "$QUILL_BIN" ] || { echo "no quill binary at $QUILL_BIN: run cargo build first"; exit 1; }

step "package: the plain .vsix (no server inside)"
rm -f quill.vsix quill-linux-x64.vsix
npm run -s package >/dev/null
ls -l quill.vsix
if unzip -Z1 quill.vsix | grep -q '^extension/server/'; then
  echo "the plain quill.vsix carries a server"; exit 1
fi

step "package: the linux-x64 .vsix with the debug quill inside"
# the debug binary is 95% debug info: the .vsix carries a stripped copy (the release one in
# scripts/dist.sh is stripped the same way)
stripped="$(mktemp -d)/quill"
strip -o "$stripped" "$QUILL_BIN"
npm run -s package -- --server "$stripped" --target linux-x64 | grep '^package:'
rm -rf "$(dirname "$stripped")"
unzip -Z quill-linux-x64.vsix extension/server/quill
grep -q 'TargetPlatform="linux-x64"' <(unzip -p quill-linux-x64.vsix extension.vsixmanifest) ||
  { echo "quill-linux-x64.vsix does not declare TargetPlatform linux-x64"; exit 1; }

step "end-to-end (code-server + headless Chromium, the server from the .vsix)"
QUILL_BIN="$QUILL_BIN" QUILL_VSIX="$EXT_DIR/quill-linux-x64.vsix" "$EXT_DIR/test/e2e.sh"
step "done"

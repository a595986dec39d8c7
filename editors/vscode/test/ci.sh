#!/usr/bin/env bash
# CI for the VS Code extension: install (cached), compile, unit tests, package the .vsix, then
# the end-to-end test in code-server. Prints QUILL-VSCODE-E2E-PASSED at the end on success.
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

step "package"
rm -f quill.vsix
npm run -s package
ls -l quill.vsix

step "end-to-end (code-server + headless Chromium)"
QUILL_VSIX="$EXT_DIR/quill.vsix" "$EXT_DIR/test/e2e.sh"
step "done"

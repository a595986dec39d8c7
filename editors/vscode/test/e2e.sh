#!/usr/bin/env bash
# End-to-end test of the Quill VS Code extension in a real VS Code (code-server 4.139 in
# headless Chromium, driven by playwright-core), against the quill binary and the tiny
# fixture models. See /work/shared/CLIENTS.md for why code-server and not @vscode/test-*.
#
#   editors/vscode/test/e2e.sh          (QUILL_BIN defaults to <repo>/target/debug/quill)
#
# Installs what it needs (cached in ${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}/vscode), builds
# the platform-specific .vsix with QUILL_BIN inside (server/quill) unless QUILL_VSIX names a
# ready one, installs it into a fresh code-server, runs test/e2e.cjs, and prints
# QUILL-VSCODE-E2E-PASSED when every check passed. The editor runs with no quill on PATH and
# no quill.server.path: the server it starts is the one in the .vsix, as for a user who
# installed only the extension. When llama-cpp-python is installed (scripts/llama_server.sh
# install), one more check sets quill.backend to llama.cpp's server (otherwise it is skipped,
# saying so).
# Screenshots: <repo>/target/e2e/vscode-*.png; QUILL_E2E_IMAGES=DIR also copies the README ones there. Set QUILL_E2E_KEEP=1 to keep the temporary directory.
#
#   editors/vscode/test/e2e.sh --screenshots
#
# remakes the README's pictures instead: the demo model (models/demo-gpt2) with the default
# diagnostics thresholds, English text, only the ghost-text and diagnostics checks, the images
# (ghost-text.png, diagnostics.png) written to editors/vscode/images/ (QUILL_E2E_IMAGES
# overrides).
set -euo pipefail

EXT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(cd "$EXT_DIR/../.." && pwd)"
QUILL_BIN="${QUILL_BIN:-$REPO/target/debug/quill}"
SHOTS="${QUILL_E2E_SHOTS:-$REPO/target/e2e}"
MODE=e2e
if [ "${1:-}" = --screenshots ]; then
  MODE=screenshots
  QUILL_E2E_IMAGES="${QUILL_E2E_IMAGES:-$EXT_DIR/images}"
fi

log() { echo "[e2e] $*" >&2; }

if [ ! -x "$QUILL_BIN" ]; then
  log "quill binary not found at $QUILL_BIN: run \`cargo build\` first or set QUILL_BIN"
  exit 1
fi
QUILL_BIN="$(cd "$(dirname "$QUILL_BIN")" && pwd)/$(basename "$QUILL_BIN")"

# shellcheck source=setup.sh
. "$EXT_DIR/test/setup.sh"

# --- the extension ---------------------------------------------------------------------------
VSIX="${QUILL_VSIX:-}"
if [ -z "$VSIX" ]; then
  cd "$EXT_DIR"
  lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ "$(cat node_modules/.quill-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
    log "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$lock_hash" >node_modules/.quill-lock-hash
  fi
  log "package the platform .vsix with $QUILL_BIN"
  # the debug binary's debug info is 95% of it: the .vsix carries a stripped copy
  stripped="$(mktemp "${TMPDIR:-/tmp}/quill-e2e-bin.XXXXXX")"
  strip -o "$stripped" "$QUILL_BIN"
  npm run -s package -- --server "$stripped" --out "$EXT_DIR/quill-e2e.vsix" >/dev/null
  rm -f "$stripped"
  VSIX="$EXT_DIR/quill-e2e.vsix"
fi
[ -f "$VSIX" ] || { log "no .vsix at $VSIX"; exit 1; }

# No quill on PATH: drop every PATH entry that holds one (HOME below is empty, so no
# ~/.cargo/bin either); the extension must fall back to the binary in the .vsix.
clean_path=""
IFS=: read -ra path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
  [ -n "$d" ] && [ ! -x "$d/quill" ] && clean_path="${clean_path:+$clean_path:}$d"
done
export PATH="$clean_path"
if command -v quill >/dev/null; then
  log "quill is still on PATH ($(command -v quill))"; exit 1
fi

# llama-cpp-python's venv, found before HOME moves below (scripts/llama_server.sh looks in the cache)
LLAMA_VENV="${QUILL_LLAMA_VENV:-${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}/llama-venv}"

# --- a fresh code-server -----------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/quill-vscode-e2e.XXXXXX")"
CS_PID=""
LLAMA_PID=""
cleanup() {
  if [ -n "$CS_PID" ] && kill -0 "$CS_PID" 2>/dev/null; then
    kill "$CS_PID" 2>/dev/null || true
    wait "$CS_PID" 2>/dev/null || true
  fi
  if [ -n "$LLAMA_PID" ]; then
    kill "$LLAMA_PID" 2>/dev/null || true
    wait "$LLAMA_PID" 2>/dev/null || true
  fi
  if [ "${QUILL_E2E_KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" XDG_DATA_HOME="$WORK/home/.local/share"
mkdir -p "$HOME" "$WORK/data/User" "$WORK/ext" "$WORK/ws/.vscode" "$SHOTS"
rm -f "$SHOTS"/vscode-*.png

log "installing $(basename "$VSIX") into a fresh code-server"
code-server --user-data-dir "$WORK/data" --extensions-dir "$WORK/ext" --install-extension "$VSIX" \
  >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log" >&2; exit 1; }
# VS Code's unpacker must have kept the executable bit that the .vsix records (the extension
# would chmod it at activation, but a user's VS Code should not need that)
BUNDLED="$(find "$WORK/ext" -path '*/server/quill' -type f | head -n 1)"
[ -n "$BUNDLED" ] || { log "the installed extension has no server/quill"; find "$WORK/ext" -maxdepth 2 >&2; exit 1; }
[ -x "$BUNDLED" ] || { log "$BUNDLED lost its executable bit: $(stat -c %A "$BUNDLED")"; exit 1; }
log "bundled server: $BUNDLED ($(stat -c %A "$BUNDLED"))"

# User settings: quiet, deterministic UI.
cat >"$WORK/data/User/settings.json" <<'EOF'
{
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "workbench.welcomePage.walkthroughs.openOnInstall": false,
  "workbench.secondarySideBar.defaultVisibility": "hidden",
  "telemetry.telemetryLevel": "off",
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "extensions.ignoreRecommendations": true,
  "update.mode": "none",
  "security.workspace.trust.enabled": false,
  "files.hotExit": "off",
  "chat.disableAIFeatures": true,
  "editor.minimap.enabled": false,
  "window.restoreWindows": "none"
}
EOF

# Workspace settings: the test settings of the server, and the editor behaviour the checks need.
FIX="$REPO/tests/fixtures"
MODEL="$FIX/gpt2-tiny"
# the thresholds of the checks: the tiny random model flags nothing at the defaults
THRESHOLDS='"quill.diagnostics.minTokenLogprob": -25,
  "quill.diagnostics.minAlternativeGap": 8,
  "quill.diagnostics.maxSentencePerplexity": 1e12,'
CHECK_ARGS='["--min-token-logprob","-25","--min-gap","8","--max-sentence-perplexity","1e12"]'
if [ "$MODE" = screenshots ]; then
  MODEL="$REPO/models/demo-gpt2"
  THRESHOLDS=""
  CHECK_ARGS='[]'
fi
cat >"$WORK/ws/.vscode/settings.json" <<EOF
{
  "files.hotExit": "off",
  "chat.disableAIFeatures": true,
  "editor.quickSuggestions": { "other": "off", "comments": "off", "strings": "off" },
  "editor.suggestOnTriggerCharacters": false,
  "editor.inlineSuggest.enabled": true,
  "editor.hover.delay": 150,
  "[markdown]": { "editor.quickSuggestions": { "other": "off", "comments": "off", "strings": "off" } },
  "quill.server.extraEnv": { "HF_HUB_OFFLINE": "1" },
  "quill.model": "$MODEL",
  "quill.t5Model": "$FIX/t5-tiny",
  "quill.completion.temperature": 0,
  "quill.completion.numSuggestions": 1,
  "quill.completion.maxTokens": 8,
  $THRESHOLDS
  "quill.diagnostics.debounceMs": 50,
  "quill.t5.maxTokens": 20
}
EOF
if [ "$MODE" = screenshots ]; then
  # English for a model that has learned some (the demo model was trained on Debian's docs)
  printf 'If the device is not found, the drive' >"$WORK/ws/ghost.md"
  # a held-out sentence of the demo corpus with a typo the demo model flags at the defaults
  printf 'Schedule analysis is needed to aviod this, which is outside the scope of the document.\n' \
    >"$WORK/ws/cafe.md"
else
  printf 'The quick brown fo' >"$WORK/ws/ghost.md"
  printf 'We sat in the café and ordered coffee. It was good.\n' >"$WORK/ws/cafe.md"
fi
printf 'We sat in the café and ordered coffee. It was good.\n' >"$WORK/ws/names.md"
printf '# Harbour\n\nThe harbour town woke early. Before the sun was up, the bakers had lit their ovens, the fishermen were loading nets onto their boats, and the first bus of the day was waiting outside the station with its engine running.\n\nThe end.\n' \
  >"$WORK/ws/harbour.md"

printf 'The house is wonderful.' >"$WORK/ws/short.md"
printf 'The quick brown fo' >"$WORK/ws/remote.md"
printf 'We sat in the café and ordered coffee. It was good.\n\nThe café is near the station, where a dog barked at nothing.\n' \
  >"$WORK/ws/remote-cafe.md"

# --- llama.cpp's server, for the remote-backend check -------------------------------------------
# When scripts/llama_server.sh has built llama-cpp-python (CI's .ci/run does before the editor
# tests), an f32 GGUF of the tiny fixture is served on a free port; one check then switches
# quill.backend to it. It starts now, so it is up by the time that check comes.
LLAMA_URL=""
LLAMA_LOG="$WORK/llama.log"
if [ "$MODE" = e2e ] && QUILL_LLAMA_VENV="$LLAMA_VENV" bash "$REPO/scripts/llama_server.sh" python >/dev/null 2>"$WORK/llama-why"; then
  "$QUILL_BIN" quantize --dtype f32 --model "$FIX/gpt2-tiny" "$WORK/gguf" >"$WORK/quantize.log" 2>&1 ||
    { cat "$WORK/quantize.log" >&2; log "quill quantize --dtype f32 failed"; exit 1; }
  LLAMA_PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
  QUILL_LLAMA_VENV="$LLAMA_VENV" bash "$REPO/scripts/llama_server.sh" serve "$WORK/gguf/model.gguf" "$LLAMA_PORT" \
    >"$LLAMA_LOG" 2>&1 &
  LLAMA_PID=$!
  LLAMA_URL="http://127.0.0.1:$LLAMA_PORT/v1"
  log "remote backend: llama-cpp-python serving $WORK/gguf/model.gguf at $LLAMA_URL"
elif [ "$MODE" = e2e ]; then
  log "SKIPPING the remote-backend check: $(cat "$WORK/llama-why")"
fi

PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
cat >"$WORK/config.yaml" <<EOF
bind-addr: 127.0.0.1:$PORT
auth: none
cert: false
EOF
log "starting code-server on 127.0.0.1:$PORT"
HF_HUB_OFFLINE=1 code-server --auth none --bind-addr "127.0.0.1:$PORT" --disable-telemetry \
  --disable-update-check --disable-workspace-trust --disable-getting-started-override \
  --config "$WORK/config.yaml" --user-data-dir "$WORK/data" --extensions-dir "$WORK/ext" \
  "$WORK/ws" >"$WORK/code-server.log" 2>&1 &
CS_PID=$!
for _ in $(seq 1 120); do
  if node -e 'require("http").get(process.argv[1],r=>process.exit(r.statusCode<500?0:1)).on("error",()=>process.exit(1))' \
      "http://127.0.0.1:$PORT/healthz" 2>/dev/null; then
    break
  fi
  kill -0 "$CS_PID" 2>/dev/null || { cat "$WORK/code-server.log" >&2; log "code-server exited"; exit 1; }
  sleep 0.5
done

set +e
QUILL_BIN="$QUILL_BIN" QUILL_FIXTURES="$FIX" E2E_MODE="$MODE" E2E_MODEL="$MODEL" E2E_CHECK_ARGS="$CHECK_ARGS" E2E_URL="http://127.0.0.1:$PORT/?folder=$WORK/ws" \
  E2E_WORK="$WORK" E2E_SHOTS="$SHOTS" E2E_IMAGES="${QUILL_E2E_IMAGES:-}" E2E_BUNDLED="$BUNDLED" E2E_CS_PID="$CS_PID" \
  E2E_LLAMA_URL="$LLAMA_URL" E2E_LLAMA_GGUF="$WORK/gguf" E2E_LLAMA_LOG="$LLAMA_LOG" \
  NODE_PATH="$QUILL_VSCODE_TOOLS/node_modules" \
  node "$EXT_DIR/test/e2e.cjs"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  log "failed (exit $rc); code-server log tail:"
  tail -n 40 "$WORK/code-server.log" >&2 || true
  # the extension host log holds the Quill output channel
  find "$WORK/data/logs" -name '*Quill*' -exec tail -n 40 {} + >&2 2>/dev/null || true
  if [ -n "$LLAMA_URL" ]; then
    log "llama.cpp server log tail:"
    tail -n 20 "$LLAMA_LOG" >&2 || true
  fi
fi
exit $rc

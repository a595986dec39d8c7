#!/usr/bin/env bash
# Puts Node 24 first on PATH (code-server and @vscode/vsce 4 need Node >= 22; Debian 12 has 20):
# the npm package node-linux-<arch> carries the binary and headers. Sourced by setup.sh (the
# end-to-end test) and by scripts/dist.sh (packaging only). Exports PATH, npm_config_nodedir.
# Cache: ${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}/vscode
NODE_VERSION=24.22.3
QUILL_VSCODE_CACHE="${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}/vscode"
mkdir -p "$QUILL_VSCODE_CACHE"
case "$(uname -m)" in
  x86_64) node_arch=x64 ;;
  aarch64 | arm64) node_arch=arm64 ;;
  *) echo "[node] no Node package for $(uname -m)" >&2; return 1 2>/dev/null || exit 1 ;;
esac
NODE_DIR="$QUILL_VSCODE_CACHE/node-$NODE_VERSION"
[ "$node_arch" = x64 ] || NODE_DIR="$NODE_DIR-$node_arch"
if [ ! -x "$NODE_DIR/bin/node" ]; then
  echo "[node] fetching node $NODE_VERSION ($node_arch)" >&2
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "node-linux-$node_arch@$NODE_VERSION" >/dev/null &&
     tar xzf "node-linux-$node_arch-$NODE_VERSION.tgz")
  rm -rf "$NODE_DIR" && mv "$tmp/package" "$NODE_DIR" && rm -rf "$tmp"
fi
export PATH="$NODE_DIR/bin:$PATH"
export npm_config_nodedir="$NODE_DIR"
# npm of the system node stays usable with node 24 on PATH
command -v npm >/dev/null || { echo "[node] npm missing" >&2; return 1 2>/dev/null || exit 1; }

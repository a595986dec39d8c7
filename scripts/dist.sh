#!/usr/bin/env bash
# Builds quill's release archives and platform .vsix files into dist/:
#
#   scripts/dist.sh [--debug | --bin QUILL] [--no-aarch64] [--no-vsix] [--out DIR]
#
# For the host (cargo build --release) and, on an x86-64 Linux host where the cross toolchain
# is installed (see "aarch64 here" in the CI notes: Debian's rustc-web with
# libstd-rust-web-dev:arm64 and gcc-aarch64-linux-gnu), for aarch64-unknown-linux-gnu:
#   quill-VERSION-TRIPLE.tar.gz   quill (stripped of debug info), editors/, README.md,
#                                 LICENSE-MIT, LICENSE-APACHE, THIRD-PARTY-LICENSES.md
#   quill-VERSION-VSCETARGET.vsix the VS Code extension with that binary inside (server/quill)
#   SHA256SUMS
# --debug     package the debug build (cargo build) instead: fast, for testing this script;
#             the files are named ...-debug
# --bin QUILL package this host binary as is, without building it (implies --no-aarch64)
# --no-aarch64  the host only (the cross build is a full second build)
# --no-vsix   the archives only (the .vsix needs Node >= 22; editors/vscode/test/node.sh
#             fetches Node 24 into the cache when the node on PATH is older)
# Long on a small machine: run it under nice in the background with a log.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

profile=release
prebuilt=""
aarch64=auto
vsix=1
OUT="$ROOT/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --bin) prebuilt="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; aarch64=no; shift ;;
    --no-aarch64) aarch64=no ;;
    --no-vsix) vsix=0 ;;
    --out) OUT="$(mkdir -p "$2" && cd "$2" && pwd)"; shift ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "dist: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "[dist] $*" >&2; }
die() { log "$*"; exit 1; }

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
[ -n "$VERSION" ] || die "no version in Cargo.toml"
HOST="$(rustc -vV | sed -n 's/^host: //p')"
suffix=""
[ "$profile" = debug ] && suffix="-debug"
cargo_profile=(--release)
[ "$profile" = debug ] && cargo_profile=()
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$OUT"

# Rust target triple -> vsce target (`vsce package --target`)
vsce_target() {
  case "$1" in
    x86_64-unknown-linux-gnu) echo linux-x64 ;;
    aarch64-unknown-linux-gnu) echo linux-arm64 ;;
    armv7-unknown-linux-gnueabihf) echo linux-armhf ;;
    x86_64-unknown-linux-musl) echo alpine-x64 ;;
    aarch64-unknown-linux-musl) echo alpine-arm64 ;;
    x86_64-apple-darwin) echo darwin-x64 ;;
    aarch64-apple-darwin) echo darwin-arm64 ;;
    x86_64-pc-windows-*) echo win32-x64 ;;
    aarch64-pc-windows-*) echo win32-arm64 ;;
    *) return 1 ;;
  esac
}

# --- builds ----------------------------------------------------------------------------------
# Each entry: TRIPLE BINARY STRIP_TOOL
builds=()

exe=quill
case "$HOST" in *-windows-*) exe=quill.exe ;; esac
# GNU strip on Linux; elsewhere the binary stays as built (on macOS the DWARF is not in the
# binary anyway, and stripping would break the linker's ad-hoc code signature on arm64)
host_strip=none
case "$HOST" in *-linux-*) host_strip=strip ;; esac
if [ -n "$prebuilt" ]; then
  [ -x "$prebuilt" ] || die "no executable at $prebuilt"
  log "packaging $prebuilt as quill $VERSION for $HOST (not built here)"
  builds+=("$HOST $prebuilt $host_strip")
else
  log "building quill $VERSION for $HOST ($profile)"
  cargo build "${cargo_profile[@]}" --bin quill
  builds+=("$HOST $TARGET_DIR/$profile/$exe $host_strip")
fi

CROSS=aarch64-unknown-linux-gnu
cross_ready() {
  [ "$HOST" = x86_64-unknown-linux-gnu ] || return 1
  command -v aarch64-linux-gnu-gcc >/dev/null || return 1
  [ -x /usr/bin/rustc ] || return 1
  local libdir
  libdir="$(/usr/bin/rustc --print target-libdir --target "$CROSS" 2>/dev/null)" || return 1
  compgen -G "$libdir/libstd-*.rlib" >/dev/null
}
if [ "$aarch64" = auto ] && [ "$HOST" != "$CROSS" ]; then
  if cross_ready; then
    log "building quill $VERSION for $CROSS ($profile, cross: /usr/bin/rustc + aarch64-linux-gnu-gcc)"
    # its own target directory: another rustc than the host build's
    CROSS_DIR="$ROOT/target/cross-$CROSS"
    RUSTC=/usr/bin/rustc CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
      CARGO_TARGET_DIR="$CROSS_DIR" cargo build "${cargo_profile[@]}" --bin quill --target "$CROSS" ||
      die "the aarch64 cross build failed (scripts/dist.sh --no-aarch64 builds the host only)"
    builds+=("$CROSS $CROSS_DIR/$CROSS/$profile/quill aarch64-linux-gnu-strip")
  else
    log "no aarch64 cross toolchain here (rustc-web, libstd-rust-web-dev:arm64, gcc-aarch64-linux-gnu): host only"
  fi
fi

# --- Node for the .vsix ----------------------------------------------------------------------
if [ "$vsix" = 1 ]; then
  node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$node_major" -lt 22 ]; then
    # shellcheck source=../editors/vscode/test/node.sh
    . "$ROOT/editors/vscode/test/node.sh"
  fi
  (
    cd editors/vscode
    lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
    if [ "$(cat node_modules/.quill-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
      log "npm ci (editors/vscode)"
      npm ci --no-audit --no-fund --loglevel=error
      echo "$lock_hash" >node_modules/.quill-lock-hash
    fi
  )
fi

# --- packages --------------------------------------------------------------------------------
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/quill-dist.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
made=()
for b in "${builds[@]}"; do
  read -r triple bin strip_tool <<<"$b"
  [ -f "$bin" ] || die "no binary at $bin"
  name="quill-$VERSION-$triple$suffix"
  dir="$STAGE/$name"
  mkdir -p "$dir"
  exe_name=quill
  case "$triple" in *-windows-*) exe_name=quill.exe ;; esac
  # the release profile keeps debug info (for profiling); users get the symbols only
  if [ "$strip_tool" = none ]; then
    cp "$bin" "$dir/$exe_name"
  elif command -v "$strip_tool" >/dev/null; then
    "$strip_tool" --strip-debug -o "$dir/$exe_name" "$bin"
  else
    log "no $strip_tool: $exe_name keeps its debug info"
    cp "$bin" "$dir/$exe_name"
  fi
  chmod 0755 "$dir/$exe_name"
  # editors/ as committed (no node_modules, out/, .vsix or test leftovers)
  git ls-files -z editors | xargs -0 -I{} cp --parents {} "$dir/"
  cp README.md LICENSE-MIT LICENSE-APACHE "$dir/"
  python3 scripts/third_party_licenses.py --target "$triple" >"$dir/THIRD-PARTY-LICENSES.md"
  if [ "$triple" = "$HOST" ]; then
    "$dir/$exe_name" --version >/dev/null || die "$dir/$exe_name --version failed"
  fi
  tar -C "$STAGE" -czf "$OUT/$name.tar.gz" "$name"
  made+=("$name.tar.gz")
  log "$OUT/$name.tar.gz ($(du -h "$OUT/$name.tar.gz" | cut -f1); quill $(du -h "$dir/$exe_name" | cut -f1))"

  if [ "$vsix" = 1 ]; then
    if vt="$(vsce_target "$triple")"; then
      vsix_name="quill-$VERSION-$vt$suffix.vsix"
      (cd editors/vscode && npm run -s package -- --server "$dir/$exe_name" --target "$vt" --out "$OUT/$vsix_name") |
        grep '^package:' >&2
      made+=("$vsix_name")
    else
      log "no VS Code target for $triple: no .vsix"
    fi
  fi
done

(cd "$OUT" && sha256sum "${made[@]}" >SHA256SUMS)
log "done: $OUT"
for f in "${made[@]}"; do echo "$OUT/$f"; done

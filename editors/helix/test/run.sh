#!/usr/bin/env bash
# Checks editors/helix/languages.toml against the quill server at the protocol level, playing
# Helix's part (Helix itself is not packaged for Debian 12): see test.py.
#
#   editors/helix/test/run.sh
#
# Needs python3 >= 3.11 (tomllib); uses $QUILL_BIN (default <repo>/target/debug/quill, built
# with `cargo build` if missing). Prints QUILL-HELIX-TESTS-PASSED when every check passed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
die() { echo "quill-helix-test: $*" >&2; echo "QUILL-HELIX-TESTS-FAILED"; exit 1; }

python3 -c 'import sys, tomllib' 2>/dev/null || die "python3 >= 3.11 is needed (tomllib)"
bin="${QUILL_BIN:-$repo/target/debug/quill}"
if [ ! -x "$bin" ]; then
  echo "== building quill (cargo build)"
  (cd "$repo" && cargo build --quiet) || die "cargo build failed"
fi
[ -x "$bin" ] || die "no quill binary at $bin"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/quill-helix-test.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
out="$tmp/test.out"
set +e
QUILL_REPO="$repo" QUILL_BIN="$bin" HF_HOME="$tmp/hf" timeout "${QUILL_HELIX_TEST_TIMEOUT:-180}" \
  python3 "$here/test.py" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || die "the Helix protocol test failed (exit $rc)"
grep -q 's all helix checks passed$' "$out" || die "the pass marker is missing"
echo "QUILL-HELIX-TESTS-PASSED"

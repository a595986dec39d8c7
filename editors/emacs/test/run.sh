#!/usr/bin/env bash
# End-to-end test of editors/emacs/quill.el: Emacs (Debian emacs-nox) + eglot (elpa-eglot)
# against the quill server with the tiny fixture models.
#
#   editors/emacs/test/run.sh
#
# Installs emacs-nox and elpa-eglot with apt-get when Emacs or eglot is missing (needs root),
# uses $QUILL_BIN (default <repo>/target/debug/quill, built with `cargo build` if missing).
# Prints QUILL-EMACS-TESTS-PASSED when every check passed; exits non-zero otherwise.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"

die() { echo "quill-emacs-test: $*" >&2; echo "QUILL-EMACS-TESTS-FAILED"; exit 1; }

emacs="${QUILL_EMACS:-emacs}"
has_eglot() { "$emacs" --batch --eval '(unless (locate-library "eglot") (kill-emacs 1))' >/dev/null 2>&1; }
if ! command -v "$emacs" >/dev/null 2>&1 || ! has_eglot; then
  echo "== installing emacs-nox and elpa-eglot (apt-get)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null || die "apt-get update failed"
  $sudo apt-get install -y -qq emacs-nox elpa-eglot >/dev/null || die "apt-get install emacs-nox elpa-eglot failed"
  has_eglot || die "eglot is still not found after installing elpa-eglot"
fi
echo "== $("$emacs" --version | head -1), eglot $("$emacs" --batch --eval '(progn (require (quote eglot)) (princ (or (ignore-errors (package-get-version)) (let ((f (locate-library "eglot"))) (file-name-nondirectory (directory-file-name (file-name-directory f)))))))' 2>/dev/null)"

bin="${QUILL_BIN:-$repo/target/debug/quill}"
if [ ! -x "$bin" ]; then
  echo "== building quill (cargo build)"
  (cd "$repo" && cargo build --quiet) || die "cargo build failed"
fi
[ -x "$bin" ] || die "no quill binary at $bin"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
echo "== $("$bin" --version) ($bin)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/quill-emacs-test.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/work" "$tmp/home"
export QUILL_REPO="$repo" QUILL_BIN="$bin" QUILL_TEST_DIR="$tmp/work"
# A throwaway HOME: no user init, no ~/.emacs.d state.
export HOME="$tmp/home" HF_HUB_OFFLINE=1 HF_HOME="$tmp/hf"

out="$tmp/test.out"
set +e
(cd "$tmp/work" && timeout "${QUILL_EMACS_TEST_TIMEOUT:-300}" "$emacs" --batch -l "$here/test.el") 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 124 ] && echo "quill-emacs-test: timed out" >&2
[ "$rc" -eq 0 ] || die "the Emacs test failed (exit $rc)"
grep -q 's all emacs checks passed$' "$out" || die "the pass marker is missing"
echo "QUILL-EMACS-TESTS-PASSED"

#!/usr/bin/env bash
# quill on aarch64 Linux, from this x86-64 machine: cross-builds quill and its test binaries for
# aarch64-unknown-linux-gnu, lints them with clippy for that target, and runs the CPU kernel unit
# tests (NEON with and without dotprod, and portable), the parity tests and the quantized-format
# tests (QUILL_CPU=neon and QUILL_CPU=portable) under qemu-user.
#
#   scripts/aarch64-tests.sh [install|build|test|all]   (default: all)
#
# Toolchain: Debian's rustc-web (rustc 1.96) with the arm64 standard library from
# libstd-rust-web-dev:arm64, Debian's clippy for that compiler (rust-web-clippy) and
# gcc-aarch64-linux-gnu as linker; cargo is the usual one (RUSTC points it at Debian's rustc,
# since rustup's aarch64 standard library cannot be downloaded here).
#
# Running: qemu-aarch64 (qemu-user) with the arm64 glibc of libc6:arm64, loaded from the
# usual multiarch paths. Never give qemu `-L /usr/aarch64-linux-gnu` (or QEMU_LD_PREFIX): that
# prefix holds the cross toolchain's dynamic loader (glibc 2.36-8cross1) while libc.so.6 is then
# found in /lib/aarch64-linux-gnu (libc6:arm64, 2.36-9+deb12u*), and with a loader and a libc
# from two different glibc builds every pthread_create spins forever (single-threaded programs
# run). With one consistent glibc, threads, rayon and candle run normally.
#
# The aarch64 build lives in $CARGO_TARGET_DIR if set, else in
# ${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}/aarch64/target, so CI reuses the dependencies'
# build from one run to the next.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
CACHE="${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}/aarch64"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export CARGO_TERM_COLOR=never
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
unset QEMU_LD_PREFIX RUSTC_WRAPPER
# Clippy in the same pass as the build: Debian's clippy-driver (it belongs to /usr/bin/rustc;
# rustup's clippy cannot read Debian's arm64 standard library) wraps rustc for quill's own
# targets only, with the arguments `cargo clippy -- -D warnings` gives it, so the dependencies
# are compiled once instead of again in check mode. Set for every step, so that the tests reuse
# the build.
export RUSTC_WORKSPACE_WRAPPER=/usr/bin/clippy-driver
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# No debug info and no incremental state: faster to build, smaller to cache. Dependencies at
# opt-level 1 instead of Cargo.toml's 3: LLVM's time dominates this build, and the emulated
# tests (tiny fixtures) stay quick without it.
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0 CARGO_INCREMENTAL=0
OPTS=(--target $TARGET
  --config 'profile.dev.package."*".opt-level=1'
  --config 'profile.test.package."*".opt-level=1')

PACKAGES=(rustc-web libstd-rust-web-dev:arm64 rust-web-clippy libc6:arm64
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)

# Seconds since $1, for the timing lines.
since() { echo $(($(date +%s) - $1)); }

apt_retry() {
  local i
  for i in $(seq 1 30); do
    if DEBIAN_FRONTEND=noninteractive "$@"; then return 0; fi
    echo "aarch64: '$*' failed (dpkg lock held?), retrying in 10 s" >&2
    sleep 10
  done
  return 1
}

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "aarch64: installing ${missing[*]}"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  apt_retry apt-get update -q
  apt_retry apt-get install -y -q "${PACKAGES[@]}"
}

build_all() {
  # Every target is built (lib, bin, tests, benches) and linted: see RUSTC_WORKSPACE_WRAPPER.
  nice -n 10 cargo test "${OPTS[@]}" --no-run --all-targets
  nice -n 10 cargo build "${OPTS[@]}" --bin quill
  file "$CARGO_TARGET_DIR/$TARGET/debug/quill" | grep -q 'ARM aarch64' || {
    echo "aarch64: $CARGO_TARGET_DIR/$TARGET/debug/quill is not an aarch64 executable"
    exit 1
  }
}

run_tests() {
  # Through the runner above: each test binary runs as `qemu-aarch64 BINARY ...`.
  local t
  # qemu's default CPU (max) has NEON and dotprod: unforced, the kernel tests run the portable
  # path and NEON with and without `sdot` (cpu::isa's test_paths).
  t=$(date +%s)
  nice -n 10 cargo test "${OPTS[@]}" --lib engine::cpu
  echo "aarch64: kernel unit tests (--lib engine::cpu, every path) took $(since "$t") s"
  # A Cortex-A72 has NEON without dotprod: the detection itself picks the non-sdot kernels.
  t=$(date +%s)
  QEMU_CPU=cortex-a72 QUILL_CPU=neon nice -n 10 cargo test "${OPTS[@]}" --lib engine::cpu
  echo "aarch64: kernel unit tests on a Cortex-A72 (NEON, no dotprod) took $(since "$t") s"
  # End to end, each forced path for the whole process.
  local cpu
  for cpu in neon portable; do
    t=$(date +%s)
    QUILL_CPU=$cpu nice -n 10 cargo test "${OPTS[@]}" --test parity --test quantized
    echo "aarch64: parity and quantized-format tests (QUILL_CPU=$cpu) took $(since "$t") s"
  done
}

step() {
  local t
  t=$(date +%s)
  echo "== aarch64: $1"
  "$1"
  echo "aarch64: $1 took $(since "$t") s"
}

case "${1:-all}" in
  install) step install_packages ;;
  build) step build_all ;;
  test) step run_tests ;;
  all)
    step install_packages
    step build_all
    step run_tests
    ;;
  *)
    echo "usage: $0 [install|build|test|all]" >&2
    exit 2
    ;;
esac

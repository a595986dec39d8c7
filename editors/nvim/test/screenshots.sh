#!/usr/bin/env bash
# Remakes the Neovim pictures of the READMEs from a real Neovim 0.11 running the plugin:
#
#   editors/nvim/test/screenshots.sh
#
# writes editors/nvim/images/ghost-text.png and editors/nvim/images/diagnostics.png (set
# QUILL_NVIM_IMAGES=DIR to write them elsewhere). Neovim runs in tmux (100x8 cells, true colour,
# the default colorscheme) with the demo model (models/demo-gpt2) at the default settings except
# greedy completion (temperature 0, one suggestion, 8 tokens), as the VS Code screenshots
# (editors/vscode/test/e2e.sh --screenshots). Keys are sent as a user types them; the screen is
# captured with `tmux capture-pane -e`, drawn as HTML by ansi2html.py and photographed by headless
# Chromium. Checks that the ghost text on the screen is the first line of
# `quill complete --temperature 0 --max-tokens 8` and that the diagnostic float names "aviod";
# fails otherwise.
#
# Needs tmux, python3 and Chromium (QUILL_CHROMIUM, else chromium / chromium-browser /
# google-chrome on PATH); as root, installs tmux and chromium with apt-get when missing.
# Neovim 0.11 and the server binary are found as run.sh finds them (QUILL_NVIM, QUILL_BIN,
# default <repo>/target/debug/quill, built when missing). Prints QUILL-NVIM-SCREENSHOTS-DONE.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${QUILL_CI_CACHE:-$HOME/.cache/quill-ci}"
images="${QUILL_NVIM_IMAGES:-$repo/editors/nvim/images}"
cols=100
rows=8
model="$repo/models/demo-gpt2"
start=$(date +%s)

die() { echo "quill-nvim-screenshots: $*" >&2; echo "QUILL-NVIM-SCREENSHOTS-FAILED"; exit 1; }
log() { echo "== $*"; }

# Tools -----------------------------------------------------------------------------------------
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $* (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null || die "apt-get install $* failed"
  else
    die "$1 is missing: install it (e.g. sudo apt-get install $*)"
  fi
}
command -v tmux >/dev/null 2>&1 || apt_install tmux
command -v python3 >/dev/null 2>&1 || die "python3 is missing"
chromium="${QUILL_CHROMIUM:-}"
if [ -z "$chromium" ]; then
  for c in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$c" >/dev/null 2>&1; then chromium="$(command -v "$c")"; break; fi
  done
fi
if [ -z "$chromium" ]; then
  apt_install chromium
  chromium="$(command -v chromium)"
fi
fc-list 2>/dev/null | grep -q 'DejaVu Sans Mono' || apt_install fonts-dejavu-core

. "$here/find.sh"
[ -f "$model/config.json" ] || die "no demo model at $model"

# A clean, throwaway editor state and a private tmux server -------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/quill-nvim-shots.XXXXXX")"
sock=""
cleanup() {
  [ -z "$sock" ] || tmux -L "$sock" kill-server >/dev/null 2>&1 || true
  if [ -n "${QUILL_NVIM_SHOTS_KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
mkdir -p "$tmp/work" "$tmp/state" "$tmp/data" "$tmp/config" "$tmp/cache" "$tmp/chrome" "$images"
cat >"$tmp/tmux.conf" <<'CONF'
set -g default-terminal tmux-256color
set -g status off
set -g escape-time 0
CONF
# English for a model that has learned some (the demo model was trained on Debian's docs)
printf 'If the device is not found, the drive' >"$tmp/work/ghost.md"
# a held-out sentence of the demo corpus with a typo the demo model flags at the defaults
printf 'Schedule analysis is needed to aviod this, which is outside the scope of the document.\n' \
  >"$tmp/work/cafe.md"

screen() { tmux -L "$sock" capture-pane -p -t shots; }
# wait_for SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds
wait_for() {
  local until=$(($(date +%s) + $1)); shift
  until "$@"; do
    [ "$(date +%s)" -lt "$until" ] || return 1
    sleep 0.2
  done
}
screen_has() { screen | grep -qF -- "$1"; }
# nvim_expr EXPR: evaluates EXPR in the Neovim under test (over its --listen socket)
nvim_expr() {
  local i
  for i in 1 2 3; do
    "$nvim" --headless --server "$nsock" --remote-expr "$1" 2>"$tmp/expr.err" && return 0
    sleep 0.2
  done
  echo "quill-nvim-screenshots: --remote-expr '$1' failed: $(cat "$tmp/expr.err")" >&2
  return 1
}

# start_nvim FILE: Neovim on FILE in a fresh tmux session, once quill says ready
start_nvim() {
  [ -z "$sock" ] || tmux -L "$sock" kill-server >/dev/null 2>&1 || true
  # a tmux server and a Neovim socket per file: the ones ending may still be tearing down
  sock="quill-shots-$$-${1%.*}"
  nsock="$tmp/nvim-$1.sock"
  tmux -L "$sock" -f "$tmp/tmux.conf" new-session -d -s shots -x "$cols" -y "$rows" \
    env -u NVIM -u NVIM_LISTEN_ADDRESS -u VIMINIT -u MYVIMRC -u TMUX \
    COLORTERM=truecolor QUILL_REPO="$repo" QUILL_BIN="$bin" HF_HUB_OFFLINE=1 HF_HOME="$tmp/hf" \
    XDG_STATE_HOME="$tmp/state" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" \
    XDG_CACHE_HOME="$tmp/cache" \
    sh -c "cd '$tmp/work' && exec '$nvim' -i NONE -n --listen '$nsock' -u '$here/screenshots.lua' '$1'"
  wait_for 60 screen_has "quill: ready" || { screen; die "quill never said ready in the statusline ($1)"; }
}

# shoot NAME CURSOR_SHAPE: the pane as images/NAME.png
shoot() {
  local name="$1" shape="$2" fg bg cur size
  tmux -L "$sock" capture-pane -e -p -N -t shots >"$tmp/$name.ans"
  screen >"$tmp/$name.txt"
  fg="$(nvim_expr 'synIDattr(hlID("Normal"), "fg#")')"
  bg="$(nvim_expr 'synIDattr(hlID("Normal"), "bg#")')"
  [[ "$fg" =~ ^#[0-9a-fA-F]{6}$ && "$bg" =~ ^#[0-9a-fA-F]{6}$ ]] || die "no Normal colours from Neovim ($fg, $bg)"
  cur="$(tmux -L "$sock" display -p -t shots '#{cursor_x},#{cursor_y}'),$shape"
  size="$(python3 "$here/ansi2html.py" --cols "$cols" --rows "$rows" --fg "$fg" --bg "$bg" \
    --cursor "$cur" "$tmp/$name.ans" "$tmp/$name.html")" || die "ansi2html.py failed"
  rm -f "$tmp/$name.png"
  timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$tmp/chrome" --force-device-scale-factor=1 --window-size="${size/ /,}" \
    --disable-lcd-text --font-render-hinting=none \
    --screenshot="$tmp/$name.png" "file://$tmp/$name.html" >"$tmp/chromium.log" 2>&1 || true
  [ -s "$tmp/$name.png" ] || { cat "$tmp/chromium.log" >&2; die "Chromium made no $name.png"; }
  cp "$tmp/$name.png" "$images/$name.png"
  log "$images/$name.png ($size px, $(wc -c <"$images/$name.png") bytes)"
}

# 1. Ghost text -------------------------------------------------------------------------------
prompt="$(cat "$tmp/work/ghost.md")r"
want="$(HF_HUB_OFFLINE=1 "$bin" complete --model "$model" --temperature 0 --max-tokens 8 --json "$prompt" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["completions"][0]["text"].split("\n")[0])')" \
  || die "quill complete failed"
[ -n "${want// /}" ] || die "quill complete gave an empty continuation"
log "greedy continuation of '$prompt': '$want'"
start_nvim ghost.md
ghost_ok() { screen | head -1 | grep -qF -- "$prompt$want"; }
tmux -L "$sock" send-keys -t shots A
shown=""
for try in 1 2 3; do
  [ "$try" = 1 ] || tmux -L "$sock" send-keys -t shots BSpace
  tmux -L "$sock" send-keys -t shots -l r
  if wait_for 20 ghost_ok; then shown=1; break; fi
done
[ -n "$shown" ] || { screen; die "the screen never showed '$prompt$want'"; }
got="$(nvim_expr 'luaeval("(require(\"quill.ghost\").current() or {}).text or \"\"")' | head -1)"
[ "$got" = "$want" ] || die "the plugin's ghost text '$got' != quill complete's '$want'"
sleep 0.3 # let the statusline and the cursor settle (the answer redraws them)
shoot ghost-text bar
grep -qF -- "$prompt$want" "$tmp/ghost-text.txt" || die "the captured screen lacks the ghost text"

# 2. Diagnostics: the float on "aviod" -----------------------------------------------------------
start_nvim cafe.md
diag_ok() { [ "$(nvim_expr 'luaeval("#vim.diagnostic.get(0)")')" -ge 1 ] 2>/dev/null; }
wait_for 60 diag_ok || { screen; die "no diagnostic on cafe.md"; }
msg="$(nvim_expr 'luaeval("vim.diagnostic.get(0)[1].message")')"
log "diagnostic: $msg"
[[ "$msg" == *"'aviod'"* ]] || die "the diagnostic does not name 'aviod': $msg"
cli="$({ HF_HUB_OFFLINE=1 "$bin" check --json --model "$model" "$tmp/work/cafe.md" || true; } | # 1: found some
  python3 -c 'import json,sys; print(json.load(sys.stdin)["findings"][0]["message"])')" \
  || die "quill check found nothing in cafe.md"
[ "$msg" = "$cli" ] || die "the diagnostic '$msg' != quill check's '$cli'"
col="$(awk '{ print index($0, "aviod") }' "$tmp/work/cafe.md")"
tmux -L "$sock" send-keys -t shots "${col}|"
tmux -L "$sock" send-keys -t shots C-w d
wait_for 20 screen_has "$msg" || { screen; die "the diagnostic float never showed '$msg'"; }
sleep 0.3
shoot diagnostics block
grep -qF -- "$msg" "$tmp/diagnostics.txt" || die "the captured screen lacks the diagnostic"
grep -qF -- "aviod" <(head -1 "$tmp/diagnostics.txt") || die "the captured screen lacks the line"

log "done in $(($(date +%s) - start)) s"
echo "QUILL-NVIM-SCREENSHOTS-DONE"

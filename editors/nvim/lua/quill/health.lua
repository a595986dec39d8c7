-- :checkhealth quill
local M = {}

--- How to get the server binary, for `:checkhealth` when it is missing.
function M.install_advice()
  local advice = {}
  local cargo_bin = vim.fs.joinpath(vim.fn.expand("~"), ".cargo", "bin", "quill")
  if vim.fn.executable(cargo_bin) == 1 then
    table.insert(advice, ("%s exists but is not on $PATH: add %s to $PATH, or use it as `cmd` (below)")
      :format(cargo_bin, vim.fs.dirname(cargo_bin)))
  end
  vim.list_extend(advice, {
    "Install it from the quill repository: `cargo install --path .` (puts quill in ~/.cargo/bin; have that on $PATH)",
    "Or unpack a release archive (quill-VERSION-TARGET.tar.gz, made by the repository's scripts/dist.sh) "
      .. "and put its `quill` on $PATH",
    "Or point the plugin at a binary: require('quill').setup({ cmd = { '/path/to/quill' } }), or set $QUILL_BIN",
  })
  return advice
end

function M.check()
  local health = vim.health
  local config = require("quill.config")
  local quill = require("quill")

  health.start("quill: Neovim")
  if vim.fn.has("nvim-0.11") == 1 then
    health.ok("Neovim " .. tostring(vim.version()))
  else
    health.error("Neovim 0.11 or newer is needed (vim.lsp.config, vim.lsp.enable)")
  end
  if config.did_setup then
    health.ok("require('quill').setup() was called")
  else
    health.warn("require('quill').setup() was not called", { "Add require('quill').setup({}) to your config" })
  end

  health.start("quill: server binary")
  local lsp_cfg = vim.lsp.config[quill.name] or {}
  local cmd = lsp_cfg.cmd or config.cmd()
  if type(cmd) == "function" then
    health.info("the server command is a function; not checked")
  else
    local exe = cmd[1]
    local path = exe and vim.fn.exepath(exe) or ""
    if path == "" then
      health.error(("quill binary not found: %s"):format(tostring(exe)), M.install_advice())
    else
      health.ok("binary: " .. path)
      local ok, res = pcall(function()
        return vim.system({ path, "--version" }, { text = true }):wait(10000)
      end)
      if ok and res and res.code == 0 then
        health.ok("version: " .. vim.trim(res.stdout or ""))
      else
        health.error(("`%s --version` failed: %s"):format(path,
          ok and res and vim.trim((res.stderr or "") .. " (exit " .. tostring(res.code) .. ")") or tostring(res)))
      end
    end
  end
  local settings = config.options.settings or {}
  health.info("GPT-2 model: " .. tostring(settings.model or "openai-community/gpt2 (default)"))
  health.info("T5 model: " .. tostring(settings.t5Model or "google-t5/t5-small (default)"))

  health.start("quill: language server")
  local clients = vim.lsp.get_clients({ name = quill.name })
  if #clients == 0 then
    health.warn("no quill client is running", {
      "Open a file of one of these filetypes: " .. table.concat(config.options.filetypes or {}, ", "),
    })
  end
  for _, client in ipairs(clients) do
    local bufs = vim.tbl_keys(client.attached_buffers or {})
    table.sort(bufs)
    local names = {}
    for _, b in ipairs(bufs) do
      local name = vim.api.nvim_buf_get_name(b)
      table.insert(names, ("%d (%s)"):format(b, name ~= "" and vim.fn.fnamemodify(name, ":~:.") or "[No Name]"))
    end
    if #bufs > 0 then
      health.ok(("client %d attached to buffer(s) %s"):format(client.id, table.concat(names, ", ")))
    else
      health.warn(("client %d is running but attached to no buffer"):format(client.id))
    end
    health.info("position encoding: " .. tostring(client.offset_encoding))
  end
  local status = quill.status()
  if status == "" then
    health.info("model: not started")
  elseif status == "quill: error" then
    health.error("model: " .. (quill.last_error() or "failed"), {
      "Check `model` / `t5Model` in your settings, the network or HF_HUB_OFFLINE, and :LspLog",
    })
  else
    health.ok("model: " .. status:gsub("^quill: ", ""))
  end
end

return M

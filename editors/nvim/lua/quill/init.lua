-- quill for Neovim 0.11+: GPT-2 ghost text and completions, unlikely-word diagnostics with
-- quick fixes, and T5 summarize / ask / translate, from the `quill` language server.
--
--   require("quill").setup({ settings = { model = "openai-community/gpt2" } })
--
-- See :help quill.
local config = require("quill.config")

local M = {}

M.name = "quill"

-- Model state, from $/progress (title "quill") and window/showMessage.
--   phase: "starting" | "loading" | "ready" | "error" ; works: token -> {message, percentage}
local state = { phase = nil, works = {}, error = nil, load_token = nil }
M._state = state

local function refresh_status()
  vim.cmd("redrawstatus")
  vim.api.nvim_exec_autocmds("User", { pattern = "QuillStatus", modeline = false })
end

--- The status of the model for a statusline, e.g. "quill: loading 40%", "quill: ready",
--- "quill: summarizing", "quill: error"; "" when no quill client is running.
---@return string
function M.status()
  if #vim.lsp.get_clients({ name = M.name }) == 0 then
    return ""
  end
  if state.phase == "error" then
    return "quill: error"
  end
  -- The model load first, then any other work (a T5 command).
  local load = state.load_token and state.works[state.load_token]
  if load then
    return ("quill: loading %d%%"):format(load.percentage or 0)
  end
  for _, w in pairs(state.works) do
    local verb = (w.message or "working"):match("^(%S+)") or "working"
    if verb == "loading" or verb == "downloading" then
      return ("quill: loading %d%%"):format(w.percentage or 0)
    end
    return "quill: " .. verb
  end
  if state.phase == "ready" then
    return "quill: ready"
  end
  return "quill: starting"
end

--- The last error the server reported (a model that failed to load), or nil.
function M.last_error()
  return state.error
end

--- The running quill client of a buffer (default: the current one), or nil.
---@return vim.lsp.Client?
function M.get_client(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  return vim.lsp.get_clients({ bufnr = bufnr, name = M.name })[1]
end

-- Empty Lua tables encode as JSON arrays; settings objects must stay objects.
local function as_object(t, key)
  if type(t) ~= "table" or getmetatable(t) ~= nil then
    return t
  end
  if next(t) == nil then
    return key == "languages" and t or vim.empty_dict()
  end
  if vim.islist(t) then
    return t
  end
  local out = {}
  for k, v in pairs(t) do
    out[k] = as_object(v, k)
  end
  return out
end
M._as_object = as_object

local function on_progress(ev)
  local client = vim.lsp.get_client_by_id(ev.data.client_id)
  if not client or client.name ~= M.name then
    return
  end
  local params = ev.data.params or {}
  local value = params.value
  if type(value) ~= "table" then
    return
  end
  local token = tostring(params.token)
  if value.kind == "begin" then
    local msg = value.message or value.title or ""
    state.works[token] = { message = msg, percentage = value.percentage }
    if token:match("^quill/load") or msg:match("^loading") or msg:match("^downloading") then
      state.load_token = token
      state.phase = "loading"
      state.error = nil
    end
  elseif value.kind == "report" then
    local w = state.works[token] or {}
    state.works[token] = w
    if value.percentage then
      w.percentage = value.percentage
    end
    if value.message and token ~= state.load_token then
      w.message = value.message
    end
  elseif value.kind == "end" then
    state.works[token] = nil
    if token == state.load_token then
      state.load_token = nil
      local msg = value.message or ""
      if msg:match("fail") then
        state.phase = "error"
        state.error = msg
      else
        state.phase = "ready"
      end
    end
  end
  refresh_status()
end

-- window/showMessage: remember errors (a model that cannot load), then show as usual.
local function wrap_show_message(default)
  return function(err, result, ctx, cfg)
    if result and result.type == vim.lsp.protocol.MessageType.Error then
      state.phase = "error"
      state.error = result.message
      refresh_status()
    end
    return default(err, result, ctx, cfg)
  end
end

-- Neovim 0.11 inserts only the first word of a plain-text textEdit; a continuation is a
-- phrase, so the menu item inserts all of it (when it is one line).
local function convert_item(item)
  local text = item.textEdit and item.textEdit.newText or item.insertText
  if item.insertTextFormat ~= 2 and type(text) == "string" and text ~= "" and not text:find("\n") then
    return { word = text, menu = "[quill]" }
  end
  return { menu = "[quill]" }
end

local function on_attach(args)
  local client = vim.lsp.get_client_by_id(args.data.client_id)
  if not client or client.name ~= M.name then
    return
  end
  local bufnr = args.buf
  local o = config.options
  if not state.phase then
    state.phase = "starting"
  end
  if o.completion.enabled then
    vim.lsp.completion.enable(true, client.id, bufnr, {
      autotrigger = o.completion.autotrigger,
      convert = convert_item,
    })
    if o.completion.omnifunc then
      vim.bo[bufnr].omnifunc = "v:lua.vim.lsp.omnifunc"
    end
  end
  if o.ghost_text.enabled then
    require("quill.ghost").attach(bufnr, client.id)
  end
end

--- Configures and enables the quill language server (vim.lsp.config / vim.lsp.enable),
--- ghost text, the completion menu, the :Quill* commands and the statusline status.
---@param opts? quill.Options
function M.setup(opts)
  local o = config.set(opts)
  local settings = o.settings
  vim.lsp.config(M.name, {
    cmd = config.cmd(),
    cmd_env = o.cmd_env,
    filetypes = o.filetypes,
    root_markers = o.root_markers,
    init_options = as_object(settings),
    -- workspace/configuration asks for the section "quill".
    settings = { quill = as_object(settings) },
    get_language_id = function(_, ft)
      return o.language_ids[ft] or ft
    end,
    capabilities = {
      textDocument = { inlineCompletion = { dynamicRegistration = false } },
    },
    -- The code actions "Summarize selection", "Translate selection to …" show their result.
    commands = require("quill.commands").lsp_commands(),
    handlers = {
      ["window/showMessage"] = wrap_show_message(vim.lsp.handlers["window/showMessage"]),
    },
  })

  vim.api.nvim_set_hl(0, "QuillGhostText", { link = "Comment", default = true })

  local group = vim.api.nvim_create_augroup("quill", { clear = true })
  vim.api.nvim_create_autocmd("LspAttach", { group = group, callback = on_attach })
  vim.api.nvim_create_autocmd("LspProgress", { group = group, callback = on_progress })
  vim.api.nvim_create_autocmd("LspDetach", {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == M.name then
        require("quill.ghost").detach(args.buf)
        vim.schedule(function()
          if #vim.lsp.get_clients({ name = M.name }) == 0 then
            state.phase, state.works, state.load_token = nil, {}, nil
          end
        end)
      end
    end,
  })

  require("quill.commands").create()
  vim.lsp.enable(M.name, true)
end

return M

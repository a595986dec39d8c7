-- Options of the quill Neovim plugin: defaults and the merged result of setup().
local M = {}

---@class quill.Options
M.defaults = {
  -- The server command. nil: $QUILL_BIN if set, else `quill` from $PATH.
  cmd = nil,
  -- Extra environment for the server process (e.g. { HF_HUB_OFFLINE = "1" }).
  cmd_env = nil,
  -- Filetypes the server attaches to. Prose (checked whole) and code (comments only).
  filetypes = {
    "markdown", "text", "gitcommit", "rst", "tex",
    "rust", "python", "lua", "c", "cpp", "go", "javascript", "typescript", "sh",
  },
  -- Files that mark a project root (the server also works without one).
  root_markers = { ".git" },
  -- Neovim filetype -> LSP languageId where they differ (the server's prose languages are
  -- named by languageId: plaintext, markdown, gitcommit, restructuredtext, latex).
  language_ids = { text = "plaintext", rst = "restructuredtext", tex = "latex" },
  -- Server settings (README "Settings"): sent as initializationOptions and answered for
  -- workspace/configuration (section "quill"). Missing keys keep the server's defaults.
  settings = {},
  -- Ghost text from textDocument/inlineCompletion.
  ghost_text = {
    enabled = true,
    debounce_ms = 120,
    hl_group = "QuillGhostText", -- linked to Comment unless you define it
  },
  -- The completion menu through vim.lsp.completion.
  completion = {
    enabled = true,
    autotrigger = false, -- true: open the menu while typing (trigger characters: space . ( )
    omnifunc = true, -- set 'omnifunc' to vim.lsp.omnifunc in attached buffers (<C-x><C-o>)
  },
  -- Insert-mode keys of the ghost text; false disables one. The accept and dismiss keys act
  -- only while a suggestion is shown; otherwise they do what they did before.
  keymaps = {
    accept = "<Tab>",
    accept_word = false, -- e.g. "<M-Right>": accept up to the end of the next word
    next = "<M-]>",
    prev = "<M-[>",
    dismiss = "<C-]>",
  },
  -- The result window of :QuillSummarize, :QuillAsk and :QuillTranslate.
  float = {
    border = "rounded",
    max_width = 80,
  },
}

---@type quill.Options
M.options = vim.deepcopy(M.defaults)
M.did_setup = false

function M.set(opts)
  opts = opts or {}
  vim.validate("opts.settings", opts.settings, "table", true)
  vim.validate("opts.filetypes", opts.filetypes, "table", true)
  vim.validate("opts.keymaps", opts.keymaps, "table", true)
  -- Lists replace the defaults rather than merge index by index.
  local o = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts)
  for _, key in ipairs({ "filetypes", "root_markers", "cmd" }) do
    if opts[key] ~= nil then
      o[key] = opts[key]
    end
  end
  if opts.settings ~= nil then
    o.settings = vim.deepcopy(opts.settings)
  end
  M.options = o
  M.did_setup = true
  return o
end

--- The server command: the `cmd` option, else $QUILL_BIN, else `quill`.
function M.cmd()
  local cmd = M.options.cmd
  if cmd then
    return cmd
  end
  local bin = vim.env.QUILL_BIN
  if bin == nil or bin == "" then
    bin = "quill"
  end
  return { bin }
end

return M

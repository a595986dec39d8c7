-- Default configuration for `vim.lsp.enable("quill")` (Neovim 0.11+), for use without
-- require("quill").setup(); setup() overrides it and adds ghost text, commands and status.
local bin = vim.env.QUILL_BIN
return {
  cmd = { (bin ~= nil and bin ~= "") and bin or "quill" },
  filetypes = {
    "markdown", "text", "gitcommit", "rst", "tex",
    "rust", "python", "lua", "c", "cpp", "go", "javascript", "typescript", "sh",
  },
  root_markers = { ".git" },
  get_language_id = function(_, ft)
    return ({ text = "plaintext", rst = "restructuredtext", tex = "latex" })[ft] or ft
  end,
}

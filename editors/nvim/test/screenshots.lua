-- Config of the Neovim that screenshots.sh runs in tmux: the plugin from this repository with
-- the demo model at the default settings, except greedy completion (temperature 0, one
-- suggestion, 8 tokens), as editors/vscode/test/e2e.sh --screenshots uses. The default
-- colorscheme, dark, in true colour.
local repo = assert(vim.env.QUILL_REPO, "QUILL_REPO is not set")
vim.opt.runtimepath:prepend(repo .. "/editors/nvim")
vim.o.swapfile = false
vim.o.shadafile = "NONE"
vim.o.termguicolors = true
vim.o.background = "dark"
vim.cmd.colorscheme("default")
vim.o.laststatus = 2
vim.o.statusline = "%f %= %{v:lua.require'quill'.status()} "
-- Nothing that depends on the terminal's answers or on timing besides quill itself.
vim.o.showcmd = false
vim.o.shortmess = vim.o.shortmess .. "I"

require("quill").setup({
  cmd = { vim.env.QUILL_BIN },
  cmd_env = { HF_HUB_OFFLINE = "1" },
  settings = {
    model = repo .. "/models/demo-gpt2",
    completion = { temperature = 0, numSuggestions = 1, maxTokens = 8 },
  },
})

-- Config of the child Neovim that test.lua drives: the plugin from this repository, set up as
-- a user would, with the tiny fixture models and deterministic (greedy) settings.
local repo = assert(vim.env.QUILL_REPO, "QUILL_REPO is not set")
vim.opt.runtimepath:prepend(repo .. "/editors/nvim")
vim.o.swapfile = false
vim.o.shadafile = "NONE"
vim.o.columns, vim.o.lines = 120, 40
-- As vim.lsp.completion suggests; with one item and no menuone, <C-x><C-o> just inserts it.
vim.o.completeopt = "menu,menuone,noinsert,popup"

-- Statuses seen, for the LspProgress check.
_G.quill_statuses = {}
vim.api.nvim_create_autocmd("User", {
  pattern = "QuillStatus",
  callback = function()
    table.insert(_G.quill_statuses, require("quill").status())
  end,
})
-- Messages the plugin or the server show, for the failure report.
_G.quill_messages = {}
local notify = vim.notify
vim.notify = function(msg, level, o)
  table.insert(_G.quill_messages, tostring(msg))
  return notify(msg, level, o)
end

-- With QUILL_TEST_BACKEND_URL (the remote-backend checks of test.lua): the language model is
-- only on that OpenAI-compatible server; the model path does not exist, so nothing local answers.
local backend_url = vim.env.QUILL_TEST_BACKEND_URL
require("quill").setup({
  cmd = { vim.env.QUILL_BIN },
  cmd_env = { HF_HUB_OFFLINE = "1" },
  settings = {
    model = backend_url and "/nonexistent/quill-test-model" or repo .. "/tests/fixtures/gpt2-tiny",
    backend = backend_url and { url = backend_url, model = "tiny" } or nil,
    t5Model = repo .. "/tests/fixtures/t5-tiny",
    completion = { temperature = 0, numSuggestions = 1, maxTokens = 8, stopAtSentence = false },
    diagnostics = { minTokenLogprob = -25, minAlternativeGap = 8, maxSentencePerplexity = 1e12, debounceMs = 50 },
    t5 = { maxTokens = 20 },
  },
  ghost_text = { debounce_ms = 60 },
})

-- :QuillSummarize, :QuillAsk, :QuillTranslate: the server's T5 commands
-- (workspace/executeCommand quill.summarize / quill.answer / quill.translate), with the result
-- in a floating window: `i` inserts it below the selection, `r` replaces the selection,
-- `y` yanks it, `q` closes.
local config = require("quill.config")

local api = vim.api
local M = {}

M.ns = api.nvim_create_namespace("quill.commands")
M.languages = { "German", "French", "Romanian" }

local titles = { summarize = "summary", answer = "answer", translate = "translation" }
local verbs = { summarize = "summarizing", answer = "answering", translate = "translating" }

local function notify(msg, level)
  vim.notify("quill: " .. msg, level or vim.log.levels.INFO)
end

local function utf_index(line, col, enc)
  local ok, idx = pcall(vim.str_utfindex, line, enc, math.min(col, #line), false)
  return ok and idx or col
end

--- The text a command reads, from the command's range: the exact visual selection when the
--- command came from visual mode (charwise or linewise), whole lines for a plain range, nil
--- (the whole buffer) without a range. Returns { srow, scol, erow, ecol } (0-based bytes,
--- end exclusive).
function M.selection(bufnr, cmd_opts)
  if not cmd_opts or (cmd_opts.range or 0) == 0 then
    return nil
  end
  local line1, line2 = cmd_opts.line1, cmd_opts.line2
  local vs = api.nvim_buf_get_mark(bufnr, "<")
  local ve = api.nvim_buf_get_mark(bufnr, ">")
  local vmode = vim.fn.visualmode()
  if cmd_opts.range == 2 and vs[1] == line1 and ve[1] == line2 and vmode ~= "V" and vmode ~= "" then
    local last = api.nvim_buf_get_lines(bufnr, ve[1] - 1, ve[1], false)[1] or ""
    local ecol = math.min(ve[2], #last)
    if ecol < #last then
      -- '> is the first byte of the last selected character: end after it.
      ecol = ecol + 1 + vim.str_utf_end(last, ecol + 1)
    end
    return { vs[1] - 1, vs[2], ve[1] - 1, ecol }
  end
  local last = api.nvim_buf_get_lines(bufnr, line2 - 1, line2, false)[1] or ""
  return { line1 - 1, 0, line2 - 1, #last }
end

local function lsp_range(bufnr, sel, enc)
  local first = api.nvim_buf_get_lines(bufnr, sel[1], sel[1] + 1, false)[1] or ""
  local last = api.nvim_buf_get_lines(bufnr, sel[3], sel[3] + 1, false)[1] or ""
  return {
    start = { line = sel[1], character = utf_index(first, sel[2], enc) },
    ["end"] = { line = sel[3], character = utf_index(last, sel[4], enc) },
  }
end

-- Where a result goes back: extmarks that follow edits made while the float is open.
local function anchor(bufnr, sel)
  if not sel then
    local row = api.nvim_win_get_cursor(0)[1] - 1
    local len = #(api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or "")
    return {
      start = api.nvim_buf_set_extmark(bufnr, M.ns, row, 0, { right_gravity = false }),
      stop = api.nvim_buf_set_extmark(bufnr, M.ns, row, len, {}),
      whole = true,
    }
  end
  return {
    start = api.nvim_buf_set_extmark(bufnr, M.ns, sel[1], sel[2], { right_gravity = false }),
    stop = api.nvim_buf_set_extmark(bufnr, M.ns, sel[3], sel[4], {}),
  }
end

local function mark_pos(bufnr, id)
  local p = api.nvim_buf_get_extmark_by_id(bufnr, M.ns, id, {})
  return p[1], p[2]
end

--- Puts a result into the source buffer: "below" (a blank line, then the text, after the
--- selection's last line) or "replace" (in place of the selection).
function M.put(ctx, how)
  local bufnr = ctx.bufnr
  if not api.nvim_buf_is_valid(bufnr) then
    notify("the buffer is gone", vim.log.levels.WARN)
    return false
  end
  local lines = vim.split(ctx.text, "\n", { plain = true })
  if how == "replace" then
    if ctx.anchor.whole and ctx.kind ~= "translate" then
      notify("no selection to replace: give the command a range", vim.log.levels.WARN)
      return false
    end
    local srow, scol, erow, ecol
    if ctx.anchor.whole then
      srow, scol = 0, 0
      erow = api.nvim_buf_line_count(bufnr) - 1
      ecol = #(api.nvim_buf_get_lines(bufnr, erow, erow + 1, false)[1] or "")
    else
      srow, scol = mark_pos(bufnr, ctx.anchor.start)
      erow, ecol = mark_pos(bufnr, ctx.anchor.stop)
    end
    api.nvim_buf_set_text(bufnr, srow, scol, erow, ecol, lines)
  else
    local erow = mark_pos(bufnr, ctx.anchor.stop)
    table.insert(lines, 1, "")
    api.nvim_buf_set_lines(bufnr, erow + 1, erow + 1, false, lines)
  end
  api.nvim_buf_del_extmark(bufnr, M.ns, ctx.anchor.start)
  api.nvim_buf_del_extmark(bufnr, M.ns, ctx.anchor.stop)
  return true
end

--- The float of the last result (for tests and mappings): { win, buf, ctx } or nil.
M.last = nil

local function close(st, stay)
  local was_current = st and st.win and api.nvim_get_current_win() == st.win
  if st and st.win and api.nvim_win_is_valid(st.win) then
    api.nvim_win_close(st.win, true)
  end
  if not stay and was_current and st.origin and api.nvim_win_is_valid(st.origin) then
    api.nvim_set_current_win(st.origin)
  end
  if M.last == st then
    M.last = nil
  end
end

--- Shows a result in a floating window with keys to put it into the buffer.
function M.show(ctx)
  close(M.last)
  local fopts = config.options.float
  local buf = api.nvim_create_buf(false, true)
  local lines = vim.split(ctx.text, "\n", { plain = true })
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].bufhidden = "wipe"
  vim.bo[buf].modifiable = false
  vim.bo[buf].filetype = "quill-result"
  local title = " quill: " .. (ctx.title or titles[ctx.kind] or ctx.kind) .. " "
  local footer = " i insert below · r replace · y yank · q close "
  local width = math.max(#title, #footer)
  for _, l in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(l))
  end
  width = math.min(width, fopts.max_width, vim.o.columns - 4)
  local height = 0
  for _, l in ipairs(lines) do
    height = height + math.max(1, math.ceil(vim.fn.strdisplaywidth(l) / width))
  end
  height = math.min(height, math.max(1, vim.o.lines - 6))
  local origin = api.nvim_get_current_win()
  local win = api.nvim_open_win(buf, true, {
    relative = "cursor",
    row = 1,
    col = 0,
    width = width,
    height = height,
    style = "minimal",
    border = fopts.border,
    title = title,
    footer = footer,
    footer_pos = "right",
  })
  vim.wo[win].wrap = true
  vim.wo[win].linebreak = true
  local st = { win = win, buf = buf, ctx = ctx, origin = origin }
  M.last = st
  local function map(lhs, fn, desc)
    vim.keymap.set("n", lhs, fn, { buffer = buf, nowait = true, desc = "quill: " .. desc })
  end
  map("q", function() close(st) end, "close")
  map("<Esc>", function() close(st) end, "close")
  map("i", function()
    close(st)
    M.put(ctx, "below")
  end, "insert the result below the selection")
  map("r", function()
    close(st)
    M.put(ctx, "replace")
  end, "replace the selection with the result")
  map("y", function()
    vim.fn.setreg(vim.v.register, ctx.text)
    notify("yanked")
  end, "yank the result")
  api.nvim_create_autocmd("WinLeave", {
    buffer = buf,
    once = true,
    callback = function()
      vim.schedule(function() close(st, true) end)
    end,
  })
  return st
end

-- Sends workspace/executeCommand quill.<kind> with `arg` and shows the result (or hands it to
-- on_result). sel: the byte range the command reads, nil for the whole buffer.
local function execute(client, bufnr, kind, arg, sel, on_result)
  local ctx = { bufnr = bufnr, kind = kind, anchor = anchor(bufnr, sel), args = arg }
  if kind == "translate" then
    ctx.title = "translation (" .. tostring(arg.to) .. ")"
  end
  api.nvim_echo({ { "quill: " .. verbs[kind] .. "…" } }, false, {})
  client:request("workspace/executeCommand", {
    command = "quill." .. kind,
    arguments = { arg },
  }, function(err, result)
    api.nvim_echo({ { "" } }, false, {})
    if err then
      pcall(api.nvim_buf_del_extmark, bufnr, M.ns, ctx.anchor.start)
      pcall(api.nvim_buf_del_extmark, bufnr, M.ns, ctx.anchor.stop)
      notify(err.message or tostring(err), vim.log.levels.ERROR)
      return
    end
    result = result or {}
    ctx.text = result.summary or result.answer or result.translation or ""
    if on_result then
      on_result(ctx.text, ctx)
    else
      M.show(ctx)
    end
  end, bufnr)
  return ctx
end

--- Runs a T5 command. kind: "summarize" | "answer" | "translate"; cmd_opts: the user
--- command's opts (range, line1, line2, args); extra: { question = Q } / { to = LANG }.
--- on_result(text, ctx) replaces the float when given.
function M.run(kind, cmd_opts, extra, on_result)
  local bufnr = api.nvim_get_current_buf()
  local client = require("quill").get_client(bufnr)
  if not client then
    notify("no quill language server is attached to this buffer (see :checkhealth quill)",
      vim.log.levels.ERROR)
    return
  end
  local enc = client.offset_encoding or "utf-16"
  local sel = M.selection(bufnr, cmd_opts)
  local arg = { uri = vim.uri_from_bufnr(bufnr) }
  if sel then
    arg.range = lsp_range(bufnr, sel, enc)
  end
  for k, v in pairs(extra or {}) do
    arg[k] = v
  end
  return execute(client, bufnr, kind, arg, sel, on_result)
end

-- Client-side handlers of the commands that the server's code actions carry ("Summarize
-- selection", "Translate selection to German"): without them Neovim would send the command
-- and drop its result. The *.insert / *.replace commands stay with the server (applyEdit).
local function lsp_command(kind)
  return function(command, ctx)
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    local arg = command.arguments and command.arguments[1]
    if not client or type(arg) ~= "table" then
      return
    end
    local uri_buf = arg.uri and vim.uri_to_bufnr(arg.uri) or ctx.bufnr
    local bufnr = uri_buf or api.nvim_get_current_buf()
    local sel
    if arg.range then
      local enc = client.offset_encoding or "utf-16"
      local function pos(p)
        local l = api.nvim_buf_get_lines(bufnr, p.line, p.line + 1, false)[1] or ""
        local ok, col = pcall(vim.str_byteindex, l, enc, p.character, false)
        return p.line, math.min(ok and col or #l, #l)
      end
      local srow, scol = pos(arg.range.start)
      local erow, ecol = pos(arg.range["end"])
      sel = { srow, scol, erow, ecol }
    end
    execute(client, bufnr, kind, arg, sel)
  end
end

--- The client-side handlers (the client's `commands`) of quill.summarize, quill.answer and
--- quill.translate.
function M.lsp_commands()
  return {
    ["quill.summarize"] = lsp_command("summarize"),
    ["quill.answer"] = lsp_command("answer"),
    ["quill.translate"] = lsp_command("translate"),
  }
end

local function language(name)
  name = vim.trim(name or "")
  if name == "" then
    return "German"
  end
  for _, l in ipairs(M.languages) do
    if l:lower() == name:lower() or l:sub(1, 2):lower() == name:lower() then
      return l
    end
  end
  return name:sub(1, 1):upper() .. name:sub(2)
end

function M.create()
  api.nvim_create_user_command("QuillSummarize", function(o)
    M.run("summarize", o)
  end, { range = true, desc = "quill: summarize the range or the visual selection" })
  api.nvim_create_user_command("QuillAsk", function(o)
    if vim.trim(o.args) == "" then
      notify("usage: :[range]QuillAsk {question}", vim.log.levels.ERROR)
      return
    end
    M.run("answer", o, { question = o.args })
  end, { range = true, nargs = "+", desc = "quill: answer a question about the buffer or range" })
  api.nvim_create_user_command("QuillTranslate", function(o)
    M.run("translate", o, { to = language(o.args) })
  end, {
    range = true,
    nargs = "?",
    complete = function()
      return M.languages
    end,
    desc = "quill: translate the range or the visual selection (German, French, Romanian)",
  })
end

return M

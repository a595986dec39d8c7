-- Ghost text: textDocument/inlineCompletion (LSP 3.18) rendered with extmarks.
--
-- Neovim 0.11 has no inline-completion UI, so this module asks for suggestions while typing
-- in insert mode (debounced), shows the part after the typed word as virtual text at the
-- cursor (the first line inline, the others as virtual lines), and accepts, cycles or
-- dismisses it with insert-mode keys.
local config = require("quill.config")

local api = vim.api
local M = {}

M.ns = api.nvim_create_namespace("quill.ghost")

--- Per buffer: { client_id, timer, request_id, items, index, tick, cursor, shown, keys }
---@type table<integer, table>
local bufs = {}
M._bufs = bufs

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == "i"
end

local function cursor_of(bufnr)
  local win = api.nvim_get_current_win()
  if api.nvim_win_get_buf(win) ~= bufnr then
    return nil
  end
  return api.nvim_win_get_cursor(win)
end

local function line_text(bufnr, row)
  return api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
end

-- LSP position -> {row, byte col} (0-based) in a buffer.
local function to_byte_pos(bufnr, pos, enc)
  local line = line_text(bufnr, pos.line)
  local ok, col = pcall(vim.str_byteindex, line, enc, pos.character, false)
  if not ok then
    col = #line
  end
  return pos.line, math.min(col, #line)
end

local function client_of(b)
  return b and b.client_id and vim.lsp.get_client_by_id(b.client_id) or nil
end

local function cancel_request(b)
  if b.request_id then
    local client = client_of(b)
    if client then
      pcall(function()
        client:cancel_request(b.request_id)
      end)
    end
    b.request_id = nil
  end
end

--- Removes the ghost text of a buffer (the suggestions are forgotten).
function M.clear(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local b = bufs[bufnr]
  if b then
    b.items, b.index, b.shown = nil, nil, false
  end
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- Whether a suggestion is shown in the buffer.
function M.visible(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local b = bufs[bufnr]
  return b ~= nil and b.shown == true and b.items ~= nil and b.items[b.index] ~= nil
end

--- The suggestion shown now: { text = <the ghost text>, insert_text, range, index, count },
--- or nil.
function M.current(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  if not M.visible(bufnr) then
    return nil
  end
  local b = bufs[bufnr]
  local it = b.items[b.index]
  return {
    text = it.suffix,
    insert_text = it.insert_text,
    range = it.range,
    index = b.index,
    count = #b.items,
  }
end

local function render(bufnr)
  local b = bufs[bufnr]
  api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  b.shown = false
  local it = b.items and b.items[b.index]
  local cursor = cursor_of(bufnr)
  if not it or not cursor or not in_insert_mode() then
    return
  end
  local hl = config.options.ghost_text.hl_group
  local ts = vim.bo[bufnr].tabstop
  local function show(s)
    return (s:gsub("\t", string.rep(" ", ts)))
  end
  local lines = vim.split(it.suffix, "\n", { plain = true })
  local opts = {
    virt_text = { { show(lines[1]), hl } },
    virt_text_pos = "inline",
    hl_mode = "combine",
    -- right of the cursor: the cursor is drawn before the ghost text, where typing goes
    right_gravity = true,
    priority = 200,
  }
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { show(lines[i]), hl } })
    end
  end
  if lines[1] == "" then
    opts.virt_text = nil
    opts.virt_text_pos = nil
  end
  api.nvim_buf_set_extmark(bufnr, M.ns, cursor[1] - 1, cursor[2], opts)
  b.shown = true
end

-- Turns the response items into suggestions relative to the cursor.
local function to_suggestions(bufnr, result, enc, cursor)
  local items = result and (result.items or result) or {}
  local out, seen = {}, {}
  local row, col = cursor[1] - 1, cursor[2]
  for _, item in ipairs(items) do
    local text = item.insertText
    if type(text) == "table" then
      text = text.value -- a StringValue snippet: shown as plain text
    end
    if type(text) == "string" then
      local srow, scol = row, col
      local erow, ecol = row, col
      if item.range then
        srow, scol = to_byte_pos(bufnr, item.range.start, enc)
        erow, ecol = to_byte_pos(bufnr, item.range["end"], enc)
      end
      -- Ghost text is what the item adds after the cursor: its range must end there and its
      -- text start with what the range holds now.
      if erow == row and ecol == col and (srow < erow or scol <= ecol) then
        local existing = table.concat(api.nvim_buf_get_text(bufnr, srow, scol, erow, ecol, {}), "\n")
        if text:sub(1, #existing) == existing then
          local suffix = text:sub(#existing + 1)
          if suffix ~= "" and not seen[suffix] then
            seen[suffix] = true
            table.insert(out, {
              suffix = suffix,
              insert_text = text,
              range = item.range,
              start = { srow, scol },
            })
          end
        end
      end
    end
  end
  return out
end

--- Asks the server for suggestions at the cursor now (no debounce).
---@param manual? boolean true: the user asked (triggerKind Invoked)
function M.request(bufnr, manual)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local b = bufs[bufnr]
  local client = client_of(b)
  if not client or not in_insert_mode() or vim.fn.pumvisible() == 1 then
    return
  end
  local cursor = cursor_of(bufnr)
  if not cursor then
    return
  end
  cancel_request(b)
  local enc = client.offset_encoding or "utf-16"
  local params = vim.lsp.util.make_position_params(0, enc)
  params.context = { triggerKind = manual and 1 or 2 }
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local ok, id
  ok, id = client:request("textDocument/inlineCompletion", params, function(err, result)
    if b.request_id == id then
      b.request_id = nil
    end
    if err or not api.nvim_buf_is_valid(bufnr) or bufs[bufnr] ~= b then
      return
    end
    -- Stale: the text or the cursor moved on since the request.
    local now = cursor_of(bufnr)
    if api.nvim_buf_get_changedtick(bufnr) ~= tick or not now
      or now[1] ~= cursor[1] or now[2] ~= cursor[2] or not in_insert_mode()
      or vim.fn.pumvisible() == 1 then
      return
    end
    local items = to_suggestions(bufnr, result, enc, cursor)
    if #items == 0 then
      M.clear(bufnr)
      return
    end
    b.items, b.index, b.tick, b.cursor = items, 1, tick, cursor
    render(bufnr)
  end, bufnr)
  if ok then
    b.request_id = id
  end
end

--- Asks for suggestions after `ghost_text.debounce_ms` without typing.
function M.schedule(bufnr)
  local b = bufs[bufnr]
  if not b then
    return
  end
  if not b.timer then
    b.timer = vim.uv.new_timer()
  end
  b.timer:stop()
  b.timer:start(config.options.ghost_text.debounce_ms, 0, vim.schedule_wrap(function()
    if bufs[bufnr] == b and api.nvim_get_current_buf() == bufnr then
      M.request(bufnr, false)
    end
  end))
end

--- Inserts the shown suggestion: its range is replaced with its text, and the cursor goes
--- to the end of it. `what`: "all" (default) or "word" (up to the end of the next word).
function M.accept(bufnr, what)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local b = bufs[bufnr]
  if not M.visible(bufnr) then
    return false
  end
  local it = b.items[b.index]
  local cursor = cursor_of(bufnr)
  M.clear(bufnr)
  cancel_request(b)
  if not cursor then
    return false
  end
  local text = it.insert_text
  if what == "word" then
    local part = it.suffix:match("^%s*[^%s]+") or it.suffix
    text = it.insert_text:sub(1, #it.insert_text - #it.suffix) .. part
  end
  local lines = vim.split(text, "\n", { plain = true })
  local srow, scol = it.start[1], it.start[2]
  api.nvim_buf_set_text(bufnr, srow, scol, cursor[1] - 1, cursor[2], lines)
  local erow = srow + #lines - 1
  local ecol = (#lines == 1) and (scol + #lines[1]) or #lines[#lines]
  api.nvim_win_set_cursor(0, { erow + 1, ecol })
  return true
end

--- Shows the next (step 1) or previous (step -1) suggestion; asks for some if none is shown.
function M.cycle(bufnr, step)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local b = bufs[bufnr]
  if not b then
    return
  end
  if not M.visible(bufnr) then
    M.request(bufnr, true)
    return
  end
  b.index = (b.index - 1 + step) % #b.items + 1
  render(bufnr)
end

--- Whether a request is waiting (debounce timer or an answer to come).
function M.pending(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local b = bufs[bufnr]
  return b ~= nil and (b.request_id ~= nil or (b.timer ~= nil and b.timer:is_active()))
end

--- Hides the suggestion and stops the pending request.
function M.dismiss(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local b = bufs[bufnr]
  if b then
    cancel_request(b)
    if b.timer then
      b.timer:stop()
    end
  end
  M.clear(bufnr)
end

-- What a key did before quill mapped it (a buffer-local or global insert-mode mapping), as
-- keys for an expr mapping; the key itself when it was not mapped.
M._fallbacks = {}
local function fallback(prev, lhs)
  if prev and not vim.tbl_isempty(prev) then
    if prev.callback then
      if prev.expr == 1 then
        return prev.callback() or ""
      end
      -- Not under the expr mapping's text lock: run it as a <Cmd>.
      return "<Cmd>lua require('quill.ghost')._fallbacks[" .. prev.quill_id .. "]()<CR>"
    end
    local rhs = prev.rhs or ""
    if prev.expr == 1 then
      rhs = api.nvim_eval(rhs)
    end
    api.nvim_feedkeys(api.nvim_replace_termcodes(rhs, true, true, true), prev.noremap == 1 and "in" or "im", false)
    return ""
  end
  return lhs
end

local function map_keys(bufnr)
  local km = config.options.keymaps
  local b = bufs[bufnr]
  b.keys = {}
  local function map(lhs, when_shown, desc, only_when_shown, on_fallback)
    if not lhs or lhs == "" then
      return
    end
    local prev = vim.fn.maparg(lhs, "i", false, true)
    if prev and prev.desc and prev.desc:match("^quill") then
      prev = nil
    end
    if prev and prev.callback and prev.expr ~= 1 then
      table.insert(M._fallbacks, prev.callback)
      prev.quill_id = #M._fallbacks
    end
    vim.keymap.set("i", lhs, function()
      if M.visible(bufnr) or not only_when_shown then
        return "<Cmd>lua require('quill.ghost')." .. when_shown .. "<CR>"
      end
      if on_fallback then
        on_fallback()
      end
      return fallback(prev, lhs)
    end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = "quill: " .. desc })
    table.insert(b.keys, lhs)
  end
  map(km.accept, "accept(0)", "accept the suggestion", true)
  map(km.accept_word, "accept(0, 'word')", "accept the next word of the suggestion", true)
  map(km.next, "cycle(0, 1)", "next suggestion", false)
  map(km.prev, "cycle(0, -1)", "previous suggestion", false)
  -- Nothing shown yet: still stop a suggestion on its way.
  map(km.dismiss, "dismiss(0)", "dismiss the suggestion", true, function()
    M.dismiss(bufnr)
  end)
end

--- Starts ghost text in a buffer for a client.
function M.attach(bufnr, client_id)
  if bufs[bufnr] then
    bufs[bufnr].client_id = client_id
    return
  end
  local b = { client_id = client_id }
  bufs[bufnr] = b
  local group = api.nvim_create_augroup("quill.ghost." .. bufnr, { clear = true })
  local function on_change()
    if b.shown and b.cursor then
      local c = cursor_of(bufnr)
      if c and c[1] == b.cursor[1] and c[2] == b.cursor[2]
        and api.nvim_buf_get_changedtick(bufnr) == b.tick then
        return -- nothing moved (e.g. CursorMovedI after the render)
      end
    end
    M.clear(bufnr)
    M.schedule(bufnr)
  end
  api.nvim_create_autocmd({ "TextChangedI", "CursorMovedI" }, {
    group = group,
    buffer = bufnr,
    callback = on_change,
  })
  api.nvim_create_autocmd({ "InsertLeave", "BufLeave", "TextChangedP", "CompleteChanged" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.dismiss(bufnr)
    end,
  })
  map_keys(bufnr)
end

--- Stops ghost text in a buffer.
function M.detach(bufnr)
  local b = bufs[bufnr]
  if not b then
    return
  end
  M.dismiss(bufnr)
  if b.timer then
    b.timer:close()
  end
  pcall(api.nvim_del_augroup_by_name, "quill.ghost." .. bufnr)
  for _, lhs in ipairs(b.keys or {}) do
    pcall(vim.keymap.del, "i", lhs, { buffer = bufnr })
  end
  bufs[bufnr] = nil
end

return M

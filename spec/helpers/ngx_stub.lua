-- A small stand-in for the lua-nginx-module `ngx` API, for busted specs.
--
--   local stub = require("ngx_stub")
--   stub.install({ headers = { ["X-Tenant-ID"] = "t1" }, body = '{"a":1}' })  -- sets _G.ngx
--   local ok, res = stub.run(handler)   -- res = { status, body, headers, exited, error }
--
-- Request side: `headers` (names are lower-cased like ngx.req.get_headers; a list value is a
-- repeated header), `body` (in-memory body) or `body_file` (path, as when nginx buffered the body
-- to disk), `read_body_error` (read_body raises it), `method`, `var`.
-- Response side: ngx.status, ngx.header (case-insensitive, `_` = `-`), ngx.say/ngx.print output
-- captured in stub.output(); ngx.exit(status) records the status and raises stub.EXIT, a
-- sentinel that stub.run() catches. ngx.log lines are captured in stub.logs.
local cjson = require("cjson")

local M = {}

M.EXIT = setmetatable({}, { __tostring = function() return "ngx.exit sentinel" end })

local function norm(name)
  return (string.gsub(string.lower(name), "_", "-"))
end

local function new_header_table()
  local store = {}
  return setmetatable({}, {
    __index = function(_, k) return store[norm(k)] end,
    __newindex = function(_, k, v) store[norm(k)] = v end,
    __store = store,
  }), store
end

local function flatten(parts, out, n)
  for i = 1, n or #parts do
    local p = parts[i]
    if type(p) == "table" then
      flatten(p, out)
    elseif p == nil or p == cjson.null then
      out[#out + 1] = p == nil and "nil" or "null"
    else
      out[#out + 1] = tostring(p)
    end
  end
end

function M.install(opts)
  opts = opts or {}
  local req_headers = {}
  for k, v in pairs(opts.headers or {}) do
    req_headers[string.lower(k)] = v
  end
  local header, store = new_header_table()
  local buffer = {}
  M.logs = {}
  M.state = {
    exited = nil,
    header_store = store,
    buffer = buffer,
    read_body_calls = 0,
    get_headers_calls = 0,
  }
  local state = M.state

  local ngx = {
    OK = 0, ERROR = -1, AGAIN = -2, DONE = -4, DECLINED = -5,
    HTTP_OK = 200, HTTP_NOT_FOUND = 404, HTTP_INTERNAL_SERVER_ERROR = 500,
    STDERR = 0, EMERG = 1, ALERT = 2, CRIT = 3, ERR = 4, WARN = 5, NOTICE = 6, INFO = 7, DEBUG = 8,
    null = cjson.null,
    ctx = {},
    status = 200,
    header = header,
    var = opts.var or {},
    headers_sent = false,
  }

  ngx.req = {
    get_headers = function(max, raw)
      state.get_headers_calls = state.get_headers_calls + 1
      local copy = {}
      for k, v in pairs(req_headers) do copy[k] = v end
      return copy
    end,
    get_method = function() return opts.method or "POST" end,
    is_internal = function() return opts.internal == true end,
    read_body = function()
      state.read_body_calls = state.read_body_calls + 1
      if opts.read_body_error then error(opts.read_body_error) end
    end,
    get_body_data = function()
      if state.read_body_calls == 0 then return nil end
      return opts.body
    end,
    get_body_file = function()
      if state.read_body_calls == 0 then return nil end
      return opts.body_file
    end,
  }

  ngx.worker = {
    pid = function() return opts.pid or 4242 end,
    id = function() return 0 end,
    exiting = function() return false end,
    count = function() return 1 end,
  }

  local function write(nl, ...)
    local out = {}
    flatten({ ... }, out, select("#", ...))
    if nl then out[#out + 1] = "\n" end
    buffer[#buffer + 1] = table.concat(out)
    ngx.headers_sent = true
    return 1
  end
  ngx.say = function(...) return write(true, ...) end
  ngx.print = function(...) return write(false, ...) end
  ngx.flush = function() return 1 end
  ngx.exit = function(status)
    state.exited = status
    error(M.EXIT, 0)
  end
  ngx.now = function() return opts.now or 1700000000.123 end
  ngx.time = function() return math.floor(ngx.now()) end
  ngx.update_time = function() end
  ngx.log = function(level, ...)
    local out = {}
    flatten({ ... }, out, select("#", ...))
    M.logs[#M.logs + 1] = { level = level, msg = table.concat(out) }
  end

  _G.ngx = ngx
  return ngx
end

--- Everything printed so far.
function M.output()
  return table.concat(M.state.buffer)
end

--- Response header as set by the code under test (case-insensitive).
function M.response_header(name)
  return M.state.header_store[norm(name)]
end

--- Runs fn(...) and catches the ngx.exit sentinel. Returns a result table:
--- { exited = status or nil, status = ngx.status, body = output, error = other error or nil }.
function M.run(fn, ...)
  local ok, err = pcall(fn, ...)
  local res = {
    exited = M.state.exited,
    status = _G.ngx.status,
    body = M.output(),
  }
  if not ok and err ~= M.EXIT then
    res.error = err
  end
  return res
end

function M.uninstall()
  _G.ngx = nil
end

return M

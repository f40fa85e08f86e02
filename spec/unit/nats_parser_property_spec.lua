-- Property test of the NATS frame parser (beamline.nats.protocol.new_parser), issue 8.
--
-- Random but seeded: every run with the same seed sees the same frame sequences and split
-- points. Set NATS_PROP_SEED to replay a failure (the failing case prints its seed, case number
-- and the chunk sizes), NATS_PROP_CASES to run more cases.
--
-- Properties, for each random sequence of valid server frames (INFO, MSG, HMSG with headers and
-- status lines, PING, PONG, +OK, -ERR; random op case, spaces/tabs between tokens, payloads of
-- random bytes including CR/LF) cut into random chunks:
--   1. parsing never raises and ends within a time bound;
--   2. the frames come out exactly as generated, in order, with nothing left over;
-- and for random garbage (mutated valid streams and random bytes): parsing never raises, ends
-- within the bound, and either yields frames or a (sticky) error string.
local protocol = require("beamline.nats.protocol")
local cjson = require("cjson.safe")

local SEED = tonumber(os.getenv("NATS_PROP_SEED") or "") or 20261126
local CASES = tonumber(os.getenv("NATS_PROP_CASES") or "") or 300
local TIME_BOUND_S = 2.0 -- per parse of one sequence (they take a few ms)

-- Park–Miller minimal standard PRNG: exact in doubles, the same sequence everywhere.
local function new_rng(seed)
  local state = seed % 2147483646 + 1
  local r = {}
  function r.next()
    state = (state * 16807) % 2147483647
    return state
  end
  -- integer in [a, b]
  function r.int(a, b)
    return a + r.next() % (b - a + 1)
  end
  function r.pick(t)
    return t[r.int(1, #t)]
  end
  function r.chance(p)
    return r.next() / 2147483647 < p
  end
  return r
end

local TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"

local function token(rng, min, max)
  local n = rng.int(min, max)
  local t = {}
  for i = 1, n do
    local k = rng.int(1, #TOKEN_CHARS)
    t[i] = TOKEN_CHARS:sub(k, k)
  end
  return table.concat(t)
end

local function subject(rng)
  local parts = {}
  for i = 1, rng.int(1, 4) do parts[i] = token(rng, 1, 12) end
  return table.concat(parts, ".")
end

local function sp(rng) -- separator between control-line tokens
  return rng.pick({ " ", " ", " ", "  ", "\t", " \t" })
end

local function op_case(rng, op)
  local r = rng.int(1, 4)
  if r == 1 then return op:lower() end
  if r == 2 then
    return (op:gsub("%a", function(c) if rng.chance(0.5) then return c:lower() end return c end))
  end
  return op
end

local function random_bytes(rng, n)
  local t = {}
  for i = 1, n do
    if rng.chance(0.05) then t[i] = rng.pick({ "\r", "\n", "\r\n" }) else t[i] = string.char(rng.int(0, 255)) end
  end
  return table.concat(t)
end

local function payload(rng)
  local r = rng.int(1, 20)
  if r == 1 then return "" end
  if r == 2 then return random_bytes(rng, rng.int(20000, 70000)) end
  if r <= 6 then return "\r\n" .. random_bytes(rng, rng.int(0, 10)) .. "\r\n" end
  return random_bytes(rng, rng.int(1, 600))
end

local function header_value(rng)
  -- printable, ':' and inner spaces allowed; no leading/trailing blanks (they are trimmed)
  local n = rng.int(0, 40)
  local t = {}
  for i = 1, n do t[i] = string.char(rng.int(33, 126)) end
  if n > 2 and rng.chance(0.3) then t[2] = " " end
  if n > 3 and rng.chance(0.3) then t[3] = ":" end
  return table.concat(t)
end

-- One valid server frame: returns its bytes and the frame the parser must produce.
local function gen_frame(rng)
  local kind = rng.int(1, 12)
  if kind <= 4 then
    local subj, sid = subject(rng), tostring(rng.int(1, 99999))
    local reply = rng.chance(0.5) and subject(rng) or nil
    local p = payload(rng)
    local line = op_case(rng, "MSG") .. sp(rng) .. subj .. sp(rng) .. sid .. (reply and (sp(rng) .. reply) or "") .. sp(rng) .. #p
    if rng.chance(0.2) then line = line .. sp(rng) end
    return line .. "\r\n" .. p .. "\r\n", { op = "MSG", subject = subj, sid = sid, reply = reply, payload = p }
  elseif kind <= 7 then
    local subj, sid = subject(rng), tostring(rng.int(1, 99999))
    local reply = rng.chance(0.5) and subject(rng) or nil
    local status, desc
    local status_line = "NATS/1.0"
    local s = rng.int(1, 4)
    if s == 1 then
      status = 503
      status_line = "NATS/1.0 503"
    elseif s == 2 then
      status, desc = 408, "Request Timeout"
      status_line = "NATS/1.0 408 Request Timeout"
    end
    local headers, lines = {}, { status_line }
    for _ = 1, rng.int(0, 5) do
      local name = rng.chance(0.3) and rng.pick({ "X-Multi", "x-multi", "trace_id" }) or token(rng, 1, 16)
      local value = header_value(rng)
      lines[#lines + 1] = name .. ":" .. rng.pick({ "", " ", "  ", "\t" }) .. value
      local prev = headers[name]
      if prev == nil then headers[name] = value
      elseif type(prev) == "string" then headers[name] = { prev, value }
      else prev[#prev + 1] = value end
    end
    local block = table.concat(lines, "\r\n") .. "\r\n\r\n"
    local p = payload(rng)
    local line = op_case(rng, "HMSG") .. sp(rng) .. subj .. sp(rng) .. sid .. (reply and (sp(rng) .. reply) or "")
      .. sp(rng) .. #block .. sp(rng) .. (#block + #p)
    return line .. "\r\n" .. block .. p .. "\r\n",
      { op = "HMSG", subject = subj, sid = sid, reply = reply, payload = p, headers = headers, status = status, description = desc }
  elseif kind == 8 then
    local info = { server_id = token(rng, 4, 20), max_payload = rng.int(1, 67108864), headers = true, proto = 1 }
    if rng.chance(0.5) then info.connect_urls = { "127.0.0.1:" .. rng.int(1, 65535), "10.0.0." .. rng.int(1, 254) .. ":4222" } end
    if rng.chance(0.2) then info.ldm = true end
    return op_case(rng, "INFO") .. sp(rng) .. cjson.encode(info) .. (rng.chance(0.3) and " " or "") .. "\r\n", { op = "INFO", info = info }
  elseif kind == 9 then
    return op_case(rng, "PING") .. "\r\n", { op = "PING" }
  elseif kind == 10 then
    return op_case(rng, "PONG") .. "\r\n", { op = "PONG" }
  elseif kind == 11 then
    return op_case(rng, "+OK") .. "\r\n", { op = "+OK" }
  end
  local msg = "Permissions Violation for Publish to " .. subject(rng)
  return op_case(rng, "-ERR") .. sp(rng) .. "'" .. msg .. "'\r\n", { op = "-ERR", message = msg }
end

-- Cuts `s` into chunks at random points (sometimes many tiny chunks).
local function split(rng, s)
  local chunks = {}
  local mode = rng.int(1, 5)
  local i = 1
  while i <= #s do
    local n
    if mode == 1 then n = rng.int(1, 3)
    elseif mode == 2 then n = rng.int(1, 64)
    elseif mode == 3 then n = rng.int(1, 4096)
    else n = rng.int(1, 70000) end
    chunks[#chunks + 1] = s:sub(i, i + n - 1)
    i = i + n
  end
  return chunks
end

-- Feeds every chunk, draining frames after each; returns frames, err, parser, seconds.
local function parse(chunks, opts)
  local p = protocol.new_parser(opts)
  local frames = {}
  local t0 = os.clock()
  for _, c in ipairs(chunks) do
    p:feed(c)
    while true do
      local f, err = p:next()
      if err then return frames, err, p, os.clock() - t0 end
      if not f then break end
      frames[#frames + 1] = f
    end
  end
  return frames, nil, p, os.clock() - t0
end

local function sizes(chunks)
  local t = {}
  for i, c in ipairs(chunks) do
    if i > 40 then t[#t + 1] = "…(" .. #chunks .. " chunks)"; break end
    t[#t + 1] = tostring(#c)
  end
  return table.concat(t, ",")
end

local function same_frame(want, got)
  if got == nil then return false, "missing frame" end
  for _, k in ipairs({ "op", "subject", "sid", "reply", "payload", "status", "description", "message" }) do
    if want[k] ~= got[k] then
      return false, ("field %s: want %q got %q"):format(k, tostring(want[k]), tostring(got[k]))
    end
  end
  if want.headers then
    local ok = pcall(assert.same, want.headers, got.headers)
    if not ok then return false, "headers differ" end
  end
  if want.info then
    local ok = pcall(assert.same, want.info, got.info)
    if not ok then return false, "INFO differs" end
  end
  return true
end

describe("NATS parser property (seed " .. SEED .. ", " .. CASES .. " cases)", function()
  it("random valid frame sequences at random split points parse back to the same frames", function()
    local rng = new_rng(SEED)
    local total_frames, total_bytes, worst = 0, 0, 0
    for case = 1, CASES do
      local parts, want = {}, {}
      for i = 1, rng.int(1, 40) do
        parts[i], want[i] = gen_frame(rng)
      end
      local stream = table.concat(parts)
      local chunks = split(rng, stream)
      local ok, frames, err, p, secs = pcall(parse, chunks)
      local where = ("seed %d case %d (%d frames, %d bytes, chunks %s)"):format(SEED, case, #want, #stream, sizes(chunks))
      if not ok then error("parser raised: " .. tostring(frames) .. " — " .. where) end
      if err then error("parser error " .. err .. " — " .. where) end
      if secs > TIME_BOUND_S then error(("parse took %.3f s — %s"):format(secs, where)) end
      if secs > worst then worst = secs end
      if #frames ~= #want then error(("%d frames, want %d — %s"):format(#frames, #want, where)) end
      for i = 1, #want do
        local same, why = same_frame(want[i], frames[i])
        if not same then error(("frame %d (%s): %s — %s"):format(i, want[i].op, why, where)) end
      end
      assert.equal(0, p:buffered(), where)
      total_frames = total_frames + #want
      total_bytes = total_bytes + #stream
    end
    print(("\n  parser property: seed %d, %d sequences, %d frames, %.1f MB, slowest parse %.1f ms"):format(
      SEED, CASES, total_frames, total_bytes / 1048576, worst * 1000))
  end)

  it("random garbage and mutated streams never raise and end within the bound", function()
    local rng = new_rng(SEED + 1)
    local errors, frames_out = 0, 0
    for case = 1, CASES do
      local parts = {}
      for i = 1, rng.int(1, 10) do parts[i] = gen_frame(rng) end
      local stream = table.concat(parts)
      local m = rng.int(1, 4)
      if m == 1 then
        stream = random_bytes(rng, rng.int(1, 5000))
      else
        -- flip, insert or delete a few bytes
        for _ = 1, rng.int(1, 5) do
          local at = rng.int(1, #stream)
          local r = rng.int(1, 3)
          if r == 1 then stream = stream:sub(1, at - 1) .. string.char(rng.int(0, 255)) .. stream:sub(at + 1)
          elseif r == 2 then stream = stream:sub(1, at) .. random_bytes(rng, rng.int(1, 8)) .. stream:sub(at + 1)
          else stream = stream:sub(1, at - 1) .. stream:sub(at + rng.int(1, 8)) end
        end
      end
      local chunks = split(rng, stream)
      local ok, frames, err, p, secs = pcall(parse, chunks, { max_payload = 1048576 })
      local where = ("seed %d case %d (%d bytes, chunks %s)"):format(SEED + 1, case, #stream, sizes(chunks))
      if not ok then error("parser raised: " .. tostring(frames) .. " — " .. where) end
      if secs > TIME_BOUND_S then error(("parse took %.3f s — %s"):format(secs, where)) end
      if err then
        errors = errors + 1
        assert.is_string(err, where)
        -- the error is sticky: the stream is unusable afterwards
        p:feed("PING\r\n")
        local f2, err2 = p:next()
        assert.is_nil(f2, where)
        assert.equal(err, err2, where)
      end
      frames_out = frames_out + #frames
    end
    print(("\n  parser garbage: seed %d, %d inputs, %d ended in a protocol error, %d frames accepted"):format(SEED + 1, CASES, errors, frames_out))
  end)
end)

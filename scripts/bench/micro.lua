-- Micro-benchmarks of the decide path's pure Lua steps (no nginx), with prototypes of cheaper
-- variants, under plain LuaJIT against the compiled modules:
--   luajit scripts/bench/micro.lua [DIST_LUA_DIR]        (npm run bench -- --micro)
-- For each step: ns per call (GC running, so collection cost is included) and bytes allocated
-- per call (GC stopped). The "proto:" rows are NOT the gateway's code: they show what a change
-- would gain, for the findings in docs/BENCHMARKS.md.
local dist = arg[1] or "dist-lua"
package.path = dist .. "/?.lua;" .. dist .. "/?/init.lua;" .. package.path

local json = require("beamline.json")
local ids = require("beamline.ids")
local util_ok, util = pcall(require, "beamline.util")
local model = require("beamline.request_model")
local router_reply = require("beamline.router_reply")
local protocol = require("beamline.nats.protocol")
local cjson = require("cjson.safe").new()

local format, byte, find, sub, lower, concat = string.format, string.byte, string.find, string.sub, string.lower, table.concat

local BODY = '{"version":"1","task":{"type":"chat","payload":{"text":"hello, router"}},"context":{"user_id":"u-42"}}'
local REPLY = '{"ok":true,"decision":{"provider_id":"openai","reason":"fast","priority":50,"expected_latency_ms":850,"expected_cost":0.002,"metadata":{}},"context":{"request_id":"fast","trace_id":"fast"}}'
local HDR = { tenant_id = "bench" }
local SUBJECT = "beamline.router.v1.decide"
local INBOX = "_INBOX.8yX3kQ2mZ7pL9wE1rT5uV0.1234567"

local results = {}
-- Results are stored here so the JIT cannot drop the work as dead code.
local sink = {}
local function bench(name, f, n)
  n = n or 200000
  -- Every call gets a fresh counter `i` (as the gateway's per-request token): string results
  -- differ per call, so neither string interning nor the JIT's loop hoisting hides the work.
  local seq = 0
  for _ = 1, 20000 do seq = seq + 1; sink[seq % 64] = f(seq) end -- warm up / let the JIT compile
  collectgarbage("collect")
  collectgarbage("stop")
  local m0 = collectgarbage("count")
  local k = 20000
  for _ = 1, k do seq = seq + 1; sink[seq % 64] = f(seq) end
  local bytes = (collectgarbage("count") - m0) * 1024 / k
  collectgarbage("restart")
  collectgarbage("collect")
  local t0 = os.clock()
  for _ = 1, n do seq = seq + 1; sink[seq % 64] = f(seq) end
  local ns = (os.clock() - t0) / n * 1e9
  results[#results + 1] = { name, ns, bytes }
  io.write(format("%-58s %9.0f ns %9.0f B\n", name, ns, bytes))
end

io.write(format("%-58s %12s %11s\n", "step (per call)", "time", "allocated"))

-- The gateway's steps, as api.ts calls them on a 200 decide.
local decode_body = util_ok and util.decode_body_json or function(raw) return json.decode(raw) end
bench("json.decode(request body)  [beamline.json]", function() return json.decode(BODY) end)
bench("  cjson.decode(request body) [raw lua-cjson]", function() return cjson.decode(BODY) end)
local body = json.decode(BODY)
bench("request_model.validate_decide (no ids sent)", function() return model.validate_decide(body, HDR) end)
bench("  ids.uuid4()", ids.uuid4)
bench("  ids.new_trace_id()", ids.new_trace_id)
local n = model.validate_decide(body, HDR)
bench("request_model.build_router_request", function() return model.build_router_request(n) end)
local payload, headers = model.build_router_request(n)
bench("  json.encode(router request) [beamline.json]", function() return json.encode({ version = "1", tenant_id = "bench", request_id = n.request_id, trace_id = n.trace_id, task = { type = "chat", payload = body.task.payload }, context = body.context }) end)
bench("  cjson.encode(router request) [raw]", function() return cjson.encode({ version = "1", tenant_id = "bench", request_id = n.request_id, trace_id = n.trace_id, task = { type = "chat", payload = body.task.payload }, context = body.context }) end)
bench("  inbox .. tostring(seq) (the per-request reply subject)", function(i) return INBOX .. tostring(i) end)
bench("protocol.hpub (validates + builds the frame)", function(i) return protocol.hpub(SUBJECT, INBOX .. tostring(i), headers, payload) end)
bench("  protocol.header_block", function() return protocol.header_block(headers) end)
-- The request path (connection.request): the frame's parts appended to the writer's queue,
-- which the writer sends and clears every batch (64 frames here).
local queue, qn = {}, 0
local function queue_hpub(i, h, p)
  if qn > 64 * 30 then
    for k = 1, qn do queue[k] = nil end
    qn = 0
  end
  local hlen = protocol.header_block_len(h)
  qn = protocol.append_hpub(queue, qn, SUBJECT, INBOX, tostring(i), h, hlen, p)
end
bench("protocol.append_hpub into the writer queue (the request path)", function(i) return queue_hpub(i, headers, payload) end)
bench("router_reply.map_reply (json_check: ok:true undecoded)", function() return router_reply.map_reply(REPLY) end)
bench("  json.decode(reply) [beamline.json]", function() return json.decode(REPLY) end)
bench("  cjson.decode(reply) [raw]", function() return cjson.decode(REPLY) end)

bench("ALL pure steps: decode+validate+build+append_hpub+map_reply", function(i)
  local b = json.decode(BODY)
  local nn = model.validate_decide(b, HDR)
  local p, h = model.build_router_request(nn)
  queue_hpub(i, h, p)
  return router_reply.map_reply(REPLY)
end, 100000)

-- Prototypes of cheaper variants (measure the gain; not the gateway's code).
local HEX_FMT = string.rep("%02x", 16)
bench("proto: new_trace_id via one string.format of 16 bytes", function()
  local s = ids.random_bytes(16)
  return format(HEX_FMT, byte(s, 1, 16))
end)
local ffi = require("ffi")
local hexbuf = ffi.new("uint8_t[32]")
local HEXD = "0123456789abcdef"
local hexd = ffi.new("uint8_t[16]", { byte(HEXD, 1, 16) })
bench("proto: new_trace_id via an FFI hex buffer", function()
  local s = ids.random_bytes(16)
  for i = 0, 15 do
    local b = byte(s, i + 1)
    hexbuf[2 * i] = hexd[b / 16 - b % 16 / 16]
    hexbuf[2 * i + 1] = hexd[b % 16]
  end
  return ffi.string(hexbuf, 32)
end)
bench("proto: map_reply fast path: prefix {\"ok\":true, + no decode", function()
  if find(REPLY, '^{"ok":true,') then return REPLY end
  return router_reply.map_reply(REPLY)
end)
bench("proto: json.decode without the empty-array pre-scan", function()
  local v = cjson.decode(BODY)
  return v, nil, find(BODY, "^[ \t\n\r]*{") ~= nil
end)
local flat = { "HPUB ", SUBJECT, " ", INBOX, " ", 0, " ", 0, "\r\n", "", "", "\r\n" }
bench("proto: hpub as one table.concat, no header re-validation", function(i)
  flat[4] = INBOX .. tostring(i)
  local block = "NATS/1.0\r\ntrace_id: " .. headers[2] .. "\r\ntenant_id: " .. headers[4] .. "\r\nrequest_id: " .. headers[6] .. "\r\nversion: 1\r\n\r\n"
  flat[6] = #block
  flat[8] = #block + #payload
  flat[10] = block
  flat[11] = payload
  return concat(flat)
end)
bench("proto: hpub as one flat `..` chain (one BC_CAT)", function(i)
  local block = "NATS/1.0\r\ntrace_id: " .. headers[2] .. "\r\ntenant_id: " .. headers[4] .. "\r\nrequest_id: " .. headers[6] .. "\r\nversion: 1\r\n\r\n"
  local hlen = #block
  return "HPUB " .. SUBJECT .. " " .. INBOX .. tostring(i) .. " " .. hlen .. " " .. (hlen + #payload) .. "\r\n" .. block .. payload .. "\r\n"
end)
-- No frame string at all: cosocket send() takes (nested) tables of strings, so the writer could
-- send the parts as they are; only the short control line is a new string.
local HB1, HB2, HB3, HB4 = "NATS/1.0\r\ntrace_id: ", "\r\ntenant_id: ", "\r\nrequest_id: ", "\r\nversion: 1\r\n\r\n"
bench("proto: hpub as a parts table for send() (no frame string)", function(i)
  local hlen = #HB1 + #headers[2] + #HB2 + #headers[4] + #HB3 + #headers[6] + #HB4
  return { "HPUB " .. SUBJECT .. " " .. INBOX .. tostring(i) .. " " .. hlen .. " " .. (hlen + #payload) .. "\r\n",
    HB1, headers[2], HB2, headers[4], HB3, headers[6], HB4, payload, "\r\n" }
end)
-- The request payload straight from the validated fields as a string template, instead of a
-- table that cjson encodes (only for the common shape; cjson stays the general path).
bench("proto: router request = encode only task.payload/context, splice ids", function(i)
  local tp = cjson.encode(body.task.payload)
  local ctx = cjson.encode(body.context)
  return '{"version":"1","tenant_id":"bench","request_id":"' .. n.request_id .. i .. '","trace_id":"' .. n.trace_id
    .. '","task":{"type":"chat","payload":' .. tp .. '},"context":' .. ctx .. '}'
end)
-- content_type_ok(): find ";" + lower + a capture pattern per request.
local ct = "application/json"
bench("api content_type_ok() pattern work (find/lower/trim capture)", function()
  local semi = find(ct, ";", 1, true)
  local media = semi and sub(ct, 1, semi - 1) or ct
  media = lower(media)
  local _, _, trimmed = find(media, "^%s*(.-)%s*$")
  return trimmed == "application/json"
end)
bench("proto: content_type_ok exact-match fast path first", function()
  if ct == "application/json" then return true end
end)
bench("get_header's lower(name) on a constant lower-case name (x4)", function()
  return lower("x-tenant-id"), lower("x-trace-id"), lower("x-request-id"), lower("idempotency-key")
end)

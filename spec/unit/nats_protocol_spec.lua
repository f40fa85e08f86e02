-- The NATS protocol codec (beamline.nats.protocol): encoders byte for byte, the incremental
-- parser against realistic streams split at every byte position, malformed input, and speed.
local protocol = require("beamline.nats.protocol")
local cjson = require("cjson.safe")

-- Feeds `chunks` in order, collecting frames after each feed; returns frames, err.
local function parse_chunks(chunks, opts)
  local p = protocol.new_parser(opts)
  local frames = {}
  for _, c in ipairs(chunks) do
    p:feed(c)
    while true do
      local f, err = p:next()
      if err then return frames, err end
      if not f then break end
      frames[#frames + 1] = f
    end
  end
  return frames, nil, p
end

local function parse_all(s, opts)
  return parse_chunks({ s }, opts)
end

local function bytewise(s)
  local t = {}
  for i = 1, #s do t[i] = s:sub(i, i) end
  return t
end

-- A realistic server stream: INFO, PING, MSG with and without reply, HMSG with a status and
-- multi-value headers, a payload containing CRLF, an empty payload, +OK, -ERR.
local INFO_JSON = '{"server_id":"NABC","version":"2.10.0","proto":1,"headers":true,"max_payload":1048576,"connect_urls":["10.0.0.1:4222"]}'
local HDR1 = "NATS/1.0\r\nX-Trace: a\r\nX-Multi: one\r\nx-multi: lower\r\nX-Multi: two\r\n\r\n"
local HDR503 = "NATS/1.0 503\r\n\r\n"
local HDR408 = "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n"
local P1 = '{"ok":true,"x":"line1\r\nline2\r\n"}'
local STREAM = table.concat({
  "INFO " .. INFO_JSON .. " \r\n",
  "PING\r\n",
  "MSG _INBOX.w.1 1 " .. #P1 .. "\r\n" .. P1 .. "\r\n",
  "msg foo.bar 9 reply.to 5\r\nhello\r\n",
  "HMSG _INBOX.w.2 1 " .. #HDR1 .. " " .. (#HDR1 + 3) .. "\r\n" .. HDR1 .. "abc\r\n",
  "HMSG _INBOX.w.3 1 r.x " .. #HDR503 .. " " .. #HDR503 .. "\r\n" .. HDR503 .. "\r\n",
  "HMSG _INBOX.w.4 1 " .. #HDR408 .. " " .. #HDR408 .. "\r\n" .. HDR408 .. "\r\n",
  "MSG empty 2 0\r\n\r\n",
  "+OK\r\n",
  "pong\r\n",
  "-ERR 'Permissions Violation for Publish to \"x\"'\r\n",
})

local function check_stream_frames(frames)
  assert.equal(11, #frames)
  local f = frames[1]
  assert.equal("INFO", f.op)
  assert.equal(1048576, f.info.max_payload)
  assert.equal("10.0.0.1:4222", f.info.connect_urls[1])
  assert.equal("PING", frames[2].op)

  f = frames[3]
  assert.same({ "MSG", "_INBOX.w.1", "1", P1 }, { f.op, f.subject, f.sid, f.payload })
  assert.is_nil(f.reply)

  f = frames[4]
  assert.same({ "MSG", "foo.bar", "9", "reply.to", "hello" }, { f.op, f.subject, f.sid, f.reply, f.payload })

  f = frames[5]
  assert.equal("HMSG", f.op)
  assert.equal("abc", f.payload)
  assert.is_nil(f.status)
  assert.equal("a", f.headers["X-Trace"])
  assert.same({ "one", "two" }, f.headers["X-Multi"]) -- repeated name → list, in order
  assert.equal("lower", f.headers["x-multi"]) -- names keep their case

  f = frames[6]
  assert.same({ "HMSG", "_INBOX.w.3", "r.x", 503, "" }, { f.op, f.subject, f.reply, f.status, f.payload })
  assert.same({}, f.headers)

  f = frames[7]
  assert.same({ 408, "Request Timeout", "" }, { f.status, f.description, f.payload })
  assert.equal("1", f.headers["Nats-Pending-Messages"])

  f = frames[8]
  assert.same({ "MSG", "empty", "" }, { f.op, f.subject, f.payload })
  assert.equal("+OK", frames[9].op)
  assert.equal("PONG", frames[10].op)
  assert.equal("-ERR", frames[11].op)
  assert.equal('Permissions Violation for Publish to "x"', frames[11].message)
end

describe("encoders", function()
  it("ping/pong", function()
    assert.equal("PING\r\n", protocol.ping())
    assert.equal("PONG\r\n", protocol.pong())
  end)

  it("CONNECT always sets verbose/pedantic off, headers and no_responders on", function()
    local s = protocol.connect({ name = "gw", lang = "lua", version = "1.2.3" })
    assert.equal(
      'CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"headers":true,"no_responders":true,"protocol":1,"lang":"lua","version":"1.2.3","name":"gw"}\r\n',
      s)
  end)

  it("CONNECT carries the auth fields given, JSON-escaped", function()
    local s = protocol.connect({ name = 'n"1', auth_token = "t\\k", user = "u", pass = "p\n", nkey = "UABC", sig = "c2ln" })
    assert.equal("CONNECT ", s:sub(1, 8))
    assert.equal("\r\n", s:sub(-2))
    local j = assert(cjson.decode(s:sub(9, -3)))
    assert.same({ 'n"1', "t\\k", "u", "p\n", "UABC", "c2ln" }, { j.name, j.auth_token, j.user, j.pass, j.nkey, j.sig })
    assert.is_false(j.verbose)
    assert.is_true(j.headers)
    assert.is_true(j.no_responders)
    -- control characters never reach the wire unescaped
    assert.is_nil(s:sub(1, -3):find("[\r\n]"))
  end)

  it("SUB / UNSUB", function()
    assert.equal("SUB _INBOX.abc.* 1\r\n", (protocol.sub("_INBOX.abc.*", 1)))
    assert.equal("SUB foo q 7\r\n", (protocol.sub("foo", "7", "q")))
    assert.equal("UNSUB 1\r\n", protocol.unsub(1))
    assert.equal("UNSUB 1 5\r\n", protocol.unsub(1, 5))
    local s, err = protocol.sub("bad subject", 1)
    assert.is_nil(s)
    assert.is_string(err)
  end)

  it("PUB counts bytes, not characters", function()
    assert.equal("PUB a.b 5\r\nhello\r\n", (protocol.pub("a.b", nil, "hello")))
    assert.equal("PUB a.b r.1 0\r\n\r\n", (protocol.pub("a.b", "r.1", "")))
    local utf = "h\195\169!" -- "hé!" is 4 bytes
    assert.equal("PUB x 4\r\n" .. utf .. "\r\n", (protocol.pub("x", "", utf)))
    assert.is_nil((protocol.pub("a b", nil, "x")))
    assert.is_nil((protocol.pub("a", "r\r\n", "x")))
  end)

  it("HPUB builds the header block and both byte counts", function()
    local frame, total = protocol.hpub("beamline.router.v1.decide", "_INBOX.w.42",
      { "trace_id", "t-1", "tenant_id", "acme", "X-Multi", "1", "X-Multi", "2" }, '{"a":1}')
    local hdr = "NATS/1.0\r\ntrace_id: t-1\r\ntenant_id: acme\r\nX-Multi: 1\r\nX-Multi: 2\r\n\r\n"
    assert.equal(#hdr + 7, total)
    assert.equal("HPUB beamline.router.v1.decide _INBOX.w.42 " .. #hdr .. " " .. (#hdr + 7) .. "\r\n" .. hdr .. '{"a":1}\r\n', frame)
    -- no headers at all is still a valid block
    frame, total = protocol.hpub("s", nil, {}, "")
    assert.equal("HPUB s 12 12\r\nNATS/1.0\r\n\r\n\r\n", frame)
    assert.equal(12, total)
  end)

  it("HPUB output round-trips through the parser", function()
    local frame = assert(protocol.hpub("s", "r", { "a", "1", "a", "2", "B", "x y" }, "pay\r\nload"))
    -- what the server would deliver for it: HPUB s r … → HMSG s <sid> r …
    local delivered = (frame:gsub("^HPUB s r ", "HMSG s 1 r ", 1))
    local frames, err = parse_all(delivered)
    assert.is_nil(err)
    assert.equal("pay\r\nload", frames[1].payload)
    assert.same({ "1", "2" }, frames[1].headers.a)
    assert.equal("x y", frames[1].headers.B)
  end)

  it("append_hpub writes the same bytes as hpub, as parts after what the queue holds", function()
    local cases = {
      { "beamline.router.v1.decide", { "trace_id", "t-1", "tenant_id", "acme", "X-Multi", "1", "X-Multi", "2" }, '{"a":1}' },
      { "s", {}, "" },
      { "s", nil, "pay\r\nload" },
      { "s.x", { "k", "ünï" }, "ünïcödé" },
    }
    for _, c in ipairs(cases) do
      local subject, headers, payload = c[1], c[2], c[3]
      local hlen = protocol.header_block_len(headers)
      assert.equal(#(assert(protocol.header_block(headers))), hlen)
      local out = { "PING\r\n" } -- a frame already queued stays first
      local n = protocol.append_hpub(out, 1, subject, "_INBOX.w.", "42", headers, hlen, payload)
      assert.equal(#out, n)
      for i = 1, n do assert.is_true(type(out[i]) == "string" or type(out[i]) == "number") end
      -- what cosocket send() writes: every fragment as tostring would
      local parts = {}
      for i = 1, n do parts[i] = tostring(out[i]) end
      local want = assert(protocol.hpub(subject, "_INBOX.w.42", headers, payload))
      assert.equal("PING\r\n" .. want, table.concat(parts))
    end
  end)

  it("append_pub writes PUB (no headers) or HPUB without a reply subject, byte-exact", function()
    local cases = {
      { "beamline.gateway.v1.events.t1", nil, '{"a":1}', "PUB beamline.gateway.v1.events.t1 7\r\n{\"a\":1}\r\n" },
      { "s", nil, "", "PUB s 0\r\n\r\n" },
      { "s", { "request_id", "r-1" }, "x", nil },
      { "s.x", { "k", "\195\188" }, "\195\188!", nil },
    }
    for _, c in ipairs(cases) do
      local subject, headers, payload, want = c[1], c[2], c[3], c[4]
      if want == nil then want = assert(protocol.hpub(subject, nil, headers, payload)) end
      local hlen = headers and protocol.header_block_len(headers) or 0
      local out = { "PONG\r\n" }
      local n = protocol.append_pub(out, 1, subject, headers, hlen, payload)
      assert.equal(#out, n)
      local parts = {}
      for i = 1, n do parts[i] = tostring(out[i]) end
      assert.equal("PONG\r\n" .. want, table.concat(parts))
    end
  end)

  it("append_pub_parts writes the same bytes as append_pub of the joined payload", function()
    local headers = { "request_id", "r-1", "tenant_id", "t" }
    local hlen = protocol.header_block_len(headers)
    for _, parts in ipairs({ {}, { "x" }, { '{"a":', "1", "}" } }) do
      local payload = table.concat(parts)
      local want = {}
      local wn = protocol.append_pub(want, 0, "ev.t", headers, hlen, payload)
      local out = { "PING\r\n" }
      local n = protocol.append_pub_parts(out, 1, "ev.t", headers, hlen, parts, #parts, #payload)
      assert.equal(#out, n)
      local got = {}
      for i = 1, n do got[i] = tostring(out[i]) end
      assert.equal("PING\r\n" .. table.concat(want, "", 1, wn), table.concat(got))
    end
  end)

  it("an HPUB without reply is delivered as an HMSG the parser reads back (sid dispatch)", function()
    local hlen = protocol.header_block_len({ "request_id", "r-9" })
    local out = {}
    local n = protocol.append_pub(out, 0, "ev.t", { "request_id", "r-9" }, hlen, '{"x":true}')
    local frame = table.concat(out, "", 1, n)
    local delivered = (frame:gsub("^HPUB ev.t ", "HMSG ev.t 12 ", 1))
    local frames, err = parse_all(delivered)
    assert.is_nil(err)
    assert.equal("12", frames[1].sid)
    assert.equal("r-9", frames[1].headers.request_id)
    assert.equal('{"x":true}', frames[1].payload)
  end)

  it("HPUB rejects CR/LF in values and CR/LF/colon/space in names", function()
    local bad = {
      { "a:b", "v" }, { "a\r", "v" }, { "a\nb", "v" }, { "", "v" }, { "a b", "v" },
      { "a", "v\r\nInjected: 1" }, { "a", "v\n" }, { "a", "v\r" }, { "odd" },
    }
    for _, h in ipairs(bad) do
      local frame, err = protocol.hpub("s", "r", h, "x")
      assert.is_nil(frame)
      assert.is_string(err)
    end
    -- and the module keeps working afterwards (its scratch buffer was reset)
    assert.equal("HPUB s 12 13\r\nNATS/1.0\r\n\r\nx\r\n", (protocol.hpub("s", nil, nil, "x")))
  end)
end)

describe("header block parser", function()
  it("parses status lines with and without description", function()
    local h = assert(protocol.parse_headers("NATS/1.0 503\r\n\r\n"))
    assert.equal(503, h.status)
    assert.is_nil(h.description)
    h = assert(protocol.parse_headers("NATS/1.0 408 Request Timeout\r\n\r\n"))
    assert.same({ 408, "Request Timeout" }, { h.status, h.description })
    h = assert(protocol.parse_headers("NATS/1.0\r\nA:  spaced value \r\nb:\r\n\r\n"))
    assert.is_nil(h.status)
    assert.same({ A = "spaced value", b = "" }, h.headers)
  end)

  it("collects repeated names into a list", function()
    local h = assert(protocol.parse_headers("NATS/1.0\r\nK: 1\r\nK: 2\r\nK: 3\r\n\r\n"))
    assert.same({ "1", "2", "3" }, h.headers.K)
  end)

  it("rejects malformed blocks", function()
    for _, b in ipairs({
      "NATS/2.0\r\n\r\n", "HTTP/1.1 200\r\n\r\n", "NATS/1.0\r\n", "NATS/1.0\r\nA: 1\r\n",
      "NATS/1.0\r\nno colon\r\n\r\n", "NATS/1.0 abc\r\n\r\n", "NATS/1.0\r\n: v\r\n\r\n",
      "NATS/1.0\r\nA: x\ry\r\n\r\n",
    }) do
      local h, err = protocol.parse_headers(b)
      assert.is_nil(h, b)
      assert.is_string(err)
    end
  end)
end)

describe("incremental parser", function()
  it("parses a realistic stream in one chunk", function()
    local frames, err, p = parse_all(STREAM)
    assert.is_nil(err)
    check_stream_frames(frames)
    assert.equal(0, p:buffered())
  end)

  it("gives the same frames when the stream is split at every byte position", function()
    for i = 1, #STREAM - 1 do
      local frames, err = parse_chunks({ STREAM:sub(1, i), STREAM:sub(i + 1) })
      assert.is_nil(err, "split at " .. i)
      check_stream_frames(frames)
    end
  end)

  it("gives the same frames when split into three at many position pairs", function()
    local n = #STREAM
    for i = 1, n - 2, 7 do
      for j = i + 1, n - 1, 5 do
        local frames, err = parse_chunks({ STREAM:sub(1, i), STREAM:sub(i + 1, j), STREAM:sub(j + 1) })
        assert.is_nil(err)
        assert.equal(11, #frames)
      end
    end
  end)

  it("gives the same frames fed byte by byte", function()
    local frames, err = parse_chunks(bytewise(STREAM))
    assert.is_nil(err)
    check_stream_frames(frames)
  end)

  it("returns nothing (and no error) until a frame is complete", function()
    local p = protocol.new_parser()
    p:feed("MSG a 1 5\r\nhel")
    local f, err = p:next()
    assert.is_nil(f)
    assert.is_nil(err)
    p:feed("lo\r")
    assert.is_nil((p:next()))
    p:feed("\n")
    f = p:next()
    assert.equal("hello", f.payload)
    assert.is_nil((p:next()))
  end)

  it("accepts op names in any case", function()
    local frames, err = parse_all("ping\r\nPoNg\r\n+ok\r\n-err 'x'\r\nInFo {}\r\nhmsg a 1 12 12\r\nNATS/1.0\r\n\r\n\r\n")
    assert.is_nil(err)
    assert.same({ "PING", "PONG", "+OK", "-ERR", "INFO", "HMSG" },
      { frames[1].op, frames[2].op, frames[3].op, frames[4].op, frames[5].op, frames[6].op })
  end)

  local malformed = {
    ["unknown op"] = "FOO bar\r\n",
    ["empty line"] = "\r\n",
    ["MSG with too few args"] = "MSG a 5\r\n",
    ["MSG with too many args"] = "MSG a 1 r x 5\r\nhello\r\n",
    ["MSG negative size"] = "MSG a 1 -5\r\n",
    ["MSG non-numeric size"] = "MSG a 1 5x\r\nhello\r\n",
    ["MSG hex size"] = "MSG a 1 0x5\r\nhello\r\n",
    ["MSG short payload (no CRLF after count)"] = "MSG a 1 3\r\nhello\r\n",
    ["MSG long payload (missing CRLF)"] = "MSG a 1 7\r\nhello\r\nPING\r\n",
    ["HMSG hdr > total"] = "HMSG a 1 20 12\r\nNATS/1.0\r\n\r\n\r\n",
    ["HMSG hdr too small"] = "HMSG a 1 2 4\r\nabcd\r\n",
    ["HMSG bad header block"] = "HMSG a 1 12 12\r\nNOTS/1.0\r\n\r\n\r\n",
    ["HMSG header block not terminated"] = "HMSG a 1 12 14\r\nNATS/1.0\r\nA:\r\nxx\r\n",
    ["HMSG with too few args"] = "HMSG a 1 12\r\n",
    ["PING with arguments"] = "PING now\r\n",
    ["INFO without JSON"] = "INFO\r\n",
    ["INFO with bad JSON"] = "INFO {nope\r\n",
    ["INFO with a JSON string"] = 'INFO "x"\r\n',
  }
  for name, input in pairs(malformed) do
    it("rejects " .. name, function()
      local frames, err = parse_all(input)
      assert.equal(0, #frames)
      assert.is_string(err)
      -- also when the bad frame follows a good one and arrives byte by byte
      frames, err = parse_chunks(bytewise("PING\r\n" .. input))
      assert.equal(1, #frames)
      assert.is_string(err)
    end)
  end

  it("keeps returning the error after a protocol error (sticky) and ignores more input", function()
    local p = protocol.new_parser()
    p:feed("BOGUS\r\nPING\r\n")
    local f, err = p:next()
    assert.is_nil(f)
    assert.is_string(err)
    p:feed("PING\r\n")
    local f2, err2 = p:next()
    assert.is_nil(f2)
    assert.equal(err, err2)
  end)

  it("rejects a control line longer than the limit without CRLF", function()
    local p = protocol.new_parser({ max_control_line = 4096 })
    local chunk = string.rep("A", 1000)
    local err
    for _ = 1, 5 do
      p:feed(chunk)
      local f
      f, err = p:next()
      assert.is_nil(f)
      if err then break end
    end
    assert.equal("control line too long", err)
    -- a long line that does end in CRLF is rejected too
    local _, err2 = parse_all("MSG " .. string.rep("a", 5000) .. " 1 1\r\nx\r\n")
    assert.is_string(err2)
  end)

  it("rejects declared sizes above max_payload and absurd sizes", function()
    local _, err = parse_all("MSG a 1 1048577\r\n", { max_payload = 1048576 })
    assert.is_string(err)
    _, err = parse_all("MSG a 1 99999999999999999999\r\n")
    assert.is_string(err)
    _, err = parse_all("HMSG a 1 12 1048577\r\n", { max_payload = 1048576 })
    assert.is_string(err)
    -- the limit is adjustable (the connection follows the server's INFO)
    local p = protocol.new_parser({ max_payload = 10 })
    p:set_max_payload(100)
    p:feed("MSG a 1 50\r\n" .. string.rep("x", 50) .. "\r\n")
    assert.equal(50, #p:next().payload)
  end)

  it("parses a 100k-byte payload fed in small chunks quickly (no quadratic buffering)", function()
    local payload = string.rep("0123456789abcdef\r\n", 5556):sub(1, 100000)
    local stream = "MSG _INBOX.x.1 1 100000\r\n" .. payload .. "\r\nPING\r\n"
    local chunks = {}
    for i = 1, #stream, 100 do chunks[#chunks + 1] = stream:sub(i, i + 99) end
    local t0 = os.clock()
    local frames, err
    for _ = 1, 20 do
      frames, err = parse_chunks(chunks)
    end
    local per_run = (os.clock() - t0) / 20
    assert.is_nil(err)
    assert.equal(2, #frames)
    assert.equal(payload, frames[1].payload)
    assert.is_true(per_run < 0.05, "took " .. per_run .. " s per 100 kB")
    -- byte by byte as well
    t0 = os.clock()
    frames, err = parse_chunks(bytewise(stream))
    assert.is_nil(err)
    assert.equal(payload, frames[1].payload)
    assert.is_true(os.clock() - t0 < 0.5, "byte-by-byte took " .. (os.clock() - t0) .. " s")
  end)

  it("parses many small frames from one big chunk", function()
    local parts = {}
    for i = 1, 10000 do parts[i] = "MSG _INBOX.x." .. i .. " 1 2\r\nok\r\n" end
    local frames, err = parse_all(table.concat(parts))
    assert.is_nil(err)
    assert.equal(10000, #frames)
    assert.equal("_INBOX.x.10000", frames[10000].subject)
  end)
end)

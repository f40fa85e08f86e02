-- beamline.ids: randomness, id formats and the §2/§10 header validators.
local stub = require("ngx_stub")

local function fresh_ids()
  package.loaded["beamline.ids"] = nil
  return require("beamline.ids")
end

describe("beamline.ids", function()
  local ids

  before_each(function()
    stub.install({ pid = 100 })
    ids = fresh_ids()
  end)

  after_each(function()
    stub.uninstall()
  end)

  describe("random ids", function()
    it("new_trace_id is 32 lowercase hex characters", function()
      for _ = 1, 50 do
        local id = ids.new_trace_id()
        assert.are.equal(32, #id)
        assert.is_truthy(id:match("^[0-9a-f]+$"))
      end
    end)

    it("uuid4 has the RFC 4122 v4 layout, version and variant", function()
      for _ = 1, 200 do
        local u = ids.uuid4()
        assert.is_truthy(u:match("^[0-9a-f]+%-[0-9a-f]+%-4[0-9a-f]+%-[89ab][0-9a-f]+%-[0-9a-f]+$"), u)
        assert.are.equal(36, #u)
        assert.is_truthy(u:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"))
      end
    end)

    it("does not repeat across many ids (crossing buffer refills)", function()
      local seen = {}
      for _ = 1, 3000 do -- 3000 * 16 bytes > several 4096-byte blocks
        local a, b = ids.uuid4(), ids.new_trace_id()
        assert.is_nil(seen[a])
        assert.is_nil(seen[b])
        seen[a], seen[b] = true, true
      end
    end)

    it("random_hex / random_bytes return the requested sizes", function()
      assert.are.equal(2, #ids.random_hex(1))
      assert.are.equal(8, #ids.random_hex(4))
      assert.is_truthy(ids.random_hex(64):match("^[0-9a-f]+$"))
      assert.are.equal(4096, #ids.random_bytes(4096))
      assert.are.equal(10000, #ids.random_bytes(10000))
      assert.are.equal("", ids.random_bytes(0))
    end)

    it("random bytes are not constant", function()
      local counts = {}
      local s = ids.random_bytes(4096)
      for i = 1, #s do
        local b = s:byte(i)
        counts[b] = (counts[b] or 0) + 1
      end
      local distinct = 0
      for _ in pairs(counts) do distinct = distinct + 1 end
      assert.is_true(distinct > 200)
    end)

    it("a forked worker (new pid) never reuses bytes buffered by its parent", function()
      -- the master buffers a block, then two workers inherit that state
      stub.install({ pid = 1 })
      local m = fresh_ids()
      m.new_trace_id()
      local opened = 0
      local real_open = io.open
      io.open = function(path, mode)
        if path == "/dev/urandom" then opened = opened + 1 end
        return real_open(path, mode)
      end
      local ok, err = pcall(function()
        stub.install({ pid = 2 })
        local a = m.new_trace_id()
        assert.are.equal(1, opened) -- pid changed: a fresh block was read
        m.new_trace_id()
        assert.are.equal(1, opened) -- same pid: served from the buffer
        stub.install({ pid = 3 })
        local b = m.new_trace_id()
        assert.are.equal(2, opened)
        assert.are_not.equal(a, b)
      end)
      io.open = real_open
      assert.is_true(ok, err)
    end)

    it("falls back when /dev/urandom cannot be opened, and logs a warning once", function()
      local real_open = io.open
      io.open = function(path, mode)
        if path == "/dev/urandom" then return nil, "no such file" end
        return real_open(path, mode)
      end
      local ok, err = pcall(function()
        local m = fresh_ids()
        local seen = {}
        for _ = 1, 600 do
          local id = m.new_trace_id()
          assert.are.equal(32, #id)
          assert.is_nil(seen[id])
          seen[id] = true
        end
        assert.is_truthy(m.uuid4():match("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$"))
        local warns = 0
        for _, l in ipairs(stub.logs) do
          if l.level == ngx.WARN and l.msg:find("urandom", 1, true) then warns = warns + 1 end
        end
        assert.are.equal(1, warns)
      end)
      io.open = real_open
      assert.is_true(ok, err)
    end)

    it("works without any ngx global (plain LuaJIT)", function()
      stub.uninstall()
      local m = fresh_ids()
      assert.are.equal(32, #m.new_trace_id())
      assert.are.equal(36, #m.uuid4())
    end)
  end)

  describe("normalize_trace_id (CONTRACT §2)", function()
    it("accepts 32 hex characters and lower-cases them", function()
      assert.are.equal(string.rep("a", 32), ids.normalize_trace_id(string.rep("A", 32)))
      assert.are.equal("0123456789abcdef0123456789abcdef", ids.normalize_trace_id("0123456789ABCDEF0123456789abcdef"))
      assert.are.equal(string.rep("0", 32), ids.normalize_trace_id(string.rep("0", 32)))
    end)

    it("accepts a UUID and keeps its form, lower-cased", function()
      assert.are.equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", ids.normalize_trace_id("3F2504E0-4F89-11D3-9A0C-0305E82C3301"))
    end)

    it("rejects everything else", function()
      local bad = { "", string.rep("a", 31), string.rep("a", 33), string.rep("g", 32),
        "3f2504e0-4f89-11d3-9a0c-0305e82c330", "3f2504e04f8911d39a0c0305e82c3301aaaa",
        "3f2504e0_4f89_11d3_9a0c_0305e82c3301", "3f2504e0-4f8911d3-9a0c-0305e82c33010",
        " " .. string.rep("a", 31), string.rep("a", 31) .. "\n", "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}",
        "00-" .. string.rep("a", 29) }
      for _, s in ipairs(bad) do
        assert.is_nil(ids.normalize_trace_id(s), s)
      end
      for _, v in ipairs({ 1, true, {}, ngx.null }) do
        assert.is_nil(ids.normalize_trace_id(v))
      end
      assert.is_nil(ids.normalize_trace_id(nil))
    end)
  end)

  describe("parse_traceparent (CONTRACT §10)", function()
    local TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
    local PARENT = "00f067aa0ba902b7"
    local VALID = "00-" .. TRACE .. "-" .. PARENT .. "-01"

    it("returns the trace id of a valid version-00 header", function()
      assert.are.equal(55, #VALID)
      assert.are.equal(TRACE, ids.parse_traceparent(VALID))
      assert.are.equal(TRACE, ids.parse_traceparent("00-" .. TRACE .. "-" .. PARENT .. "-00"))
    end)

    it("requires exactly 55 characters for version 00", function()
      assert.is_nil(ids.parse_traceparent(VALID .. "-"))
      assert.is_nil(ids.parse_traceparent(VALID .. " "))
      assert.is_nil(ids.parse_traceparent(VALID:sub(1, 54)))
    end)

    it("requires lowercase hex", function()
      assert.is_nil(ids.parse_traceparent("00-" .. TRACE:upper() .. "-" .. PARENT .. "-01"))
      assert.is_nil(ids.parse_traceparent("00-" .. TRACE .. "-" .. PARENT:upper() .. "-01"))
      assert.is_nil(ids.parse_traceparent("00-" .. TRACE .. "-" .. PARENT .. "-0A"))
      assert.is_nil(ids.parse_traceparent("0A-" .. TRACE .. "-" .. PARENT .. "-01"))
      assert.is_nil(ids.parse_traceparent("00-" .. TRACE:sub(1, 31) .. "g-" .. PARENT .. "-01"))
    end)

    it("rejects all-zero trace and parent ids", function()
      assert.is_nil(ids.parse_traceparent("00-" .. string.rep("0", 32) .. "-" .. PARENT .. "-01"))
      assert.is_nil(ids.parse_traceparent("00-" .. TRACE .. "-" .. string.rep("0", 16) .. "-01"))
    end)

    it("rejects a wrong layout", function()
      assert.is_nil(ids.parse_traceparent("00_" .. TRACE .. "-" .. PARENT .. "-01"))
      assert.is_nil(ids.parse_traceparent("00-" .. TRACE .. PARENT .. "-01--"))
      assert.is_nil(ids.parse_traceparent("000" .. TRACE .. "-" .. PARENT .. "-01"))
      assert.is_nil(ids.parse_traceparent(""))
    end)

    it("accepts other versions when the first 55 characters parse, except ff", function()
      assert.are.equal(TRACE, ids.parse_traceparent("01-" .. TRACE .. "-" .. PARENT .. "-01"))
      assert.are.equal(TRACE, ids.parse_traceparent("cc-" .. TRACE .. "-" .. PARENT .. "-01-what-the-future-holds"))
      assert.is_nil(ids.parse_traceparent("ff-" .. TRACE .. "-" .. PARENT .. "-01"))
      assert.is_nil(ids.parse_traceparent("cc-" .. TRACE .. "-" .. PARENT))
      -- forwarded verbatim as a NATS header: no control characters
      assert.is_nil(ids.parse_traceparent("cc-" .. TRACE .. "-" .. PARENT .. "-01\r\nX: y"))
    end)

    it("rejects non-strings", function()
      assert.is_nil(ids.parse_traceparent(nil))
      assert.is_nil(ids.parse_traceparent(55))
      assert.is_nil(ids.parse_traceparent({ VALID }))
    end)
  end)

  describe("valid_tracestate", function()
    it("accepts 1..512 printable ASCII characters", function()
      assert.is_true(ids.valid_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"))
      assert.is_true(ids.valid_tracestate("a"))
      assert.is_true(ids.valid_tracestate(string.rep("x", 512)))
      assert.is_true(ids.valid_tracestate(" ~"))
    end)

    it("rejects empty, too long, non-printable and non-strings", function()
      assert.is_false(ids.valid_tracestate(""))
      assert.is_false(ids.valid_tracestate(string.rep("x", 513)))
      assert.is_false(ids.valid_tracestate("a=b\n"))
      assert.is_false(ids.valid_tracestate("a=\127"))
      assert.is_false(ids.valid_tracestate("a=\195\169"))
      assert.is_false(ids.valid_tracestate(nil))
      assert.is_false(ids.valid_tracestate(1))
    end)
  end)

  describe("valid_tenant_id (CONTRACT §2)", function()
    it("accepts 1..128 characters of [A-Za-z0-9._:-]", function()
      assert.is_true(ids.valid_tenant_id("t"))
      assert.is_true(ids.valid_tenant_id("Tenant-1.prod:eu_west"))
      assert.is_true(ids.valid_tenant_id(string.rep("a", 128)))
      assert.is_true(ids.valid_tenant_id("-._:"))
    end)

    it("rejects empty, 129 characters, other characters and non-strings", function()
      for _, s in ipairs({ "", string.rep("a", 129), "a b", "a/b", "a@b", "ténant", "a\0", "a\n", "a%b", "a[b]", "*" }) do
        assert.is_false(ids.valid_tenant_id(s), s)
      end
      assert.is_false(ids.valid_tenant_id(nil))
      assert.is_false(ids.valid_tenant_id(42))
      assert.is_false(ids.valid_tenant_id(ngx.null))
    end)
  end)

  describe("valid_request_id (CONTRACT §10)", function()
    it("accepts 1..128 printable ASCII characters without spaces", function()
      assert.is_true(ids.valid_request_id("r"))
      assert.is_true(ids.valid_request_id("req-1/2?x=~!"))
      assert.is_true(ids.valid_request_id(string.rep("r", 128)))
    end)

    it("rejects empty, 129 characters, spaces, control and non-ASCII characters", function()
      for _, s in ipairs({ "", string.rep("r", 129), "a b", " ", "a\tb", "a\127", "r\195\169" }) do
        assert.is_false(ids.valid_request_id(s), s)
      end
      assert.is_false(ids.valid_request_id(nil))
      assert.is_false(ids.valid_request_id(1))
    end)
  end)

  describe("valid_idempotency_key (CONTRACT §2)", function()
    it("accepts 1..256 printable ASCII characters, spaces included", function()
      assert.is_true(ids.valid_idempotency_key("k"))
      assert.is_true(ids.valid_idempotency_key("key with spaces"))
      assert.is_true(ids.valid_idempotency_key(string.rep("k", 256)))
    end)

    it("rejects empty, 257 characters, control and non-ASCII characters", function()
      for _, s in ipairs({ "", string.rep("k", 257), "k\n", "k\0", "k\195\169" }) do
        assert.is_false(ids.valid_idempotency_key(s), s)
      end
      assert.is_false(ids.valid_idempotency_key(nil))
      assert.is_false(ids.valid_idempotency_key({}))
    end)
  end)
end)

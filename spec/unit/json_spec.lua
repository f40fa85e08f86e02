-- beamline.json: decode/encode never raise, depth limit, [] vs {} on both cjson flavours.
local real_cjson = require("cjson")

local function nest(n, open, close, inner)
  return string.rep(open, n) .. (inner or "") .. string.rep(close, n)
end

describe("beamline.json (this machine's cjson)", function()
  local json = require("beamline.json")

  it("reports the cjson flavour it detected", function()
    assert.are.equal(real_cjson.array_mt ~= nil, json.NATIVE_EMPTY_ARRAY)
    assert.are.equal(real_cjson.array_mt ~= nil and real_cjson.decode_array_with_array_mt ~= nil, json.NATIVE_DECODE_ARRAY_MT)
  end)

  describe("decode", function()
    it("decodes an object and says it is one", function()
      local v, err, is_object = json.decode('{"a":1,"b":"x","c":true,"d":{"e":[1,2]}}')
      assert.is_nil(err)
      assert.is_true(is_object)
      assert.are.equal(1, v.a)
      assert.are.equal("x", v.b)
      assert.is_true(v.c)
      assert.are.same({ 1, 2 }, { v.d.e[1], v.d.e[2] })
    end)

    it("detects the top-level object after leading whitespace", function()
      local _, err, is_object = json.decode(' \r\n\t{"a":1}')
      assert.is_nil(err)
      assert.is_true(is_object)
    end)

    it("says arrays and scalars are not objects", function()
      for _, text in ipairs({ "[1]", "[]", "1", '"s"', "true", "false", "null", '"{}"' }) do
        local _, err, is_object = json.decode(text)
        assert.is_nil(err, text)
        assert.is_false(is_object, text)
      end
    end)

    it("decodes null to json.null, which is_null recognises", function()
      local v, err = json.decode("null")
      assert.is_nil(err)
      assert.are.equal(real_cjson.null, v)
      assert.is_true(json.is_null(v))
      assert.are.equal(real_cjson.null, json.null)
      local arr = json.decode("[null,1]")
      assert.is_true(json.is_null(arr[1]))
      assert.is_false(json.is_null(arr[2]))
      assert.is_false(json.is_null(nil))
      assert.is_false(json.is_null(false))
    end)

    it("rejects invalid JSON with ERR_INVALID and a detail", function()
      local bad = { "", " ", "{", "}", "{a:1}", "[1,]", '{"a":1,}', "nul", "{} x", "[1]]", "'s'",
        "01", "0x10", "NaN", "Infinity", "-Infinity", '"\\ud800"', "\239\187\191{}", '{"a" 1}' }
      for _, text in ipairs(bad) do
        local v, err, detail = json.decode(text)
        assert.is_nil(v, text)
        assert.are.equal("invalid JSON", err, text)
        assert.are.equal(json.ERR_INVALID, err)
        assert.are.equal("string", type(detail), text)
      end
    end)

    it("rejects non-string input without raising", function()
      for _, input in ipairs({ 1, true, {}, real_cjson.null }) do
        local ok, v, err = pcall(json.decode, input)
        assert.is_true(ok)
        assert.is_nil(v)
        assert.are.equal(json.ERR_INVALID, err)
      end
      local ok, v, err = pcall(json.decode, nil)
      assert.is_true(ok)
      assert.is_nil(v)
      assert.are.equal(json.ERR_INVALID, err)
    end)

    it("allows exactly the default depth of 64", function()
      assert.are.equal(64, json.DEFAULT_MAX_DEPTH)
      local v, err = json.decode(nest(64, "[", "]", "1"))
      assert.is_nil(err)
      assert.are.equal("table", type(v))
      local v2, err2 = json.decode(nest(65, "[", "]", "1"))
      assert.is_nil(v2)
      assert.are.equal("too deeply nested", err2)
      assert.are.equal(json.ERR_TOO_DEEP, err2)
    end)

    it("counts objects and arrays alike for the depth", function()
      local obj64 = string.rep('{"a":', 64) .. "1" .. string.rep("}", 64)
      local _, err = json.decode(obj64)
      assert.is_nil(err)
      local _, err2 = json.decode('[' .. obj64 .. ']')
      assert.are.equal(json.ERR_TOO_DEEP, err2)
    end)

    it("honours a custom max_depth", function()
      assert.is_nil(select(2, json.decode("[[1]]", 2)))
      assert.are.equal(json.ERR_TOO_DEEP, select(2, json.decode("[[[1]]]", 2)))
      assert.are.equal(json.ERR_TOO_DEEP, select(2, json.decode('{"a":{}}', 1)))
      assert.is_nil(select(2, json.decode('{"a":1}', 1)))
      -- the setting does not stick to later calls
      assert.is_nil(select(2, json.decode(nest(64, "[", "]"))))
    end)

    it("falls back to the default for nonsense max_depth", function()
      for _, d in ipairs({ 0, -1, 0 / 0, "3" }) do
        assert.is_nil(select(2, json.decode(nest(64, "[", "]"), d)), tostring(d))
        assert.are.equal(json.ERR_TOO_DEEP, select(2, json.decode(nest(65, "[", "]"), d)), tostring(d))
      end
    end)

    it("caps max_depth at 1000 (cjson recurses in C)", function()
      assert.are.equal(1000, json.MAX_DEPTH_CAP)
      assert.is_nil(select(2, json.decode(nest(1000, "[", "]"), 5000)))
      assert.are.equal(json.ERR_TOO_DEEP, select(2, json.decode(nest(1001, "[", "]"), 5000)))
    end)

    it("never crashes on 1000- and 100000-deep nesting", function()
      for _, n in ipairs({ 1000, 100000 }) do
        for _, pair in ipairs({ { "[", "]" }, { '{"a":', "}" } }) do
          local ok, v, err = pcall(json.decode, nest(n, pair[1], pair[2], "1"))
          assert.is_true(ok)
          assert.is_nil(v)
          assert.are.equal(json.ERR_TOO_DEEP, err)
        end
        -- unterminated deep nesting: also an error, never a raise
        local ok, v, err = pcall(json.decode, string.rep("[", n))
        assert.is_true(ok)
        assert.is_nil(v)
        assert.is_string(err)
      end
    end)

    it("decodes unicode escapes and passes UTF-8 through", function()
      local v = json.decode('["\\u00e9","\\ud83d\\ude00","h\195\169llo","\\u0000"]')
      assert.are.equal("\195\169", v[1])
      assert.are.equal("\240\159\152\128", v[2])
      assert.are.equal("h\195\169llo", v[3])
      assert.are.equal("\0", v[4])
      assert.are.equal('"h\195\169llo"', json.encode("h\195\169llo"))
    end)
  end)

  describe("empty arrays and objects", function()
    it("keeps a decoded top-level [] an array", function()
      local v, err, is_object = json.decode("[]")
      assert.is_nil(err)
      assert.is_false(is_object)
      assert.are.equal("table", type(v))
      assert.is_nil(next(v))
      assert.is_true(json.is_array(v))
      assert.is_false(json.is_object(v))
      assert.are.equal("[]", json.encode(v))
    end)

    it("round-trips nested empty arrays and objects", function()
      local text = '{"a":[],"b":{"c":[ ],"d":{}},"e":[[],[[\n\t]],{}],"f":"x"}'
      local v, err = json.decode(text)
      assert.is_nil(err)
      assert.is_true(json.is_array(v.a))
      assert.is_true(json.is_object(v.b.d))
      local again = json.encode(v)
      assert.are.equal('[]', json.encode(v.a))
      assert.are.equal('{}', json.encode(v.b.d))
      assert.are.equal('[[],[[]],{}]', json.encode(v.e))
      -- a second decode of our own output gives the same shapes
      local w = json.decode(again)
      assert.are.equal('[[],[[]],{}]', json.encode(w.e))
      assert.are.equal('{"c":[],"d":{}}', json.encode(w.b):gsub('"d":{},"c":%[%]', '"c":[],"d":{}'))
    end)

    it("leaves [] inside strings alone", function()
      local v, err = json.decode('{"s":"[]","t":"a\\"[ ]","u":"\\\\","w":[]}')
      assert.is_nil(err)
      assert.are.equal("[]", v.s)
      assert.are.equal('a"[ ]', v.t)
      assert.are.equal("\\", v.u)
      assert.is_true(json.is_array(v.w))
      local arr = json.decode('["\\\\",[],"[]"]')
      assert.are.equal("\\", arr[1])
      assert.is_true(json.is_array(arr[2]))
      assert.is_nil(next(arr[2]))
      assert.are.equal("[]", arr[3])
      assert.are.equal('["\\\\",[],"[]"]', json.encode(arr))
    end)

    it("does not turn non-JSON whitespace into a valid empty array", function()
      assert.are.equal(json.ERR_INVALID, select(2, json.decode("[\f]")))
      assert.are.equal(json.ERR_INVALID, select(2, json.decode('{"a":[\v]}')))
    end)

    it("keeps invalid text with empty arrays invalid", function()
      assert.are.equal(json.ERR_INVALID, select(2, json.decode('{"a":[] "b"}')))
      assert.are.equal(json.ERR_INVALID, select(2, json.decode('["unterminated, []')))
      assert.are.equal(json.ERR_INVALID, select(2, json.decode('[[]')))
    end)

    it("counts an empty array as one level of depth", function()
      assert.is_nil(select(2, json.decode(nest(64, "[", "]"))))
      assert.are.equal(json.ERR_TOO_DEEP, select(2, json.decode(nest(65, "[", "]"))))
      assert.are.equal(json.ERR_TOO_DEEP, select(2, json.decode("[[[]]]", 2)))
    end)

    it("cannot be fooled by a string that looks like the internal placeholder", function()
      local v = json.decode('["\\u0001blEmptyArray"]')
      assert.are.equal("\1blEmptyArray", v[1])
      assert.are.equal('["\\u0001blEmptyArray"]', json.encode(v))
      local w = json.decode('{"a":["\\u0001blEmptyArray00000000000000000000000000000000"],"b":[]}')
      assert.are.equal(1, #w.a)
      assert.are.equal('"\\u0001blEmptyArray00000000000000000000000000000000"', json.encode(w.a[1]))
    end)

    it("encodes an untouched empty table as {}", function()
      assert.are.equal("{}", json.encode({}))
      assert.are.equal('{"a":{}}', json.encode({ a = {} }))
      local v = json.decode('{"p":{}}')
      assert.are.equal('{"p":{}}', json.encode(v))
    end)

    it("array() marks tables, new or given, as arrays", function()
      local a = json.array()
      assert.are.equal("[]", json.encode(a))
      assert.are.equal('{"a":[]}', json.encode({ a = a }))
      local t = { 1, 2 }
      assert.are.equal(t, json.array(t))
      assert.are.equal("[1,2]", json.encode(t))
      assert.is_true(json.is_array(t))
      -- an array() that was filled later encodes its elements
      local b = json.array()
      b[1] = "x"
      assert.are.equal('{"b":["x"]}', json.encode({ b = b }))
    end)

    it("EMPTY_ARRAY encodes as [] and is read-only", function()
      assert.are.equal("[]", json.encode(json.EMPTY_ARRAY))
      assert.are.equal('{"x":[],"y":[[]]}', json.encode({ x = json.EMPTY_ARRAY, y = { json.EMPTY_ARRAY } }):gsub('"y":%[%[%]%],"x":%[%]', '"x":[],"y":[[]]'))
      assert.is_true(json.is_array(json.EMPTY_ARRAY))
      assert.is_false(json.is_object(json.EMPTY_ARRAY))
      if not json.NATIVE_EMPTY_ARRAY then
        assert.has_error(function() json.EMPTY_ARRAY[1] = 1 end)
        assert.is_nil(next(json.EMPTY_ARRAY))
      end
    end)

    it("restores the caller's tables after encoding", function()
      local inner = json.array()
      local t = { a = inner, b = { inner, 1 }, c = { d = json.EMPTY_ARRAY } }
      local out = json.encode(t)
      assert.is_string(out)
      assert.are.equal(inner, t.a)
      assert.are.equal(inner, t.b[1])
      assert.are.equal(json.EMPTY_ARRAY, t.c.d)
      assert.is_true(json.is_array(t.a))
      local again = json.encode(t)
      assert.are.equal(#out, #again)
      assert.is_nil(again:find("blEmptyArray", 1, true))
    end)

    it("handles a table shared by two parents (mirrored payloads)", function()
      local payload = { items = json.array(), n = 1 }
      local out = json.encode({ task = { payload = payload }, message = { payload = payload } })
      local back = json.decode(out)
      assert.is_true(json.is_array(back.task.payload.items))
      assert.is_true(json.is_array(back.message.payload.items))
      assert.are.equal("[]", json.encode(back.message.payload.items))
      assert.is_nil(out:find("blEmptyArray", 1, true))
    end)
  end)

  describe("encode", function()
    it("writes slashes unescaped and keeps escaped backslashes intact", function()
      local text = assert(json.encode({ a = "x/y", b = "back\\/slash", c = "\\\\/" }))
      assert.is_nil(text:find("x\\/y", 1, true))
      local back = require("cjson").decode(text)
      assert.equal("x/y", back.a)
      assert.equal("back\\/slash", back.b)
      assert.equal("\\\\/", back.c)
      assert.equal('{"u":"/api/v1"}', (json.encode({ u = "/api/v1" })))
    end)

    it("never raises on values cjson cannot encode", function()
      local cyc = {}
      cyc.self = cyc
      local cyc_arr = { a = json.array() }
      cyc_arr.me = cyc_arr
      for _, v in ipairs({ function() end, 0 / 0, 1 / 0, -1 / 0, cyc, cyc_arr, { f = print },
        coroutine.create(function() end) }) do
        local ok, text, err = pcall(json.encode, v)
        assert.is_true(ok)
        assert.is_nil(text)
        assert.is_string(err)
      end
      -- the caller's cyclic table was restored
      assert.is_true(json.is_array(cyc_arr.a))
    end)

    it("encodes scalars, null and mixed tables", function()
      assert.are.equal("null", json.encode(nil))
      assert.are.equal("null", json.encode(json.null))
      assert.are.equal("true", json.encode(true))
      assert.are.equal("1.5", json.encode(1.5))
      assert.are.equal('"a\\"b"', json.encode('a"b'))
      assert.are.equal("[null,1]", json.encode(json.decode("[null,1]")))
      assert.are.equal('{"k":null}', json.encode({ k = json.null }))
    end)

    it("escapes control characters", function()
      assert.are.equal('"\\n\\t\\u0001"', json.encode("\n\t\1"))
    end)
  end)

  describe("numbers (exact round trip; cjson alone prints %.14g)", function()
    -- cjson.decode is exact (strtod), so it is the reference reader here.
    local function reads_back(text, v)
      local back = real_cjson.decode(text)
      return back == v and 1 / back == 1 / v
    end

    local cases = {
      { 1234567890123456, "1234567890123456" },
      { 1795665762407123, "1795665762407123" },
      { -1795665762407123, "-1795665762407123" },
      { 9007199254740991, "9007199254740991" }, -- 2^53 - 1
      { 9007199254740993, "9007199254740992" }, -- 2^53 + 1 is not a double: the literal is 2^53
      { 9007199254740994, "9007199254740994" },
      { 1e15, "1000000000000000" },
      { 1e14, "100000000000000" },
      { 99999999999999, "99999999999999" },
      { 3.141592653589793, "3.141592653589793" },
      { 0.1, "0.1" },
      { 0.1 + 0.2, "0.30000000000000004" },
      { 1 / 3, "0.3333333333333333" },
      { 1e300, "1e+300" },
      { -0.5, "-0.5" },
      { 12345678901234567890, "1.2345678901234567e+19" },
      { 0.123456789012345678, "0.12345678901234568" },
      { 1.7976931348623157e308, "1.7976931348623157e+308" },
      { 5e-324, nil },
      { -0.0, "-0" },
      { 0, "0" },
      { 42, "42" },
    }

    it("writes each number so that it reads back equal, as a top-level value", function()
      for _, c in ipairs(cases) do
        local v, want = c[1], c[2]
        local text, err = json.encode(v)
        assert.is_nil(err)
        if want then
          assert.are.equal(want, text, want)
        end
        assert.is_true(reads_back(text, v), text)
      end
    end)

    it("writes them exactly inside arrays and objects, at any depth", function()
      for _, c in ipairs(cases) do
        local v = c[1]
        local text = assert(json.encode({ a = v, list = { v, { deep = { v } } }, s = "x" }))
        local back = real_cjson.decode(text)
        assert.are.equal(v, back.a, text)
        assert.are.equal(v, back.list[1], text)
        assert.are.equal(v, back.list[2].deep[1], text)
        if c[2] then
          assert.truthy(text:find('"a":' .. c[2], 1, true), text)
          assert.truthy(text:find("[" .. c[2] .. ",", 1, true), text)
        end
        assert.is_nil(text:find("blNumber", 1, true))
      end
    end)

    it("forwards the numbers of a decoded client body as sent", function()
      local sent = '{"id":1234567890123456,"ts":1795665762407123,"x":3.141592653589793,"p":0.30000000000000004,"n":[1795665762407123,-0.5,7]}'
      local v = assert(json.decode(sent))
      local text = assert(json.encode({ task = { payload = v } }))
      for _, piece in ipairs({ '"id":1234567890123456', '"ts":1795665762407123', '"x":3.141592653589793',
        '"p":0.30000000000000004', '"n":[1795665762407123,-0.5,7]' }) do
        assert.truthy(text:find(piece, 1, true), piece .. " in " .. text)
      end
    end)

    it("leaves cjson's text for small integers and short decimals", function()
      assert.are.equal("[1,-2,1.5,0.25,99999999999999,-99999999999999,1e+20,0.001]",
        json.encode({ 1, -2, 1.5, 0.25, 99999999999999, -99999999999999, 1e20, 0.001 }))
      assert.are.equal('{"n":1}', json.encode({ n = 1 }))
    end)

    it("round-trips random doubles and integers", function()
      math.randomseed(12345)
      local values = {}
      for i = 1, 3000 do
        local m = math.random() - 0.5
        values[#values + 1] = m * 10 ^ math.random(-40, 40)
        values[#values + 1] = math.floor(math.random() * 2 ^ 53) * (i % 2 == 0 and 1 or -1)
        values[#values + 1] = math.random(0, 10 ^ 6) / 10 ^ math.random(0, 6)
      end
      local text = assert(json.encode(values))
      local back = real_cjson.decode(text)
      assert.are.equal(#values, #back)
      for i, v in ipairs(values) do
        if back[i] ~= v then
          error(string.format("%.17g came back as %.17g", v, back[i]))
        end
      end
    end)

    it("keeps empty arrays and objects [] and {} next to rewritten numbers", function()
      local t = { a = json.array(), b = {}, c = json.EMPTY_ARRAY, n = 1234567890123456, l = { json.array(), 3.141592653589793, {} } }
      local text = assert(json.encode(t))
      assert.truthy(text:find('"a":[]', 1, true), text)
      assert.truthy(text:find('"b":{}', 1, true), text)
      assert.truthy(text:find('"c":[]', 1, true), text)
      assert.truthy(text:find('"n":1234567890123456', 1, true), text)
      assert.truthy(text:find('"l":[[],3.141592653589793,{}]', 1, true), text)
      assert.are.equal("[]", json.encode(json.array()))
      assert.are.equal("{}", json.encode({}))
    end)

    it("does not change the caller's tables", function()
      local inner = json.array()
      local shared = { big = 1795665762407123, pi = 3.141592653589793, small = 2, e = inner }
      local t = { task = { payload = shared }, message = { payload = shared }, list = { 1234567890123456, 0.1, "s" } }
      local text = assert(json.encode(t))
      assert.are.equal(shared, t.task.payload)
      assert.are.equal(shared, t.message.payload)
      assert.are.equal(1795665762407123, shared.big)
      assert.are.equal(3.141592653589793, shared.pi)
      assert.are.equal(2, shared.small)
      assert.are.equal(inner, shared.e)
      assert.are.same({ 1234567890123456, 0.1, "s" }, t.list)
      assert.are.equal("number", type(t.list[1]))
      -- both copies of the shared payload are written exactly
      local back = real_cjson.decode(text)
      assert.are.equal(1795665762407123, back.task.payload.big)
      assert.are.equal(1795665762407123, back.message.payload.big)
      assert.are.equal(3.141592653589793, back.message.payload.pi)
      assert.are.equal(text, json.encode(t))
    end)

    it("still refuses NaN and infinities, and restores the table when cjson fails", function()
      for _, v in ipairs({ 0 / 0, 1 / 0, -1 / 0 }) do
        local text, err = json.encode(v)
        assert.is_nil(text)
        assert.is_string(err)
        local text2, err2 = json.encode({ a = 1234567890123456, b = v })
        assert.is_nil(text2)
        assert.is_string(err2)
      end
      local t = { a = 1234567890123456, e = json.array(), f = print }
      assert.is_nil((json.encode(t)))
      assert.are.equal(1234567890123456, t.a)
      assert.is_true(json.is_array(t.e))
      -- the next encode is not confused by the failed one
      assert.are.equal('[1795665762407123]', json.encode({ 1795665762407123 }))
    end)

    it("cannot be fooled by a string that looks like the number placeholder", function()
      local s = "\1blNumber" .. string.rep("0", 32) .. "1"
      local text = assert(json.encode({ s, 1234567890123456 }))
      assert.are.equal('["\\u0001blNumber' .. string.rep("0", 32) .. '1",1234567890123456]', text)
    end)
  end)

  describe("is_array / is_object", function()
    it("classifies decoded values", function()
      assert.is_true(json.is_object(json.decode("{}")))
      assert.is_true(json.is_object(json.decode('{"1":1}')))
      assert.is_true(json.is_array(json.decode("[1]")))
      assert.is_true(json.is_array(json.decode("[null]")))
      assert.is_true(json.is_array(json.decode("[]")))
      assert.is_false(json.is_array(json.decode("{}")))
      assert.is_false(json.is_object(json.decode("[1]")))
      for _, v in ipairs({ "s", 1, true, json.null }) do
        assert.is_false(json.is_object(v))
        assert.is_false(json.is_array(v))
      end
      assert.is_false(json.is_object(nil))
    end)
  end)
end)

-- OpenResty's lua-cjson: simulated with a fake `cjson.safe` that has empty_array, array_mt and
-- decode_array_with_array_mt, so the native code path of beamline.json runs and is checked.
describe("beamline.json (simulated OpenResty cjson)", function()
  local dkjson = require("dkjson")
  local fake, json, calls
  local saved_safe, saved_json

  local function fake_encode_value(v, out)
    local t = type(v)
    if v == fake.null then
      out[#out + 1] = "null"
    elseif v == fake.empty_array then
      out[#out + 1] = "[]"
    elseif t == "string" then
      out[#out + 1] = real_cjson.encode(v)
    elseif t == "number" or t == "boolean" then
      out[#out + 1] = tostring(v)
    elseif t == "table" then
      if getmetatable(v) == fake.array_mt or (next(v) ~= nil and v[1] ~= nil) then
        out[#out + 1] = "["
        for i = 1, #v do
          if i > 1 then out[#out + 1] = "," end
          fake_encode_value(v[i], out)
        end
        out[#out + 1] = "]"
      else
        local keys = {}
        for k in pairs(v) do keys[#keys + 1] = k end
        table.sort(keys)
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          if i > 1 then out[#out + 1] = "," end
          out[#out + 1] = real_cjson.encode(k) .. ":"
          fake_encode_value(v[k], out)
        end
        out[#out + 1] = "}"
      end
    else
      error("Cannot serialise " .. t)
    end
  end

  setup(function()
    calls = { decode_texts = {}, encode_values = {} }
    fake = {
      null = real_cjson.null,
      empty_array = newproxy(),
      array_mt = { __name = "fake array_mt" },
      empty_array_mt = {},
      decode_array_with_array_mt = function(on) calls.array_mt_on = on end,
      decode_invalid_numbers = function(on) calls.invalid_numbers = on end,
      decode_max_depth = function(d) calls.depth = d; return d end,
      encode = function(v)
        calls.encode_values[#calls.encode_values + 1] = v
        local ok, res = pcall(function()
          local out = {}
          fake_encode_value(v, out)
          return table.concat(out)
        end)
        if ok then return res end
        return nil, res
      end,
      decode = function(text)
        calls.decode_texts[#calls.decode_texts + 1] = text
        local v, _, err = dkjson.decode(text, 1, real_cjson.null, nil, calls.array_mt_on and fake.array_mt or nil)
        if err then return nil, err end
        return v
      end,
    }
    fake.new = function() return fake end
    saved_safe = package.loaded["cjson.safe"]
    saved_json = package.loaded["beamline.json"]
    package.loaded["cjson.safe"] = fake
    package.loaded["beamline.json"] = nil
    json = require("beamline.json")
  end)

  teardown(function()
    package.loaded["cjson.safe"] = saved_safe
    package.loaded["beamline.json"] = saved_json
  end)

  it("detects the native markers and turns on decode_array_with_array_mt", function()
    assert.is_true(json.NATIVE_EMPTY_ARRAY)
    assert.is_true(json.NATIVE_DECODE_ARRAY_MT)
    assert.is_true(calls.array_mt_on)
    assert.is_false(calls.invalid_numbers)
  end)

  it("uses cjson's own empty_array and array_mt", function()
    assert.are.equal(fake.empty_array, json.EMPTY_ARRAY)
    assert.are.equal(fake.array_mt, getmetatable(json.array()))
    assert.is_true(json.is_array(json.EMPTY_ARRAY))
  end)

  it("hands marked values to cjson untouched (no placeholder swap)", function()
    local a = json.array()
    local v = { a = a, e = json.EMPTY_ARRAY }
    local out = json.encode(v)
    assert.are.equal('{"a":[],"e":[]}', out)
    local last = calls.encode_values[#calls.encode_values]
    assert.are.equal(v, last)
    assert.are.equal(a, last.a)
    assert.are.equal(fake.empty_array, last.e)
  end)

  it("decodes without rewriting the text and keeps [] as arrays", function()
    local text = '{"a":[],"b":{"c":[ ]},"s":"[]"}'
    local v, err, is_object = json.decode(text)
    assert.is_nil(err)
    assert.is_true(is_object)
    assert.are.equal(text, calls.decode_texts[#calls.decode_texts])
    assert.are.equal(fake.array_mt, getmetatable(v.a))
    assert.is_true(json.is_array(v.b.c))
    assert.are.equal('{"a":[],"b":{"c":[]},"s":"[]"}', json.encode(v))
  end)

  it("sets the depth on the instance and maps errors", function()
    json.decode("[1]", 7)
    assert.are.equal(7, calls.depth)
    local v, err = json.decode("{")
    assert.is_nil(v)
    assert.are.equal(json.ERR_INVALID, err)
  end)

  it("writes inexact numbers itself there too (OpenResty's cjson also prints %.14g by default)", function()
    local v = { id = 1234567890123456, x = 3.141592653589793, n = 7, e = json.EMPTY_ARRAY, a = json.array() }
    local out = json.encode(v)
    assert.are.equal('{"a":[],"e":[],"id":1234567890123456,"n":7,"x":3.141592653589793}', out)
    assert.are.equal(v, calls.encode_values[#calls.encode_values])
    assert.are.equal(1234567890123456, v.id)
    assert.are.equal(3.141592653589793, v.x)
    assert.are.equal("12345678901234568", json.encode(12345678901234568))
    assert.are.equal("1.5", json.encode(1.5))
  end)

  it("returns cjson's encode error instead of raising", function()
    local ok, text, err = pcall(json.encode, { f = function() end })
    assert.is_true(ok)
    assert.is_nil(text)
    assert.is_string(err)
  end)
end)

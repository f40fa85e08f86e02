-- beamline.json_check: the undecoded check of {"ok":true,…} Router replies (issue 15). It must
-- never say true for a text cjson refuses or decodes to anything but an object with ok == true.
local check = require("beamline.json_check")
local cjson = require("cjson.safe")

-- What the decoding path concludes: true when cjson gives an object whose ok is true.
local function cjson_ok_true(s)
  local v = cjson.decode(s)
  return type(v) == "table" and v.ok == true
end

describe("beamline.json_check.ok_true", function()
  it("accepts ok:true objects of every JSON shape", function()
    for _, s in ipairs({
      '{"ok":true}',
      ' \t\r\n{ "ok" : true } \n',
      '{"ok":true,"decision":{"provider_id":"p","metadata":{"tags":[]}},"context":{"request_id":"r"}}',
      '{"a":[1,-2,3.5,-0.25e10,6E+2,7e-3,0],"b":"x\\"y\\\\z\\/\\b\\f\\n\\r\\t","c":null,"d":false,"ok":true}',
      '{"ok":false,"ok":true}', -- duplicate keys: the last one counts, as in cjson
      '{"nested":{"ok":false},"ok":true,"e":{},"f":[],"g":[[],{}]}',
      '{"ok":true,"text":"caf\195\169 \226\130\172"}', -- UTF-8 bytes pass (the answer is sanitized later)
    }) do
      assert.is_true(check.ok_true(s), s)
      assert.is_true(cjson_ok_true(s), s)
    end
  end)

  it("refuses malformed JSON and anything but a top-level ok:true", function()
    for _, s in ipairs({
      '', ' ', '{', '}', '[]', 'true', '"ok"', '{"ok":true', '{"ok":true}}', '{"ok":true}x',
      '{"ok":true,}', '{"ok":true,,"a":1}', '{"ok" true}', '{ok:true}', "{'ok':true}",
      '{"ok":tru}', '{"ok":truee}', '{"ok":"true"}', '{"ok":1}', '{"ok":false}', '{"ok":null}',
      '{"ok":true,"ok":false}', '{"a":{"ok":true}}', '{"ok":{}}', '{"ok":[true]}',
      '{"ok":true,"a":01}', '{"ok":true,"a":1.}', '{"ok":true,"a":.5}', '{"ok":true,"a":-}',
      '{"ok":true,"a":1e}', '{"ok":true,"a":+1}', '{"ok":true,"a":0x10}', '{"ok":true,"a":NaN}',
      '{"ok":true,"a":Infinity}', '{"ok":true,"a":[1,]}', '{"ok":true,"a":[1 2]}',
      '{"ok":true,"a":"unterminated}', '{"ok":true,"a":"bad \\x escape"}',
      '{"ok":true,"a":"\\ud800"}', -- \u escapes are left to cjson (lone surrogates are its error)
      '{"ok":true,"a":"tab\there"}', -- a raw control character: left to cjson
      '{"\\u006fk":true}', -- an escaped top-level key might be "ok": left to cjson
      '{"ok":true,"a":"nul\0byte"}', '{"ok":true}\0', '\239\187\191{"ok":true}',
      '{"ok":true,"a":[}', '{"ok":true,"a":{]}', '{"ok":true,"a":{"b"}}', '{"ok":true,"a":{"b":}}',
    }) do
      assert.is_false(check.ok_true(s), s)
    end
  end)

  it("leaves nesting deeper than the decoder's default to cjson", function()
    local deep = '{"ok":true,"a":' .. string.rep("[", 59) .. string.rep("]", 59) .. "}"
    assert.is_true(check.ok_true(deep))
    local deeper = '{"ok":true,"a":' .. string.rep("[", 60) .. string.rep("]", 60) .. "}"
    assert.is_false(check.ok_true(deeper))
  end)

  -- Differential check against cjson: random replies, then every one-byte mutation, deletion
  -- and truncation of them. ok_true may be stricter than cjson, never looser.
  it("never says true where cjson disagrees (random replies and their mutations)", function()
    math.randomseed(15)
    local atoms = { "true", "false", "null", "0", "-1", "2.5", "1e3", '""', '"x"', '"a\\"b"', '"\\n"' }
    local function value(d)
      local r = math.random(1, d > 3 and 1 or 3)
      if r == 1 then return atoms[math.random(#atoms)] end
      local n, parts = math.random(0, 3), {}
      if r == 2 then
        for i = 1, n do parts[i] = value(d + 1) end
        return "[" .. table.concat(parts, ",") .. "]"
      end
      for i = 1, n do parts[i] = '"k' .. math.random(1, 3) .. '":' .. value(d + 1) end
      return "{" .. table.concat(parts, ",") .. "}"
    end
    local alphabet = '{}[],:"\\ truefalsn0123456789-+.eEokx\t\n'
    local accepted, checked = 0, 0
    local function compare(s)
      checked = checked + 1
      local mine = check.ok_true(s)
      if mine then
        accepted = accepted + 1
        assert.is_true(cjson_ok_true(s), s)
      end
    end
    for _ = 1, 400 do
      local members = { '"ok":' .. (math.random() < 0.8 and "true" or value(1)) }
      for i = 1, math.random(0, 3) do members[#members + 1] = '"m' .. i .. '":' .. value(1) end
      local s = "{" .. table.concat(members, ",") .. "}"
      assert.are.equal(cjson_ok_true(s), check.ok_true(s), s) -- well-formed: both agree exactly
      for pos = 1, #s do
        local b = math.random(#alphabet)
        compare(s:sub(1, pos - 1) .. alphabet:sub(b, b) .. s:sub(pos + 1)) -- replace
        compare(s:sub(1, pos - 1) .. s:sub(pos + 1)) -- delete
        compare(s:sub(1, pos)) -- truncate
      end
    end
    assert.is_true(checked > 10000)
    assert.is_true(accepted > 1000) -- the comparison had cases where ok_true said true
  end)
end)

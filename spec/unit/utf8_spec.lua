-- beamline.utf8 (issue 17): RFC 3629 validation and U+FFFD replacement.
local utf8 = require("beamline.utf8")
local R = "\239\191\189"

describe("beamline.utf8", function()
  it("accepts ASCII and valid UTF-8 of every length", function()
    for _, s in ipairs({ "", "plain", "caf\195\169", "\226\130\172", "\240\159\152\128", "\244\143\191\191", "a\194\128b" }) do
      assert.is_nil(utf8.invalid_at(s), s)
      assert.equal(s, utf8.sanitize(s))
    end
    assert.is_false(utf8.has_high("plain ascii"))
    assert.is_true(utf8.has_high("caf\195\169"))
  end)

  it("finds a high byte at every position, across the four-byte words", function()
    for n = 1, 13 do
      assert.is_false(utf8.has_high(string.rep("a", n)), n)
      for at = 1, n do
        local s = string.rep("a", at - 1) .. "\128" .. string.rep("a", n - at)
        assert.is_true(utf8.has_high(s), n .. "/" .. at)
      end
    end
  end)

  it("finds invalid bytes: stray continuation, truncated, overlong, surrogate, above U+10FFFF, 0xff", function()
    assert.equal(2, utf8.invalid_at("a\128b"))
    assert.equal(4, utf8.invalid_at("abc\195"))
    assert.equal(1, utf8.invalid_at("\192\175"))
    assert.equal(1, utf8.invalid_at("\224\128\175"))
    assert.equal(1, utf8.invalid_at("\237\160\128"))
    assert.equal(1, utf8.invalid_at("\244\144\128\128"))
    assert.equal(3, utf8.invalid_at("ok\255"))
  end)

  it("replaces each invalid byte with U+FFFD and keeps the valid ones", function()
    assert.equal("/x" .. R .. "y", utf8.sanitize("/x\255y"))
    assert.equal(R .. R .. "caf\195\169" .. R, utf8.sanitize("\192\175caf\195\169\195"))
    for b = 128, 255 do
      assert.is_nil(utf8.invalid_at(utf8.sanitize("a" .. string.char(b) .. "z")), b)
    end
  end)
end)

-- beamline.crypto: SHA-256 through libcrypto (ffi) and the constant-time compare.
local crypto = require("beamline.crypto")

describe("beamline.crypto", function()
  it("computes SHA-256 (FIPS 180-2 vectors)", function()
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", (crypto.sha256_hex("")))
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", (crypto.sha256_hex("abc")))
    assert.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      (crypto.sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
  end)

  it("hashes binary data and large inputs byte for byte", function()
    local d = assert(crypto.sha256("a\0b"))
    assert.equal(32, #d)
    assert.not_equal(crypto.sha256_hex("a"), crypto.sha256_hex("a\0b"))
    -- one million 'a' (FIPS 180-2 long vector)
    assert.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
      (crypto.sha256_hex(string.rep("a", 1000000))))
  end)

  it("hex32 is lower-case hex of 32 bytes", function()
    assert.equal(string.rep("00", 32), crypto.hex32(string.rep("\0", 32)))
    assert.equal(string.rep("ff", 32), crypto.hex32(string.rep("\255", 32)))
  end)

  it("ct_equal compares whole strings", function()
    assert.is_true(crypto.ct_equal("", ""))
    assert.is_true(crypto.ct_equal("abc", "abc"))
    assert.is_false(crypto.ct_equal("abc", "abd"))
    assert.is_false(crypto.ct_equal("abc", "xbc"))
    assert.is_false(crypto.ct_equal("abc", "abcd"))
    local a = crypto.sha256_hex("k1")
    assert.is_true(crypto.ct_equal(a, (crypto.sha256_hex("k1"))))
    assert.is_false(crypto.ct_equal(a, (crypto.sha256_hex("k2"))))
  end)

  it("load_libcrypto caches failures under the caller's message", function()
    local lib, err = crypto.load_libcrypto({}, function(l) return l.no_such_symbol_xyz ~= nil end, "no xyz here")
    assert.is_nil(lib)
    assert.equal("no xyz here", err)
  end)
end)

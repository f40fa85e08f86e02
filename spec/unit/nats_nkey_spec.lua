-- nkey seed decoding and Ed25519 nonce signatures (OpenSSL libcrypto via ffi), checked against a
-- vector produced with nkeys.js (and cross-checked with Node's crypto):
--   raw seed bytes i*7+3 (i = 0..31), user prefix, nonce "Fh0n8vuHuHYEhjw".
local conn = require("beamline.nats.connection")

local SEED = "SUAAGCQRDAPSMLJUHNBESUCXLZSWY432QGEI7FU5USV3FOOAY7HNLXDKKA"
local PUB = "UB2VYTFZEVWKPTOEVT64NT7O3KCJAF7FXH4VCTUZDEN5M7QLBVBHMA3W"
local NONCE = "Fh0n8vuHuHYEhjw"
local SIG = "n1sTktPe6Dr3aQH4pgwS5VMEfefsToUodW_3_m0DgDe1zJgfdAODvWuTsE336gLtArwbxZ_KiV2lyqax-TnFCQ"

local function raw_seed()
  local t = {}
  for i = 0, 31 do t[#t + 1] = string.char((i * 7 + 3) % 256) end
  return table.concat(t)
end

describe("nkey helpers", function()
  it("base32 round-trips (RFC 4648 vectors, no padding)", function()
    assert.equal("", conn.base32_encode(""))
    assert.equal("MY", conn.base32_encode("f"))
    assert.equal("MZXW6YTBOI", conn.base32_encode("foobar"))
    assert.equal("foobar", conn.base32_decode("MZXW6YTBOI"))
    assert.equal("fooba", conn.base32_decode("MZXW6YTB"))
    assert.is_nil(conn.base32_decode("MZXW6YTB1"))  -- '1' is not in the alphabet
  end)

  it("crc16 is CRC-16/XMODEM", function()
    assert.equal(0x31C3, conn.crc16("123456789"))
    assert.equal(0, conn.crc16(""))
  end)

  it("base64url has no padding and uses - and _", function()
    assert.equal("", conn.base64url(""))
    assert.equal("Zg", conn.base64url("f"))
    assert.equal("Zm8", conn.base64url("fo"))
    assert.equal("Zm9v", conn.base64url("foo"))
    assert.equal("-_8", conn.base64url("\251\255"))
    assert.equal("-___", conn.base64url("\251\255\255"))
  end)
end)

describe("nkey seeds", function()
  it("decodes a user seed to its raw 32 bytes and public key", function()
    local kp, err = conn.nkey_from_seed(SEED)
    assert.is_nil(err)
    assert.equal(raw_seed(), kp.seed)
    assert.equal(PUB, kp.public_key)
    assert.equal(160, kp.prefix) -- 'U'
  end)

  it("signs the INFO nonce like nkeys.js (base64url, no padding)", function()
    local sig, pub = conn.nkey_sign(SEED, NONCE)
    assert.equal(SIG, sig)
    assert.equal(PUB, pub)
    assert.equal(86, #sig)
  end)

  it("rejects a seed with a bad checksum", function()
    -- flip one character in the middle of the seed
    local bad = SEED:sub(1, 20) .. (SEED:sub(21, 21) == "A" and "B" or "A") .. SEED:sub(22)
    local kp, err = conn.nkey_from_seed(bad)
    assert.is_nil(kp)
    assert.matches("checksum", err)
  end)

  it("rejects garbage, wrong lengths and public keys", function()
    assert.is_nil((conn.nkey_from_seed("not a seed!")))
    assert.is_nil((conn.nkey_from_seed("SUAAGCQ")))
    local kp, err = conn.nkey_from_seed(PUB) -- a public key is not a seed
    assert.is_nil(kp)
    assert.is_string(err)
  end)
end)

describe("server urls", function()
  it("parses the supported forms", function()
    local s = assert(conn.parse_server_url("nats://127.0.0.1:4333"))
    assert.same({ "127.0.0.1", 4333, "127.0.0.1:4333", false }, { s.host, s.port, s.key, s.tls })
    s = assert(conn.parse_server_url(" nats://alice:p%40ss@h:5 "))
    assert.same({ "alice", "p@ss", "h", 5 }, { s.user, s.pass, s.host, s.port })
    s = assert(conn.parse_server_url("nats://s3cr3t@h"))
    assert.same({ "s3cr3t", 4222 }, { s.token, s.port })
    s = assert(conn.parse_server_url("h2:4223"))
    assert.equal("h2:4223", s.key)
    s = assert(conn.parse_server_url("tls://h:1"))
    assert.is_true(s.tls)
    s = assert(conn.parse_server_url("nats://[::1]:4222"))
    assert.same({ "::1", "[::1]:4222" }, { s.host, s.key })
  end)

  it("rejects bad ones", function()
    assert.is_nil((conn.parse_server_url("http://h:1")))
    assert.is_nil((conn.parse_server_url("nats://h:99999")))
    assert.is_nil((conn.parse_server_url("")))
  end)
end)

-- beamline.auth: key extraction, hashing and lookup per tenant.
local stub = require("ngx_stub")
local crypto = require("beamline.crypto")
local auth = require("beamline.auth")

local KEY_A = "ka-0123456789"
local KEY_B = "kb-abcdefghij"

describe("beamline.auth", function()
  before_each(function()
    auth.configure({
      enabled = true,
      api_keys = {
        { tenant_id = "tenant-a", key_sha256 = (crypto.sha256_hex(KEY_A)) },
        { tenant_id = "tenant-b", key_sha256 = string.upper((crypto.sha256_hex(KEY_B))), admin = true },
      },
    })
  end)
  after_each(function() stub.uninstall() end)

  it("parses Bearer tokens, scheme case-insensitively", function()
    assert.equal("abc", auth.parse_bearer("Bearer abc"))
    assert.equal("abc", auth.parse_bearer("bearer   abc  "))
    assert.equal("a.b-c_~+/=", auth.parse_bearer("BEARER a.b-c_~+/="))
    assert.is_nil(auth.parse_bearer("Basic abc"))
    assert.is_nil(auth.parse_bearer("Bearer"))
    assert.is_nil(auth.parse_bearer("Bearer a b"))
    assert.is_nil(auth.parse_bearer("Bearerabc"))
  end)

  it("maps keys to their tenant by SHA-256 (hex case-insensitive in the config)", function()
    assert.equal("tenant-a", auth.tenant_for_key(KEY_A))
    assert.equal("tenant-b", auth.tenant_for_key(KEY_B))
    assert.is_nil(auth.tenant_for_key("unknown"))
    assert.is_nil(auth.tenant_for_key(""))
  end)

  it("takes the key from Authorization: Bearer, else X-API-Key", function()
    stub.install({ headers = { Authorization = "Bearer " .. KEY_A } })
    assert.equal(KEY_A, auth.presented_key())
    stub.install({ headers = { ["X-API-Key"] = KEY_B } })
    assert.equal(KEY_B, auth.presented_key())
    stub.install({ headers = { Authorization = "Basic xyz", ["X-API-Key"] = KEY_B } })
    assert.equal(KEY_B, auth.presented_key())
    stub.install({ headers = { ["X-API-Key"] = { KEY_A, KEY_B } } })
    assert.is_nil(auth.presented_key())
    stub.install({ headers = {} })
    assert.is_nil(auth.presented_key())
  end)

  it("authenticate returns the tenant, nil for a missing or unknown key, and off when disabled", function()
    stub.install({ headers = { ["x-api-key"] = KEY_A } })
    assert.same({ "tenant-a", false, false }, { auth.authenticate() })
    stub.install({ headers = { ["x-api-key"] = KEY_B } })
    assert.same({ "tenant-b", false, true }, { auth.authenticate() })
    stub.install({ headers = { ["x-api-key"] = "nope" } })
    assert.same({ nil, false, false }, { auth.authenticate() })
    stub.install({ headers = {} })
    assert.same({ nil, false, false }, { auth.authenticate() })
    auth.configure({ enabled = false, api_keys = {} })
    assert.same({ nil, true, false }, { auth.authenticate() })
    assert.is_false(auth.is_enabled())
  end)

  it("never logs the key", function()
    stub.install({ headers = { ["x-api-key"] = KEY_A } })
    auth.authenticate()
    for _, l in ipairs(stub.logs) do assert.not_matches(KEY_A, l.msg, 1, true) end
  end)
end)

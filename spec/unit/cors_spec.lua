-- beamline.cors: origin matching, preflight and actual-response headers.
local stub = require("ngx_stub")
local cors = require("beamline.cors")

local function conf(origins, credentials)
  return {
    allowed_origins = origins,
    allow_credentials = credentials or false,
    allowed_headers = { "Content-Type", "X-Tenant-ID" },
    expose_headers = { "X-Request-Id" },
    max_age_seconds = 300,
  }
end

describe("beamline.cors", function()
  after_each(function() stub.uninstall() end)

  it("is off with no origins", function()
    cors.configure(conf({}))
    assert.is_false(cors.is_enabled())
    assert.is_nil(cors.allow_origin("https://a.example"))
  end)

  it("matches listed origins exactly, case-insensitively, echoing the request's origin", function()
    cors.configure(conf({ "https://a.example", "http://localhost:3000" }))
    assert.is_true(cors.is_enabled())
    assert.equal("https://a.example", cors.allow_origin("https://a.example"))
    assert.equal("https://A.example", cors.allow_origin("https://A.example"))
    assert.equal("http://localhost:3000", cors.allow_origin("http://localhost:3000"))
    assert.is_nil(cors.allow_origin("http://a.example"))
    assert.is_nil(cors.allow_origin("https://a.example:8443"))
    assert.is_nil(cors.allow_origin("https://a.example.evil"))
    assert.is_nil(cors.allow_origin("null"))
    assert.is_nil(cors.allow_origin(nil))
    assert.is_nil(cors.allow_origin(""))
  end)

  it("* allows any origin with the literal *", function()
    cors.configure(conf({ "*" }))
    assert.equal("*", cors.allow_origin("https://any.example"))
    cors.configure(conf({ "*", "https://a.example" }))
    assert.equal("https://a.example", cors.allow_origin("https://a.example"))
  end)

  it("answers a preflight with 204 and the Allow-* headers", function()
    cors.configure(conf({ "https://a.example" }, true))
    stub.install({ method = "OPTIONS", headers = { Origin = "https://a.example", ["Access-Control-Request-Method"] = "POST" } })
    local res = stub.run(cors.preflight, "POST, OPTIONS")
    assert.equal(204, res.exited)
    assert.equal("", res.body)
    assert.equal("https://a.example", stub.response_header("Access-Control-Allow-Origin"))
    assert.equal("POST, OPTIONS", stub.response_header("Access-Control-Allow-Methods"))
    assert.equal("Content-Type, X-Tenant-ID", stub.response_header("Access-Control-Allow-Headers"))
    assert.equal("300", stub.response_header("Access-Control-Max-Age"))
    assert.equal("true", stub.response_header("Access-Control-Allow-Credentials"))
    assert.matches("Origin", stub.response_header("Vary"))
  end)

  it("a preflight from another origin gets the 204 without Allow-* headers", function()
    cors.configure(conf({ "https://a.example" }))
    stub.install({ method = "OPTIONS", headers = { Origin = "https://b.example" } })
    local res = stub.run(cors.preflight, "POST, OPTIONS")
    assert.equal(204, res.exited)
    assert.is_nil(stub.response_header("Access-Control-Allow-Origin"))
    assert.is_nil(stub.response_header("Access-Control-Allow-Methods"))
  end)

  it("actual responses carry Allow-Origin, Expose-Headers and Vary: Origin", function()
    cors.configure(conf({ "https://a.example" }))
    stub.install({ headers = { Origin = "https://a.example" } })
    cors.apply()
    assert.equal("https://a.example", stub.response_header("Access-Control-Allow-Origin"))
    assert.equal("X-Request-Id", stub.response_header("Access-Control-Expose-Headers"))
    assert.equal("Origin", stub.response_header("Vary"))
    assert.is_nil(stub.response_header("Access-Control-Allow-Credentials"))
    stub.install({ headers = { Origin = "https://b.example" } })
    cors.apply()
    assert.is_nil(stub.response_header("Access-Control-Allow-Origin"))
    assert.equal("Origin", stub.response_header("Vary"))
  end)
end)

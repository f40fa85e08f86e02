-- beamline.router_reply: what the client gets for each kind of Router reply (CONTRACT §4, §10).
local router_reply = require("beamline.router_reply")
local cjson = require("cjson")

describe("beamline.router_reply", function()
  it("maps Router codes per §4, anything else to 500", function()
    local expected = {
      invalid_request = 400, unsupported_protocol_version = 400, unauthorized = 401,
      validator_blocked = 403, policy_not_found = 404, extension_not_found = 404,
      rate_limit_exceeded = 429, extension_unavailable = 503, extension_timeout = 504,
      decision_failed = 500, internal = 500, post_processor_failed = 500, extension_error = 500,
      brand_new_code = 500,
    }
    for code, status in pairs(expected) do
      assert.are.equal(status, router_reply.status_for_code(code), code)
    end
  end)

  it("passes a success reply through byte for byte", function()
    local bytes = '{"ok":true,  "decision":{"provider_id":"p","metadata":{"tags":[]}},"context":{"request_id":"r"}}'
    local m = router_reply.map_reply(bytes)
    assert.are.equal(200, m.status)
    assert.are.equal(bytes, m.body) -- same string: not re-encoded (spacing, [] kept)
    assert.is_nil(m.decoded) -- checked by beamline.json_check, never decoded
  end)

  it("keeps a complete error body untouched and maps its status", function()
    local bytes = '{"ok":false,"error":{"code":"validator_blocked","message":"no","details":{"a":1},"intake_error_code":null}}'
    local m = router_reply.map_reply(bytes)
    assert.are.equal(403, m.status)
    assert.are.equal(bytes, m.body)
    assert.are.equal("validator_blocked", m.code)
  end)

  it("completes intake_error_code (null) and details ({}) where absent", function()
    local m = router_reply.map_reply('{"ok":false,"error":{"code":"extension_timeout","message":"slow"},"context":{"request_id":"r"}}')
    assert.are.equal(504, m.status)
    assert.matches('"intake_error_code":null', m.body, 1, true)
    assert.matches('"details":{}', m.body, 1, true)
    local back = cjson.decode(m.body)
    assert.are.equal("slow", back.error.message)
    assert.are.equal("r", back.context.request_id)
    -- a present value is kept
    m = router_reply.map_reply('{"ok":false,"error":{"code":"invalid_request","intake_error_code":"VERSION_UNSUPPORTED"}}')
    assert.are.equal(400, m.status)
    assert.are.equal("VERSION_UNSUPPORTED", cjson.decode(m.body).error.intake_error_code)
  end)

  it("rejects malformed replies with 502 and a reason for the log", function()
    for _, bytes in ipairs({
      "", "not json", "[1,2]", '"ok"', '{"ok":"true"}', '{"decision":{}}', '{"ok":null}',
      '{"ok":false}', '{"ok":false,"error":"boom"}', '{"ok":false,"error":{"message":"x"}}',
      '{"ok":false,"error":{"code":42}}', '{"ok":false,"error":[]}',
    }) do
      local m = router_reply.map_reply(bytes)
      assert.are.equal(502, m.status, bytes)
      assert.is_nil(m.body, bytes)
      assert.is_string(m.problem, bytes)
    end
  end)
end)

-- beamline.streams: the pure parts of the realtime streams (CONTRACT §11): the tenant subject
-- token, the message_created SSE frame, ExecResult parsing and the match rules of §11.2.
local streams = require("beamline.streams")

describe("beamline.streams", function()
  it("writes every '.' of a tenant as %2E in the subject token", function()
    assert.equal("t1", streams.tenant_token("t1"))
    assert.equal("acme%2Eeu%2Eprod", streams.tenant_token("acme.eu.prod"))
    assert.equal("a:b-c_d", streams.tenant_token("a:b-c_d"))
    assert.equal("beamline.gateway.v1.events.a%2Eb", streams.events_subject("beamline.gateway.v1.events", "a.b"))
  end)

  it("builds the message_created frame from the request_id header and a one-line payload", function()
    assert.equal('id: r-1\nevent: message_created\ndata: {"a":1}\n\n',
      streams.message_frame('{"a":1}', { request_id = "r-1" }))
    -- not an event: no or bad request_id, no JSON object, several lines
    assert.is_nil(streams.message_frame('{"a":1}', {}))
    assert.is_nil(streams.message_frame('{"a":1}', nil))
    assert.is_nil(streams.message_frame('{"a":1}', { request_id = "" }))
    assert.is_nil(streams.message_frame('{"a":1}', { request_id = "a\nb" }))
    assert.is_nil(streams.message_frame('{"a":1}', { request_id = { "x", "y" } }))
    assert.is_nil(streams.message_frame('{"a":1}', { request_id = string.rep("x", 129) }))
    assert.is_nil(streams.message_frame('[1]', { request_id = "r" }))
    assert.is_nil(streams.message_frame('{"a":\n1}', { request_id = "r" }))
    assert.is_nil(streams.message_frame('{"a":1}\r', { request_id = "r" }))
  end)

  it("parses ExecResults: tenant from the header first, compact data, invalid ones refused", function()
    local r = assert(streams.parse_result('{ "request_id": "r1", "tenant_id": "body-t", "provider_id": "p", "n": 1 }', { tenant_id = "hdr-t" }, 5))
    assert.equal("hdr-t", r.tenant)
    assert.equal("r1", r.request_id)
    assert.is_nil(r.assignment_id)
    assert.equal("p", r.provider)
    assert.equal(5, r.t)
    assert.is_nil(r.data:find("[\r\n]"))
    assert.is_nil(r.data:find(": ", 1, true))
    r = assert(streams.parse_result('{"assignment_id":"a1","tenant_id":"body-t"}', nil, 0))
    assert.equal("body-t", r.tenant)
    local function reason(payload, headers)
      local v, why = streams.parse_result(payload, headers, 0)
      assert.is_nil(v)
      return why
    end
    assert.equal("invalid_result", reason("not json"))
    assert.equal("invalid_result", reason("[1,2]"))
    assert.equal("invalid_result", reason('"str"'))
    assert.equal("invalid_result", reason('{"tenant_id":"t"}'))
    assert.equal("invalid_result", reason('{"request_id":5,"tenant_id":"t"}'))
    assert.equal("no_tenant", reason('{"request_id":"r"}'))
    assert.equal("no_tenant", reason('{"request_id":"r","tenant_id":""}', {}))
  end)

  it("matches by either id, the tenant, provider_id and provider_exclude", function()
    local function result(t)
      t.tenant = t.tenant or "t"
      return t
    end
    local s = { tenant = "t", request_id = "r1", once = false }
    assert.is_true(streams.result_matches(s, result({ request_id = "r1" })))
    assert.is_false(streams.result_matches(s, result({ request_id = "r2" })))
    assert.is_false(streams.result_matches(s, result({ request_id = "r1", tenant = "u" })))
    assert.is_false(streams.result_matches(s, result({ assignment_id = "r1" })))
    local a = { tenant = "t", assignment_id = "a1", request_id = "r1", provider_id = "p1" }
    assert.is_true(streams.result_matches(a, result({ assignment_id = "a1", provider = "p1" })))
    assert.is_true(streams.result_matches(a, result({ request_id = "r1", provider = "p1" })))
    assert.is_false(streams.result_matches(a, result({ assignment_id = "a1", provider = "p2" })))
    assert.is_false(streams.result_matches(a, result({ assignment_id = "a1" })))
    local x = { tenant = "t", request_id = "r1", exclude = { bad = true } }
    assert.is_true(streams.result_matches(x, result({ request_id = "r1", provider = "good" })))
    assert.is_true(streams.result_matches(x, result({ request_id = "r1" })))
    assert.is_false(streams.result_matches(x, result({ request_id = "r1", provider = "bad" })))
  end)
end)

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

  describe("publish_decision", function()
    local stub = require("ngx_stub")
    local config = require("beamline.config")
    local connection = require("beamline.nats.connection")
    local cjson = require("cjson")
    local orig, sent

    before_each(function()
      stub.install({ var = {}, now = 1700000000.123 })
      config.set({ streams = { messages_enabled = true, events_subject_prefix = "beamline.gateway.v1.events" } })
      orig = connection.publish_parts
      sent = {}
      connection.publish_parts = function(subject, headers, parts, np, plen)
        local data = table.concat(parts, "", 1, np)
        sent[#sent + 1] = { subject = subject, headers = { unpack(headers) }, data = data, plen = plen }
        return true
      end
    end)
    after_each(function()
      connection.publish_parts = orig
      stub.uninstall()
    end)

    it("publishes the event's JSON as parts, with its byte length", function()
      streams.publish_decision("decide", "a.b", "r-1", nil, "4bf92f3577b34da6a3ce929d0e0e4736", '{"ok":true,"decision":{"x":1}}')
      assert.equal(1, #sent)
      local e = sent[1]
      assert.equal("beamline.gateway.v1.events.a%2Eb", e.subject)
      assert.same({ "request_id", "r-1", "tenant_id", "a.b" }, e.headers)
      assert.equal(
        '{"tenant_id":"a.b","request_id":"r-1","message_id":null,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",'
          .. '"route":"decide","ts":1700000000123,"response":{"ok":true,"decision":{"x":1}}}',
        e.data
      )
      assert.equal(#e.data, e.plen)
    end)

    it("escapes ids that need it and puts a multi-line response on one line", function()
      streams.publish_decision("messages", "t", 'r"1\\', 'm"2', "t1", '{"ok":true,\n"d":[1, 2]}')
      local e = sent[1]
      assert.equal(#e.data, e.plen)
      assert.is_nil(e.data:find("\n", 1, true))
      local v = cjson.decode(e.data)
      assert.equal('r"1\\', v.request_id)
      assert.equal('m"2', v.message_id)
      assert.equal("messages", v.route)
      assert.equal(true, v.response.ok)
      assert.same({ 1, 2 }, v.response.d)
    end)
  end)
end)

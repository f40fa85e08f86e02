-- beamline.tracing: the pure parts (endpoint parsing, the trace-id ratio sampler, the OTLP JSON
-- of a request's spans). The export itself runs against a real receiver in spec/e2e/tracing.test.js.
local cjson = require("cjson")
local tracing = require("beamline.tracing")

describe("beamline.tracing", function()
  it("parses http:// endpoints into host, port and path", function()
    assert.same({ "127.0.0.1", 4318, "/v1/traces" }, { tracing.parse_endpoint("http://127.0.0.1:4318/v1/traces") })
    assert.same({ "collector.internal", 80, "/" }, { tracing.parse_endpoint("http://collector.internal") })
    assert.same({ "::1", 4318, "/x/v1/traces" }, { tracing.parse_endpoint("http://[::1]:4318/x/v1/traces") })
    assert.is_nil((tracing.parse_endpoint("https://127.0.0.1:4318/v1/traces")))
  end)

  it("samples by the trace id's low bits: ratio 0 none, 1 all, 0.5 about half, always the same answer", function()
    local zero, one, half = tracing.ratio_threshold(0), tracing.ratio_threshold(1), tracing.ratio_threshold(0.5)
    assert.is_false(tracing.ratio_sampled("ffffffffffffffffffffffffffffffff", zero))
    assert.is_false(tracing.ratio_sampled("00000000000000000000000000000001", zero))
    assert.is_true(tracing.ratio_sampled("ffffffffffffffffffffffffffffffff", one))
    assert.is_true(tracing.ratio_sampled("0000000000000000000fffffffffffff", one))
    -- The low 52 bits decide: below half of 2^52 is kept.
    assert.is_true(tracing.ratio_sampled("fffffffffffffffffff7ffffffffffff", half))
    assert.is_false(tracing.ratio_sampled("00000000000000000008000000000000", half))
    local kept = 0
    math.randomseed(7)
    for _ = 1, 4000 do
      local id = string.format("%08x%08x%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff),
        math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
      local a = tracing.ratio_sampled(id, half)
      assert.equal(a, tracing.ratio_sampled(id, half))
      if a then kept = kept + 1 end
    end
    assert.is_true(kept > 1800 and kept < 2200, "kept " .. kept)
  end)

  local function attrs_of(span)
    local attrs = {}
    for _, a in ipairs(span.attributes) do attrs[a.key] = a.value end
    return attrs
  end

  local function encode(t)
    local out = {}
    local n = tracing.encode_record(t, out, 1)
    return cjson.decode("[" .. table.concat(out, "", 1, n - 1) .. "]")
  end

  it("encodes a request's server and client spans as OTLP JSON (hex ids, nanosecond strings, kinds, error status)", function()
    local spans = encode({
      trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", parent_id = "00f067aa0ba902b7", span_id = "1111111111111111",
      sampled = true, client_id = "2222222222222222", client_start = 1700000000.125, client_end = 1700000000.127,
      subject = "beamline.router.v1.decide", outcome = "timeout",
      n = 2, start = 1700000000.123, ["end"] = 1700000005.2,
      method = "POST", route = "/api/v1/routes/decide", path = "/api/v1/routes/decide", status = 504,
      tenant = "acme", request_id = "r-\"1\"\\",
    })
    assert.equal(2, #spans)
    local server, client = spans[1], spans[2]
    assert.equal("POST /api/v1/routes/decide", server.name)
    assert.equal("4bf92f3577b34da6a3ce929d0e0e4736", server.traceId)
    assert.equal("1111111111111111", server.spanId)
    assert.equal("00f067aa0ba902b7", server.parentSpanId)
    assert.equal(2, server.kind)
    assert.equal("1700000000123000000", server.startTimeUnixNano)
    assert.equal("1700000005200000000", server.endTimeUnixNano)
    assert.same({ code = 2, message = "HTTP 504" }, server.status)
    local attrs = attrs_of(server)
    assert.same({ intValue = 504 }, attrs["http.response.status_code"])
    assert.same({ stringValue = "r-\"1\"\\" }, attrs["beamline.request_id"])
    assert.same({ stringValue = "acme" }, attrs["beamline.tenant_id"])
    assert.same({ stringValue = "/api/v1/routes/decide" }, attrs["url.path"])
    assert.same({ stringValue = "POST" }, attrs["http.request.method"])
    assert.same({ stringValue = "504" }, attrs["error.type"])
    assert.equal("4bf92f3577b34da6a3ce929d0e0e4736", client.traceId)
    assert.equal("1111111111111111", client.parentSpanId)
    assert.equal("2222222222222222", client.spanId)
    assert.equal(3, client.kind)
    assert.equal("send beamline.router.v1.decide", client.name)
    assert.equal("1700000000125000000", client.startTimeUnixNano)
    assert.same({ code = 2, message = "timeout" }, client.status)
    local cattrs = attrs_of(client)
    assert.same({ stringValue = "beamline.router.v1.decide" }, cattrs["messaging.destination.name"])
    assert.same({ stringValue = "nats" }, cattrs["messaging.system"])
    assert.same({ stringValue = "timeout" }, cattrs["error.type"])
  end)

  it("a request without a Router call is one span; no status unless 5xx, no parent without one; odd paths are escaped", function()
    local spans = encode({
      trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", span_id = "1111111111111111", sampled = true,
      n = 1, start = 1, ["end"] = 2, method = "GET", route = "/api/v1/routes/decide/{id}",
      path = "/api/v1/routes/decide/a\"b\1\255", status = 404, tenant = "", request_id = "",
    })
    assert.equal(1, #spans)
    local s = spans[1]
    assert.is_nil(s.parentSpanId)
    assert.is_nil(s.status)
    local attrs = attrs_of(s)
    assert.is_nil(attrs["beamline.tenant_id"])
    assert.is_nil(attrs["beamline.request_id"])
    assert.same({ stringValue = "/api/v1/routes/decide/a\"b%01%FF" }, attrs["url.path"])
  end)
end)

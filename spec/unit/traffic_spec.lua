-- beamline.traffic: the traffic switch's pure parts — tenant from a legacy body, the shadow
-- comparison (volatile keys ignored), parsing the mirrored answer, the split by share.
local stub = require("ngx_stub")
local traffic = require("beamline.traffic")

local IGNORE = { request_id = true, trace_id = true, message_id = true, timestamp = true }

local function migration(share, shadow)
  return {
    enabled = true, legacy_url = "http://127.0.0.1:9", share_percent = share, allow_override = true,
    legacy_timeout_ms = 1000, legacy_keepalive = 8,
    shadow = { enabled = shadow or false, direction = "other", sample_percent = 100, max_concurrency = 4,
      max_body_bytes = 65536, timeout_ms = 1000, ignore_fields = { "request_id", "trace_id" } },
  }
end

describe("beamline.traffic", function()
  after_each(function() stub.uninstall() end)

  it("takes the tenant of a legacy Nest body, else a top-level tenant_id, else empty", function()
    assert.equal("acme", traffic.tenant_from_body('{"message":{"tenant_id":"acme","message_id":"m"}}'))
    assert.equal("acme", traffic.tenant_from_body('{"version":"1","tenant_id":"acme"}'))
    assert.equal("n", traffic.tenant_from_body('{"tenant_id":"top","message":{"tenant_id":"n"}}'))
    assert.equal("", traffic.tenant_from_body('{"message":{"tenant_id":5}}'))
    assert.equal("", traffic.tenant_from_body('{"version":"1"}'))
    assert.equal("", traffic.tenant_from_body('not json tenant_id'))
    assert.equal("", traffic.tenant_from_body('["tenant_id"]'))
  end)

  it("compares status and JSON bodies, ignoring volatile keys at any depth", function()
    local a = '{"ok":true,"decision":{"p":1,"m":{"x":[1,2]}},"context":{"request_id":"a","trace_id":"1"}}'
    local b = '{"context":{"trace_id":"2","request_id":"b"},"decision":{"m":{"x":[1,2]},"p":1},"ok":true}'
    assert.same({ true }, { (traffic.compare(200, a, 200, b, IGNORE)) })
    local same, where = traffic.compare(200, a, 201, a, IGNORE)
    assert.is_false(same)
    assert.equal("status", where)
    same, where = traffic.compare(200, '{"decision":{"m":{"x":[1,3]}}}', 200, '{"decision":{"m":{"x":[1,2]}}}', IGNORE)
    assert.is_false(same)
    assert.equal("decision.m.x[1]", where)
    same, where = traffic.compare(400, '{"ok":false,"error":{"code":"invalid_request"}}', 400, '{"code":"BAD_REQUEST","message":"x","timestamp":"t","path":"/"}', IGNORE)
    assert.is_false(same)
    assert.truthy(where == "ok" or where == "error" or where == "code" or where == "message" or where == "path")
    -- a key only one side has
    same, where = traffic.compare(200, '{"a":1}', 200, '{"a":1,"b":2}', IGNORE)
    assert.is_false(same)
    assert.equal("b", where)
    -- not JSON: byte equality
    assert.is_true((traffic.compare(200, "plain", 200, "plain", IGNORE)))
    same, where = traffic.compare(200, "plain", 200, "other", IGNORE)
    assert.is_false(same)
    assert.equal("body", where)
  end)

  it("parses a raw HTTP answer", function()
    local status, body = traffic.parse_response("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n{\"a\":1}")
    assert.equal(201, status)
    assert.equal('{"a":1}', body)
    assert.is_nil((traffic.parse_response("garbage")))
    assert.is_nil((traffic.parse_response("HTTP/1.1 200 OK\r\nX: y")))
  end)

  it("buckets tenants with CRC-32 mod 100 and splits by share: new below the share", function()
    stub.install({ headers = {}, var = {} })
    -- a stand-in CRC: the tenant's numeric suffix, so the buckets are known
    ngx.crc32_short = function(s) return tonumber(string.match(s, "%d+$")) or 0 end
    ngx.exec = function(uri) ngx.var.exec_to = uri; error(stub.EXIT, 0) end
    ngx.shared = {}
    traffic.configure(migration(30), 1048576)
    local served = {}
    local function run(tenant, override, client, admit)
      ngx.var = { http_x_tenant_id = tenant, http_x_beamline_gateway = override, beamline_override_client = client or "1" }
      ngx.header["X-Beamline-Gateway"] = nil
      served.new = false
      stub.run(function() traffic.dispatch("decide", function() served.new = true end, admit) end)
      return served.new and "new" or ngx.var.exec_to
    end
    assert.same({ "new" }, { run("t-29") })
    assert.same({ "@beamline_legacy" }, { run("t-30") })
    assert.same({ "@beamline_legacy" }, { run("t-130") })
    assert.same({ "new" }, { run("t-129") })
    -- the override header forces a side, case-insensitively
    assert.same({ "new" }, { run("t-99", "NEW") })
    assert.same({ "@beamline_legacy" }, { run("t-1", "legacy") })
    assert.same({ "new" }, { run("t-1", "bogus") })
    -- a client outside migration.override_from: the share decides
    assert.same({ "@beamline_legacy" }, { run("t-30", "new", "0") })
    -- auth on: the front door runs first, for both sides; a request it does not admit as an API
    -- call (405, preflight) stays here whatever the header says
    local admitted = {}
    local function admit(route) admitted[#admitted + 1] = route; return "t-10" end
    assert.same({ "@beamline_legacy" }, { run("t-30", nil, "1", admit) })
    assert.same({ "new" }, { run("t-31", "new", "1", admit) })
    assert.same({ "decide", "decide" }, admitted)
    assert.same({ "new" }, { run("t-30", "legacy", "1", function() return nil end) })
    -- no tenant in the request: split by the API key's tenant
    assert.same({ "new" }, { run(nil, nil, "1", admit) })
    -- allow_override off (the default): the header is ignored
    local m = migration(30)
    m.allow_override = false
    traffic.configure(m, 1048576)
    assert.same({ "@beamline_legacy" }, { run("t-30", "new") })
    traffic.configure(migration(0), 1048576)
    assert.same({ "@beamline_legacy" }, { run("t-0") })
    traffic.configure(migration(100), 1048576)
    assert.same({ "new" }, { run("t-99") })
    assert.is_false(traffic.shadow_enabled())
  end)

  it("marks requests for the shadow by direction: other, legacy (what new answered), new (what legacy answered)", function()
    stub.install({ headers = {}, var = {} })
    ngx.crc32_short = function(s) return tonumber(string.match(s, "%d+$")) or 0 end
    ngx.exec = function() error(stub.EXIT, 0) end
    ngx.shared = {}
    local function marked(direction, tenant)
      local m = migration(50, true)
      m.shadow.direction = direction
      traffic.configure(m, 1048576)
      ngx.var = { http_x_tenant_id = tenant }
      stub.run(function() traffic.dispatch("decide", function() end) end)
      return { ngx.var.beamline_side, ngx.var.beamline_shadow }
    end
    assert.same({ "new", "1" }, marked("other", "t-10"))
    assert.is_true(traffic.shadow_enabled())
    assert.same({ "legacy", "1" }, marked("other", "t-60"))
    assert.same({ "new", "1" }, marked("legacy", "t-10"))
    assert.same({ "legacy" }, marked("legacy", "t-60"))
    assert.same({ "new" }, marked("new", "t-10"))
    assert.same({ "legacy", "1" }, marked("new", "t-60"))
  end)
end)

-- beamline.idempotency: entry encoding and the claim / replay / conflict / release cycle
-- (fake shared dict; the real stack is in spec/e2e/idempotency.test.js).
local stub = require("ngx_stub")
local fake = require("fake_shdict")
local config = require("beamline.config")
local crypto = require("beamline.crypto")

describe("beamline.idempotency", function()
  local idem, dict

  before_each(function()
    stub.install({ var = {} })
    dict = fake.new()
    ngx.shared = { beamline_idempotency = dict }
    config.set({
      idempotency = { enabled = true, ttl_seconds = 86400, size_mb = 1, max_keys_per_tenant = 10000, in_flight_grace_seconds = 60 },
      state = { backend = "local" },
      decision_cache = { ttl_seconds = 300, max_per_tenant = 10000 },
    })
    package.loaded["beamline.idempotency"] = nil
    idem = require("beamline.idempotency")
  end)
  after_each(function() stub.uninstall() end)

  it("round-trips done entries, ids with any characters included", function()
    local h = crypto.sha256_hex("body")
    local e = idem.encode_done(h, 200, "req|1 x", "trace", '{"ok":true}')
    assert.same({ "D", h, 200, "req|1 x", "trace", '{"ok":true}' }, { idem.decode(e) })
    assert.same({ "D", h, 409, "", "", "" }, { idem.decode(idem.encode_done(h, 409, "", "", "")) })
    assert.same({ "P", h, 0, "", "", "" }, { idem.decode("P" .. h) })
    assert.is_nil((idem.decode("X" .. h)))
    assert.is_nil((idem.decode("D" .. h .. "200")))
    assert.is_nil((idem.decode("D" .. h .. "200099000ab")))
  end)

  it("claims, reports in-flight and different bodies, then replays after completion", function()
    assert.equal("run", (idem.begin("t1", "decide", "k", "body", 5000)))
    assert.equal("1", ngx.var.beamline_idem_pending)
    assert.equal(65, dict:ttl("t1|decide|k")) -- in flight: Router timeout (5 s) + 60 s
    assert.equal("in_flight", (idem.begin("t1", "decide", "k", "body", 5000)))
    assert.equal("mismatch", (idem.begin("t1", "decide", "k", "other", 5000)))
    idem.complete(200, '{"ok":true}', "r1", "t1x")
    assert.equal("", ngx.var.beamline_idem_pending)
    assert.same({ "replay", 200, '{"ok":true}', "r1", "t1x" }, { idem.begin("t1", "decide", "k", "body", 5000) })
    assert.equal("mismatch", (idem.begin("t1", "decide", "k", "other", 5000)))
    assert.equal(86400, dict:ttl("t1|decide|k"))
  end)

  it("the local in-flight marker lives the Router timeout plus in_flight_grace_seconds", function()
    config.set({
      idempotency = { enabled = true, ttl_seconds = 86400, size_mb = 1, max_keys_per_tenant = 10000, in_flight_grace_seconds = 7 },
      state = { backend = "local" },
      decision_cache = { ttl_seconds = 300, max_per_tenant = 10000 },
    })
    assert.equal("run", (idem.begin("t1", "decide", "k", "body", 2500)))
    assert.equal(10, dict:ttl("t1|decide|k")) -- ceil(2.5 s) + 7 s
  end)

  it("scopes keys by tenant and route", function()
    assert.equal("run", (idem.begin("t1", "decide", "k", "b", 5000)))
    ngx.ctx = {}
    assert.equal("run", (idem.begin("t2", "decide", "k", "b", 5000)))
    ngx.ctx = {}
    assert.equal("run", (idem.begin("t1", "messages", "k", "b", 5000)))
  end)

  it("releases the key after a 5xx and when the request never completed", function()
    idem.begin("t1", "decide", "k", "body", 5000)
    idem.complete(504, "{}", "r", "t")
    assert.is_nil((dict:get("t1|decide|k")))
    ngx.ctx = {}
    assert.equal("run", (idem.begin("t1", "decide", "k", "body", 5000)))
    idem.release_unfinished()
    assert.is_nil((dict:get("t1|decide|k")))
    -- complete without a claim is a no-op
    ngx.ctx = {}
    idem.complete(200, "{}", "r", "t")
    assert.is_nil((dict:get("t1|decide|k")))
  end)

  it("stores 4xx responses too", function()
    idem.begin("t1", "decide", "k", "body", 5000)
    idem.complete(429, "{}", "r", "t")
    ngx.ctx = {}
    assert.equal("replay", (idem.begin("t1", "decide", "k", "body", 5000)))
  end)

  it("keeps at most max_keys_per_tenant records per tenant: its own oldest go first, never another's", function()
    config.set({
      idempotency = { enabled = true, ttl_seconds = 86400, size_mb = 1, max_keys_per_tenant = 3, in_flight_grace_seconds = 60 },
      state = { backend = "local" },
      decision_cache = { ttl_seconds = 300, max_per_tenant = 10000 },
    })
    local function store(tenant, key)
      ngx.ctx = {}
      assert.equal("run", (idem.begin(tenant, "decide", key, "body", 5000)))
      idem.complete(200, '{"ok":true}', "r-" .. key, "t")
    end
    store("b", "kb")
    for i = 1, 5 do store("a", "k" .. i) end
    local function state(tenant, key)
      ngx.ctx = {}
      return (idem.begin(tenant, "decide", key, "body", 5000))
    end
    assert.equal("replay", state("b", "kb"))
    assert.equal("replay", state("a", "k5"))
    assert.equal("replay", state("a", "k3"))
    assert.equal("run", state("a", "k1")) -- evicted by its own tenant's newer keys
  end)

  it("a full dict refuses a new key (full) instead of evicting anyone", function()
    dict = fake.new(nil, 4)
    ngx.shared = { beamline_idempotency = dict }
    ngx.ctx = {}
    assert.equal("run", (idem.begin("b", "decide", "kb", "body", 5000)))
    idem.complete(200, '{"ok":true}', "r", "t")
    local states = {}
    for i = 1, 4 do
      ngx.ctx = {}
      states[i] = (idem.begin("a", "decide", "k" .. i, "body", 5000))
    end
    assert.same({ "run", "full", "full", "full" }, states)
    ngx.ctx = {}
    assert.equal("replay", (idem.begin("b", "decide", "kb", "body", 5000)))
  end)
end)

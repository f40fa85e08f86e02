-- beamline.tenant_ring: the per-tenant ring and the rate of reclaim (flush_expired) on a full dict.
local stub = require("ngx_stub")
local fake = require("fake_shdict")

describe("beamline.tenant_ring", function()
  local ring, now

  before_each(function()
    now = 1700000000.5
    stub.install({ var = {} })
    ngx.now = function() return now end
    package.loaded["beamline.tenant_ring"] = nil
    ring = require("beamline.tenant_ring")
  end)
  after_each(function() stub.uninstall() end)

  local function counting(d)
    local calls = 0
    local flush = d.flush_expired
    d.flush_expired = function(self, n)
      calls = calls + 1
      return flush(self, n)
    end
    return function() return calls end
  end

  it("flushes a full dict at most once per second per dict and worker", function()
    local clock = function() return math.floor(now) end
    local a, b = fake.new(clock, 2), fake.new(clock, 2)
    local calls_a, calls_b = counting(a), counting(b)
    a:set("x", 1, 1) -- expires at now + 1
    assert.is_false(ring.reclaim(a)) -- nothing expired yet
    assert.is_false(ring.reclaim(a)) -- same second: no second walk of the dict
    assert.equal(1, calls_a())
    assert.is_false(ring.reclaim(b)) -- another dict has its own clock
    assert.equal(1, calls_b())
    now = now + 0.9
    assert.is_false(ring.reclaim(a))
    assert.equal(1, calls_a())
    now = now + 0.2 -- 1.1 s after the first flush; "x" has expired
    assert.is_true(ring.reclaim(a))
    assert.equal(2, calls_a())
    assert.is_nil((a:get("x")))
  end)

  it("flushes again when the clock went backwards", function()
    local d = fake.new(nil, 2)
    local calls = counting(d)
    ring.reclaim(d)
    now = now - 5
    ring.reclaim(d)
    assert.equal(2, calls())
  end)

  it("keeps at most max records per tenant, its own oldest going first", function()
    local d = fake.new()
    for i = 1, 5 do
      d:set("t|" .. i, "v", 0)
      ring.track(d, "t", "t|" .. i, 3, 0)
    end
    assert.is_nil((d:get("t|1")))
    assert.is_nil((d:get("t|2")))
    assert.equal("v", (d:get("t|3")))
    assert.equal("v", (d:get("t|5")))
  end)

  it("evict_oldest deletes the tenant's own oldest live record, never another tenant's", function()
    local d = fake.new(nil, 1000)
    for i = 1, 4 do
      d:set("a|" .. i, "v", 0)
      ring.track(d, "a", "a|" .. i, 10, 0)
    end
    d:set("b|1", "v", 0)
    ring.track(d, "b", "b|1", 10, 0)
    assert.is_false(ring.evict_oldest(d, "c", 10)) -- a tenant with no records has none to give
    assert.is_true(ring.evict_oldest(d, "a", 10))
    assert.is_nil((d:get("a|1")))
    assert.equal("v", (d:get("a|2")))
    assert.is_true(ring.evict_oldest(d, "a", 10))
    assert.is_nil((d:get("a|2")))
    d:delete("a|3") -- gone already (expired): skipped, the next live one goes
    assert.is_true(ring.evict_oldest(d, "a", 10))
    assert.is_nil((d:get("a|4")))
    assert.is_false(ring.evict_oldest(d, "a", 10)) -- nothing of a's left
    assert.equal("v", (d:get("b|1")))
  end)

  it("evict_oldest makes room in a full dict for the same tenant's next record", function()
    local d = fake.new(nil, 8)
    local stored = 0
    for i = 1, 20 do
      local k = "a|" .. i
      local ok, err = d:safe_set(k, "v", 0)
      if not ok and err == "no memory" and ring.evict_oldest(d, "a", 100) then ok = d:safe_set(k, "v", 0) end
      if ok then
        stored = stored + 1
        ring.track(d, "a", k, 100, 0)
      end
    end
    assert.equal("v", (d:get("a|20"))) -- the newest is always kept
    assert.is_nil((d:get("a|1")))
    assert.is_true(stored >= 15)
  end)
end)


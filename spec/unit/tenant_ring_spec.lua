-- beamline.tenant_ring.reclaim: flush_expired at most once per second per worker and dict
-- (issue 15: on a full dict of live entries every call walks the whole LRU queue).
local stub = require("ngx_stub")
local fake = require("fake_shdict")

describe("beamline.tenant_ring.reclaim", function()
  local ring, now, clock

  before_each(function()
    now = 1700000000.0
    clock = 1700000000
    stub.install({})
    ngx.now = function() return now end
    package.loaded["beamline.tenant_ring"] = nil
    ring = require("beamline.tenant_ring")
  end)

  after_each(function() stub.uninstall() end)

  local function counted(d)
    d.flushes = 0
    local flush = d.flush_expired
    d.flush_expired = function(self, n)
      self.flushes = self.flushes + 1
      return flush(self, n)
    end
    return d
  end

  it("flushes a full dict at most once per second, and says whether anything was freed", function()
    local d = counted(fake.new(function() return clock end, 2))
    assert.is_true(d:safe_set("a", 1, 10))
    assert.is_true(d:safe_set("b", 1, 100))
    -- Full, nothing expired: one walk, nothing freed.
    assert.is_false(ring.reclaim(d))
    assert.equal(1, d.flushes)
    -- Within the same second: no walk at all (the store just fails).
    now = now + 0.5
    for _ = 1, 100 do assert.is_false(ring.reclaim(d)) end
    assert.equal(1, d.flushes)
    -- A second later, with an entry expired meanwhile: one walk that frees it.
    now = now + 0.6
    clock = clock + 20
    assert.is_true(ring.reclaim(d))
    assert.equal(2, d.flushes)
    assert.is_true(d:safe_set("c", 1, 10))
  end)

  it("keeps one timestamp per dict", function()
    local d1 = counted(fake.new(function() return clock end, 1))
    local d2 = counted(fake.new(function() return clock end, 1))
    ring.reclaim(d1)
    ring.reclaim(d2)
    ring.reclaim(d1)
    ring.reclaim(d2)
    assert.equal(1, d1.flushes)
    assert.equal(1, d2.flushes)
  end)
end)

-- beamline.rate_limit: epoch-aligned fixed windows, header values, and counting in the shared
-- dict (a fake one here; the real one is exercised by spec/e2e/limits.test.js).
local stub = require("ngx_stub")
local fake = require("fake_shdict")
local config = require("beamline.config")

local function cfg(limit, window)
  return {
    routes = {
      decide = { rate_limit = { limit = limit, window_seconds = window } },
      messages = { rate_limit = { limit = 100, window_seconds = 60 } },
    },
    rate_limit = { backend = "shared_dict" },
    state = { backend = "local", redis = { on_error = "fail_open" } },
  }
end

describe("beamline.rate_limit", function()
  local rl, now, dict, mdict

  before_each(function()
    now = 1700000000
    stub.install({})
    dict = fake.new(function() return now end)
    mdict = fake.new(function() return now end)
    ngx.shared = { beamline_ratelimit = dict, beamline_metrics = mdict }
    ngx.time = function() return now end
    package.loaded["beamline.rate_limit"] = nil
    package.loaded["beamline.metrics"] = nil
    rl = require("beamline.rate_limit")
  end)

  after_each(function() stub.uninstall() end)

  it("aligns windows to the epoch", function()
    assert.equal(1699999980, rl.window_start(1700000000, 60))
    assert.equal(1700000000, rl.window_start(1700000000, 10))
    assert.equal(1700000000, rl.window_start(1700000009.9, 10))
    assert.equal(1700000010, rl.window_start(1700000010, 10))
    assert.equal(0, rl.window_start(59, 60))
    assert.equal(86400, rl.window_start(86400 + 3599, 86400))
  end)

  it("computes remaining and retry-after", function()
    assert.equal(49, rl.remaining(50, 1))
    assert.equal(0, rl.remaining(50, 50))
    assert.equal(0, rl.remaining(50, 51))
    assert.equal(20, rl.retry_after(1700000000, 1700000020))
    assert.equal(1, rl.retry_after(1700000019.5, 1700000020)) -- rounded up
    assert.equal(1, rl.retry_after(1700000020, 1700000020))   -- never 0
  end)

  it("keys hold route, tenant and window start", function()
    assert.equal("decide|t1|1700000000", rl.counter_key("decide", "t1", 1700000000))
  end)

  it("allows exactly `limit` requests per window, then 429 with the headers", function()
    config.set(cfg(3, 60))
    for i = 1, 3 do
      local outcome = rl.check("decide", "t1")
      assert.equal("allowed", outcome)
      assert.equal(3, stub.response_header("X-RateLimit-Limit"))
      assert.equal(3 - i, stub.response_header("X-RateLimit-Remaining"))
      assert.equal(1700000040, stub.response_header("X-RateLimit-Reset"))
    end
    local outcome, limit, window, retry = rl.check("decide", "t1")
    assert.equal("limited", outcome)
    assert.same({ 3, 60, 40 }, { limit, window, retry })
    assert.equal(0, stub.response_header("X-RateLimit-Remaining"))
    assert.equal(1, mdict.data['c|rl|decide'])
    -- the counter expires with the window
    assert.equal(60, dict:ttl("decide|t1|1699999980"))
  end)

  it("counts tenants and routes separately and starts over in the next window", function()
    config.set(cfg(1, 10))
    assert.equal("allowed", (rl.check("decide", "t1")))
    assert.equal("limited", (rl.check("decide", "t1")))
    assert.equal("allowed", (rl.check("decide", "t2")))
    assert.equal("allowed", (rl.check("messages", "t1")))
    now = now + 10
    assert.equal("allowed", (rl.check("decide", "t1")))
    assert.equal(1700000020, stub.response_header("X-RateLimit-Reset"))
  end)

  it("lets requests through when the dict is missing", function()
    ngx.shared = {}
    config.set(cfg(1, 10))
    assert.equal("allowed", (rl.check("decide", "t1")))
    assert.equal("allowed", (rl.check("decide", "t1")))
  end)
end)

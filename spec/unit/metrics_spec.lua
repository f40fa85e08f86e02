-- beamline.metrics: label normalisation, bucket choice, and the text format rendering.
local stub = require("ngx_stub")
local fake = require("fake_shdict")
local metrics = require("beamline.metrics")

local function lines(text)
  local out = {}
  for l in text:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

local function has(text, line)
  for _, l in ipairs(lines(text)) do if l == line then return true end end
  return false
end

describe("beamline.metrics", function()
  it("gives every family its own short id (the dict keys' family, shared by all modules)", function()
    local seen = {}
    for _, f in ipairs(metrics.FAMILIES) do
      assert.is_nil(seen[f.id], f.name .. " reuses id " .. f.id .. " of " .. tostring(seen[f.id]))
      seen[f.id] = f.name
    end
  end)

  after_each(function() stub.uninstall() end)

  it("normalises labels to a bounded set", function()
    assert.equal("POST", metrics.method_label("POST"))
    assert.equal("OTHER", metrics.method_label("BREW"))
    assert.equal("ok", metrics.code_label("ok"))
    assert.equal("validator_blocked", metrics.code_label("validator_blocked"))
    assert.equal("timeout", metrics.code_label("timeout"))
    assert.equal("other", metrics.code_label("made_up_by_router\"{"))
  end)

  it("picks the first bucket whose bound is >= the value", function()
    assert.equal(0, metrics.bucket_index(0))
    assert.equal(0, metrics.bucket_index(0.0005))
    assert.equal(1, metrics.bucket_index(0.0006))
    assert.equal(10, metrics.bucket_index(1))
    assert.equal(13, metrics.bucket_index(10))
    assert.equal(14, metrics.bucket_index(10.5)) -- +Inf
  end)

  it("formats values", function()
    assert.equal("0", metrics.format_value(0))
    assert.equal("42", metrics.format_value(42))
    assert.equal("0.25", metrics.format_value(0.25))
  end)

  it("renders the stream families: labelled gauges summed per label over workers, two-label counters", function()
    local e = {}
    e['g|ss|messages|0'] = 3
    e['g|ss|messages|1'] = 4
    e['g|ss|results|1'] = 2
    e['g|nb|0'] = 2
    e['g|nb|1'] = 1
    e['c|se|messages'] = 11
    e['c|sx|messages|slow_client'] = 1
    e['c|sx|results|invalid_result'] = 4
    local text = metrics.render(e)
    assert.is_true(has(text, "# TYPE gateway_sse_connections gauge"))
    assert.is_true(has(text, 'gateway_sse_connections{stream="messages"} 7'))
    assert.is_true(has(text, 'gateway_sse_connections{stream="results"} 2'))
    assert.is_true(has(text, "gateway_nats_subscriptions 3"))
    assert.is_true(has(text, 'gateway_sse_events_total{stream="messages"} 11'))
    assert.is_true(has(text, 'gateway_sse_dropped_total{stream="messages",reason="slow_client"} 1'))
    assert.is_true(has(text, 'gateway_sse_dropped_total{stream="results",reason="invalid_result"} 4'))
  end)

  it("renders counters, cumulative histograms and summed gauges in text format 0.0.4", function()
    local e = {}
    e['r|decide|POST|200'] = 3
    e['r|decide|POST|429'] = 1
    e['h|d|decide|0'] = 1
    e['h|d|decide|3'] = 2
    e['h|d|decide|14'] = 1
    e['h|d|decide|s'] = 12.5
    e['c|rr|ok'] = 5
    e['c|rl|messages'] = 2
    e['g|nu|0'] = 1
    e['g|nu|1'] = 1
    e['p|ns'] = 7
    e['unknown|key'] = 9
    e['h|zz|decide|0'] = 9
    local text = metrics.render(e)
    assert.equal("\n", text:sub(-1))
    assert.is_true(has(text, "# TYPE gateway_http_requests_total counter"))
    assert.is_true(has(text, 'gateway_http_requests_total{route="decide",method="POST",status="200"} 3'))
    assert.is_true(has(text, 'gateway_http_requests_total{route="decide",method="POST",status="429"} 1'))
    assert.is_true(has(text, "# TYPE gateway_http_request_duration_seconds histogram"))
    assert.is_true(has(text, 'gateway_http_request_duration_seconds_bucket{route="decide",le="0.0005"} 1'))
    assert.is_true(has(text, 'gateway_http_request_duration_seconds_bucket{route="decide",le="0.0025"} 1'))
    assert.is_true(has(text, 'gateway_http_request_duration_seconds_bucket{route="decide",le="0.005"} 3'))
    assert.is_true(has(text, 'gateway_http_request_duration_seconds_bucket{route="decide",le="10"} 3'))
    assert.is_true(has(text, 'gateway_http_request_duration_seconds_bucket{route="decide",le="+Inf"} 4'))
    assert.is_true(has(text, 'gateway_http_request_duration_seconds_sum{route="decide"} 12.5'))
    assert.is_true(has(text, 'gateway_http_request_duration_seconds_count{route="decide"} 4'))
    assert.is_true(has(text, "gateway_nats_connection_status 2"))
    assert.is_true(has(text, "gateway_nats_messages_sent_total 7"))
    assert.is_true(has(text, 'gateway_router_replies_total{code="ok"} 5'))
    assert.is_true(has(text, 'gateway_rate_limit_hits_total{route="messages"} 2'))
    for _, l in ipairs(lines(text)) do assert.not_equal(" 9", l:sub(-2)) end -- unknown keys are ignored
    -- unlabelled counters are always present
    assert.is_true(has(text, "gateway_nats_reconnects_total 0"))
    assert.is_true(has(text, "gateway_idempotency_replays_total 0"))
    -- every family has HELP and TYPE, each exactly once
    for _, f in ipairs(metrics.FAMILIES) do
      local n = 0
      for _, l in ipairs(lines(text)) do if l == "# TYPE " .. f.name .. " " .. f.type then n = n + 1 end end
      assert.equal(1, n, f.name)
    end
  end)

  it("records a request in the log phase with cached keys and no tenant label", function()
    stub.install({ method = "POST", var = { beamline_route = "decide" } })
    -- the Router fields come from ngx.ctx (beamline.log_fields), not from nginx variables
    ngx.ctx.beamline_router_time = 0.004
    ngx.ctx.beamline_router_code = "ok"
    local d = fake.new()
    ngx.shared = { beamline_metrics = d }
    ngx.status = 200
    ngx.req.start_time = function() return ngx.now() - 0.003 end
    package.loaded["beamline.metrics"] = nil
    local m = require("beamline.metrics")
    m.log_request()
    m.log_request()
    assert.equal(2, d.data['r|decide|POST|200'])
    assert.equal(2, d.data['h|d|decide|3'])
    assert.equal(2, d.data['h|R|decide|3'])
    assert.equal(2, d.data['c|rr|ok'])
    local text = m.render(d.data)
    assert.is_true(has(text, 'gateway_http_requests_total{route="decide",method="POST",status="200"} 2'))
    assert.is_true(has(text, 'gateway_router_request_duration_seconds_count{route="decide"} 2'))
    assert.is_true(rawequal(m.request_key("decide", "POST", 200), m.request_key("decide", "POST", 200)))
  end)
  it("counts and logs (once per 10 s) the updates a full dict refuses or evicts for (issue 18)", function()
    stub.install({ method = "POST", var = { beamline_route = "decide" } })
    local d = fake.new()
    -- A full dict: a new key fails with "no memory"; an existing one is kept by evicting others.
    local incr = d.incr
    function d:incr(k, n, init, init_ttl)
      if self.data[k] == nil then return nil, "no memory", false end
      local v = incr(self, k, n, init, init_ttl)
      return v, nil, true
    end
    ngx.shared = { beamline_metrics = d }
    ngx.status = 200
    ngx.req.start_time = function() return ngx.now() end
    package.loaded["beamline.metrics"] = nil
    local m = require("beamline.metrics")
    m.log_request() -- 3 refused updates: the count and the 2 histogram slots
    d.data["r|decide|POST|200"] = 5
    m.log_request() -- the count is evicting, the histogram slots are refused
    local full = 0
    for _, l in ipairs(stub.logs) do
      if l.msg:find("metrics dict beamline_metrics is full", 1, true) then full = full + 1 end
    end
    assert.equal(1, full) -- rate-limited: one line for all six
    d.set = function(self, k, v) self.data[k] = v; return true end
    package.loaded["beamline.nats.connection"].get_counters = function() return { sent = 0, received = 0, publish_failures = 0, reconnects = 0 } end
    m.flush_worker()
    local text = m.render(d.data)
    assert.is_true(has(text, "gateway_metrics_updates_lost_total 6"), text)
  end)

  it("/_metrics ring: bucket bounds grow by 2^(1/4), a duration falls in the bucket whose bound covers it", function()
    assert.equal(0, metrics.ui_bucket(0))
    assert.equal(0, metrics.ui_bucket(0.00005))
    for _, dur in ipairs({ 0.00006, 0.001, 0.0123, 0.3, 2.5, 30 }) do
      local i = metrics.ui_bucket(dur)
      assert.is_true(metrics.ui_bound(i) >= dur * (1 - 1e-9))
      assert.is_true(metrics.ui_bound(i - 1) < dur)
    end
    assert.equal(81, metrics.ui_bucket(1e9))
  end)

  it("/_metrics percentiles interpolate inside the bucket of the rank; 0 without data", function()
    local counts = {}
    for i = 1, 82 do counts[i] = 0 end
    assert.equal(0, metrics.ui_percentile(counts, 0, 0.5))
    -- 90 requests in the bucket of 1 ms, 10 in the bucket of 300 ms
    local fast, slow = metrics.ui_bucket(0.001), metrics.ui_bucket(0.3)
    counts[fast + 1] = 90
    counts[slow + 1] = 10
    local p50 = metrics.ui_percentile(counts, 100, 0.5)
    assert.is_true(p50 > metrics.ui_bound(fast - 1) * 1000 and p50 <= metrics.ui_bound(fast) * 1000)
    local p95 = metrics.ui_percentile(counts, 100, 0.95)
    assert.is_true(p95 > 300 / 1.19 and p95 < 300 * 1.19)
  end)
end)

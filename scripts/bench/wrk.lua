-- wrk script of scripts/bench.js.
--   wrk -t T -c C -d D -s scripts/bench/wrk.lua URL -- METHOD BODY_FILE LIMIT [HEADER=VALUE ...]
-- METHOD: GET or POST; BODY_FILE: file with the POST body ("-" for none); LIMIT: requests per
-- thread after which the thread stops (0 = run for the whole duration). Extra arguments are
-- request headers. The header argument `X-Tenant-ID=@N` (N > 0) spreads the requests over N
-- tenants: each thread sends X-Tenant-ID bench-0 … bench-<N-1> round robin (thread t starting
-- at t * N / 2), so every tenant gets the same share; `X-Tenant-ID=@N+K` starts each thread K
-- tenants further (a run in chunks continues where the previous chunk stopped). The request is
-- pre-formatted around the tenant id, so the per-request work is one concatenation.
-- Every response's status is counted; done() prints one line "BENCH_RESULT {json}" with the
-- totals, the status counts of all threads (anything not 2xx voids the run), wrk's socket
-- errors and the latency percentiles in microseconds.
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads - 1)
end

function init(args)
  local method = args[1] or "GET"
  local body_file = args[2] or "-"
  limit = tonumber(args[3] or "0") or 0
  count = 0
  non2xx = 0
  statuses = {}
  local headers = {}
  for i = 4, #args do
    local k, v = args[i]:match("^([^=]+)=(.*)$")
    if k then headers[k] = v end
  end
  local body = nil
  if body_file ~= "-" then
    local f = assert(io.open(body_file, "rb"))
    body = f:read("*a")
    f:close()
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
  end
  local spread, offset = (headers["X-Tenant-ID"] or ""):match("^@(%d+)%+?(%d*)$")
  tenants = spread and tonumber(spread) or 0
  if tenants > 0 then
    local mark = "@@BENCH_TENANT@@"
    headers["X-Tenant-ID"] = mark
    local text = wrk.format(method, nil, headers, body)
    local i = assert(text:find(mark, 1, true))
    req_head, req_tail = text:sub(1, i - 1), text:sub(i + #mark)
    seq = (tonumber(offset) or 0) + math.floor((tid or 0) * tenants / 2)
  else
    -- One pre-formatted request: no per-request work in the client.
    req = wrk.format(method, nil, headers, body)
  end
end

function request()
  if tenants > 0 then
    local t = seq % tenants
    seq = seq + 1
    return req_head .. "bench-" .. t .. req_tail
  end
  return req
end

function response(status, headers, body)
  count = count + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    local k = tostring(status)
    statuses[k] = (statuses[k] or 0) + 1
  end
  if limit > 0 and count == limit then
    -- scripts/bench.js sends wrk SIGINT once every thread has said this (wrk's main thread
    -- otherwise sleeps until the end of -d).
    io.stderr:write("BENCH_LIMIT\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
end

local function esc(s)
  return (tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end))
end

function done(summary, latency, requests)
  local n, bad = 0, 0
  local by_status = {}
  for _, t in ipairs(threads) do
    n = n + (t:get("count") or 0)
    bad = bad + (t:get("non2xx") or 0)
    local st = t:get("statuses") or {}
    for k, v in pairs(st) do by_status[k] = (by_status[k] or 0) + v end
  end
  local st = {}
  for k, v in pairs(by_status) do st[#st + 1] = string.format('"%s":%d', esc(k), v) end
  local e = summary.errors
  local pct = {}
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    pct[#pct + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"responses_counted":%d,"duration_us":%d,"bytes":%d,' ..
    '"non2xx":%d,"statuses":{%s},"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"wrk_status_errors":%d,"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,"p":{%s}}}\n',
    summary.requests, n, summary.duration, summary.bytes,
    bad, table.concat(st, ","), e.connect, e.read, e.write, e.timeout,
    e.status, latency.min, latency.mean, latency.max, latency.stdev, table.concat(pct, ",")))
end

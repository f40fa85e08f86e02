-- An in-memory stand-in for an ngx.shared.DICT (lua_shared_dict) for busted specs: get, set,
-- add, delete, incr (with init and init_ttl), ttl, get_keys, with expiry against a clock
-- function (default os.time), safe_add / safe_set / flush_expired. Values are stored as is; no
-- eviction. `max_entries` (optional): past it, safe_add / safe_set fail with "no memory".
local M = {}

function M.new(clock, max_entries)
  clock = clock or os.time
  local data, exp = {}, {}
  local d = {}
  local function live(k)
    if exp[k] and exp[k] <= clock() then data[k], exp[k] = nil, nil end
    return data[k]
  end
  function d:get(k) return live(k), nil end
  function d:set(k, v, ttl)
    data[k] = v
    exp[k] = (ttl and ttl > 0) and clock() + ttl or nil
    return true, nil, false
  end
  function d:add(k, v, ttl)
    if live(k) ~= nil then return false, "exists", false end
    return self:set(k, v, ttl)
  end
  local function count()
    local n = 0
    for k in pairs(data) do if live(k) ~= nil then n = n + 1 end end
    return n
  end
  function d:safe_set(k, v, ttl)
    if max_entries and live(k) == nil and count() >= max_entries then return false, "no memory" end
    local ok, err = self:set(k, v, ttl)
    return ok, err
  end
  function d:safe_add(k, v, ttl)
    if live(k) ~= nil then return false, "exists" end
    return self:safe_set(k, v, ttl)
  end
  function d:flush_expired()
    local n = 0
    for k in pairs(data) do
      if exp[k] and exp[k] <= clock() then data[k], exp[k], n = nil, nil, n + 1 end
    end
    return n
  end
  function d:delete(k) data[k], exp[k] = nil, nil end
  function d:incr(k, n, init, init_ttl)
    local v = live(k)
    if v == nil then
      if init == nil then return nil, "not found", false end
      self:set(k, init + n, init_ttl)
      return init + n, nil, false
    end
    if type(v) ~= "number" then return nil, "not a number", false end
    data[k] = v + n
    return data[k], nil, false
  end
  function d:ttl(k)
    if live(k) == nil then return nil, "not found" end
    return exp[k] and (exp[k] - clock()) or 0
  end
  function d:get_keys()
    local out = {}
    for k in pairs(data) do if live(k) ~= nil then out[#out + 1] = k end end
    return out
  end
  d.data = data
  return d
end

return M

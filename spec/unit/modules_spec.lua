-- Every compiled module loads under LuaJIT without writing a global (the busted helper turns
-- any global write into an error), and exports a table. Modules that need the nginx runtime
-- get the ngx stand-in plus inert stand-ins for lua-resty-core modules (ngx.semaphore & co.),
-- which only exist inside nginx.
local stub = require("ngx_stub")

local RUNTIME_ONLY = { "ngx.semaphore", "ngx.process", "ngx.base64", "ngx.re", "resty.core" }

local function compiled_modules()
  local list = {}
  local p = assert(io.popen("cd dist-lua && find . -name '*.lua' | sort"))
  for file in p:lines() do
    local name = file:gsub("^%./", ""):gsub("%.lua$", ""):gsub("/", ".")
    list[#list + 1] = name
  end
  p:close()
  return list
end

describe("compiled modules", function()
  local modules = compiled_modules()
  local saved = {}

  setup(function()
    stub.install({})
    for _, name in ipairs(RUNTIME_ONLY) do
      saved[name] = package.preload[name]
      package.preload[name] = function()
        return setmetatable({}, { __index = function() return function() return nil, "not in nginx" end end })
      end
    end
  end)

  teardown(function()
    for _, name in ipairs(RUNTIME_ONLY) do
      package.preload[name] = saved[name]
      package.loaded[name] = nil
    end
    stub.uninstall()
  end)

  it("include the entry point", function()
    local set = {}
    for _, m in ipairs(modules) do set[m] = true end
    assert.is_true(set["beamline.phases"])
    assert.is_true(#modules >= 5)
  end)

  it("are checked by a guard that really rejects global writes", function()
    local ok, err = pcall(loadstring("leaked_global = 1"))
    assert.is_false(ok)
    assert.matches("global write: leaked_global", err)
    assert.is_nil(rawget(_G, "leaked_global"))
  end)

  for _, name in ipairs(modules) do
    it("loads " .. name .. " without global writes", function()
      package.loaded[name] = nil
      local ok, mod = pcall(require, name)
      assert(ok, tostring(mod))
      assert.are.equal("table", type(mod))
    end)
  end
end)

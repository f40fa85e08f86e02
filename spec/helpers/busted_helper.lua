-- Runs before every spec file: fails loudly when any module writes a global.
-- busted's own globals (describe, it, assert, ...) exist before this runs; everything the
-- gateway code assigns to _G after this point is a bug.
local allowed = { ngx = true } -- specs install an ngx stand-in on purpose (spec/helpers/ngx_stub.lua)
local rawset = rawset
setmetatable(_G, {
  __newindex = function(t, k, v)
    if allowed[k] then
      return rawset(t, k, v)
    end
    error("global write: " .. tostring(k), 2)
  end,
})

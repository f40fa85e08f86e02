-- beamline.log_fields: the Router fields reach the log phase through ngx.ctx; the nginx
-- variables of the access log are written only when something reads them (issue 15).
local stub = require("ngx_stub")

describe("beamline.log_fields", function()
  local lf
  before_each(function()
    stub.install({ var = {} })
    package.loaded["beamline.log_fields"] = nil
    lf = require("beamline.log_fields")
  end)
  after_each(function() stub.uninstall() end)

  it("writes no nginx variable when the access log, tracing and migration are off", function()
    lf.configure(false, false, false)
    lf.tenant("acme")
    lf.router_time(0.0042)
    lf.router_code("ok")
    assert.is_nil(next(ngx.var))
    local t, code = lf.router(ngx.ctx)
    assert.equal(0.0042, t)
    assert.equal("ok", code)
  end)

  for _, on in ipairs({ { true, false, false }, { false, true, false }, { false, false, true } }) do
    it("writes the variables when one reader is on (" .. table.concat({ tostring(on[1]), tostring(on[2]), tostring(on[3]) }, ",") .. ")", function()
      lf.configure(on[1], on[2], on[3])
      lf.tenant("acme")
      lf.router_time(0.0042)
      lf.router_code("timeout")
      assert.equal("acme", ngx.var.beamline_tenant_id)
      assert.equal("0.004", ngx.var.beamline_router_time)
      assert.equal("timeout", ngx.var.beamline_router_code)
      local t, code = lf.router(ngx.ctx)
      assert.equal(0.0042, t)
      assert.equal("timeout", code)
    end)
  end

  it("reports no Router call for a request that made none", function()
    local t, code = lf.router(ngx.ctx)
    assert.is_nil(t)
    assert.is_nil(code)
  end)
end)

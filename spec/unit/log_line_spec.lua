-- beamline.log_line (issue 17): every line the Lua writes is escaped; `name=value` fields cannot
-- forge another field; no module calls ngx.log except through it.
local stub = require("ngx_stub")
local log_line = require("beamline.log_line")

describe("beamline.log_line", function()
  after_each(function() stub.uninstall() end)

  it("escapes control bytes, DEL and bytes >= 0x80 as \\xHH; printable ASCII unchanged", function()
    assert.equal("plain text: ok=1 [x]", log_line.escape("plain text: ok=1 [x]"))
    assert.equal("a\\x0ab\\x0dc", log_line.escape("a\nb\rc"))
    assert.equal("\\x1b[31mred\\x1b[0m", log_line.escape("\27[31mred\27[0m"))
    assert.equal("nul\\x00del\\x7f", log_line.escape("nul\0del\127"))
    assert.equal("\\xff\\xc3\\xa9", log_line.escape("\255\195\169"))
    assert.equal("back\\slash", log_line.escape("back\\slash"))
    for b = 0, 255 do
      local out = log_line.escape(string.char(b))
      assert.is_nil(out:find("[^ -~]"), "byte " .. b)
    end
  end)

  it("fields also escape white space and quotes, so a value cannot forge tenant_id=", function()
    assert.equal("acme", log_line.field("acme"))
    assert.equal("x\\x20tenant_id=evil", log_line.field("x tenant_id=evil"))
    assert.equal("\\x22q\\x27\\x09\\x5c", log_line.field("\"q'\t\\"))
    assert.equal("-", log_line.field(""))
    assert.equal("-", log_line.field(nil))
  end)

  it("write() passes one escaped line to ngx.log", function()
    stub.install({})
    local seen = {}
    ngx.log = function(level, ...) seen[#seen + 1] = { level, select("#", ...), ... } end
    log_line.write(ngx.WARN, "beamline: x=", "a\nb", " n=", 5, " t=", true)
    assert.same({ { ngx.WARN, 1, "beamline: x=a\\x0ab n=5 t=true" } }, seen)
  end)

  it("is the only caller of ngx.log in the compiled gateway", function()
    local p = assert(io.popen("grep -rln 'ngx%.log(\\|ngx\\.log(' dist-lua/beamline || true"))
    local callers = {}
    for file in p:lines() do callers[#callers + 1] = file end
    p:close()
    assert.same({ "dist-lua/beamline/log_line.lua" }, callers)
  end)
end)

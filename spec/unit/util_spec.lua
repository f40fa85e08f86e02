-- beamline.util: headers, body reading, JSON responses and the exact §5 error body.
local stub = require("ngx_stub")
local cjson = require("cjson")

local util = require("beamline.util")
local json = require("beamline.json")

local function tmpfile(content)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

describe("beamline.util", function()
  after_each(function()
    stub.uninstall()
  end)

  describe("status maps", function()
    it("maps every §5 gateway code", function()
      local expected = {
        invalid_request = 400, unauthorized = 401, forbidden = 403, not_found = 404,
        method_not_allowed = 405, conflict = 409, payload_too_large = 413,
        unsupported_media_type = 415, rate_limit_exceeded = 429, internal = 500,
        bad_gateway = 502, unavailable = 503, timeout = 504,
      }
      for code, status in pairs(expected) do
        assert.are.equal(status, util.error_status(code), code)
        assert.are.equal(status, util.ERROR_STATUS[code], code)
      end
      assert.are.same(keys(expected), keys(util.ERROR_STATUS))
      assert.are.equal(500, util.error_status("something_else"))
    end)
  end)

  describe("get_header", function()
    it("matches names case-insensitively", function()
      stub.install({ headers = { ["x-tenant-id"] = "t1", ["Content-Type"] = "application/json" } })
      assert.are.equal("t1", (util.get_header("X-Tenant-ID")))
      assert.are.equal("t1", (util.get_header("x-tenant-id")))
      assert.are.equal("t1", (util.get_header("X-TENANT-ID")))
      assert.are.equal("application/json", (util.get_header("content-type")))
    end)

    it("returns the default (or nil) when absent, and \"\" for an empty value", function()
      stub.install({ headers = { ["x-empty"] = "" } })
      local v, err = util.get_header("X-Missing")
      assert.is_nil(v)
      assert.is_nil(err)
      assert.are.equal("dflt", (util.get_header("X-Missing", "dflt")))
      assert.are.equal("", (util.get_header("X-Empty", "dflt")))
    end)

    it("reports a repeated header as nil, \"multiple\", values", function()
      stub.install({ headers = { ["x-tenant-id"] = { "a", "b" }, ["x-same"] = { "a", "a" } } })
      local v, err, values = util.get_header("X-Tenant-ID", "dflt")
      assert.is_nil(v)
      assert.are.equal("multiple", err)
      assert.are.same({ "a", "b" }, values)
      local v2, err2 = util.get_header("X-Same")
      assert.is_nil(v2)
      assert.are.equal("multiple", err2)
    end)

    it("treats a one-element list as a single value", function()
      stub.install({ headers = { ["x-one"] = { "only" } } })
      local v, err = util.get_header("X-One")
      assert.are.equal("only", v)
      assert.is_nil(err)
    end)

    it("fetches the request headers once per request (ngx.ctx cache)", function()
      stub.install({ headers = { a = "1", b = "2" } })
      util.get_header("a")
      util.get_header("b")
      util.get_header("c")
      assert.are.equal(1, stub.state.get_headers_calls)
      ngx.ctx = {} -- a new request
      util.get_header("a")
      assert.are.equal(2, stub.state.get_headers_calls)
    end)
  end)

  describe("read_body", function()
    it("returns the in-memory body", function()
      stub.install({ body = '{"a":1}' })
      local raw, err = util.read_body(100)
      assert.is_nil(err)
      assert.are.equal('{"a":1}', raw)
      assert.are.equal(1, stub.state.read_body_calls)
    end)

    it("returns \"\" when there is no body", function()
      stub.install({})
      local raw, err = util.read_body(100)
      assert.is_nil(err)
      assert.are.equal("", raw)
    end)

    it("reads a body nginx buffered to a file", function()
      local path = tmpfile('{"from":"file"}')
      stub.install({ body_file = path })
      local raw, err = util.read_body(100)
      os.remove(path)
      assert.is_nil(err)
      assert.are.equal('{"from":"file"}', raw)
    end)

    it("enforces the limit on memory and file bodies, at the boundary", function()
      stub.install({ body = string.rep("x", 10) })
      assert.are.equal(10, #util.read_body(10))
      stub.install({ body = string.rep("x", 11) })
      local raw, code, msg = util.read_body(10)
      assert.is_nil(raw)
      assert.are.equal("payload_too_large", code)
      assert.is_string(msg)
      local path = tmpfile(string.rep("y", 11))
      stub.install({ body_file = path })
      local raw2, code2 = util.read_body(10)
      assert.is_nil(raw2)
      assert.are.equal("payload_too_large", code2)
      stub.install({ body_file = path })
      assert.are.equal(11, #util.read_body(11))
      os.remove(path)
    end)

    it("refuses a Content-Length above the limit without reading", function()
      stub.install({ headers = { ["content-length"] = "1000" }, body = "{}" })
      local raw, code = util.read_body(999)
      assert.is_nil(raw)
      assert.are.equal("payload_too_large", code)
      assert.are.equal(0, stub.state.read_body_calls)
    end)

    it("answers internal when the body cannot be read", function()
      stub.install({ read_body_error = "boom" })
      local raw, code = util.read_body(10)
      assert.is_nil(raw)
      assert.are.equal("internal", code)
      stub.install({ body_file = "/nonexistent/beamline-body" })
      local raw2, code2 = util.read_body(10)
      assert.is_nil(raw2)
      assert.are.equal("internal", code2)
    end)
  end)

  describe("read_body_json", function()
    local function body_result(body, limit, depth)
      stub.install({ body = body })
      return util.read_body_json(limit or 1024, depth)
    end

    it("returns the decoded object and the raw bytes", function()
      local obj, err, raw = body_result('{"a":[],"b":{}}')
      assert.is_nil(err)
      assert.are.equal('{"a":[],"b":{}}', raw)
      assert.is_true(json.is_array(obj.a))
      assert.is_true(json.is_object(obj.b))
    end)

    it("maps every failure to its code", function()
      local cases = {
        { "", "empty_body" },
        { "  \n", "empty_body" },
        { "{", "invalid_json" },
        { "not json", "invalid_json" },
        { "[1,2]", "not_object" },
        { "[]", "not_object" },
        { '"{}"', "not_object" },
        { "null", "not_object" },
        { "42", "not_object" },
        { string.rep("[", 1000) .. string.rep("]", 1000), "too_deep" },
        { string.rep('{"a":', 65) .. "1" .. string.rep("}", 65), "too_deep" },
      }
      for _, c in ipairs(cases) do
        local obj, code, msg = body_result(c[1], 100000)
        assert.is_nil(obj, c[1])
        assert.are.equal(c[2], code, c[1])
        assert.is_string(msg)
      end
      local obj, code = body_result(string.rep(" ", 20) .. "{}", 10)
      assert.is_nil(obj)
      assert.are.equal("payload_too_large", code)
    end)

    it("accepts 64 levels and honours a custom depth", function()
      local deep64 = string.rep('{"a":', 64) .. "1" .. string.rep("}", 64)
      assert.is_table((body_result(deep64, 100000)))
      local _, code = body_result('{"a":{"b":{}}}', 1000, 2)
      assert.are.equal("too_deep", code)
    end)

    it("decode_body_json works on a raw string", function()
      stub.install({})
      local obj = util.decode_body_json('{"x":1}')
      assert.are.equal(1, obj.x)
      assert.are.equal("not_object", select(2, util.decode_body_json("[1]")))
    end)
  end)

  describe("json_response", function()
    it("sends a string body as is with status and Content-Type, then exits", function()
      stub.install({})
      local res = stub.run(util.json_response, 200, '{"status":"ok"}')
      assert.is_nil(res.error)
      assert.are.equal(200, res.exited)
      assert.are.equal(200, res.status)
      assert.are.equal('{"status":"ok"}', res.body)
      assert.are.equal("application/json", stub.response_header("Content-Type"))
    end)

    it("encodes a table body, keeping [] and {}", function()
      stub.install({})
      local res = stub.run(util.json_response, 201, { list = json.array(), obj = {} })
      assert.are.equal(201, res.exited)
      local back = cjson.decode(res.body)
      assert.are.equal("[]", json.encode(json.decode(res.body).list))
      assert.are.equal("table", type(back.obj))
      assert.is_truthy(res.body:find('"list":[]', 1, true))
      assert.is_truthy(res.body:find('"obj":{}', 1, true))
    end)

    it("sets extra headers after Content-Type", function()
      stub.install({})
      stub.run(util.json_response, 200, "{}", { ["X-Trace-Id"] = "abc", ["Retry-After"] = 1 })
      assert.are.equal("abc", stub.response_header("x-trace-id"))
      assert.are.equal(1, stub.response_header("Retry-After"))
    end)

    it("sends no body for 204 or a nil body", function()
      stub.install({})
      local res = stub.run(util.json_response, 204, "{}")
      assert.are.equal(204, res.exited)
      assert.are.equal("", res.body)
      stub.install({})
      local res2 = stub.run(util.json_response, 200, nil)
      assert.are.equal("", res2.body)
    end)

    it("answers 500 with the §5 body when the table cannot be encoded", function()
      stub.install({})
      local res = stub.run(util.json_response, 200, { f = function() end })
      assert.is_nil(res.error)
      assert.are.equal(500, res.exited)
      assert.are.equal(500, res.status)
      local body = cjson.decode(res.body)
      assert.is_false(body.ok)
      assert.are.equal("internal", body.error.code)
      assert.are.equal(ngx.ERR, stub.logs[1].level)
    end)
  end)

  describe("error_body / error_response (CONTRACT §5)", function()
    local function check_shape(text)
      local body = cjson.decode(text)
      assert.are.same({ "context", "error", "ok" }, keys(body))
      assert.is_false(body.ok)
      assert.are.same({ "code", "details", "intake_error_code", "message" }, keys(body.error))
      assert.are.same({ "request_id", "tenant_id", "trace_id" }, keys(body.context))
      assert.are.equal(cjson.null, body.error.intake_error_code)
      return body
    end

    it("has exactly the §5 shape with null intake_error_code and {} details", function()
      local text = util.error_body("invalid_request", "missing X-Tenant-ID header", nil, nil)
      assert.are.equal('{"ok":false,"error":{"code":"invalid_request","message":"missing X-Tenant-ID header",'
        .. '"intake_error_code":null,"details":{}},"context":{"request_id":"","trace_id":"","tenant_id":""}}', text)
      check_shape(text)
    end)

    it("fills context fields and details", function()
      local text = util.error_body("invalid_request", "task.payload must be an object",
        { field = "task.payload" }, { request_id = "r1", trace_id = "abc", tenant_id = "t1" })
      local body = check_shape(text)
      assert.are.same({ field = "task.payload" }, body.error.details)
      assert.are.same({ request_id = "r1", trace_id = "abc", tenant_id = "t1" }, body.context)
    end)

    it("keeps details {} when empty, and never an array", function()
      assert.is_truthy(util.error_body("x", "m", {}):find('"details":{}', 1, true))
      stub.install({})
      assert.is_truthy(util.error_body("x", "m", json.array()):find('"details":{}', 1, true))
      assert.is_truthy(util.error_body("x", "m", { 1, 2 }):find('"details":{}', 1, true))
      assert.is_truthy(util.error_body("x", "m", "oops"):find('"details":{}', 1, true))
    end)

    it("uses \"\" for unknown or non-string context fields", function()
      local body = check_shape(util.error_body("timeout", "m", nil, { request_id = 5, trace_id = json.null }))
      assert.are.same({ request_id = "", trace_id = "", tenant_id = "" }, body.context)
    end)

    it("escapes messages safely (quotes, unicode, control characters)", function()
      local body = check_shape(util.error_body("invalid_request", 'bad "x"\n\195\169', { limit_bytes = 1048576 }))
      assert.are.equal('bad "x"\n\195\169', body.error.message)
      assert.are.equal(1048576, body.error.details.limit_bytes)
    end)

    it("error_response sends the body with the status and headers", function()
      stub.install({})
      local res = stub.run(util.error_response, 429, "rate_limit_exceeded", "too many requests",
        { endpoint = "decide", limit = 50, window_seconds = 60, retry_after_seconds = 7 },
        { request_id = "r", trace_id = "t", tenant_id = "x" }, { ["Retry-After"] = "7" })
      assert.are.equal(429, res.exited)
      assert.are.equal(429, res.status)
      assert.are.equal("7", stub.response_header("Retry-After"))
      assert.are.equal("application/json", stub.response_header("Content-Type"))
      local body = check_shape(res.body)
      assert.are.equal("rate_limit_exceeded", body.error.code)
      assert.are.equal(50, body.error.details.limit)
    end)

    it("error_response takes the status from the code when status is nil", function()
      stub.install({})
      local res = stub.run(util.error_response, nil, "unsupported_media_type", "use application/json")
      assert.are.equal(415, res.exited)
      assert.are.equal(415, res.status)
    end)

    it("method_not_allowed answers 405 with Allow", function()
      stub.install({ method = "DELETE" })
      local res = stub.run(util.method_not_allowed, "GET, HEAD")
      assert.are.equal(405, res.exited)
      assert.are.equal("GET, HEAD", stub.response_header("Allow"))
      assert.are.equal("method_not_allowed", check_shape(res.body).error.code)
    end)
  end)
end)

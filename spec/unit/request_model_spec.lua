-- beamline.request_model: §3 canonical and legacy bodies, §10 order and ids, §4 Router request.
local rm = require("beamline.request_model")
local json = require("beamline.json")
local cjson = require("cjson")

local TENANT = "tenant-1"
local TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
local PARENT = "00f067aa0ba902b7"
local TRACEPARENT = "00-" .. TRACE .. "-" .. PARENT .. "-01"

local function body(text)
  local v, err = json.decode(text)
  assert(err == nil, err)
  return v
end

-- A valid canonical body with `extra` (JSON members, already formatted) appended.
local function canonical(extra)
  return body('{"version":"1","task":{"type":"chat","payload":{"text":"hi"}}' .. (extra and ("," .. extra) or "") .. "}")
end

local function hdr(t)
  t = t or {}
  if t.tenant_id == false then
    t.tenant_id = nil
  elseif t.tenant_id == nil then
    t.tenant_id = TENANT
  end
  return t
end

local function ok(b, h)
  local n, err = rm.validate_decide(b, h or hdr())
  assert.is_nil(err and err.message)
  assert.is_table(n)
  return n
end

local function fails(b, h)
  local n, err = rm.validate_decide(b, h or hdr())
  assert.is_nil(n)
  assert.is_table(err)
  assert.are.equal(400, err.status)
  assert.are.equal("invalid_request", err.code)
  assert.is_string(err.message)
  assert.is_table(err.context)
  return err
end

local function field_error(b, field, h)
  local err = fails(b, h)
  assert.are.same({ field = field }, err.details)
  assert.is_truthy(err.message:find(field, 1, true), err.message)
  return err
end

local function header_error(b, header, h)
  local err = fails(b, h)
  assert.are.same({ header = header }, err.details)
  assert.is_truthy(err.message:find(header, 1, true), err.message)
  return err
end

local function is_hex32(s)
  return type(s) == "string" and #s == 32 and s:match("^[0-9a-f]+$") ~= nil
end

local function is_uuid4(s)
  return type(s) == "string" and s:match("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$") ~= nil and #s == 36
end

local function router(n)
  local text, headers = rm.build_router_request(n)
  assert.is_string(text, headers)
  return cjson.decode(text), headers, text
end

describe("beamline.request_model", function()
  describe("headers", function()
    it("requires X-Tenant-ID for a canonical body", function()
      local err = header_error(canonical(), "X-Tenant-ID", hdr({ tenant_id = false }))
      assert.are.equal("missing X-Tenant-ID header", err.message)
      assert.are.equal("", err.context.tenant_id)
    end)

    it("rejects a malformed X-Tenant-ID, accepts 1 and 128 characters", function()
      for _, t in ipairs({ "", "a b", string.rep("a", 129), "t/1", "t\n" }) do
        header_error(canonical(), "X-Tenant-ID", hdr({ tenant_id = t }))
      end
      assert.are.equal("a", ok(canonical(), hdr({ tenant_id = "a" })).tenant_id)
      assert.are.equal(string.rep("a", 128), ok(canonical(), hdr({ tenant_id = string.rep("a", 128) })).tenant_id)
    end)

    it("rejects an invalid X-Trace-ID with a fresh trace id in the context", function()
      local raw = "not-a-trace-id"
      local err = header_error(canonical(), "X-Trace-ID", hdr({ trace_id = raw }))
      assert.is_true(is_hex32(err.context.trace_id))
      assert.are_not.equal(raw, err.context.trace_id)
      header_error(canonical(), "X-Trace-ID", hdr({ trace_id = "" }))
      header_error(canonical(), "X-Trace-ID", hdr({ trace_id = string.rep("a", 31) }))
    end)

    it("rejects an invalid X-Request-ID, accepts 1 and 128 characters", function()
      for _, r in ipairs({ "", "a b", string.rep("r", 129), "r\t" }) do
        header_error(canonical(), "X-Request-ID", hdr({ request_id = r }))
      end
      assert.are.equal("r", ok(canonical(), hdr({ request_id = "r" })).request_id)
      assert.are.equal(string.rep("r", 128), ok(canonical(), hdr({ request_id = string.rep("r", 128) })).request_id)
    end)

    it("checks headers in §2 order: tenant, trace, request id", function()
      header_error(canonical(), "X-Tenant-ID", hdr({ tenant_id = "bad tenant", trace_id = "x", request_id = " " }))
      header_error(canonical(), "X-Trace-ID", hdr({ trace_id = "x", request_id = " " }))
    end)

    it("checks headers before the body", function()
      header_error(body("[1]"), "X-Trace-ID", hdr({ trace_id = "x" }))
    end)

    it("ignores an invalid traceparent and never forwards it", function()
      local n = ok(canonical(), hdr({ traceparent = "garbage", tracestate = "a=b" }))
      assert.is_nil(n.traceparent)
      assert.is_nil(n.tracestate)
      assert.is_true(is_hex32(n.trace_id))
    end)
  end)

  describe("body shape", function()
    it("rejects a body that is not an object with details {}", function()
      for _, b in ipairs({ body("[1]"), body("[]"), "text", 1, json.null, true }) do
        local err = fails(b)
        assert.are.same({}, err.details)
        assert.are.equal("request body must be a JSON object", err.message)
      end
      local err = fails(nil)
      assert.are.same({}, err.details)
    end)
  end)

  describe("canonical body, in §10 order", function()
    it("accepts the minimal body", function()
      local n = ok(canonical())
      assert.is_false(n.legacy)
      assert.are.equal(TENANT, n.tenant_id)
      assert.are.equal("chat", n.task_type)
      assert.are.equal("hi", n.task_payload.text)
      assert.is_false(n.mirror)
    end)

    it("version: required, exactly the string \"1\"", function()
      field_error(body('{"task":{"type":"chat","payload":{}}}'), "version")
      for _, raw in ipairs({ '"1.0"', '"2"', '""', '" 1"', "null", "1", "true", '["1"]' }) do
        field_error(body('{"version":' .. raw .. ',"task":{"type":"chat","payload":{}}}'), "version")
      end
    end)

    it("tenant_id: must be a string equal to X-Tenant-ID", function()
      assert.are.equal(TENANT, ok(canonical('"tenant_id":"' .. TENANT .. '"')).tenant_id)
      local err = field_error(canonical('"tenant_id":"other"'), "tenant_id")
      assert.are.equal(TENANT, err.context.tenant_id)
      field_error(canonical('"tenant_id":5'), "tenant_id")
      field_error(canonical('"tenant_id":null'), "tenant_id")
      field_error(canonical('"tenant_id":"TENANT-1"'), "tenant_id")
    end)

    it("request_id: 1-128 printable ASCII without spaces", function()
      assert.are.equal("r-1", ok(canonical('"request_id":"r-1"')).request_id)
      assert.are.equal(string.rep("r", 128), ok(canonical('"request_id":"' .. string.rep("r", 128) .. '"')).request_id)
      for _, v in ipairs({ '""', '"' .. string.rep("r", 129) .. '"', '"a b"', "7", "null", '"\\n"' }) do
        field_error(canonical('"request_id":' .. v), "request_id")
      end
    end)

    it("task: required object", function()
      field_error(body('{"version":"1"}'), "task")
      for _, v in ipairs({ '"chat"', "[]", '[{"type":"chat"}]', "null", "1" }) do
        field_error(body('{"version":"1","task":' .. v .. '}'), "task")
      end
    end)

    it("task.type: required non-empty string", function()
      field_error(body('{"version":"1","task":{"payload":{}}}'), "task.type")
      for _, v in ipairs({ '""', "1", "null", '["chat"]', "{}" }) do
        field_error(body('{"version":"1","task":{"type":' .. v .. ',"payload":{}}}'), "task.type")
      end
    end)

    it("task.payload: object, required unless task.payload_ref is a string", function()
      field_error(body('{"version":"1","task":{"type":"chat"}}'), "task.payload")
      for _, v in ipairs({ '"text"', "[]", "[1]", "null", "1", "true" }) do
        field_error(body('{"version":"1","task":{"type":"chat","payload":' .. v .. '}}'), "task.payload")
      end
      local n = ok(body('{"version":"1","task":{"type":"chat","payload_ref":"s3://b/k"}}'))
      assert.are.equal("s3://b/k", n.task_payload_ref)
      assert.is_nil(n.task_payload)
      field_error(body('{"version":"1","task":{"type":"chat","payload_ref":5}}'), "task.payload_ref")
      field_error(body('{"version":"1","task":{"type":"chat","payload_ref":""}}'), "task.payload_ref")
      -- an invalid payload is reported even when payload_ref is fine
      field_error(body('{"version":"1","task":{"type":"chat","payload":"x","payload_ref":"r"}}'), "task.payload")
      local empty = ok(body('{"version":"1","task":{"type":"chat","payload":{}}}'))
      assert.is_true(json.is_object(empty.task_payload))
    end)

    it("trace_id: 32 hex or UUID; an invalid one gets a fresh trace id in the context", function()
      assert.are.equal(TRACE, ok(canonical('"trace_id":"' .. TRACE:upper() .. '"')).trace_id)
      local uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
      assert.are.equal(uuid, ok(canonical('"trace_id":"' .. uuid:upper() .. '"')).trace_id)
      for _, v in ipairs({ '"abc"', '""', "5", "null", '"' .. string.rep("a", 33) .. '"' }) do
        local err = field_error(canonical('"trace_id":' .. v), "trace_id")
        assert.is_true(is_hex32(err.context.trace_id))
      end
      -- even with a valid header the error carries a fresh id, not the header's or the body's
      local err = field_error(canonical('"trace_id":"zz"'), "trace_id", hdr({ trace_id = TRACE }))
      assert.are_not.equal(TRACE, err.context.trace_id)
      assert.is_true(is_hex32(err.context.trace_id))
    end)

    it("optional strings must be strings", function()
      for _, f in ipairs({ "run_id", "flow_id", "step_id", "policy_id", "idempotency_key", "message_id", "message_type" }) do
        field_error(canonical('"' .. f .. '":1'), f)
        field_error(canonical('"' .. f .. '":{}'), f)
        field_error(canonical('"' .. f .. '":null'), f)
        assert.are.equal("v", ok(canonical('"' .. f .. '":"v"'))[f])
      end
    end)

    it("optional objects must be objects", function()
      for _, f in ipairs({ "payload", "metadata", "context", "constraints" }) do
        field_error(canonical('"' .. f .. '":"x"'), f)
        field_error(canonical('"' .. f .. '":[1]'), f)
        field_error(canonical('"' .. f .. '":[]'), f)
        field_error(canonical('"' .. f .. '":null'), f)
        assert.are.equal(1, ok(canonical('"' .. f .. '":{"a":1}'))[f].a)
      end
    end)

    it("push_assignment must be a boolean", function()
      assert.is_false(ok(canonical('"push_assignment":false')).push_assignment)
      assert.is_true(ok(canonical('"push_assignment":true')).push_assignment)
      field_error(canonical('"push_assignment":"true"'), "push_assignment")
      field_error(canonical('"push_assignment":1'), "push_assignment")
    end)

    it("reports the first offending field in §3 order", function()
      field_error(body('{"version":2,"tenant_id":"x","task":5}'), "version")
      field_error(body('{"version":"1","tenant_id":"x","request_id":" ","task":5}'), "tenant_id")
      field_error(body('{"version":"1","request_id":" ","task":5}'), "request_id")
      field_error(body('{"version":"1","task":{"type":1,"payload":1},"trace_id":"x"}'), "task.type")
      field_error(body('{"version":"1","task":{"type":"a","payload":1},"trace_id":"x"}'), "task.payload")
      field_error(canonical('"trace_id":"x","run_id":1'), "trace_id")
      field_error(canonical('"idempotency_key":1,"message_id":1'), "idempotency_key")
      field_error(canonical('"message_type":1,"payload":"x"'), "message_type")
      field_error(canonical('"payload":"x","metadata":"y"'), "payload")
      field_error(canonical('"constraints":"x","push_assignment":"y"'), "constraints")
    end)

    it("ignores unknown fields", function()
      local n = ok(canonical('"surprise":{"x":1},"extra":[1]'))
      assert.is_nil(n.surprise)
      local p = router(n)
      assert.is_nil(p.surprise)
      assert.is_nil(p.extra)
    end)

    it("treats a non-object message as canonical (needs task)", function()
      field_error(body('{"message":"hello"}'), "version")
      field_error(body('{"version":"1","message":"hello"}'), "task")
      -- with a task present, a message object does not make it legacy
      local n = ok(body('{"version":"1","task":{"type":"x","payload":{}},"message":{"tenant_id":"other"}}'))
      assert.is_false(n.legacy)
    end)
  end)

  describe("effective ids", function()
    it("request_id: body, else X-Request-ID, else a UUIDv4", function()
      assert.are.equal("body-r", ok(canonical('"request_id":"body-r"'), hdr({ request_id = "hdr-r" })).request_id)
      assert.are.equal("hdr-r", ok(canonical(), hdr({ request_id = "hdr-r" })).request_id)
      local a, b = ok(canonical()).request_id, ok(canonical()).request_id
      assert.is_true(is_uuid4(a))
      assert.are_not.equal(a, b)
    end)

    it("trace_id: header wins, then body, then traceparent, then generated", function()
      local other = string.rep("b", 32)
      assert.are.equal(TRACE, ok(canonical('"trace_id":"' .. other .. '"'), hdr({ trace_id = TRACE:upper(), traceparent = TRACEPARENT })).trace_id)
      assert.are.equal(other, ok(canonical('"trace_id":"' .. other .. '"'), hdr({ traceparent = TRACEPARENT })).trace_id)
      assert.are.equal(TRACE, ok(canonical(), hdr({ traceparent = TRACEPARENT })).trace_id)
      local g1, g2 = ok(canonical()).trace_id, ok(canonical()).trace_id
      assert.is_true(is_hex32(g1))
      assert.are_not.equal(g1, g2)
    end)

    it("keeps a valid traceparent, and tracestate only with it", function()
      local n = ok(canonical(), hdr({ traceparent = TRACEPARENT, tracestate = "rojo=1" }))
      assert.are.equal(TRACEPARENT, n.traceparent)
      assert.are.equal("rojo=1", n.tracestate)
      local n2 = ok(canonical(), hdr({ traceparent = TRACEPARENT, tracestate = string.rep("x", 513) }))
      assert.are.equal(TRACEPARENT, n2.traceparent)
      assert.is_nil(n2.tracestate)
      local n3 = ok(canonical(), hdr({ tracestate = "rojo=1" }))
      assert.is_nil(n3.traceparent)
      assert.is_nil(n3.tracestate)
    end)

    it("error context: best-known valid ids, never a raw invalid value", function()
      local err = field_error(body('{"version":"1","request_id":"rq","trace_id":"' .. TRACE .. '","task":{}}'), "task.type")
      assert.are.same({ request_id = "rq", trace_id = TRACE, tenant_id = TENANT }, err.context)
      local err2 = field_error(body('{"version":"1","task":{}}'), "task.type", hdr({ request_id = "h", trace_id = TRACE }))
      assert.are.same({ request_id = "h", trace_id = TRACE, tenant_id = TENANT }, err2.context)
      local err3 = field_error(body('{"version":"1","request_id":"a b","task":{}}'), "request_id")
      assert.is_true(is_uuid4(err3.context.request_id))
      local err4 = field_error(body('{"version":"1","task":{}}'), "task.type", hdr({ traceparent = TRACEPARENT }))
      assert.are.equal(TRACE, err4.context.trace_id)
    end)
  end)

  describe("legacy Nest body", function()
    local function legacy(msg, top)
      return body('{"message":{' .. msg .. '}' .. (top and ("," .. top) or "") .. "}")
    end
    local FULL = '"message_id":"m-1","tenant_id":"' .. TENANT .. '","message_type":"Chat",'
      .. '"payload":"{\\"prompt\\":\\"hi\\",\\"n\\":[]}","trace_id":"' .. TRACE .. '","metadata":{"src":"msg"}'

    it("maps the message fields", function()
      local n = ok(legacy(FULL), hdr({ tenant_id = false }))
      assert.is_true(n.legacy)
      assert.are.equal(TENANT, n.tenant_id)
      assert.are.equal("m-1", n.request_id)
      assert.are.equal("m-1", n.message_id)
      assert.are.equal("chat", n.task_type)
      assert.are.equal("hi", n.task_payload.prompt)
      assert.is_true(json.is_array(n.task_payload.n))
      assert.are.equal(TRACE, n.trace_id)
      assert.are.equal("msg", n.metadata.src)
      assert.is_false(n.mirror)
      assert.is_nil(n.message_type)
    end)

    it("needs no version", function()
      ok(legacy('"message_type":"chat","payload":"x"'))
    end)

    it("tenant: header optional; message.tenant_id must match it when both are sent", function()
      ok(legacy('"tenant_id":"' .. TENANT .. '","message_type":"chat","payload":"x"'))
      ok(legacy('"message_type":"chat","payload":"x"'))
      local err = field_error(legacy('"tenant_id":"other","message_type":"chat","payload":"x"'), "message.tenant_id")
      assert.are.equal(TENANT, err.context.tenant_id)
      field_error(legacy('"tenant_id":7,"message_type":"chat","payload":"x"'), "message.tenant_id")
    end)

    it("tenant: none anywhere → missing X-Tenant-ID header", function()
      local err = header_error(legacy('"message_type":"chat","payload":"x"'), "X-Tenant-ID", hdr({ tenant_id = false }))
      assert.are.equal("missing X-Tenant-ID header", err.message)
    end)

    it("tenant: a malformed message.tenant_id without header is a field error", function()
      field_error(legacy('"tenant_id":"a b","message_type":"chat","payload":"x"'), "message.tenant_id", hdr({ tenant_id = false }))
      field_error(legacy('"tenant_id":"","message_type":"chat","payload":"x"'), "message.tenant_id", hdr({ tenant_id = false }))
      field_error(legacy('"tenant_id":null,"message_type":"chat","payload":"x"'), "message.tenant_id", hdr({ tenant_id = false }))
    end)

    it("message_type: chat, completion, embedding, case-insensitive", function()
      assert.are.equal("completion", ok(legacy('"message_type":"COMPLETION","payload":"x"')).task_type)
      assert.are.equal("embedding", ok(legacy('"message_type":"Embedding","payload":"x"')).task_type)
      field_error(legacy('"payload":"x"'), "message.message_type")
      for _, v in ipairs({ '"sms"', '""', "1", "null", '"chat "' }) do
        field_error(legacy('"message_type":' .. v .. ',"payload":"x"'), "message.message_type")
      end
    end)

    it("payload: JSON-object text decoded, other text wrapped as {raw}", function()
      local function payload_of(p)
        return ok(legacy('"message_type":"chat","payload":' .. p)).task_payload
      end
      assert.are.same({ a = 1 }, payload_of('"{\\"a\\":1}"'))
      assert.are.same({ raw = "hello" }, payload_of('"hello"'))
      assert.are.same({ raw = "[1,2]" }, payload_of('"[1,2]"'))
      assert.are.same({ raw = "42" }, payload_of('"42"'))
      assert.are.same({ raw = "" }, payload_of('""'))
      assert.are.same({ raw = "{broken" }, payload_of('"{broken"'))
      assert.are.same({ raw = "h\195\169" }, payload_of('"h\\u00e9"'))
      local deep = string.rep("[", 1000) .. string.rep("]", 1000)
      assert.are.same({ raw = deep }, payload_of('"' .. deep .. '"'))
      local empty = payload_of('"{}"')
      assert.is_true(json.is_object(empty))
      assert.is_nil(next(empty))
    end)

    it("payload: an object is accepted as is; missing or other types are errors", function()
      assert.are.same({ q = "x" }, ok(legacy('"message_type":"chat","payload":{"q":"x"}')).task_payload)
      field_error(legacy('"message_type":"chat"'), "message.payload")
      for _, v in ipairs({ "1", "null", "[1]", "true" }) do
        field_error(legacy('"message_type":"chat","payload":' .. v), "message.payload")
      end
    end)

    it("message_id: optional, else X-Request-ID or generated; invalid → error", function()
      assert.are.equal("hr", ok(legacy('"message_type":"chat","payload":"x"'), hdr({ request_id = "hr" })).request_id)
      local n = ok(legacy('"message_type":"chat","payload":"x"'))
      assert.is_true(is_uuid4(n.request_id))
      assert.is_nil(n.message_id)
      field_error(legacy('"message_id":"a b","message_type":"chat","payload":"x"'), "message.message_id")
      field_error(legacy('"message_id":5,"message_type":"chat","payload":"x"'), "message.message_id")
    end)

    it("message.trace_id follows the trace rules", function()
      local err = field_error(legacy('"message_type":"chat","payload":"x","trace_id":"nope"'), "message.trace_id")
      assert.are_not.equal("nope", err.context.trace_id)
      assert.are.equal(TRACE, ok(legacy('"message_type":"chat","payload":"x","trace_id":"' .. string.rep("b", 32) .. '"'),
        hdr({ trace_id = TRACE })).trace_id)
    end)

    it("top-level metadata wins over message.metadata", function()
      local n = ok(legacy('"message_type":"chat","payload":"x","metadata":{"from":"message"}', '"metadata":{"from":"top"}'))
      assert.are.equal("top", n.metadata.from)
      field_error(legacy('"message_type":"chat","payload":"x","metadata":"m"'), "message.metadata")
      field_error(legacy('"message_type":"chat","payload":"x"', '"metadata":[1]'), "metadata")
    end)

    it("reads top-level policy_id, context, constraints, push_assignment", function()
      local n = ok(legacy('"message_type":"chat","payload":"x"',
        '"policy_id":"p","context":{"c":1},"constraints":{"max":2},"push_assignment":true,"run_id":"ignored","trace_id":"zz"'))
      assert.are.equal("p", n.policy_id)
      assert.are.equal(1, n.context.c)
      assert.are.equal(2, n.constraints.max)
      assert.is_true(n.push_assignment)
      assert.is_nil(n.run_id)
      field_error(legacy('"message_type":"chat","payload":"x"', '"policy_id":1'), "policy_id")
      field_error(legacy('"message_type":"chat","payload":"x"', '"context":"c"'), "context")
      field_error(legacy('"message_type":"chat","payload":"x"', '"constraints":[]'), "constraints")
      field_error(legacy('"message_type":"chat","payload":"x"', '"push_assignment":"yes"'), "push_assignment")
    end)

    it("checks legacy fields in order", function()
      field_error(legacy('"tenant_id":"other","message_id":" ","message_type":"x"'), "message.tenant_id")
      field_error(legacy('"message_id":" ","message_type":"x"'), "message.message_id")
      field_error(legacy('"message_type":"x"'), "message.message_type")
      field_error(legacy('"message_type":"chat","trace_id":"x"'), "message.payload")
    end)

    it("is not mirrored into message{} towards the Router", function()
      local p = router(ok(legacy(FULL)))
      assert.is_nil(p.message)
      assert.are.equal("m-1", p.message_id)
      assert.are.equal("m-1", p.request_id)
      assert.are.equal("chat", p.task.type)
      assert.are.equal("hi", p.task.payload.prompt)
      assert.are.same({ src = "msg" }, p.metadata)
    end)
  end)

  describe("effective_tenant", function()
    it("returns the valid header, or the legacy message.tenant_id", function()
      assert.are.equal(TENANT, (rm.effective_tenant(canonical(), { tenant_id = TENANT })))
      assert.are.equal("lt", (rm.effective_tenant(body('{"message":{"tenant_id":"lt"}}'), {})))
    end)

    it("reports missing and malformed tenants", function()
      local t, err = rm.effective_tenant(canonical('"tenant_id":"' .. TENANT .. '"'), {})
      assert.is_nil(t)
      assert.are.same({ header = "X-Tenant-ID" }, err.details)
      assert.are.equal("missing X-Tenant-ID header", err.message)
      local _, err2 = rm.effective_tenant(canonical(), { tenant_id = "a b" })
      assert.are.same({ header = "X-Tenant-ID" }, err2.details)
      local _, err3 = rm.effective_tenant(body('{"message":{"tenant_id":"a b"}}'), {})
      assert.are.same({ field = "message.tenant_id" }, err3.details)
      local _, err4 = rm.effective_tenant("not an object", {})
      assert.are.same({ header = "X-Tenant-ID" }, err4.details)
    end)
  end)

  describe("build_router_request (CONTRACT §4)", function()
    it("builds the minimal payload and exactly the NATS headers", function()
      local n = ok(canonical('"request_id":"r1"'), hdr({ trace_id = TRACE }))
      local p, headers = router(n)
      assert.are.same({
        version = "1", tenant_id = TENANT, request_id = "r1", trace_id = TRACE,
        task = { type = "chat", payload = { text = "hi" } },
      }, p)
      assert.are.same({ "trace_id", TRACE, "tenant_id", TENANT, "request_id", "r1", "version", "1" }, headers)
    end)

    it("forwards payload_ref instead of payload", function()
      local p = router(ok(body('{"version":"1","task":{"type":"t","payload_ref":"ref-1"}}')))
      assert.are.same({ type = "t", payload_ref = "ref-1" }, p.task)
    end)

    it("forwards every optional field given, and mirrors message{}", function()
      local n = ok(canonical('"run_id":"ru","flow_id":"fl","step_id":"st","policy_id":"po","idempotency_key":"ik",'
        .. '"message_id":"mi","message_type":"mt","payload":{"p":1},"metadata":{"m":1},"context":{"c":1},'
        .. '"constraints":{"k":1},"push_assignment":false,"tenant_id":"' .. TENANT .. '"'))
      local p = router(n)
      for k, v in pairs({ run_id = "ru", flow_id = "fl", step_id = "st", policy_id = "po", idempotency_key = "ik",
        message_id = "mi", message_type = "mt" }) do
        assert.are.equal(v, p[k], k)
      end
      assert.are.same({ p = 1 }, p.payload)
      assert.are.same({ m = 1 }, p.metadata)
      assert.are.same({ c = 1 }, p.context)
      assert.are.same({ k = 1 }, p.constraints)
      assert.is_false(p.push_assignment)
      assert.are.same({ message_id = "mi", message_type = "mt", payload = { p = 1 }, metadata = { m = 1 } }, p.message)
    end)

    it("mirrors only the message fields that were sent", function()
      local p = router(ok(canonical('"metadata":{"m":1}')))
      assert.are.same({ metadata = { m = 1 } }, p.message)
      local p2 = router(ok(canonical('"policy_id":"x","context":{}')))
      assert.is_nil(p2.message)
    end)

    it("forwards empty objects as {} and empty arrays as []", function()
      local n = ok(body('{"version":"1","task":{"type":"t","payload":{"items":[],"o":{},"nested":[[],{}]}},'
        .. '"payload":{},"metadata":{"tags":[]},"context":{}}'))
      local _, _, text = router(n)
      assert.is_truthy(text:find('"items":[]', 1, true), text)
      assert.is_truthy(text:find('"o":{}', 1, true), text)
      assert.is_truthy(text:find('"nested":[[],{}]', 1, true), text)
      assert.is_truthy(text:find('"tags":[]', 1, true), text)
      assert.is_truthy(text:find('"context":{}', 1, true), text)
      assert.is_truthy(text:find('"payload":{}', 1, true), text)
      local back = json.decode(text)
      assert.is_true(json.is_object(back.payload))
      assert.is_true(json.is_array(back.task.payload.items))
      assert.is_true(json.is_array(back.message.metadata.tags))
    end)

    it("adds traceparent and tracestate headers only when valid", function()
      local _, h = router(ok(canonical(), hdr({ traceparent = TRACEPARENT, tracestate = "a=b" })))
      assert.are.same({ "trace_id", TRACE, "tenant_id", TENANT, "request_id", h[6], "version", "1",
        "traceparent", TRACEPARENT, "tracestate", "a=b" }, h)
      local _, h2 = router(ok(canonical(), hdr({ traceparent = TRACEPARENT })))
      assert.are.equal(10, #h2)
      local _, h3 = router(ok(canonical(), hdr({ traceparent = "00-bad", tracestate = "a=b" })))
      assert.are.equal(8, #h3)
    end)

    it("keeps unicode intact", function()
      local p = router(ok(canonical('"metadata":{"name":"\\u00e9\\ud83d\\ude00"}')))
      assert.are.equal("\195\169\240\159\152\128", p.metadata.name)
    end)

    it("returns nil, err when the payload cannot be encoded (numbers beyond double range)", function()
      local n = ok(body('{"version":"1","task":{"type":"t","payload":{"big":1e400}}}'))
      local text, err = rm.build_router_request(n)
      assert.is_nil(text)
      assert.is_string(err)
    end)
  end)
end)

describe("one id context per request (issue 18)", function()
  it("generates a request's missing ids once: every error context and the validated request share them", function()
    local h = hdr()
    local c1 = rm.error_context(nil, h, false)
    local c2 = rm.error_context(nil, h, false)
    assert.are.equal(c1.request_id, c2.request_id)
    assert.are.equal(c1.trace_id, c2.trace_id)
    local n = assert(rm.validate_decide(canonical(), h))
    assert.are.equal(c1.request_id, n.request_id)
    assert.are.equal(c1.trace_id, n.trace_id)
  end)

  it("two requests get different generated ids", function()
    local a, b = rm.error_context(nil, hdr(), false), rm.error_context(nil, hdr(), false)
    assert.are_not.equal(a.request_id, b.request_id)
    assert.are_not.equal(a.trace_id, b.trace_id)
  end)

  it("ids the client sent win over the generated ones", function()
    local h = hdr({ trace_id = TRACE })
    rm.error_context(nil, h, false)
    local n = assert(rm.validate_decide(canonical('"request_id":"req-7"'), h))
    assert.are.equal("req-7", n.request_id)
    assert.are.equal(TRACE, n.trace_id)
  end)
end)

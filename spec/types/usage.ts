// Type-level test of src-ts/types: everything here must compile with zero diagnostics, and the
// Lua TypeScriptToLua emits for it is checked by spec/types/typings.test.js (free functions with
// `.`, methods with `:`). Lines marked @ts-expect-error must fail to type-check: if a typing
// became too loose, TypeScript reports the directive as unused and the test fails.
import * as semaphore from "ngx.semaphore";
import cjson = require("cjson");
import cjsonSafe = require("cjson.safe");
import tableNew = require("table.new");

export function usage(): void {
    // free functions on the ngx table
    ngx.say("hello");
    ngx.log(ngx.ERR, "x ", 1);
    ngx.status = 201;
    ngx.header["X-A"] = "1";
    const uri: string | undefined = ngx.var["uri"];
    const [headers, herr] = ngx.req.get_headers(100);
    const tenant = headers["x-tenant-id"];
    ngx.update_time();
    const now: number = ngx.now();

    // methods with self: sockets, semaphores, shared dicts
    const sock = ngx.socket.tcp();
    sock.settimeouts(100, 100, 100);
    const [ok, cerr] = sock.connect("127.0.0.1", 4222);
    const [sent] = sock.send(["a", "b"]);
    const [data, rerr, partial] = sock.receive("*l");
    const [chunk] = sock.receiveany(4096);
    sock.close();
    const [sema] = semaphore.new(0);
    if (sema !== undefined) {
        sema.post(1);
        const [waited, werr] = sema.wait(0.5);
        ngx.log(ngx.INFO, waited, werr);
    }
    const dict = ngx.shared["beamline_decisions"];
    if (dict !== undefined) {
        const [n, ierr] = dict.incr("k", 1, 0, 60);
        const [v, flags] = dict.get("k");
        ngx.log(ngx.INFO, n, ierr, v, flags);
    }

    // timers, threads, regex, worker
    ngx.timer.at(0, (premature: boolean, x: number) => ngx.log(ngx.INFO, premature, x), 1);
    const th = ngx.thread.spawn((a: string) => a, "x");
    ngx.thread.wait(th);
    const [m] = ngx.re.match("abc", "b", "jo");
    const exiting: boolean = ngx.worker.exiting();

    // cjson
    const text: string = cjson.encode({ a: 1 });
    const [decoded, derr] = cjsonSafe.decode(text);
    const isNull = decoded === cjson.null;
    const t = tableNew<string[]>(4, 0);

    ngx.log(ngx.DEBUG, uri, herr, tenant, now, ok, cerr, sent, data, rerr, partial, chunk, m, exiting, derr, isNull, t);
}

export function misuse(): void {
    const sock = ngx.socket.tcp();
    // @ts-expect-error connect needs a port
    sock.connect("127.0.0.1");
    // @ts-expect-error not a receive pattern
    sock.receive("*x");
    // @ts-expect-error a header value is a string, number or list of strings
    ngx.header["X-A"] = { nested: true };
    // @ts-expect-error a shared dict may not exist: check for undefined first
    ngx.shared["nope"].get("k");
    // @ts-expect-error nginx variables are strings (or nil)
    const n: number = ngx.var["uri"];
    // @ts-expect-error the timer callback gets `premature: boolean` first
    ngx.timer.at(0, (premature: string) => premature);
    // @ts-expect-error cjson decodes strings
    cjson.decode(1);
    // @ts-expect-error sema:wait needs a timeout
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- the line under test is the missing argument
    semaphore.new(1)[0]!.wait();
    // @ts-expect-error ok/err results are multi-returns, not a single value
    const connected: number = sock.connect("127.0.0.1", 1);
    ngx.log(ngx.DEBUG, n, connected);
}

-- luacheck over the compiled Lua (dist-lua/): catches globals and unused values that the
-- TypeScript compiler cannot see. Run by `make test` (scripts/test.js) after the build.
std = "luajit"
-- ngx is the one global the gateway uses; its fields (status, header, var, ctx) are assigned.
globals = { "ngx" }
max_line_length = false
-- `____` is TypeScriptToLua's name for values it must bind but never reads (array holes,
-- ignored destructuring slots, the self of no-self callbacks). 581 (`not (a >= b)`) is how
-- TypeScript's `!(a >= b)` compiles, kept on purpose where NaN must count as "not"; 61x is
-- whitespace in the comments TSTL copies from the TypeScript doc comments.
ignore = { "21./____.*", "4../____.*", "212/self", "581", "61." }
-- TypeScriptToLua's own runtime library is not ours to lint.
exclude_files = { "dist-lua/lualib_bundle.lua", "dist-lua.next-*/**" }

/** @noSelfInFile */
/**
 * Typings for lua-cjson as shipped by Debian (`lua-cjson`) and by OpenResty (its fork adds
 * `empty_array`, `array_mt`, `empty_array_mt` and `decode_array_with_array_mt`; treat those as
 * optional and feature-test them).
 *
 * Traps: JSON `null` decodes to `cjson.null` (truthy light userdata); an empty Lua table encodes
 * as `{}` unless it carries `array_mt` / is `empty_array`; `encode` raises on unsupported values
 * (functions, NaN with default settings, excessive depth), so call it through `pcall` or use
 * `cjson.safe`.
 */

/** A cjson module instance (`require("cjson")`, `require("cjson.safe")`, or `cjson.new()`).
 * @noSelf
 */
declare interface CjsonModule {
    readonly null: NgxNull;
    /** OpenResty only: a light userdata that encodes as `[]`. */
    readonly empty_array?: object;
    /** OpenResty only: metatable that makes a table encode as an array even when empty. */
    readonly array_mt?: object;
    readonly empty_array_mt?: object;
    encode(value: unknown): string;
    decode(text: string): unknown;
    encode_empty_table_as_object(on: boolean | "on" | "off"): void;
    decode_array_with_array_mt?(on: boolean): void;
    encode_max_depth(depth?: number): number;
    decode_max_depth(depth?: number): number;
    encode_sparse_array(convert?: boolean, ratio?: number, safe?: number): void;
    encode_number_precision(precision: number): void;
    encode_invalid_numbers(setting: boolean | "null"): void;
    decode_invalid_numbers(setting: boolean): void;
    encode_escape_forward_slash?(on: boolean): void;
    encode_keep_buffer(on: boolean): void;
    /** A fresh instance with its own settings. (Quoted: a bare `new()` would declare a construct signature.) */
    "new"(): CjsonModule;
}

/** `cjson.safe`: encode/decode return nil and an error instead of raising.
 * @noSelf
 */
declare interface CjsonSafeModule extends Omit<CjsonModule, "encode" | "decode" | "new"> {
    encode(value: unknown): LuaMultiReturn<[string, undefined] | [undefined, string]>;
    decode(text: string): LuaMultiReturn<[unknown, undefined] | [undefined, string]>;
    "new"(): CjsonSafeModule;
}

declare module "cjson" {
    const cjson: CjsonModule;
    export = cjson;
}

declare module "cjson.safe" {
    const cjsonSafe: CjsonSafeModule;
    export = cjsonSafe;
}

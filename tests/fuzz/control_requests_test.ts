/**
 * Fuzzes the control protocol's request parser (`parseRequest` in
 * `mod/daemon/control.ts`) with lines of bytes (decoded as the daemon does)
 * and JSON made to hurt: deep nesting, huge numbers, `__proto__` keys.
 *
 * @module
 */

import { encodeLine, parseRequest } from "../../mod/daemon/control.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import { below, concat, type Mutator, pick } from "./_mutators.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function check(input: Uint8Array): void {
  const line = decoder.decode(input);
  const before = Object.getOwnPropertyNames(Object.prototype).length;
  let result: ReturnType<typeof parseRequest>;
  try {
    result = parseRequest(line);
  } catch (error) {
    property(false, `parseRequest() threw ${(error as Error)?.name}: ${(error as Error)?.message}`);
  }
  property(
    Object.getOwnPropertyNames(Object.prototype).length === before &&
      ({} as Record<string, unknown>).polluted === undefined,
    "parsing a request changed Object.prototype",
  );
  property(typeof result.id === "number", "the result has no numeric id");
  let value: unknown;
  let json = true;
  try {
    value = JSON.parse(line);
  } catch {
    json = false;
  }
  const r = value as Record<string, unknown> | null;
  const valid = json && typeof r === "object" && r !== null && Number.isSafeInteger(r.id) &&
    typeof r.method === "string";
  if ("error" in result) {
    property(!valid, "parseRequest() refused a valid request");
    property(
      result.error.code === "bad-request" && result.error.message !== "" &&
        result.error.hint !== "",
      "an error reply without its code, message or hint",
    );
    // The reply is sent back as a line: it must encode.
    encodeLine(result);
    return;
  }
  property(valid, "parseRequest() accepted what is not a request");
  property(
    Object.is(result.id, r!.id) && result.method === r!.method,
    "the request's id or method differs from the line's",
  );
  property(
    result.params !== undefined && result.params !== null,
    "a request without params must get {}",
  );
}

const SEEDS = [
  '{"id":1,"method":"status"}',
  '{"id":2,"method":"connect","params":{"namespace":"shop","alsoProxy":["198.19.0.0/16"],"graceSeconds":30}}',
  '{"id":3,"method":"loglevel","params":{"level":"debug"}}',
  '{"id":4,"method":"quit","params":null}',
  '{"method":"status"}',
  '{"id":"5","method":"status"}',
  '{"id":6}',
  '{"id":7,"method":"status","__proto__":{"polluted":true},"params":{"__proto__":{"x":1}}}',
  '{"id":1e400,"method":"status"}',
  '{"id":-0,"method":"x","params":[1,2,3]}',
  "[1,2,3]",
  "null",
  '"just a string"',
  "",
  "   ",
];

/** JSON-shaped changes: nesting, numbers, keys and strings that hurt. */
const json: Mutator[] = [
  (b, r) => {
    const depth = 1 + below(r, 20000);
    const [open, close] = pick(r, [["[", "]"], ['{"a":', "}"], ['{"__proto__":', "}"]]);
    const closes = r() < 0.8 ? depth : below(r, depth);
    const body = open!.repeat(depth) + "1" + close!.repeat(closes);
    const at = below(r, b.length + 1);
    return concat(b.subarray(0, at), encoder.encode(body), b.subarray(at));
  },
  (b, r) => {
    const token = pick(r, [
      "1e400",
      "-1e400",
      "9007199254740993",
      "0.0000000000000000000000001",
      "-0",
      "1" + "0".repeat(400),
      '"__proto__"',
      '"constructor"',
      '"prototype"',
      '"\\u0000"',
      '"\\ud800"',
      "true",
      "null",
    ]);
    const at = below(r, b.length + 1);
    return concat(b.subarray(0, at), encoder.encode(token), b.subarray(at));
  },
  (b, r) => {
    const text = decoder.decode(b);
    const keys = ['"id"', '"method"', '"params"', '"__proto__"', '"constructor"'];
    return encoder.encode(text.replace(/"[a-zA-Z_]+"/, pick(r, keys)));
  },
];

fuzzTest(
  "control_requests",
  "parseRequest() never throws, leaves Object.prototype alone, and accepts exactly the JSON objects with a whole-number id and a string method",
  () => ({
    seeds: SEEDS.map((s) => encoder.encode(s)),
    check,
    mutators: json,
    maxLength: 65536,
  }),
);

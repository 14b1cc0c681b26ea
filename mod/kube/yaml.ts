/**
 * A small YAML emitter for Kubernetes objects: block style, keys in the order
 * the object has them (apiVersion, kind, metadata, spec, as kubectl prints),
 * and a string quoted (as a JSON string, which is valid YAML) whenever a YAML
 * 1.1 or 1.2 parser could read it as anything but that string: numbers,
 * versions like `0.1.0`, `yes`/`no`/`on`/`off`, flags like `--serve`, base64
 * with `+/=`. Pure: no I/O.
 *
 * Only JSON values are emitted (objects, arrays, strings, finite numbers,
 * booleans, null); `undefined` members are left out, as `JSON.stringify` does.
 *
 * @example
 * ```ts
 * import { toYaml } from "./yaml.ts";
 *
 * const text = toYaml({ kind: "Namespace", metadata: { name: "vif-system" }, list: ["--serve"] });
 * if (text !== 'kind: Namespace\nmetadata:\n  name: vif-system\nlist:\n- "--serve"\n') {
 *   throw new Error(text);
 * }
 * ```
 *
 * @module
 */

/**
 * Renders one value as a YAML document (without the `---` marker).
 *
 * @param value A JSON value.
 * @returns The YAML text, ending in a newline.
 * @throws {TypeError} When the value holds a function, a symbol, a bigint or a non-finite number.
 */
export function toYaml(value: unknown): string {
  const plain = toJsonValue(value);
  if (isNonEmptyCollection(plain)) return block(plain, "").join("\n") + "\n";
  return scalar(plain) + "\n";
}

/**
 * Renders values as a multi-document YAML stream, documents separated by
 * `---`, as `kubectl apply -f -` reads.
 *
 * @param values The documents.
 * @returns The YAML stream, ending in a newline.
 * @throws {TypeError} As {@linkcode toYaml}.
 *
 * @example
 * ```ts
 * import { toYamlStream } from "./yaml.ts";
 *
 * const text = toYamlStream([{ a: 1 }, { b: true }]);
 * if (text !== "a: 1\n---\nb: true\n") throw new Error(text);
 * ```
 */
export function toYamlStream(values: readonly unknown[]): string {
  return values.map(toYaml).join("---\n");
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The value as JSON would carry it: `toJSON()` applied, `undefined` members dropped. */
function toJsonValue(value: unknown): Json {
  if (value !== null && typeof value === "object" && "toJSON" in value) {
    const toJSON = (value as { toJSON: unknown }).toJSON;
    if (typeof toJSON === "function") return toJsonValue(toJSON.call(value));
  }
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`Cannot write ${value} as YAML`);
    return value;
  }
  if (Array.isArray(value)) {
    return value.map((item) => item === undefined ? null : toJsonValue(item));
  }
  if (typeof value === "object") {
    const out: { [key: string]: Json } = {};
    for (const [key, member] of Object.entries(value)) {
      if (member !== undefined) out[key] = toJsonValue(member);
    }
    return out;
  }
  throw new TypeError(`Cannot write a ${typeof value} as YAML`);
}

function isNonEmptyCollection(value: Json): value is Json[] | { [key: string]: Json } {
  if (Array.isArray(value)) return value.length > 0;
  return value !== null && typeof value === "object" && Object.keys(value).length > 0;
}

/** The lines of a non-empty collection, each starting with `pad`. */
function block(value: Json[] | { [key: string]: Json }, pad: string): string[] {
  const out: string[] = [];
  if (Array.isArray(value)) {
    for (const item of value) {
      if (isNonEmptyCollection(item)) {
        // The item's first line moves up beside the dash: "- name: x".
        const [first = "", ...rest] = block(item, pad + "  ");
        out.push(`${pad}- ${first.slice(pad.length + 2)}`, ...rest);
      } else {
        out.push(`${pad}- ${scalar(item)}`);
      }
    }
    return out;
  }
  for (const [key, member] of Object.entries(value)) {
    if (isNonEmptyCollection(member)) {
      // Sequences under a key are not indented further, as kubectl prints them.
      out.push(`${pad}${string(key)}:`, ...block(member, Array.isArray(member) ? pad : pad + "  "));
    } else {
      out.push(`${pad}${string(key)}: ${scalar(member)}`);
    }
  }
  return out;
}

function scalar(value: Json): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "[]";
  if (typeof value === "object") return "{}";
  if (typeof value === "string") return string(value);
  return String(value);
}

/** Words that YAML 1.1 reads as booleans or null (YAML 1.2 reads fewer). */
const RESERVED = /^(?:y|yes|n|no|true|false|on|off|null|~)$/i;
/** Text that no YAML parser reads as anything but a string: no digit first, no indicator. */
const PLAIN = /^[A-Za-z_/][A-Za-z0-9_./-]*$/;

function string(text: string): string {
  return PLAIN.test(text) && !RESERVED.test(text) ? text : JSON.stringify(text);
}

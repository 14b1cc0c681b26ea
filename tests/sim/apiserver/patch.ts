/**
 * The three patch types kube-apiserver takes for built-in kinds:
 *
 * - JSON merge patch (RFC 7386, `application/merge-patch+json`);
 * - strategic merge patch (`application/strategic-merge-patch+json`): a merge
 *   patch where lists with a merge key (`containers` by `name`, service
 *   `ports` by `port`, …) are merged item by item, with the directives
 *   `$patch` (`replace`, `delete`, `merge`), `$retainKeys`,
 *   `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`, as
 *   `kubectl apply` sends them;
 * - JSON patch (RFC 6902, `application/json-patch+json`).
 *
 * All functions are pure: they return a new value and never change their
 * arguments.
 *
 * @module
 */

type Json = unknown;
type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/**
 * Applies a JSON merge patch (RFC 7386 section 2).
 *
 * @example
 * ```ts
 * import { mergePatch } from "./patch.ts";
 * const out = mergePatch({ a: 1, b: { c: 2 } }, { b: { c: null, d: 3 } });
 * console.assert(JSON.stringify(out) === '{"a":1,"b":{"d":3}}');
 * ```
 *
 * @param target the document
 * @param patch the patch
 * @returns the patched document
 */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: JsonObject = isObject(target) ? structuredClone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * The merge key of a list field in built-in kinds, from its name and the
 * names of the fields above it (`spec.template.spec.containers` → `name`),
 * as the `patchMergeKey` struct tags of `k8s.io/api` say. `undefined` means
 * the list is atomic (replaced whole); `""` a set of primitives merged by value.
 *
 * @param path field names from the root down to the list (list indexes left out)
 * @returns the merge key, `""` for a merged primitive list, or undefined
 */
export function mergeKeyFor(path: readonly string[]): string | undefined {
  const name = path[path.length - 1];
  const parent = path[path.length - 2];
  switch (name) {
    case "containers":
    case "initContainers":
    case "ephemeralContainers":
    case "volumes":
    case "imagePullSecrets":
    case "env":
    case "resourceClaims":
      return "name";
    case "volumeMounts":
      return "mountPath";
    case "volumeDevices":
      return "devicePath";
    case "hostAliases":
      return "ip";
    case "ownerReferences":
      return "uid";
    case "finalizers":
      return parent === "metadata" ? "" : undefined;
    case "conditions":
      return "type";
    case "addresses":
      return parent === "status" ? "type" : undefined;
    case "topologySpreadConstraints":
      return "topologyKey";
    case "ports":
      // Container ports merge by containerPort, service ports by port; the
      // ports of endpoints, ingress and the like are atomic.
      if (parent === "spec") return "port";
      if (
        path.includes("containers") || path.includes("initContainers") ||
        path.includes("ephemeralContainers")
      ) return "containerPort";
      return undefined;
    default:
      return undefined;
  }
}

const SET_ORDER = "$setElementOrder/";
const DELETE_FROM = "$deleteFromPrimitiveList/";

/**
 * Applies a strategic merge patch to an object of a built-in kind.
 *
 * @example
 * ```ts
 * import { strategicMergePatch } from "./patch.ts";
 * const pod = { spec: { containers: [{ name: "a", image: "x" }, { name: "b", image: "y" }] } };
 * const out = strategicMergePatch(pod, { spec: { containers: [{ name: "b", image: "z" }] } });
 * console.assert(JSON.stringify(out) ===
 *   '{"spec":{"containers":[{"name":"a","image":"x"},{"name":"b","image":"z"}]}}');
 * ```
 *
 * @param target the current object
 * @param patch the patch
 * @returns the patched object
 * @throws {SyntaxError} for a malformed directive
 */
export function strategicMergePatch(target: Json, patch: Json): Json {
  return smpValue(target, patch, []);
}

function smpValue(target: Json, patch: Json, path: string[]): Json {
  if (isObject(patch)) return smpObject(isObject(target) ? target : undefined, patch, path);
  return structuredClone(patch);
}

function smpObject(target: JsonObject | undefined, patch: JsonObject, path: string[]): Json {
  const directive = patch["$patch"];
  if (directive === "delete") return undefined;
  if (directive === "replace") {
    const copy = structuredClone(patch);
    delete copy["$patch"];
    return stripDirectives(copy);
  }
  const out: JsonObject = target ? structuredClone(target) : {};
  const retain = patch["$retainKeys"];
  for (const [k, v] of Object.entries(patch)) {
    if (k === "$patch" || k === "$retainKeys" || k.startsWith(SET_ORDER)) continue;
    if (k.startsWith(DELETE_FROM)) {
      const field = k.slice(DELETE_FROM.length);
      const list = out[field];
      if (Array.isArray(list) && Array.isArray(v)) {
        out[field] = list.filter((x) => !v.some((d) => JSON.stringify(d) === JSON.stringify(x)));
      }
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    const childPath = [...path, k];
    if (Array.isArray(v)) {
      const merged = smpList(out[k], v, childPath);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    } else {
      const merged = smpValue(out[k], v, childPath);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    }
  }
  for (const [k, v] of Object.entries(patch)) {
    if (!k.startsWith(SET_ORDER) || !Array.isArray(v)) continue;
    const field = k.slice(SET_ORDER.length);
    const list = out[field];
    if (Array.isArray(list)) out[field] = reorder(list, v, mergeKeyFor([...path, field]));
  }
  if (retain !== undefined) {
    if (!Array.isArray(retain)) throw new SyntaxError(`Invalid "$retainKeys": must be a list`);
    for (const k of Object.keys(out)) if (!retain.includes(k)) delete out[k];
  }
  return out;
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObject(v)) return v;
  const out: JsonObject = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === "$patch" || k === "$retainKeys" || k.startsWith(SET_ORDER)) continue;
    if (k.startsWith(DELETE_FROM)) continue;
    out[k] = stripDirectives(x);
  }
  return out;
}

function smpList(target: Json, patch: Json[], path: string[]): Json {
  const key = mergeKeyFor(path);
  const current = Array.isArray(target) ? target : [];
  // `[{"$patch": "replace"}, …]` replaces the list with the other items.
  const replace = patch.some((p) => isObject(p) && p["$patch"] === "replace");
  if (key === undefined || replace) {
    return stripDirectives(patch.filter((p) => !(isObject(p) && p["$patch"] === "replace")));
  }
  if (key === "") {
    // A set of primitives: union, keeping order of first appearance.
    const out = [...current];
    for (const p of patch) {
      if (!out.some((x) => JSON.stringify(x) === JSON.stringify(p))) out.push(p);
    }
    return out;
  }
  const out: Json[] = current.map((x) => structuredClone(x));
  for (const p of patch) {
    if (!isObject(p)) {
      throw new SyntaxError(`Invalid patch: list "${path.join(".")}" needs objects with "${key}"`);
    }
    const k = p[key];
    const i = out.findIndex((x) => isObject(x) && JSON.stringify(x[key]) === JSON.stringify(k));
    if (p["$patch"] === "delete") {
      if (i >= 0) out.splice(i, 1);
      continue;
    }
    if (i >= 0) out[i] = smpObject(out[i] as JsonObject, p, path);
    else out.push(smpObject(undefined, p, path));
  }
  return out;
}

function reorder(list: Json[], order: Json[], key: string | undefined): Json[] {
  const id = (x: Json) =>
    JSON.stringify(key && isObject(x) ? x[key] : isObject(x) ? undefined : x) ?? "";
  const orderIds = order.map((o) => id(key && isObject(o) ? o : o));
  const rank = (x: Json) => {
    const i = orderIds.indexOf(id(x));
    return i < 0 ? orderIds.length : i;
  };
  return list
    .map((x, i) => ({ x, i }))
    .sort((a, b) => rank(a.x) - rank(b.x) || a.i - b.i)
    .map((e) => e.x);
}

/** One RFC 6902 operation. */
export interface JsonPatchOp {
  op: "add" | "remove" | "replace" | "move" | "copy" | "test";
  path: string;
  value?: unknown;
  from?: string;
}

function parsePointer(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new SyntaxError(`Invalid JSON pointer "${pointer}"`);
  return pointer.slice(1).split("/").map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
}

function parent(doc: Json, tokens: string[], pointer: string): { container: Json; last: string } {
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(t, cur.length - 1, pointer)];
    else if (isObject(cur) && Object.hasOwn(cur, t)) cur = cur[t];
    else throw new RangeError(`Path "${pointer}" does not exist`);
  }
  return { container: cur, last: tokens[tokens.length - 1]! };
}

function arrayIndex(token: string, max: number, pointer: string): number {
  if (!/^(0|[1-9][0-9]*)$/.test(token)) {
    throw new RangeError(`Invalid array index "${token}" in "${pointer}"`);
  }
  const i = Number(token);
  if (i > max) throw new RangeError(`Index ${i} out of range in "${pointer}"`);
  return i;
}

function getAt(doc: Json, pointer: string): Json {
  let cur = doc;
  for (const t of parsePointer(pointer)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(t, cur.length - 1, pointer)];
    else if (isObject(cur) && Object.hasOwn(cur, t)) cur = cur[t];
    else throw new RangeError(`Path "${pointer}" does not exist`);
  }
  return cur;
}

function removeAt(doc: Json, pointer: string): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return undefined;
  const { container, last } = parent(doc, tokens, pointer);
  if (Array.isArray(container)) {
    const [v] = container.splice(arrayIndex(last, container.length - 1, pointer), 1);
    return v;
  }
  if (isObject(container) && Object.hasOwn(container, last)) {
    const v = container[last];
    delete container[last];
    return v;
  }
  throw new RangeError(`Path "${pointer}" does not exist`);
}

function addAt(doc: Json, pointer: string, value: Json): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return value;
  const { container, last } = parent(doc, tokens, pointer);
  if (Array.isArray(container)) {
    if (last === "-") container.push(value);
    else container.splice(arrayIndex(last, container.length, pointer), 0, value);
  } else if (isObject(container)) {
    container[last] = value;
  } else {
    throw new RangeError(`Path "${pointer}" does not exist`);
  }
  return doc;
}

/**
 * Applies a JSON patch (RFC 6902 section 4).
 *
 * @example
 * ```ts
 * import { jsonPatch } from "./patch.ts";
 * const out = jsonPatch({ spec: { replicas: 1 } }, [
 *   { op: "replace", path: "/spec/replicas", value: 3 },
 * ]);
 * console.assert((out as { spec: { replicas: number } }).spec.replicas === 3);
 * ```
 *
 * @param target the document
 * @param ops the operations, applied in order
 * @returns the patched document
 * @throws {RangeError} for a path that does not exist or a failed `test`
 * @throws {SyntaxError} for a malformed operation
 */
export function jsonPatch(target: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw new SyntaxError("Invalid JSON patch: not a list of operations");
  let doc = structuredClone(target);
  for (const raw of ops) {
    if (!isObject(raw) || typeof raw.op !== "string" || typeof raw.path !== "string") {
      throw new SyntaxError(`Invalid JSON patch operation: ${JSON.stringify(raw)}`);
    }
    const op = raw as unknown as JsonPatchOp;
    switch (op.op) {
      case "add":
        doc = addAt(doc, op.path, structuredClone(op.value));
        break;
      case "remove":
        removeAt(doc, op.path);
        break;
      case "replace":
        if (op.path === "") doc = structuredClone(op.value);
        else {
          removeAt(doc, op.path);
          doc = addAt(doc, op.path, structuredClone(op.value));
        }
        break;
      case "move": {
        const v = removeAt(doc, op.from ?? "");
        doc = addAt(doc, op.path, v);
        break;
      }
      case "copy":
        doc = addAt(doc, op.path, structuredClone(getAt(doc, op.from ?? "")));
        break;
      case "test":
        if (JSON.stringify(getAt(doc, op.path)) !== JSON.stringify(op.value)) {
          throw new RangeError(`Test failed at "${op.path}"`);
        }
        break;
      default:
        throw new SyntaxError(`Unknown JSON patch operation "${String(raw.op)}"`);
    }
  }
  return doc;
}

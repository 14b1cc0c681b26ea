/**
 * Label and field selectors with the syntax of `k8s.io/apimachinery/pkg/labels`
 * and `…/fields`: `app=web,tier!=db`, `env in (a,b)`, `!canary`,
 * `metadata.name=web`.
 *
 * @module
 */

import { badRequest } from "./status.ts";

/** One parsed requirement of a label selector. */
export interface LabelRequirement {
  key: string;
  op: "=" | "!=" | "in" | "notin" | "exists" | "!";
  values: string[];
}

/** A parsed selector: every requirement must hold. */
export type LabelSelector = LabelRequirement[];

function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "," && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== "");
}

const KEY = /^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

function checkKey(key: string, text: string): string {
  if (!KEY.test(key)) {
    throw badRequest(`unable to parse requirement: invalid label key "${key}" in "${text}"`);
  }
  return key;
}

function checkValue(value: string, text: string): string {
  if (!VALUE.test(value)) {
    throw badRequest(`unable to parse requirement: invalid label value: "${value}" in "${text}"`);
  }
  return value;
}

/**
 * Parses a label selector.
 *
 * @example
 * ```ts
 * import { matchLabels, parseLabelSelector } from "./selectors.ts";
 * const s = parseLabelSelector("app=web,env in (a,b),!canary");
 * console.assert(matchLabels(s, { app: "web", env: "b" }));
 * ```
 *
 * @param text the selector (`""` selects everything)
 * @returns the requirements
 * @throws {ApiError} 400 when it does not parse
 */
export function parseLabelSelector(text: string): LabelSelector {
  const out: LabelSelector = [];
  for (const part of splitTopLevel(text)) {
    let m = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(part);
    if (m) {
      const values = m[3]!.split(",").map((v) => checkValue(v.trim(), text));
      out.push({ key: checkKey(m[1]!, text), op: m[2] as "in" | "notin", values });
      continue;
    }
    m = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (m) {
      const op = m[2] === "!=" ? "!=" : "=";
      out.push({ key: checkKey(m[1]!, text), op, values: [checkValue(m[3]!.trim(), text)] });
      continue;
    }
    m = /^!\s*(\S+)$/.exec(part);
    if (m) {
      out.push({ key: checkKey(m[1]!, text), op: "!", values: [] });
      continue;
    }
    out.push({ key: checkKey(part, text), op: "exists", values: [] });
  }
  return out;
}

/**
 * Whether labels satisfy a selector.
 *
 * @param selector the parsed selector
 * @param labels the object's labels
 * @returns true when every requirement holds
 */
export function matchLabels(
  selector: LabelSelector,
  labels: Record<string, string> | undefined,
): boolean {
  const l = labels ?? {};
  return selector.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case "=":
        return has && v === r.values[0];
      case "!=":
        return !has || v !== r.values[0];
      case "in":
        return has && r.values.includes(v!);
      case "notin":
        return !has || !r.values.includes(v!);
      case "exists":
        return has;
      case "!":
        return !has;
    }
  });
}

/** One parsed field requirement. */
export interface FieldRequirement {
  field: string;
  op: "=" | "!=";
  value: string;
}

/**
 * Parses a field selector and checks its labels against those the resource
 * supports (`metadata.name` and `metadata.namespace` always).
 *
 * @param text the selector
 * @param supported more field labels the resource accepts
 * @returns the requirements
 * @throws {ApiError} 400 for a bad term or an unsupported field
 */
export function parseFieldSelector(text: string, supported: readonly string[]): FieldRequirement[] {
  const out: FieldRequirement[] = [];
  for (const part of splitTopLevel(text)) {
    const m = /^([^=!]+?)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!m) throw badRequest(`invalid selector: '${text}'; can't understand '${part}'`);
    const field = m[1]!.trim();
    if (
      field !== "metadata.name" && field !== "metadata.namespace" && !supported.includes(field)
    ) {
      throw badRequest(`field label not supported: ${field}`);
    }
    out.push({ field, op: m[2] === "!=" ? "!=" : "=", value: m[3]!.trim() });
  }
  return out;
}

function fieldValue(obj: Record<string, unknown>, path: string): string {
  let cur: unknown = obj;
  for (const key of path.split(".")) {
    if (cur === null || typeof cur !== "object") return "";
    cur = (cur as Record<string, unknown>)[key];
  }
  if (cur === undefined || cur === null) return "";
  return String(cur);
}

/**
 * Whether an object satisfies field requirements.
 *
 * @param reqs the parsed requirements
 * @param obj the object
 * @returns true when all hold
 */
export function matchFields(reqs: FieldRequirement[], obj: Record<string, unknown>): boolean {
  return reqs.every((r) => {
    const v = fieldValue(obj, r.field);
    return r.op === "=" ? v === r.value : v !== r.value;
  });
}

/**
 * Renders `matchLabels`/`matchExpressions` of a `metav1.LabelSelector` as
 * selector text (`app=web,tier in (a,b)`).
 *
 * @param sel the LabelSelector object
 * @returns the text
 */
export function labelSelectorText(sel: unknown): string {
  if (!sel || typeof sel !== "object") return "";
  const s = sel as {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: string; values?: string[] }[];
  };
  const parts = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of s.matchExpressions ?? []) {
    const values = (e.values ?? []).join(",");
    if (e.operator === "In") parts.push(`${e.key} in (${values})`);
    else if (e.operator === "NotIn") parts.push(`${e.key} notin (${values})`);
    else if (e.operator === "Exists") parts.push(e.key);
    else if (e.operator === "DoesNotExist") parts.push(`!${e.key}`);
  }
  return parts.join(",");
}

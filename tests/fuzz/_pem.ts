/**
 * Helpers of the X.509 fuzz targets: inputs made of several PEM texts
 * (NUL-separated), and mutators that change the DER inside a PEM block (tags,
 * lengths, times, strings), re-wrap it, and can sign a changed certificate
 * again so that its signature still verifies and the checks after it run.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, type KeyObject, sign } from "node:crypto";
import { pem } from "../../mod/kube/x509.ts";
import {
  below,
  concat,
  genericMutators,
  interestingNumber,
  type Mutator,
  pick,
  type Rand,
} from "./_mutators.ts";

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/**
 * Joins texts (or bytes) into one input, NUL-separated.
 *
 * @param parts the texts
 * @returns the input
 */
export function joinParts(parts: readonly (string | Uint8Array)[]): Uint8Array {
  const bytes = parts.map((p) => typeof p === "string" ? encoder.encode(p) : p);
  return concat(...bytes.flatMap((b, i) => i === 0 ? [b] : [new Uint8Array([0]), b]));
}

/**
 * Splits an input made by {@linkcode joinParts}; missing parts are empty.
 *
 * @param input the input
 * @param count how many parts
 * @returns the parts, as bytes
 */
export function splitParts(input: Uint8Array, count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < count; i++) {
    const end = i === count - 1 ? input.length : input.indexOf(0, start);
    const stop = end < 0 ? input.length : end;
    out.push(input.subarray(Math.min(start, input.length), stop));
    start = stop + 1;
  }
  return out;
}

/** A PEM block found in a text: its label, DER, and the text around it. */
interface Block {
  label: string;
  der: Uint8Array;
  before: string;
  after: string;
}

function findBlock(text: string): Block | undefined {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\s]*)-----END \1-----\n?/.exec(text);
  if (!m) return undefined;
  let der: Uint8Array;
  try {
    der = Uint8Array.from(atob(m[2]!.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
  return {
    label: m[1]!,
    der,
    before: text.slice(0, m.index),
    after: text.slice(m.index + m[0].length),
  };
}

/** One DER value: tag, where its header starts, where its contents start and end. */
export interface DerNode {
  tag: number;
  headerStart: number;
  start: number;
  end: number;
}

/**
 * Every value of a DER tree, depth first (constructed values are entered);
 * stops quietly where the bytes are not DER.
 *
 * @param der the bytes
 * @returns the values
 */
export function derNodes(der: Uint8Array): DerNode[] {
  const out: DerNode[] = [];
  const walk = (from: number, to: number, depth: number) => {
    for (const node of derChildren(der, from, to)) {
      if (out.length >= 4096) return;
      out.push(node);
      if (isContainer(der, node.tag, node.start) && depth < 32) {
        walk(node.start, node.end, depth + 1);
      }
    }
  };
  walk(0, der.length, 0);
  return out;
}

/** Constructed values, and OCTET STRINGs that wrap DER (an extension's value). */
function isContainer(der: Uint8Array, tag: number, start: number): boolean {
  return (tag & 0x20) !== 0 || (tag === 0x04 && (der[start] === 0x30 || der[start] === 0x03));
}

/**
 * The values directly inside `der[from, to)`.
 *
 * @param der the bytes
 * @param from where the first starts
 * @param to where the last must end
 * @returns the values, or fewer where the bytes are not DER
 */
export function derChildren(der: Uint8Array, from: number, to: number): DerNode[] {
  const out: DerNode[] = [];
  for (let at = from; at < to;) {
    const headerStart = at;
    const tag = der[at++]!;
    let length = der[at++];
    if (length === undefined) break;
    if (length & 0x80) {
      const n = length & 0x7f;
      if (n === 0 || n > 4) break;
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + (der[at++] ?? NaN);
    }
    const end = at + length;
    if (!(end <= to)) break;
    out.push({ tag, headerStart, start: at, end });
    at = end;
  }
  return out;
}

function lengthBytes(n: number): number[] {
  if (n < 0x80) return [n];
  const octets: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) octets.unshift(v & 0xff);
  return [0x80 | octets.length, ...octets];
}

/** Replaces one value's encoding and fixes the lengths of the values around it. */
function replaceNode(der: Uint8Array, node: DerNode, encoding: Uint8Array): Uint8Array {
  let out = concat(der.subarray(0, node.headerStart), encoding, der.subarray(node.end));
  let delta = encoding.length - (node.end - node.headerStart);
  // Innermost first: an outer header sits before every inner change, so its offset holds.
  const ancestors = derNodes(der)
    .filter((a) =>
      isContainer(der, a.tag, a.start) && a.headerStart < node.headerStart && a.end >= node.end
    )
    .sort((a, b) => b.headerStart - a.headerStart);
  for (const a of ancestors) {
    const oldHeader = a.start - a.headerStart;
    const header = new Uint8Array([a.tag, ...lengthBytes(a.end - a.start + delta)]);
    out = concat(out.subarray(0, a.headerStart), header, out.subarray(a.headerStart + oldHeader));
    delta += header.length - oldHeader;
  }
  return out;
}

const TIMES = [
  "000101000000Z",
  "491231235959Z",
  "500101000000Z",
  "991231235960Z",
  "20991231235959Z",
  "99991231235959Z",
  "00000101000000Z",
  "19700101000000Z",
  "2X0101000000Z",
  "250229000000Z",
  "251301000000Z",
  "250101000000+0100",
  "2501010000Z",
  "",
];

const STRINGS = [
  "",
  "traffic-manager.vif-system",
  "*.vif-system",
  "TRAFFIC-MANAGER.VIF-SYSTEM",
  "traffic-manager.vif-system\u0000.evil",
  "\u001b[31m",
  "é",
  "a".repeat(300),
];

/**
 * A change to one DER value, the lengths of the values around it kept right
 * (or, sometimes, deliberately wrong): another tag, a huge length, contents
 * cut or doubled, a time or a string replaced, a value dropped or repeated.
 *
 * @param der the DER
 * @param r the generator
 * @returns the changed DER
 */
export function tweakDer(der: Uint8Array, r: Rand): Uint8Array {
  const nodes = derNodes(der);
  if (nodes.length === 0) return der.slice();
  const node = pick(r, nodes);
  const contents = der.subarray(node.start, node.end);
  const header = (tag: number, n: number) => new Uint8Array([tag, ...lengthBytes(n)]);
  switch (below(r, 8)) {
    case 0: { // another tag
      const tag = pick(r, [
        0x01,
        0x02,
        0x03,
        0x04,
        0x05,
        0x06,
        0x0c,
        0x13,
        0x16,
        0x17,
        0x18,
        0x30,
        0x31,
        0xa0,
        0xa3,
        0x80,
        0x82,
        0x87,
        0x1f,
        0xff,
      ]);
      return replaceNode(der, node, concat(header(tag, contents.length), contents));
    }
    case 1: { // a length that lies (not fixed up), in the 4-octet long form
      const n = interestingNumber(r);
      const lie = new Uint8Array([0x84, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
      return concat(der.subarray(0, node.headerStart + 1), lie, der.subarray(node.start));
    }
    case 2: { // contents cut
      const n = below(r, contents.length + 1);
      return replaceNode(der, node, concat(header(node.tag, n), contents.subarray(0, n)));
    }
    case 3: { // a time, whatever the value was
      const text = encoder.encode(pick(r, TIMES));
      const tag = text.length === 15 || text.length === 0 ? 0x18 : pick(r, [0x17, 0x18]);
      return replaceNode(der, node, concat(header(tag, text.length), text));
    }
    case 4: { // a string, as UTF8String, IA5String or a dNSName
      const text = encoder.encode(pick(r, STRINGS));
      const tag = pick(r, [0x0c, 0x13, 0x16, 0x82, 0x87]);
      return replaceNode(der, node, concat(header(tag, text.length), text));
    }
    case 5: // the value dropped
      return replaceNode(der, node, new Uint8Array(0));
    case 6: { // the value repeated
      const whole = der.subarray(node.headerStart, node.end);
      return replaceNode(der, node, concat(whole, whole));
    }
    default: { // an INTEGER or BOOLEAN at an edge
      const value = pick(r, [
        [0x00],
        [0xff],
        [0x80],
        [0x00, 0x80],
        [0x7f, 0xff, 0xff, 0xff],
        [],
        new Array(40).fill(0xff),
      ]);
      return replaceNode(
        der,
        node,
        concat(header(pick(r, [0x01, 0x02]), value.length), new Uint8Array(value)),
      );
    }
  }
}

/**
 * A mutator that changes the DER inside one part's first PEM block (with
 * {@linkcode tweakDer} or a generic byte-level mutator) and wraps it again.
 *
 * @param count how many parts inputs have
 * @returns the mutator
 */
export function derMutator(count: number): Mutator {
  return (input, r, pool) => {
    const parts = splitParts(input, count);
    const i = below(r, count);
    const block = findBlock(latin1.decode(parts[i]!));
    if (!block) return input.slice();
    const der = r() < 0.6 ? tweakDer(block.der, r) : pick(r, genericMutators())(block.der, r, pool);
    parts[i] = encoder.encode(block.before + pem(block.label, der) + block.after);
    return joinParts(parts);
  };
}

/**
 * A mutator that changes a certificate's TBSCertificate and signs it again
 * with `signer`, so that the signature verifies and later checks are reached.
 *
 * @param count how many parts inputs have
 * @param part which part is the certificate
 * @param signer the key that signs it, and the part (and PEM) to set to its certificate
 * @returns the mutator
 */
export function resignMutator(
  count: number,
  part: number,
  signer: (input: Uint8Array[]) => { key: KeyObject; setPart?: [number, string] } | undefined,
): Mutator {
  return (input, r) => {
    const parts = splitParts(input, count);
    const block = findBlock(latin1.decode(parts[part]!));
    const by = signer(parts);
    if (!block || !by) return input.slice();
    const [top] = derChildren(block.der, 0, block.der.length);
    if (!top) return input.slice();
    const [tbs, algorithm] = derChildren(block.der, top.start, top.end);
    if (!tbs || !algorithm) return input.slice();
    const changed = tweakDer(block.der.slice(tbs.headerStart, tbs.end), r);
    let signature: Uint8Array;
    try {
      signature = new Uint8Array(sign("sha256", changed, { key: by.key, dsaEncoding: "der" }));
    } catch {
      return input.slice();
    }
    const bits = concat(new Uint8Array([0x03, ...lengthBytes(signature.length + 1), 0]), signature);
    const body = concat(changed, block.der.subarray(algorithm.headerStart, algorithm.end), bits);
    const der = concat(new Uint8Array([0x30, ...lengthBytes(body.length)]), body);
    parts[part] = encoder.encode(block.before + pem(block.label, der) + block.after);
    if (by.setPart) parts[by.setPart[0]] = encoder.encode(by.setPart[1]);
    return joinParts(parts);
  };
}

/**
 * A private key object, or `undefined` when the text holds none.
 *
 * @param text PEM text
 * @returns the key
 */
export function keyOf(text: Uint8Array | string): KeyObject | undefined {
  try {
    return createPrivateKey(typeof text === "string" ? text : Buffer.from(text).toString("latin1"));
  } catch {
    return undefined;
  }
}

/**
 * A part replaced by the same part of another input (a key from another pair, a CA of another).
 *
 * @param count how many parts inputs have
 * @returns the mutator
 */
export function swapPartMutator(count: number): Mutator {
  return (input, r, pool) => {
    const parts = splitParts(input, count);
    const i = below(r, count);
    parts[i] = splitParts(pick(r, pool), count)[i]!;
    return joinParts(parts);
  };
}

/**
 * What the simulated controllers ask of the objects they own: which objects
 * a controller owns (its controller reference), whether a pod is ready or
 * still counts, the template hash they name their children by, and the
 * owner reference they give them. Pure.
 *
 * @module
 */

import type { KubeObject, OwnerReference } from "./apiserver/mod.ts";

/** A Kubernetes object with its free-form fields. */
export type Obj = KubeObject & Record<string, unknown>;

/**
 * The objects whose controller reference is `owner`.
 *
 * @param owner the owner
 * @param objects candidates
 * @returns those it owns, not being deleted
 */
export function ownedBy(owner: KubeObject, objects: readonly KubeObject[]): KubeObject[] {
  return objects.filter((o) =>
    !o.metadata.deletionTimestamp &&
    (o.metadata.ownerReferences ?? []).some((r) => r.controller && r.uid === owner.metadata.uid)
  );
}

/**
 * The controller reference an owner gives what it makes.
 *
 * @param owner the owner
 * @param apiVersion its apiVersion
 * @param kind its kind
 * @returns the reference
 */
export function controllerRef(owner: KubeObject, apiVersion: string, kind: string): OwnerReference {
  return {
    apiVersion,
    kind,
    name: owner.metadata.name!,
    uid: owner.metadata.uid!,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/**
 * Whether a pod's `Ready` condition is true.
 *
 * @param pod the pod
 * @returns true when ready
 */
export function isReady(pod: KubeObject): boolean {
  const conditions = ((pod as Obj).status as { conditions?: { type: string; status: string }[] })
    ?.conditions ?? [];
  return conditions.some((c) => c.type === "Ready" && c.status === "True");
}

/**
 * Whether a pod still counts for its controller (not done, not being deleted).
 *
 * @param pod the pod
 * @returns true when active
 */
export function isActive(pod: KubeObject): boolean {
  const phase = ((pod as Obj).status as { phase?: string } | undefined)?.phase;
  return !pod.metadata.deletionTimestamp && phase !== "Succeeded" && phase !== "Failed";
}

/**
 * A stable short hash of a pod template, in the alphabet of the real
 * `pod-template-hash` (no vowels), as controllers name their children by.
 *
 * @param template the template
 * @returns ten characters
 */
export function templateHash(template: unknown): string {
  const text = JSON.stringify(template);
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  let out = "";
  for (let i = 0; i < 10; i++) {
    out += alphabet[h % alphabet.length];
    h = (Math.floor(h / alphabet.length) ^ Math.imul(h, 31)) >>> 0;
  }
  return out;
}

/**
 * RFC 3339 with whole seconds, as the API writes times.
 *
 * @param d the time
 * @returns the text
 */
export function rfc3339(d = new Date()): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * Whether two values have the same JSON.
 *
 * @param a one
 * @param b the other
 * @returns true when equal
 */
export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

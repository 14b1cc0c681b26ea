/**
 * The object store behind the fake API server, usable in-process by
 * simulated controllers (a kubelet, a deployment controller): objects by
 * resource, namespace and name; one global `resourceVersion` counter; a
 * bounded history of events for watches that resume from a
 * `resourceVersion`; ClusterIP and NodePort allocation; namespace
 * termination and owner-reference garbage collection; the ServiceAccount
 * admission of new Pods (`_admission.ts`).
 *
 * Writes made here are privileged: they keep whatever `status` they are given
 * (the HTTP layer is what drops `status` on the main resource, as the real
 * server does). Every method is synchronous and returns copies, so callers may
 * change what they get without touching the store.
 *
 * @example A controller reacting to deployments and writing their status
 * ```ts ignore
 * const stop = store.watch((e) => {
 *   if (e.type === "DELETED") return;
 *   const spec = e.object.spec as { replicas: number };
 *   queueMicrotask(() =>
 *     store.modify({ resource: "deployments", namespace: e.object.metadata.namespace, name: e.object.metadata.name! }, (d) => {
 *       d.status = { replicas: spec.replicas, readyReplicas: spec.replicas, availableReplicas: spec.replicas };
 *     })
 *   );
 * }, { resource: "deployments" });
 * ```
 *
 * @module
 */

import {
  alreadyExists,
  type ApiError,
  conflict,
  expired,
  type FieldError,
  forbidden,
  invalid,
  notFound,
} from "./status.ts";
import { apiVersionOf, findResource, type ResourceInfo, RESOURCES } from "./resources.ts";
import { applyDefaults, goValue, validate } from "./_strategy.ts";
import { admitPod } from "./_admission.ts";
import { type Cidr4, contains, formatIpv4, parseCidr4, parseIpv4 } from "./_cidr.ts";
import {
  type FieldRequirement,
  type LabelSelector,
  matchFields,
  matchLabels,
  parseFieldSelector,
  parseLabelSelector,
} from "./selectors.ts";

/** `metav1.OwnerReference`. */
export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** `metav1.ObjectMeta`, the fields the store reads and writes. */
export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
  [key: string]: unknown;
}

/** Any Kubernetes object as JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/** Names one stored object. `namespace` is left out for cluster-scoped resources. */
export interface ObjectRef {
  /** `pods`, `deployments` (or `deployments.apps`), `svc`, `Node`, … */
  resource: string;
  namespace?: string;
  name: string;
}

/** The kind of change an event reports. */
export type EventType = "ADDED" | "MODIFIED" | "DELETED";

/** One change to the store. */
export interface StoreEvent {
  type: EventType;
  resource: ResourceInfo;
  /** The object after the change (for DELETED: as it was, with the deletion's resourceVersion). */
  object: KubeObject;
  /** The object before the change, for MODIFIED and DELETED. */
  oldObject?: KubeObject;
  /** The resourceVersion the change made. */
  resourceVersion: number;
}

/** Which objects a list or watch wants. */
export interface ListOptions {
  /** Only this namespace (for namespaced resources). */
  namespace?: string;
  /** A label selector: text (`app=web`) or parsed. */
  labelSelector?: string | LabelSelector;
  /** A field selector: text (`metadata.name=web`) or parsed. */
  fieldSelector?: string | FieldRequirement[];
}

/** Options of writes. */
export interface WriteOptions {
  /** Validate and return the result without storing it (`?dryRun=All`). */
  dryRun?: boolean;
}

/** Options of {@linkcode Store.delete}. */
export interface DeleteOptions extends WriteOptions {
  /** `Background` (default), `Foreground` (treated as Background) or `Orphan`. */
  propagationPolicy?: "Background" | "Foreground" | "Orphan";
  /** Delete only if the object still has this uid / resourceVersion. */
  preconditions?: { uid?: string; resourceVersion?: string };
}

/** What a delete did. */
export interface DeleteResult {
  /** The object: gone, or marked for deletion. */
  object: KubeObject;
  /** True when the object is gone; false when it waits for finalizers or namespace termination. */
  deleted: boolean;
}

/** Options of {@linkcode Store}. */
export interface StoreOptions {
  /** The service CIDR (IPv4) ClusterIPs come from, e.g. `198.19.0.0/18`. */
  serviceCidr: string;
  /** How many events the history keeps for resumed watches. Default 1000. */
  historySize?: number;
  /** The clock. Default `() => new Date()`. */
  now?: () => Date;
  /** How long a deleted namespace stays `Terminating` before its content goes. Default 300 ms. */
  namespaceDeletionDelayMs?: number;
  /** The CA bundle published as ConfigMap `kube-root-ca.crt` in every namespace, if given. */
  rootCaPem?: string;
}

const NODE_PORT_MIN = 30000;
const NODE_PORT_MAX = 32767;

function keyOf(info: ResourceInfo, namespace: string | undefined, name: string): string {
  return info.namespaced ? `${namespace ?? ""}/${name}` : name;
}

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function randomSuffix(n: number): string {
  // The alphabet of k8s.io/apimachinery/pkg/util/rand (no vowels, no confusables).
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return [...bytes].map((b) => alphabet[b % alphabet.length]).join("");
}

function specOf(o: KubeObject): Record<string, unknown> {
  const s = o.spec;
  return s && typeof s === "object" ? s as Record<string, unknown> : {};
}

/**
 * The in-memory object store. See the module documentation.
 */
export class Store {
  #objects = new Map<ResourceInfo, Map<string, KubeObject>>();
  #rv = 0;
  #history: StoreEvent[] = [];
  #historySize: number;
  /** The resourceVersion of the newest event dropped from the history. */
  #compacted = 0;
  #listeners = new Set<(e: StoreEvent) => void>();
  #now: () => Date;
  #serviceCidr: Cidr4;
  #allocatedIps = new Set<number>();
  #allocatedNodePorts = new Set<number>();
  #nsDelay: number;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #rootCaPem: string | undefined;
  #closed = false;

  /**
   * Makes a store holding what a new cluster has: namespaces `default`,
   * `kube-system`, `kube-public`, `kube-node-lease` (each with ServiceAccount
   * `default`), Service `default/kubernetes` on the first address of the
   * service CIDR, and ServiceCIDR `kubernetes`.
   *
   * @param options the service CIDR, history size, clock
   * @throws {SyntaxError} for a service CIDR that is no IPv4 CIDR
   */
  constructor(options: StoreOptions) {
    this.#serviceCidr = parseCidr4(options.serviceCidr);
    this.#historySize = options.historySize ?? 1000;
    this.#now = options.now ?? (() => new Date());
    this.#nsDelay = options.namespaceDeletionDelayMs ?? 300;
    this.#rootCaPem = options.rootCaPem;
    for (const r of RESOURCES) this.#objects.set(r, new Map());
    for (const ns of ["default", "kube-system", "kube-public", "kube-node-lease"]) {
      this.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    }
    this.create({
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        name: "kubernetes",
        namespace: "default",
        labels: { component: "apiserver", provider: "kubernetes" },
      },
      spec: {
        clusterIP: formatIpv4(this.#serviceCidr.base + 1),
        ports: [{ name: "https", port: 443, protocol: "TCP", targetPort: 6443 }],
      },
    });
    this.create({
      apiVersion: "networking.k8s.io/v1",
      kind: "ServiceCIDR",
      metadata: { name: "kubernetes" },
      spec: { cidrs: [this.#serviceCidr.text] },
      status: {
        conditions: [{
          type: "Ready",
          status: "True",
          reason: "",
          message: "Kubernetes Service CIDR is ready",
          lastTransitionTime: rfc3339(this.#now()),
        }],
      },
    });
  }

  /** The newest resourceVersion, as a string. */
  get resourceVersion(): string {
    return String(this.#rv);
  }

  /** The service CIDR, normalised (`198.19.0.0/18`). */
  get serviceCidr(): string {
    return this.#serviceCidr.text;
  }

  /**
   * The resource a name, short name or kind stands for.
   *
   * @param resource `pods`, `deployments.apps`, `svc`, `Deployment`, …
   * @returns its description
   * @throws {RangeError} for an unknown resource
   */
  resolve(resource: string | ResourceInfo): ResourceInfo {
    if (typeof resource !== "string") return resource;
    const info = findResource(resource);
    if (!info) throw new RangeError(`Unknown resource "${resource}"`);
    return info;
  }

  #infoOf(o: KubeObject): ResourceInfo {
    const kind = o.kind;
    const info = RESOURCES.find((r) =>
      r.kind === kind && (o.apiVersion === undefined || apiVersionOf(r) === o.apiVersion)
    );
    if (!info) {
      throw new RangeError(
        `Unknown kind "${String(kind)}" in API version "${String(o.apiVersion)}"`,
      );
    }
    return info;
  }

  /**
   * One object, or undefined.
   *
   * @param ref the resource, namespace and name
   * @returns a copy of the object
   */
  get(ref: ObjectRef): KubeObject | undefined {
    const info = this.resolve(ref.resource);
    return this.getIn(info, ref.namespace, ref.name);
  }

  /**
   * One object of a resolved resource, or undefined.
   *
   * @param info the resource
   * @param namespace the namespace (ignored for cluster-scoped resources)
   * @param name the name
   * @returns a copy of the object
   */
  getIn(info: ResourceInfo, namespace: string | undefined, name: string): KubeObject | undefined {
    const o = this.#objects.get(info)!.get(keyOf(info, namespace, name));
    return o ? structuredClone(o) : undefined;
  }

  /**
   * The objects of a resource that match, sorted by namespace and name.
   *
   * @param resource the resource (`pods`, …)
   * @param options namespace, label and field selectors
   * @returns copies of the objects
   * @throws {ApiError} 400 for a selector that does not parse
   */
  list(resource: string | ResourceInfo, options: ListOptions = {}): KubeObject[] {
    const info = this.resolve(resource);
    const match = this.matcher(info, options);
    const out: KubeObject[] = [];
    for (const o of this.#objects.get(info)!.values()) if (match(o)) out.push(structuredClone(o));
    return out.sort((a, b) => {
      const ka = `${a.metadata.namespace ?? ""}/${a.metadata.name}`;
      const kb = `${b.metadata.namespace ?? ""}/${b.metadata.name}`;
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
  }

  /**
   * A predicate for the objects a list or watch selects.
   *
   * @param info the resource
   * @param options namespace and selectors
   * @returns the predicate
   * @throws {ApiError} 400 for a selector that does not parse
   */
  matcher(info: ResourceInfo, options: ListOptions): (o: KubeObject) => boolean {
    const labels = typeof options.labelSelector === "string"
      ? parseLabelSelector(options.labelSelector)
      : options.labelSelector ?? [];
    const fields = typeof options.fieldSelector === "string"
      ? parseFieldSelector(options.fieldSelector, info.fieldLabels)
      : options.fieldSelector ?? [];
    const ns = info.namespaced ? options.namespace : undefined;
    return (o) =>
      (ns === undefined || ns === "" || o.metadata.namespace === ns) &&
      matchLabels(labels, o.metadata.labels) && matchFields(fields, o);
  }

  /**
   * Stores a new object; its resource comes from `kind` and `apiVersion`.
   *
   * @param object the object (`metadata.namespace` is needed for namespaced kinds)
   * @param options dry run
   * @returns the stored object with uid, resourceVersion, timestamps and defaults
   * @throws {ApiError} 409 AlreadyExists, 404 for a missing namespace, 403 in a
   *   terminating namespace, 422 Invalid
   */
  create(object: KubeObject, options: WriteOptions = {}): KubeObject {
    return this.createIn(this.#infoOf(object), object, options);
  }

  /**
   * Stores a new object of a resolved resource.
   *
   * @param info the resource
   * @param object the object
   * @param options dry run
   * @returns the stored object
   * @throws {ApiError} as {@linkcode Store.create}
   */
  createIn(info: ResourceInfo, object: KubeObject, options: WriteOptions = {}): KubeObject {
    const o = structuredClone(object);
    o.apiVersion = apiVersionOf(info);
    o.kind = info.kind;
    const meta = o.metadata ??= {};
    if (!meta.name && meta.generateName) meta.name = meta.generateName + randomSuffix(5);
    const name = meta.name ?? "";
    const gr = { group: info.group, resource: info.resource };
    if (info.namespaced) {
      meta.namespace ||= "default";
      const ns = this.#objects.get(this.resolve("namespaces"))!.get(meta.namespace);
      if (!ns) throw notFound({ group: "", resource: "namespaces" }, meta.namespace);
      if (ns.metadata.deletionTimestamp) {
        throw forbidden(
          gr,
          name,
          `unable to create new content in namespace ${meta.namespace} because it is being terminated`,
        );
      }
    } else {
      delete meta.namespace;
    }
    applyDefaults(info, o);
    if (info.kind === "Pod") {
      const accounts = this.#objects.get(this.resolve("serviceaccounts"))!;
      admitPod(o, (ns, sa) => accounts.get(`${ns}/${sa}`));
    }
    const errors = validate(info, o);
    if (errors.length) throw invalid(info.kind, info.group, name, errors);
    const objects = this.#objects.get(info)!;
    const key = keyOf(info, meta.namespace, name);
    if (objects.has(key)) throw alreadyExists(gr, name);
    const release = this.#allocate(info, o, undefined, options.dryRun ?? false);
    meta.uid = crypto.randomUUID();
    meta.creationTimestamp = rfc3339(this.#now());
    if (info.trackGeneration) meta.generation = 1;
    delete meta.resourceVersion;
    delete meta.deletionTimestamp;
    if (options.dryRun) {
      release();
      return o;
    }
    meta.resourceVersion = String(++this.#rv);
    objects.set(key, o);
    this.#emit("ADDED", info, o);
    if (info.kind === "Namespace") this.#populateNamespace(name);
    return structuredClone(o);
  }

  #populateNamespace(ns: string): void {
    this.createIn(this.resolve("serviceaccounts"), {
      metadata: { name: "default", namespace: ns },
    });
    if (this.#rootCaPem !== undefined) {
      this.createIn(this.resolve("configmaps"), {
        metadata: {
          name: "kube-root-ca.crt",
          namespace: ns,
          annotations: {
            "kubernetes.io/description":
              "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.",
          },
        },
        data: { "ca.crt": this.#rootCaPem },
      });
    }
  }

  /**
   * Replaces a stored object (PUT semantics, status included). When
   * `metadata.resourceVersion` is set it must be the stored one.
   *
   * @param object the new object; its resource comes from `kind` and `apiVersion`
   * @param options dry run
   * @returns the stored object
   * @throws {ApiError} 404 NotFound, 409 Conflict, 422 Invalid
   */
  update(object: KubeObject, options: WriteOptions = {}): KubeObject {
    return this.updateIn(this.#infoOf(object), object, options);
  }

  /**
   * Replaces a stored object of a resolved resource.
   *
   * @param info the resource
   * @param object the new object
   * @param options dry run
   * @returns the stored object
   * @throws {ApiError} as {@linkcode Store.update}
   */
  updateIn(info: ResourceInfo, object: KubeObject, options: WriteOptions = {}): KubeObject {
    const o = structuredClone(object);
    o.apiVersion = apiVersionOf(info);
    o.kind = info.kind;
    const meta = o.metadata ??= {};
    const name = meta.name ?? "";
    const gr = { group: info.group, resource: info.resource };
    const ns = info.namespaced ? (meta.namespace ||= "default") : undefined;
    if (!info.namespaced) delete meta.namespace;
    const objects = this.#objects.get(info)!;
    const key = keyOf(info, ns, name);
    const old = objects.get(key);
    if (!old) throw notFound(gr, name);
    if (meta.resourceVersion && meta.resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(gr, name);
    }
    meta.uid = old.metadata.uid;
    meta.creationTimestamp = old.metadata.creationTimestamp;
    if (old.metadata.deletionTimestamp) {
      meta.deletionTimestamp = old.metadata.deletionTimestamp;
      meta.deletionGracePeriodSeconds = old.metadata.deletionGracePeriodSeconds;
    } else {
      delete meta.deletionTimestamp;
      delete meta.deletionGracePeriodSeconds;
    }
    applyDefaults(info, o);
    const errors = validate(info, o, old);
    if (errors.length) throw invalid(info.kind, info.group, name, errors);
    if (info.trackGeneration) {
      const changed = JSON.stringify(specOf(o)) !== JSON.stringify(specOf(old));
      meta.generation = (old.metadata.generation ?? 1) + (changed ? 1 : 0);
    }
    const undo = this.#allocate(info, o, old, options.dryRun ?? false);
    if (options.dryRun) {
      undo();
      meta.resourceVersion = old.metadata.resourceVersion;
      return o;
    }
    meta.resourceVersion = old.metadata.resourceVersion;
    if (JSON.stringify(o) === JSON.stringify(old)) return structuredClone(old); // no-op: no new RV
    meta.resourceVersion = String(++this.#rv);
    objects.set(key, o);
    this.#emit("MODIFIED", info, o, old);
    if (
      meta.deletionTimestamp && (meta.finalizers ?? []).length === 0 && info.kind !== "Namespace"
    ) {
      this.#remove(info, o, "Background");
    }
    return structuredClone(o);
  }

  /**
   * Read-modify-write of one object: `fn` changes the copy it is given (or
   * returns a new object), and the result is stored. The usual way for an
   * in-process controller to write status.
   *
   * @param ref the object
   * @param fn the change
   * @returns the stored object
   * @throws {ApiError} 404 NotFound, 422 Invalid
   */
  modify(ref: ObjectRef, fn: (object: KubeObject) => KubeObject | void): KubeObject {
    const info = this.resolve(ref.resource);
    const current = this.getIn(info, ref.namespace, ref.name);
    if (!current) throw notFound({ group: info.group, resource: info.resource }, ref.name);
    const changed = fn(current) ?? current;
    changed.metadata.resourceVersion = current.metadata.resourceVersion;
    return this.updateIn(info, changed);
  }

  /**
   * Deletes an object. An object with finalizers only gets a
   * `deletionTimestamp`; a namespace turns `Terminating` and goes (with all
   * its content) after a short delay; dependents (by owner reference) are
   * deleted unless the policy is `Orphan`.
   *
   * @param ref the object
   * @param options propagation, preconditions, dry run
   * @returns the object and whether it is gone
   * @throws {ApiError} 404 NotFound, 409 Conflict on a failed precondition
   */
  delete(ref: ObjectRef, options: DeleteOptions = {}): DeleteResult {
    return this.deleteIn(this.resolve(ref.resource), ref.namespace, ref.name, options);
  }

  /**
   * Deletes an object of a resolved resource.
   *
   * @param info the resource
   * @param namespace the namespace
   * @param name the name
   * @param options propagation, preconditions, dry run
   * @returns the object and whether it is gone
   * @throws {ApiError} as {@linkcode Store.delete}
   */
  deleteIn(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    options: DeleteOptions = {},
  ): DeleteResult {
    const gr = { group: info.group, resource: info.resource };
    const objects = this.#objects.get(info)!;
    const key = keyOf(info, namespace, name);
    const old = objects.get(key);
    if (!old) throw notFound(gr, name);
    const pre = options.preconditions ?? {};
    if (pre.uid && pre.uid !== old.metadata.uid) {
      throw conflict(
        gr,
        name,
        `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid}`,
      );
    }
    if (pre.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(
        gr,
        name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion}`,
      );
    }
    const policy = options.propagationPolicy ?? "Background";
    const pending = info.kind === "Namespace" || (old.metadata.finalizers ?? []).length > 0;
    if (options.dryRun) {
      return { object: structuredClone(old), deleted: !pending };
    }
    if (pending) {
      if (old.metadata.deletionTimestamp) return { object: structuredClone(old), deleted: false };
      const o = structuredClone(old);
      o.metadata.deletionTimestamp = rfc3339(this.#now());
      o.metadata.deletionGracePeriodSeconds = 0;
      if (info.kind === "Namespace") {
        o.status = { ...(o.status as Record<string, unknown> ?? {}), phase: "Terminating" };
      }
      o.metadata.resourceVersion = String(++this.#rv);
      objects.set(key, o);
      this.#emit("MODIFIED", info, o, old);
      if (info.kind === "Namespace") this.#scheduleNamespaceCleanup(name);
      return { object: structuredClone(o), deleted: false };
    }
    const gone = this.#remove(info, old, policy);
    return { object: gone, deleted: true };
  }

  #remove(info: ResourceInfo, old: KubeObject, policy: string): KubeObject {
    const objects = this.#objects.get(info)!;
    objects.delete(keyOf(info, old.metadata.namespace, old.metadata.name ?? ""));
    this.#release(info, old);
    const o = structuredClone(old);
    o.metadata.resourceVersion = String(++this.#rv);
    this.#emit("DELETED", info, o, old);
    this.#collectDependents(old.metadata.uid ?? "", policy);
    return structuredClone(o);
  }

  /** Owner-reference garbage collection (background; Foreground is treated alike). */
  #collectDependents(uid: string, policy: string): void {
    if (!uid) return;
    for (const info of RESOURCES) {
      for (const o of [...this.#objects.get(info)!.values()]) {
        const refs = o.metadata.ownerReferences ?? [];
        if (!refs.some((r) => r.uid === uid)) continue;
        const rest = refs.filter((r) => r.uid !== uid);
        if (policy !== "Orphan" && rest.length === 0) {
          if (this.#objects.get(info)!.has(keyOf(info, o.metadata.namespace, o.metadata.name!))) {
            this.deleteIn(info, o.metadata.namespace, o.metadata.name!, {
              propagationPolicy: "Background",
            });
          }
        } else {
          const copy = structuredClone(o);
          copy.metadata.ownerReferences = rest;
          if (rest.length === 0) delete copy.metadata.ownerReferences;
          delete copy.metadata.resourceVersion;
          try {
            this.updateIn(info, copy);
          } catch {
            // An object that no longer validates keeps its stale reference.
          }
        }
      }
    }
  }

  #scheduleNamespaceCleanup(name: string): void {
    const id = setTimeout(() => {
      this.#timers.delete(id);
      if (!this.#closed) this.#finalizeNamespace(name);
    }, this.#nsDelay);
    this.#timers.add(id);
  }

  #finalizeNamespace(name: string): void {
    for (const info of RESOURCES) {
      if (!info.namespaced) continue;
      for (const o of [...this.#objects.get(info)!.values()]) {
        if (o.metadata.namespace !== name) continue;
        if (!this.#objects.get(info)!.has(keyOf(info, name, o.metadata.name!))) continue;
        const copy = structuredClone(o);
        if ((copy.metadata.finalizers ?? []).length) {
          // The namespace controller waits for finalizers; we are less patient.
          delete copy.metadata.finalizers;
        }
        this.#objects.get(info)!.set(keyOf(info, name, copy.metadata.name!), copy);
        this.#remove(info, copy, "Background");
      }
    }
    const nsInfo = this.resolve("namespaces");
    const ns = this.#objects.get(nsInfo)!.get(name);
    if (ns) this.#remove(nsInfo, ns, "Background");
  }

  /**
   * Allocates ClusterIPs and NodePorts for a service being written.
   *
   * @returns a function that undoes the allocation (for dry runs), or does nothing
   */
  #allocate(
    info: ResourceInfo,
    o: KubeObject,
    old: KubeObject | undefined,
    dryRun: boolean,
  ): () => void {
    if (info.kind !== "Service") return () => {};
    const spec = specOf(o);
    const oldSpec = old ? specOf(old) : undefined;
    const name = o.metadata.name ?? "";
    const taken: number[] = [];
    const takenPorts: number[] = [];
    const undo = () => {
      for (const ip of taken) this.#allocatedIps.delete(ip);
      for (const p of takenPorts) this.#allocatedNodePorts.delete(p);
    };
    if (spec.type === "ExternalName") {
      delete spec.clusterIP;
      delete spec.clusterIPs;
    } else {
      // A PUT without a ClusterIP keeps the allocated one (patchAllocatedValues).
      if (oldSpec && (spec.clusterIP === undefined || spec.clusterIP === "")) {
        spec.clusterIP = oldSpec.clusterIP;
        spec.clusterIPs = oldSpec.clusterIPs;
      }
      let requested = spec.clusterIP as string | undefined;
      if ((requested === undefined || requested === "") && Array.isArray(spec.clusterIPs)) {
        requested = spec.clusterIPs[0] as string | undefined;
      }
      if (oldSpec && oldSpec.clusterIP !== undefined && requested !== oldSpec.clusterIP) {
        throw invalid("Service", "", name, [{
          type: "FieldValueInvalid",
          field: "spec.clusterIPs[0]",
          value: goValue(spec.clusterIPs ?? [requested]),
          detail: "may not change once set",
        }]);
      }
      if (requested === "None") {
        spec.clusterIP = "None";
        spec.clusterIPs = ["None"];
      } else if (!oldSpec) {
        const ip = this.#allocateIp(name, requested);
        taken.push(ip);
        spec.clusterIP = formatIpv4(ip);
        spec.clusterIPs = [spec.clusterIP];
      }
      spec.ipFamilies ??= ["IPv4"];
      spec.ipFamilyPolicy ??= "SingleStack";
    }
    if (spec.type === "NodePort" || spec.type === "LoadBalancer") {
      const ports = Array.isArray(spec.ports) ? spec.ports as Record<string, unknown>[] : [];
      const oldPorts = Array.isArray(oldSpec?.ports)
        ? oldSpec.ports as Record<string, unknown>[]
        : [];
      ports.forEach((p, i) => {
        if (typeof p.nodePort === "number") {
          const mine = oldPorts.some((q) => q.nodePort === p.nodePort);
          if (!mine) {
            if (p.nodePort < NODE_PORT_MIN || p.nodePort > NODE_PORT_MAX) {
              undo();
              throw invalid("Service", "", name, [{
                type: "FieldValueInvalid",
                field: `spec.ports[${i}].nodePort`,
                value: String(p.nodePort),
                detail:
                  `provided port is not in the valid range. The range of valid ports is ${NODE_PORT_MIN}-${NODE_PORT_MAX}`,
              }]);
            }
            if (this.#allocatedNodePorts.has(p.nodePort)) {
              undo();
              throw invalid("Service", "", name, [{
                type: "FieldValueInvalid",
                field: `spec.ports[${i}].nodePort`,
                value: String(p.nodePort),
                detail: "provided port is already allocated",
              }]);
            }
            this.#allocatedNodePorts.add(p.nodePort);
            takenPorts.push(p.nodePort);
          }
          return;
        }
        const same = oldPorts.find((q) => q.port === p.port && typeof q.nodePort === "number");
        if (same) {
          p.nodePort = same.nodePort;
          return;
        }
        for (let port = NODE_PORT_MIN; port <= NODE_PORT_MAX; port++) {
          if (!this.#allocatedNodePorts.has(port)) {
            this.#allocatedNodePorts.add(port);
            takenPorts.push(port);
            p.nodePort = port;
            return;
          }
        }
      });
    }
    return dryRun ? undo : () => {};
  }

  #allocateIp(name: string, requested: string | undefined): number {
    const cidr = this.#serviceCidr;
    if (requested !== undefined && requested !== "") {
      const ip = parseIpv4(requested);
      if (ip === undefined) {
        throw invalid("Service", "", name, [{
          type: "FieldValueInvalid",
          field: "spec.clusterIPs[0]",
          value: goValue(requested),
          detail: "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        }]);
      }
      const fail = (why: string): ApiError =>
        invalid("Service", "", name, [{
          type: "FieldValueInvalid",
          field: "spec.clusterIPs",
          value: goValue([requested]),
          detail: `failed to allocate IP ${requested}: ${why}`,
        }]);
      if (!contains(cidr, ip) || ip === cidr.base || ip === cidr.base + cidr.size - 1) {
        throw fail(
          `provided IP is not in the valid range. The range of valid IPs is ${cidr.text}`,
        );
      }
      if (this.#allocatedIps.has(ip)) throw fail("provided IP is already allocated");
      this.#allocatedIps.add(ip);
      return ip;
    }
    // Dynamic addresses come from above the static band (the first
    // min(max(16, size/16), 256) addresses), as the real allocator prefers.
    const usable = cidr.size - 2;
    const band = Math.min(Math.max(16, Math.floor(cidr.size / 16)), 256);
    const start = usable > band * 2 ? band + 1 : 1;
    for (let i = 0; i < usable; i++) {
      const offset = 1 + ((start - 1 + i) % usable);
      const ip = cidr.base + offset;
      if (!this.#allocatedIps.has(ip)) {
        this.#allocatedIps.add(ip);
        return ip;
      }
    }
    throw invalid("Service", "", name, [{
      type: "FieldValueInvalid",
      field: "spec.clusterIPs",
      value: "[]string(nil)",
      detail: "failed to allocate a serviceIP: range is full",
    }]);
  }

  #release(info: ResourceInfo, o: KubeObject): void {
    if (info.kind !== "Service") return;
    const spec = specOf(o);
    const ip = parseIpv4(String(spec.clusterIP ?? ""));
    if (ip !== undefined) this.#allocatedIps.delete(ip);
    for (const p of Array.isArray(spec.ports) ? spec.ports as Record<string, unknown>[] : []) {
      if (typeof p.nodePort === "number") this.#allocatedNodePorts.delete(p.nodePort);
    }
  }

  #emit(type: EventType, info: ResourceInfo, o: KubeObject, old?: KubeObject): void {
    const event: StoreEvent = {
      type,
      resource: info,
      object: structuredClone(o),
      ...(old ? { oldObject: structuredClone(old) } : {}),
      resourceVersion: this.#rv,
    };
    this.#history.push(event);
    while (this.#history.length > this.#historySize) {
      this.#compacted = this.#history.shift()!.resourceVersion;
    }
    for (const l of [...this.#listeners]) {
      try {
        l(event);
      } catch {
        // A listener's failure is its own; the store goes on.
      }
    }
  }

  /**
   * The kept events after a resourceVersion, oldest first.
   *
   * @param resourceVersion events after this one
   * @returns the events (shared: do not change them)
   * @throws {ApiError} 410 Expired when events after it have been dropped
   */
  eventsSince(resourceVersion: number): readonly StoreEvent[] {
    if (resourceVersion < this.#compacted) throw expired(resourceVersion, this.#compacted);
    return this.#history.filter((e) => e.resourceVersion > resourceVersion);
  }

  /**
   * Calls `callback` for every change, synchronously, as it happens. A
   * callback that writes back to the store should do so later (for example
   * in `queueMicrotask`), not from inside the call.
   *
   * @param callback gets each event
   * @param options only one resource and/or namespace
   * @returns a function that stops the calls
   */
  watch(
    callback: (event: StoreEvent) => void,
    options: { resource?: string; namespace?: string } = {},
  ): () => void {
    const info = options.resource === undefined ? undefined : this.resolve(options.resource);
    const listener = (e: StoreEvent) => {
      if (info && e.resource !== info) return;
      if (options.namespace !== undefined && e.object.metadata.namespace !== options.namespace) {
        return;
      }
      callback(e);
    };
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops pending namespace terminations; the store stays readable. */
  close(): void {
    this.#closed = true;
    for (const id of this.#timers) clearTimeout(id);
    this.#timers.clear();
  }

  /**
   * Checks a field error list the way a write would (for callers that build
   * objects by hand).
   *
   * @param object the object
   * @returns the field errors, empty when valid
   */
  validate(object: KubeObject): FieldError[] {
    const info = this.#infoOf(object);
    const o = structuredClone(object);
    applyDefaults(info, o);
    return validate(info, o);
  }
}

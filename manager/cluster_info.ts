/**
 * What the manager knows of the cluster (subnets, domain, DNS server, its own
 * pod IP, namespaces) as one value that can change: today it comes from flags;
 * the Kubernetes discovery that comes later pushes changes through
 * {@linkcode ClusterInfoSource.set}, and every `WatchClusterInfo` stream and
 * the destination policy follow.
 *
 * @module
 */

import { type ClusterInfo, ClusterInfoSchema, create } from "../mod/rpc/service.ts";

/** The cluster as the manager sees it. */
export interface ClusterInfoValue {
  /** Pod subnets, as CIDR text. */
  podSubnets: string[];
  /** Service subnets, as CIDR text. */
  serviceSubnets: string[];
  /** The cluster domain, e.g. `cluster.local`. */
  clusterDomain: string;
  /** The cluster DNS server's address; empty when unknown. */
  dnsServer: string;
  /** The manager pod's IP; empty when unknown. */
  managerPodIp: string;
  /** The manager pod's resolv.conf search list. */
  searchPath: string[];
  /** Namespaces the workstation treats as top-level names (`web.shop`). */
  namespaces: string[];
}

/** Called with the new value after each change. */
export type ClusterInfoListener = (info: Readonly<ClusterInfoValue>) => void;

/**
 * Holds the current {@linkcode ClusterInfoValue} and tells subscribers when it
 * changes. Setting an equal value notifies no one.
 *
 * @example Follow changes
 * ```ts
 * import { ClusterInfoSource } from "./cluster_info.ts";
 *
 * const source = new ClusterInfoSource({ podSubnets: ["198.18.64.0/18"] });
 * const seen: string[][] = [];
 * const unsubscribe = source.subscribe((info) => seen.push(info.podSubnets));
 * source.set({ podSubnets: ["198.18.64.0/18", "198.18.96.0/19"] });
 * source.set({ podSubnets: ["198.18.64.0/18", "198.18.96.0/19"] }); // no change: not told
 * unsubscribe();
 * if (seen.length !== 1) throw new Error(String(seen.length));
 * ```
 */
export class ClusterInfoSource {
  #value: ClusterInfoValue;
  #listeners = new Set<ClusterInfoListener>();

  /**
   * Makes a source.
   *
   * @param initial The first value; missing fields are empty (`cluster.local` for the domain).
   */
  constructor(initial: Partial<ClusterInfoValue> = {}) {
    this.#value = normalize({ ...EMPTY, ...initial });
  }

  /** The current value (a copy: changing it changes nothing). */
  get current(): ClusterInfoValue {
    return copy(this.#value);
  }

  /**
   * Changes some fields; subscribers are told when the result differs.
   *
   * @param changes The fields to change.
   * @returns Whether anything changed.
   */
  set(changes: Partial<ClusterInfoValue>): boolean {
    const next = normalize({ ...this.#value, ...changes });
    if (equal(next, this.#value)) return false;
    this.#value = next;
    for (const listener of [...this.#listeners]) listener(copy(next));
    return true;
  }

  /**
   * Calls `listener` after every change (not with the current value: read
   * {@linkcode ClusterInfoSource.current} for that).
   *
   * @param listener Called with each new value.
   * @returns A function that stops the calls.
   */
  subscribe(listener: ClusterInfoListener): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** How many subscribers there are (for tests and leak checks). */
  get subscribers(): number {
    return this.#listeners.size;
  }
}

/**
 * The protobuf message for a value.
 *
 * @param info The value.
 * @returns The `vif.v1.ClusterInfo` message.
 */
export function toClusterInfoMessage(info: Readonly<ClusterInfoValue>): ClusterInfo {
  return create(ClusterInfoSchema, {
    podSubnets: [...info.podSubnets],
    serviceSubnets: [...info.serviceSubnets],
    clusterDomain: info.clusterDomain,
    dnsServer: info.dnsServer,
    managerPodIp: info.managerPodIp,
    searchPath: [...info.searchPath],
    namespaces: [...info.namespaces],
  });
}

const EMPTY: ClusterInfoValue = {
  podSubnets: [],
  serviceSubnets: [],
  clusterDomain: "cluster.local",
  dnsServer: "",
  managerPodIp: "",
  searchPath: [],
  namespaces: [],
};

function normalize(value: ClusterInfoValue): ClusterInfoValue {
  return {
    ...copy(value),
    clusterDomain: value.clusterDomain.replace(/\.$/, "").toLowerCase(),
  };
}

function copy(value: ClusterInfoValue): ClusterInfoValue {
  return {
    ...value,
    podSubnets: [...value.podSubnets],
    serviceSubnets: [...value.serviceSubnets],
    searchPath: [...value.searchPath],
    namespaces: [...value.namespaces],
  };
}

function equal(a: ClusterInfoValue, b: ClusterInfoValue): boolean {
  const same = (x: readonly string[], y: readonly string[]) =>
    x.length === y.length && x.every((v, i) => v === y[i]);
  return same(a.podSubnets, b.podSubnets) && same(a.serviceSubnets, b.serviceSubnets) &&
    a.clusterDomain === b.clusterDomain && a.dnsServer === b.dnsServer &&
    a.managerPodIp === b.managerPodIp && same(a.searchPath, b.searchPath) &&
    same(a.namespaces, b.namespaces);
}

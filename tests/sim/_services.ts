/**
 * Services between the API objects and the network: each Service object is
 * given to {@linkcode ClusterNet} (the kube-proxy DNAT rules and the DNS
 * records), and ClusterNet's endpoints are written back as Endpoints
 * objects, as kube-proxy, CoreDNS and the endpoints controller would make
 * them. ClusterNet's own Services (`default/kubernetes`,
 * `kube-system/kube-dns`) are not touched.
 *
 * @module
 */

import type { KubeObject, Store } from "./apiserver/mod.ts";
import type { ClusterNet, Protocol, ServicePortSpec } from "./cluster_net.ts";
import { type Obj, sameJson } from "./_owners.ts";

/** Services ClusterNet owns. */
const SYSTEM = new Set(["default/kubernetes", "kube-system/kube-dns"]);

function keyOf(o: KubeObject): string {
  return `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}

/** The link between Service objects and ClusterNet's services. */
export class ServiceSync {
  #store: Store;
  #net: ClusterNet;
  #log: (line: string) => void;
  /** What was given to ClusterNet, by `namespace/name`. */
  #given = new Map<string, string>();

  /**
   * @param store the objects
   * @param net the network
   * @param log where failures go
   */
  constructor(store: Store, net: ClusterNet, log: (line: string) => void) {
    this.#store = store;
    this.#net = net;
    this.#log = log;
  }

  /** Gives ClusterNet every Service object that changed, and removes those that went. */
  async sync(): Promise<void> {
    const seen = new Set<string>();
    for (const s of this.#store.list("services")) {
      const key = keyOf(s);
      if (SYSTEM.has(key)) continue;
      seen.add(key);
      const spec = (s as Obj).spec as {
        clusterIP?: string;
        selector?: Record<string, string>;
        ports?: Array<
          { name?: string; port: number; targetPort?: number | string; protocol?: Protocol }
        >;
      };
      const desired = {
        namespace: s.metadata.namespace!,
        name: s.metadata.name!,
        ...(spec.clusterIP ? { clusterIP: spec.clusterIP } : {}),
        ports: (spec.ports ?? []).map((x): ServicePortSpec => ({
          ...(x.name ? { name: x.name } : {}),
          port: x.port,
          ...(x.targetPort !== undefined ? { targetPort: x.targetPort } : {}),
          protocol: x.protocol ?? "TCP",
        })),
        ...(spec.selector ? { selector: spec.selector } : { endpoints: [] }),
      };
      const text = JSON.stringify(desired);
      if (this.#given.get(key) === text) continue;
      if (this.#given.has(key)) await this.#net.removeService(desired.namespace, desired.name);
      this.#given.set(key, text);
      try {
        await this.#net.addService(desired);
      } catch (error) {
        this.#log(`kubelet: service ${key}: ${(error as Error).message}`);
        continue;
      }
      this.writeEndpoints(desired.namespace, desired.name);
    }
    for (const key of [...this.#given.keys()]) {
      if (seen.has(key)) continue;
      this.#given.delete(key);
      const [namespace, name] = key.split("/") as [string, string];
      await this.#net.removeService(namespace, name).catch(() => {});
    }
  }

  /**
   * Writes a Service's Endpoints object from ClusterNet's endpoints.
   *
   * @param namespace the Service's namespace
   * @param name its name
   */
  writeEndpoints(namespace: string, name: string): void {
    if (namespace === "default" && name === "kubernetes") return;
    const store = this.#store;
    const svc = this.#net.service(namespace, name);
    const ref = { resource: "endpoints", namespace, name };
    if (!svc || !svc.selector) return;
    const addresses = this.#net.endpoints(namespace, name);
    const subsets = addresses.length === 0 ? [] : [{
      addresses: addresses.map((a) => ({
        ip: a.ip,
        ...(a.hostname ? { hostname: a.hostname } : {}),
        ...(a.node ? { nodeName: a.node } : {}),
        ...(a.pod ? { targetRef: { kind: "Pod", namespace, name: a.pod } } : {}),
      })),
      ports: svc.ports.flatMap((p) => {
        const port = addresses.map((a) => a.ports[p.name]).find((x) => x !== undefined);
        return port === undefined ? [] : [{
          ...(p.name ? { name: p.name } : {}),
          port,
          protocol: p.protocol,
        }];
      }),
    }];
    const existing = store.get(ref) as Obj | undefined;
    try {
      if (!existing) {
        store.create({
          apiVersion: "v1",
          kind: "Endpoints",
          metadata: { name, namespace },
          subsets,
        } as KubeObject);
      } else if (!sameJson(existing.subsets ?? [], subsets)) {
        store.modify(ref, (o) => {
          (o as Obj).subsets = subsets;
        });
      }
    } catch (error) {
      this.#log(`kubelet: endpoints ${namespace}/${name}: ${(error as Error).message}`);
    }
  }
}

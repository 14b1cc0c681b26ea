/**
 * The Kubernetes objects the simulated cluster network knows (pods, services,
 * endpoints) and the pure rules that connect them: label selection, target
 * port resolution, ClusterIP and pod IP allocation. No I/O here, so the rules
 * are unit-tested without namespaces (`model_test.ts`).
 *
 * @module
 */

/** A transport protocol as Kubernetes spells it. */
export type Protocol = "TCP" | "UDP";

/** A port a pod's container declares (`spec.containers[].ports[]`). */
export interface ContainerPort {
  /** The port's name, for services that target it by name. */
  name?: string;
  containerPort: number;
  /** Default `TCP`. */
  protocol?: Protocol;
}

/** A port of a service (`spec.ports[]`), as given to `addService`. */
export interface ServicePortSpec {
  /** Required when the service has more than one port; gives the SRV record `_<name>._<proto>`. */
  name?: string;
  port: number;
  /** A number, or the name of a container port; default: `port`. */
  targetPort?: number | string;
  /** Default `TCP`. */
  protocol?: Protocol;
}

/** A service port with its defaults filled in. */
export interface ServicePort {
  name: string;
  port: number;
  targetPort: number | string;
  protocol: Protocol;
}

/** A service as stored: the spec with defaults and its ClusterIP. */
export interface ServiceInfo {
  namespace: string;
  name: string;
  /** An address in the service CIDR, or `"None"` for a headless service. */
  clusterIP: string;
  ports: ServicePort[];
  /** Pods with all these labels (in the same namespace) are the endpoints; none: manual endpoints. */
  selector?: Record<string, string>;
  /** Endpoint addresses set by hand (services without a selector, e.g. `kubernetes`). */
  manualEndpoints?: string[];
}

/** The part of a pod that decides whether and how it backs a service. */
export interface PodInfo {
  namespace: string;
  name: string;
  ip: string;
  node: string;
  labels: Record<string, string>;
  hostname?: string;
  subdomain?: string;
  ports: ContainerPort[];
  ready: boolean;
}

/** One ready address behind a service, like an entry of `Endpoints.subsets[].addresses`. */
export interface EndpointAddress {
  ip: string;
  /** The pod, when the address is one (`targetRef`). */
  pod?: string;
  /** The node the address lives on, when known. */
  node?: string;
  /**
   * The DNS label of the address: the pod's `hostname` when its `subdomain`
   * is the service's name (as the endpoints controller sets it), else unset.
   */
  hostname?: string;
  /** Target port per service port name (`ServicePort.name`); a port the pod lacks is absent. */
  ports: Record<string, number>;
}

/**
 * Converts a dotted IPv4 address to a number.
 *
 * @param ip the address
 * @returns its 32-bit value
 * @throws {SyntaxError} when `ip` is not a dotted quad
 */
export function ipToInt(ip: string): number {
  const parts = ip.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new SyntaxError(`Cannot parse IPv4 address "${ip}"`);
  }
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

/**
 * Converts a 32-bit number to a dotted IPv4 address.
 *
 * @param n the value
 * @returns the address
 */
export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/**
 * Whether `ip` lies in `cidr`.
 *
 * @param ip an IPv4 address
 * @param cidr `a.b.c.d/len`
 * @returns `true` when inside
 */
export function inCidr(ip: string, cidr: string): boolean {
  const [base, len] = cidr.split("/");
  const bits = Number(len);
  const size = 2 ** (32 - bits);
  const start = Math.floor(ipToInt(base!) / size) * size;
  const v = ipToInt(ip);
  return v >= start && v < start + size;
}

/**
 * The `n`th address of `cidr` (0 is the network address).
 *
 * @param cidr `a.b.c.d/len`
 * @param n the offset
 * @returns the address
 * @throws {RangeError} when `n` is outside the block
 */
export function nthIp(cidr: string, n: number): string {
  const [base, len] = cidr.split("/");
  const size = 2 ** (32 - Number(len));
  if (n < 0 || n >= size) throw new RangeError(`Offset ${n} is outside "${cidr}"`);
  return intToIp(ipToInt(base!) + n);
}

/**
 * Whether `labels` carries every pair of `selector` (an empty selector selects nothing,
 * as for a Service).
 *
 * @param selector the required labels
 * @param labels the object's labels
 * @returns `true` when selected
 */
export function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const keys = Object.keys(selector);
  return keys.length > 0 && keys.every((k) => labels[k] === selector[k]);
}

/**
 * Fills a service port's defaults (name `""`, targetPort = port, protocol TCP).
 *
 * @param p the port as given
 * @returns the port with every field set
 */
export function normalizePort(p: ServicePortSpec): ServicePort {
  return {
    name: p.name ?? "",
    port: p.port,
    targetPort: p.targetPort ?? p.port,
    protocol: p.protocol ?? "TCP",
  };
}

/**
 * Resolves a service port's target on one pod: a number as is, a name through
 * the pod's container ports of the same protocol.
 *
 * @param port the service port
 * @param pod the pod
 * @returns the port number, or `undefined` when the pod has no such named port
 */
export function resolveTargetPort(port: ServicePort, pod: PodInfo): number | undefined {
  if (typeof port.targetPort === "number") return port.targetPort;
  const found = pod.ports.find((c) =>
    c.name === port.targetPort && (c.protocol ?? "TCP") === port.protocol
  );
  return found?.containerPort;
}

/**
 * The endpoints of a service, as the endpoints controller computes them: the
 * ready pods of its namespace that its selector picks, sorted by IP, each with
 * its resolved target ports; or the manual addresses of a selector-less service.
 *
 * @param svc the service
 * @param pods every pod of the cluster
 * @returns the ready addresses
 */
export function computeEndpoints(svc: ServiceInfo, pods: Iterable<PodInfo>): EndpointAddress[] {
  if (!svc.selector) {
    return (svc.manualEndpoints ?? []).map((ip) => ({
      ip,
      ports: Object.fromEntries(
        svc.ports.map((p) => [p.name, typeof p.targetPort === "number" ? p.targetPort : p.port]),
      ),
    }));
  }
  const out: EndpointAddress[] = [];
  for (const pod of pods) {
    if (pod.namespace !== svc.namespace || !pod.ready || !selects(svc.selector, pod.labels)) {
      continue;
    }
    const ports: Record<string, number> = {};
    for (const p of svc.ports) {
      const n = resolveTargetPort(p, pod);
      if (n !== undefined) ports[p.name] = n;
    }
    out.push({
      ip: pod.ip,
      pod: pod.name,
      node: pod.node,
      ...(pod.hostname && pod.subdomain === svc.name ? { hostname: pod.hostname } : {}),
      ports,
    });
  }
  return out.sort((a, b) => ipToInt(a.ip) - ipToInt(b.ip));
}

/**
 * Picks the next free address of a block, round-robin after `last` (as the
 * host-local IPAM plugin and the ClusterIP allocator avoid reusing an address
 * at once).
 *
 * @param cidr the block
 * @param options `range`: first and last usable offsets in the block; `used`:
 *   addresses taken; `last`: the offset handed out last time
 * @returns the address and its offset
 * @throws {RangeError} when the block is full
 */
export function allocate(
  cidr: string,
  options: { range: [number, number]; used: Set<string>; last: number },
): { ip: string; offset: number } {
  const { used, last } = options;
  const [lo, hi] = options.range;
  const count = hi - lo + 1;
  for (let i = 1; i <= count; i++) {
    const offset = lo + ((last - lo + i) % count + count) % count;
    const ip = nthIp(cidr, offset);
    if (!used.has(ip)) return { ip, offset };
  }
  throw new RangeError(`Cannot allocate an address: "${cidr}" is full`);
}

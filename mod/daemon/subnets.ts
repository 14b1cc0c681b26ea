/**
 * Which subnets go into the TUN, decided before any route is made: the
 * cluster's pod and service subnets, less what the user keeps out
 * (`--never-proxy`), checked against the routes the machine already has.
 *
 * A cluster subnet that overlaps an existing route (a VPN's, the LAN's) is a
 * conflict: routing it would steal that route's traffic, or lose part of the
 * cluster behind it. A conflict fails the connect, naming both routes and the
 * ways out, unless `--allow-conflicting-subnets` covers it. These are not
 * conflicts: the default route, routes on vif's own device, routes outside
 * the `main` table, non-unicast routes, and host routes to the addresses vif
 * itself must reach (the manager, the API server), which are how it reaches
 * them.
 *
 * `--never-proxy` subnets are cut out of the routed subnets (a /16 less a /24
 * is eight routes), so their traffic keeps the route it had, and nothing of
 * the machine's own routing table is touched.
 *
 * Pure: the routing table comes in as values.
 *
 * @module
 */

import { Cidr } from "../net/address.ts";
import type { SystemRoute } from "../tun/routes.ts";

/** Where a routed subnet comes from. */
export type SubnetSource = "pods" | "services" | "also-proxy";

/** What {@linkcode planSubnets} needs. */
export interface SubnetPlanInput {
  /** The cluster's subnets, with where each comes from. */
  cluster: Array<{ cidr: string; source: SubnetSource }>;
  /**
   * `--also-proxy`: routed to the cluster though outside its subnets. Asked
   * for by name, so never a conflict; `--never-proxy` still cuts them.
   */
  alsoProxy?: string[];
  /** `--never-proxy`: kept out of the TUN. */
  neverProxy?: string[];
  /** `--allow-conflicting-subnets`: routed into the TUN even over an existing route. */
  allowConflicting?: string[];
  /** The machine's routes (all tables; only `main` unicast ones count). */
  system: SystemRoute[];
  /** Addresses vif must reach outside the TUN: host routes to them are no conflict. */
  protectedHosts?: string[];
  /** vif's own device, whose routes are no conflict. */
  ownDevice?: string;
}

/** A cluster subnet that overlaps a route of the machine. */
export interface SubnetConflict {
  subnet: Cidr;
  source: SubnetSource;
  route: SystemRoute;
  /** The route's destination. */
  routeCidr: Cidr;
  /** The addresses both hold: the smaller of the two. */
  overlap: Cidr;
}

/** What to route, what was left out, and what conflicts. */
export interface SubnetPlan {
  /** The subnets to route into the TUN, with their source. */
  routes: Array<{ cidr: Cidr; source: SubnetSource }>;
  /** `--never-proxy` subnets that cut a routed subnet. */
  excluded: Cidr[];
  /** Overlaps not allowed by `--allow-conflicting-subnets`. */
  conflicts: SubnetConflict[];
  /** Malformed subnets from the manager, skipped. */
  malformed: string[];
}

/** Linux's `main` routing table. */
const MAIN_TABLE = 254;
/** `RTN_UNICAST`. */
const UNICAST = 1;

/**
 * `a` less `b`: the subnets covering every address of `a` not in `b`.
 *
 * @param a the subnet to cut
 * @param b the part to remove
 * @returns `[a]` when they do not overlap, `[]` when `b` covers `a`
 *
 * @example
 * ```ts
 * import { Cidr } from "../net/address.ts";
 * import { subtractCidr } from "./subnets.ts";
 *
 * const parts = subtractCidr(Cidr.parse("198.18.0.0/16"), Cidr.parse("198.18.5.0/24"));
 * if (parts.length !== 8) throw new Error(parts.join(" "));
 * ```
 */
export function subtractCidr(a: Cidr, b: Cidr): Cidr[] {
  if (!a.overlaps(b)) return [a];
  if (b.prefixLength <= a.prefixLength) return [];
  // Walk from a down to b: at each level keep the half that does not hold b.
  const out: Cidr[] = [];
  for (let len = a.prefixLength + 1; len <= b.prefixLength; len++) {
    const bytes = new Cidr(b.bytes, len).bytes.slice();
    const bit = len - 1;
    bytes[bit >> 3] = bytes[bit >> 3]! ^ (0x80 >> (bit & 7)); // the sibling of b's ancestor here
    out.push(new Cidr(bytes, len));
  }
  return out;
}

/**
 * How a route of the machine reads in an error message: `198.18.5.0/24 via 198.19.200.9 dev eth0`.
 *
 * @param route the route
 * @returns the text
 */
export function describeRoute(route: SystemRoute): string {
  return [
    `${route.address}/${route.prefixLength}`,
    ...(route.gateway ? [`via ${route.gateway}`] : []),
    ...(route.interfaceName ? [`dev ${route.interfaceName}`] : []),
  ].join(" ");
}

function parseAll(list: string[] | undefined): Cidr[] {
  return (list ?? []).map((t) => Cidr.parse(t));
}

/**
 * Decides the routes. See the module documentation.
 *
 * @param input the cluster's subnets, the user's flags, the machine's routes
 * @returns the plan; `conflicts` non-empty means the connect must not go on
 * @throws {SyntaxError} when a `neverProxy` or `allowConflicting` entry is not a CIDR
 */
export function planSubnets(input: SubnetPlanInput): SubnetPlan {
  const never = parseAll(input.neverProxy);
  const allowed = parseAll(input.allowConflicting);
  const malformed: string[] = [];
  const cluster: Array<{ cidr: Cidr; source: SubnetSource }> = [];
  const seen = new Set<string>();
  for (const c of input.cluster) {
    let cidr: Cidr;
    try {
      cidr = Cidr.parse(c.cidr);
    } catch {
      malformed.push(c.cidr);
      continue;
    }
    if (seen.has(cidr.toString())) continue;
    seen.add(cidr.toString());
    cluster.push({ cidr, source: c.source });
  }

  const existing: Array<{ route: SystemRoute; cidr: Cidr }> = [];
  for (const r of input.system) {
    if (r.table !== MAIN_TABLE || r.type !== UNICAST || r.prefixLength === 0) continue;
    if (input.ownDevice && r.interfaceName === input.ownDevice) continue;
    let cidr: Cidr;
    try {
      cidr = Cidr.parse(`${r.address}/${r.prefixLength}`);
    } catch {
      continue;
    }
    const hostRoute = cidr.prefixLength === cidr.bytes.length * 8;
    if (hostRoute && (input.protectedHosts ?? []).some((h) => cidr.contains(h))) continue;
    existing.push({ route: r, cidr });
  }

  const conflicts: SubnetConflict[] = [];
  for (const { cidr, source } of cluster) {
    for (const e of existing) {
      if (!cidr.overlaps(e.cidr)) continue;
      // The overlap is the smaller of the two; it is fine when the user kept
      // it out, or allowed it.
      const overlap = cidr.prefixLength >= e.cidr.prefixLength ? cidr : e.cidr;
      if (never.some((n) => n.prefixLength <= overlap.prefixLength && n.overlaps(overlap))) {
        continue;
      }
      if (allowed.some((a) => a.prefixLength <= overlap.prefixLength && a.overlaps(overlap))) {
        continue;
      }
      conflicts.push({ subnet: cidr, source, route: e.route, routeCidr: e.cidr, overlap });
    }
  }

  for (const cidr of parseAll(input.alsoProxy)) {
    if (seen.has(cidr.toString())) continue;
    seen.add(cidr.toString());
    cluster.push({ cidr, source: "also-proxy" });
  }

  const routes: Array<{ cidr: Cidr; source: SubnetSource }> = [];
  const excluded: Cidr[] = [];
  for (const { cidr, source } of cluster) {
    let parts = [cidr];
    for (const n of never) {
      if (!parts.some((p) => p.overlaps(n))) continue;
      if (!excluded.some((x) => x.toString() === n.toString())) excluded.push(n);
      parts = parts.flatMap((p) => subtractCidr(p, n));
    }
    for (const p of parts) routes.push({ cidr: p, source });
  }
  return { routes, excluded, conflicts, malformed };
}

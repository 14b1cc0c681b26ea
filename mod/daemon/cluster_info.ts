/**
 * What the daemon takes of the traffic-manager's `ClusterInfo`: the manager is
 * a peer like any other, and what it announces ends up in the routing table
 * and in the OS's DNS settings, written by root. So every field is checked
 * before use: the cluster domain and the namespaces as DNS names (a newline in
 * one would be an extra resolv.conf line), the DNS server as an address, and
 * the lists bounded, so a broken or hostile manager cannot make the daemon add
 * a million routes or routing domains.
 *
 * Pure: no I/O.
 *
 * @module
 */

import { parseAddress } from "../net/address.ts";
import { isDnsName, isNamespaceName } from "../net/dns_name.ts";
import { type ClusterInfo, ClusterInfoSchema, create } from "../rpc/service.ts";

/** The most pod plus service subnets taken from the manager. */
export const MAX_SUBNETS = 256;

/** The most namespaces taken from the manager (each a DNS routing domain). */
export const MAX_NAMESPACES = 4096;

/** The cluster info as the daemon uses it, and what was wrong with what came. */
export interface CheckedClusterInfo {
  /** The usable fields: what was bad is left out (or empty). */
  info: ClusterInfo;
  /** What was left out and why, one phrase each, for the log. */
  dropped: string[];
  /**
   * Set when the info cannot be used at all (the cluster domain is not a DNS
   * name): a first connect fails with it, an update is ignored.
   */
  unusable?: string;
}

/**
 * Checks a `ClusterInfo` from the manager.
 *
 * @param info What the manager sent.
 * @returns The usable part, and what was dropped.
 *
 * @example
 * ```ts
 * import { checkClusterInfo } from "./cluster_info.ts";
 * import { ClusterInfoSchema, create } from "../rpc/service.ts";
 *
 * const { info, dropped } = checkClusterInfo(create(ClusterInfoSchema, {
 *   clusterDomain: "cluster.local",
 *   namespaces: ["default", "bad\nname"],
 * }));
 * if (info.namespaces.length !== 1 || dropped.length !== 1) throw new Error();
 * ```
 */
export function checkClusterInfo(info: ClusterInfo): CheckedClusterInfo {
  const dropped: string[] = [];
  const domain = info.clusterDomain || "cluster.local";
  const unusable = isDnsName(domain)
    ? undefined
    : `the traffic-manager announced the cluster domain ${show(domain)}, which is not a DNS name`;
  const namespaces: string[] = [];
  let badNamespaces = 0;
  for (const namespace of info.namespaces) {
    if (!isNamespaceName(namespace)) badNamespaces++;
    else if (namespaces.length < MAX_NAMESPACES) namespaces.push(namespace);
  }
  if (badNamespaces > 0) {
    dropped.push(
      `${badNamespaces} namespace name${badNamespaces === 1 ? "" : "s"} that are not DNS labels`,
    );
  }
  if (info.namespaces.length - badNamespaces > MAX_NAMESPACES) {
    dropped.push(`namespaces past the first ${MAX_NAMESPACES}`);
  }
  const total = info.podSubnets.length + info.serviceSubnets.length;
  const podSubnets = info.podSubnets.slice(0, MAX_SUBNETS);
  const serviceSubnets = info.serviceSubnets.slice(0, MAX_SUBNETS - podSubnets.length);
  if (total > MAX_SUBNETS) dropped.push(`subnets past the first ${MAX_SUBNETS} (of ${total})`);
  let dnsServer = info.dnsServer;
  if (dnsServer !== "" && parseAddress(dnsServer) === undefined) {
    dropped.push(`the DNS server ${show(dnsServer)}, not an address`);
    dnsServer = "";
  }
  const searchPath = info.searchPath.filter(isDnsName).slice(0, 8);
  if (searchPath.length < Math.min(info.searchPath.length, 8)) {
    dropped.push("search domains that are not DNS names");
  }
  return {
    info: create(ClusterInfoSchema, {
      podSubnets,
      serviceSubnets,
      clusterDomain: domain.replace(/\.$/, "").toLowerCase(),
      dnsServer,
      managerPodIp: parseAddress(info.managerPodIp) ? info.managerPodIp : "",
      searchPath,
      namespaces,
    }),
    dropped,
    ...(unusable ? { unusable } : {}),
  };
}

/** A peer's text for a log line: quoted, cut, control characters shown as escapes. */
function show(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

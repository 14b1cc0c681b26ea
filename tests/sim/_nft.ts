/**
 * The kube-proxy part of the simulated cluster: the nftables table a node
 * holds for its services, written whole each time (`nft -f`, one atomic
 * transaction), in the shape kube-proxy's nftables mode uses:
 *
 * ```
 * prerouting/output ─► services: ip daddr . l4proto . th dport vmap @service-ips
 *                         └─► svc_N: numgen random mod K vmap { 0 : goto ep_N_0, … }
 *                                └─► ep_N_i: hairpin mark when the client is the endpoint; dnat to ip:port
 * forward/output filter: anything else to a ClusterIP (unknown port, no endpoints) is rejected
 * postrouting: hairpin mark → masquerade; pod → outside the pod CIDR leaving the LAN link → masquerade
 * ```
 *
 * @module
 */

import type { EndpointAddress, ServiceInfo } from "./_model.ts";

/** Where the table goes and what it must know about the node. */
export interface KubeProxyOptions {
  /** The table's name (family `ip`). */
  table: string;
  /** The cluster's pod CIDR: traffic from it to elsewhere is masqueraded. */
  podCidr: string;
  /** The node's interface on the LAN. */
  lanIf: string;
}

/** A service with its current endpoints. */
export interface ServiceState {
  svc: ServiceInfo;
  endpoints: EndpointAddress[];
}

/** The mark kube-proxy uses to ask for masquerading (hairpin traffic). */
const MASQ_MARK = "0x4000";

/**
 * Renders the node's whole nftables table for `services`, as a script for
 * `nft -f -` that replaces the table atomically.
 *
 * @param services every service with its endpoints (headless ones are skipped)
 * @param options table name, pod CIDR, LAN interface
 * @returns the script
 */
export function kubeProxyRuleset(services: ServiceState[], options: KubeProxyOptions): string {
  const { table, podCidr, lanIf } = options;
  const clusterIps = new Set<string>();
  const mapElements: string[] = [];
  const chains: string[] = [];
  let n = 0;
  for (const { svc, endpoints } of services) {
    if (svc.clusterIP === "None") continue;
    clusterIps.add(svc.clusterIP);
    for (const port of svc.ports) {
      const backends = endpoints.filter((e) => e.ports[port.name] !== undefined);
      if (backends.length === 0) continue; // rejected by the filter chains
      const proto = port.protocol.toLowerCase();
      const label = `${svc.namespace}/${svc.name}:${port.name || port.port}/${proto}`;
      const svcChain = `svc_${n++}`;
      mapElements.push(`${svc.clusterIP} . ${proto} . ${port.port} : goto ${svcChain}`);
      const epChains = backends.map((e, i) => {
        const name = `${svcChain}_ep${i}`;
        chains.push(
          `  chain ${name} {\n` +
            `    ip saddr ${e.ip} meta mark set meta mark | ${MASQ_MARK} comment "hairpin"\n` +
            `    meta l4proto ${proto} dnat to ${e.ip}:${e.ports[port.name]} comment ${
              JSON.stringify(`${label} -> ${e.pod ?? e.ip}`)
            }\n` +
            `  }`,
        );
        return name;
      });
      const pick = epChains.length === 1
        ? `goto ${epChains[0]}`
        : `numgen random mod ${epChains.length} vmap { ${
          epChains.map((c, i) => `${i} : goto ${c}`).join(", ")
        } }`;
      chains.push(`  chain ${svcChain} {\n    ${pick} comment ${JSON.stringify(label)}\n  }`);
    }
  }
  const elements = (items: Iterable<string>) => {
    const list = [...items];
    return list.length ? `; elements = { ${list.join(", ")} }` : "";
  };
  return [
    `table ip ${table}`,
    `delete table ip ${table}`,
    `table ip ${table} {`,
    `  set cluster-ips { type ipv4_addr${elements(clusterIps)}; }`,
    `  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict${
      elements(mapElements)
    }; }`,
    `  chain services {`,
    `    ip daddr . meta l4proto . th dport vmap @service-ips`,
    `  }`,
    `  chain nat-prerouting {`,
    `    type nat hook prerouting priority dstnat; policy accept;`,
    `    jump services`,
    `  }`,
    `  chain nat-output {`,
    `    type nat hook output priority -100; policy accept;`,
    `    jump services`,
    `  }`,
    `  chain nat-postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    meta mark & ${MASQ_MARK} == ${MASQ_MARK} masquerade comment "hairpin"`,
    `    ip saddr ${podCidr} ip daddr != ${podCidr} oifname "${lanIf}" masquerade comment "pod egress"`,
    `  }`,
    `  chain filter-forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    ip daddr @cluster-ips reject comment "ClusterIP without this port or endpoints"`,
    `  }`,
    `  chain filter-output {`,
    `    type filter hook output priority filter; policy accept;`,
    `    ip daddr @cluster-ips reject comment "ClusterIP without this port or endpoints"`,
    `  }`,
    ...chains,
    `}`,
    ``,
  ].join("\n");
}

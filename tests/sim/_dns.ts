/**
 * The CoreDNS part of the simulated cluster, rendered for dnsmasq: a config
 * file (options and SRV records; a change needs a restart) and a hosts file
 * for `--hostsdir` (A and PTR records; dnsmasq re-reads it by itself through
 * inotify, so pods coming and going need no restart).
 *
 * Records, as CoreDNS's `kubernetes` plugin serves them:
 * - `<svc>.<ns>.svc.<domain>` A → the ClusterIP, or for a headless service each ready endpoint;
 * - `<host>.<svc>.<ns>.svc.<domain>` A → an endpoint, `<host>` being the pod's
 *   `hostname` when its `subdomain` is the service, else the dashed IP (`198-18-0-5`);
 * - `<dashed-ip>.<ns>.pod.<domain>` A → a pod's IP (CoreDNS `pods verified`);
 * - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV for named ports: the service
 *   name and port, or for a headless service one record per endpoint;
 * - PTR for ClusterIPs (the service name) and pod IPs (the endpoint name, else
 *   the pod name). dnsmasq answers PTR with the first hosts line of an address,
 *   so those lines come first.
 *
 * Unknown names under the domain and the reverse zones of the pod and service
 * CIDRs are NXDOMAIN (`local=`); other names go to `upstream` when given.
 * `generation.vif-sim.invalid` A answers a class E address that counts the
 * updates, so the simulator can tell when dnsmasq has read the newest data.
 *
 * @module
 */

import { intToIp } from "./_model.ts";
import type { PodInfo } from "./_model.ts";
import type { ServiceState } from "./_nft.ts";

/** What the cluster DNS must know besides the objects. */
export interface DnsOptions {
  /** The cluster domain, `cluster.local`. */
  domain: string;
  podCidr: string;
  serviceCidr: string;
  /** The directory dnsmasq watches for the hosts file. */
  hostsDir: string;
  /** Where names outside the cluster go (CoreDNS `forward . /etc/resolv.conf`); none: REFUSED. */
  upstream?: string;
  /** TTL of the records, seconds (CoreDNS: 5). */
  ttl?: number;
}

/** The name whose A record tells which update dnsmasq has read. */
export const GENERATION_NAME = "generation.vif-sim.invalid";

/**
 * The class E address that encodes update number `gen` (`240.x.y.z`).
 *
 * @param gen the update number
 * @returns the address
 */
export function generationIp(gen: number): string {
  return intToIp(0xf0000000 + (gen % 0x0fffffff));
}

function dashed(ip: string): string {
  return ip.replaceAll(".", "-");
}

/**
 * Renders the dnsmasq configuration: options and the SRV records.
 *
 * @param services every service with its endpoints
 * @param options domain, CIDRs, hosts directory, upstream, TTL
 * @returns the config file's text
 */
export function dnsmasqConfig(services: ServiceState[], options: DnsOptions): string {
  const { domain } = options;
  const lines = [
    "# The simulated cluster DNS (tests/sim/_dns.ts). Regenerated on every change.",
    "no-resolv",
    "no-hosts",
    `local=/${domain}/`,
    "local=/vif-sim.invalid/",
    `rev-server=${options.podCidr}`,
    `rev-server=${options.serviceCidr}`,
    `local-ttl=${options.ttl ?? 5}`,
    `hostsdir=${options.hostsDir}`,
    "cache-size=1000",
  ];
  if (options.upstream) lines.push(`server=${options.upstream}`);
  for (const { svc, endpoints } of services) {
    const base = `${svc.name}.${svc.namespace}.svc.${domain}`;
    for (const port of svc.ports) {
      if (!port.name) continue;
      const owner = `_${port.name}._${port.protocol.toLowerCase()}.${base}`;
      if (svc.clusterIP !== "None") {
        lines.push(`srv-host=${owner},${base},${port.port},0,100`);
        continue;
      }
      const backends = endpoints.filter((e) => e.ports[port.name] !== undefined);
      const weight = Math.max(1, Math.floor(100 / backends.length));
      for (const e of backends) {
        lines.push(
          `srv-host=${owner},${e.hostname ?? dashed(e.ip)}.${base},${
            e.ports[port.name]
          },0,${weight}`,
        );
      }
    }
  }
  return lines.join("\n") + "\n";
}

/**
 * Renders the hosts file: A records, and PTR through the first line of each address.
 *
 * @param services every service with its endpoints
 * @param options every pod, the domain, and the update number to publish as
 *   {@linkcode GENERATION_NAME}
 * @returns the hosts file's text
 */
export function dnsmasqHosts(
  services: ServiceState[],
  options: { pods: Iterable<PodInfo>; domain: string; generation: number },
): string {
  const { domain, pods, generation } = options;
  const seen = new Set<string>();
  const lines: string[] = [];
  const add = (ip: string, name: string) => {
    const line = `${ip} ${name}`;
    if (!seen.has(line)) {
      seen.add(line);
      lines.push(line);
    }
  };
  // Endpoint names first: they are the PTR answer for a pod IP that backs a service.
  for (const { svc, endpoints } of services) {
    for (const e of endpoints) {
      add(e.ip, `${e.hostname ?? dashed(e.ip)}.${svc.name}.${svc.namespace}.svc.${domain}`);
    }
  }
  for (const pod of pods) add(pod.ip, `${dashed(pod.ip)}.${pod.namespace}.pod.${domain}`);
  for (const { svc, endpoints } of services) {
    const name = `${svc.name}.${svc.namespace}.svc.${domain}`;
    if (svc.clusterIP !== "None") add(svc.clusterIP, name);
    else for (const e of endpoints) add(e.ip, name);
  }
  add(generationIp(generation), GENERATION_NAME);
  return lines.join("\n") + "\n";
}

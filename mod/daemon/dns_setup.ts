/**
 * DNS for a session: the interceptor (cluster names through the manager,
 * the rest upstream), its server on the DNS address, and the OS pointed at it.
 * Set up on the first cluster info, updated on every later one, undone when
 * the session closes.
 *
 * @module
 */

import { Cidr } from "../net/address.ts";
import { DnsInterceptor, type DnsResolve } from "../net/dns.ts";
import { isDnsName, isNamespaceName } from "../net/dns_name.ts";
import type { ClusterInfo } from "../rpc/service.ts";
import {
  chooseConfigurator,
  clusterDnsDomains,
  detectDnsEnvironment,
  type DnsConfigurator,
  type DnsOsConfig,
  makeDnsConfigurator,
  ResolvConfConfigurator,
} from "./dns_config.ts";
import { type DnsServer, startDnsServer, upstreamResolver } from "./dns_server.ts";
import type { Log, Session } from "./session.ts";

/** Options of {@linkcode setupDns}. */
export interface DnsSetupOptions {
  /** The DNS address on the TUN. */
  address: string;
  /** The namespace single-label names resolve in. */
  namespace: string;
  /** Where the resolv.conf original is kept. */
  stateDir: string;
  /** `--dns-include` suffixes. */
  include?: string[];
  /** `--dns-exclude` suffixes. */
  exclude?: string[];
  /** The resolv.conf to rewrite (default `/etc/resolv.conf`). */
  resolvConfPath?: string;
  /**
   * Search domains that come first: the intercepted pods' (their namespace's
   * names resolve as in the pod). Only cluster domains are taken.
   */
  extraSearch?: string[];
  log: Log;
}

/** The DNS parts of a live session. */
export interface SessionDns {
  readonly interceptor: DnsInterceptor;
  readonly server: DnsServer;
  readonly configurator: DnsConfigurator;
  /** How the OS was pointed at us. */
  readonly mode: "resolved" | "resolv.conf";
  /** What the OS was last given: address, search and routing domains. */
  config: DnsOsConfig;
}

const dnsOf = new WeakMap<Session, SessionDns>();

/**
 * The DNS parts of a session, once set up.
 *
 * @param session the session
 * @returns its DNS parts, or `undefined` before the first cluster info
 */
export function sessionDns(session: Session): SessionDns | undefined {
  return dnsOf.get(session);
}

function parseSubnets(list: string[]): Cidr[] {
  return list.flatMap((s) => {
    try {
      return [Cidr.parse(s)];
    } catch {
      return []; // malformed subnets are reported by the session's routing
    }
  });
}

/**
 * Sets up or updates DNS for `info`.
 *
 * @param session the session (for cluster DNS queries and for undoing on close)
 * @param info the cluster info just received
 * @param options addresses, namespace, state dir
 * @throws {Error} when the DNS server cannot bind or the OS cannot be configured
 */
export async function setupDns(
  session: Session,
  info: ClusterInfo,
  options: DnsSetupOptions,
): Promise<void> {
  // The user's names reach resolv.conf, written by root: only names pass.
  if (!isNamespaceName(options.namespace)) {
    throw new Error(`the namespace ${JSON.stringify(options.namespace)} is not a namespace name`);
  }
  for (const suffix of [...(options.include ?? []), ...(options.exclude ?? [])]) {
    if (!isDnsName(suffix.replace(/^\./, ""))) {
      throw new Error(`the DNS suffix ${JSON.stringify(suffix)} is not a DNS name`);
    }
  }
  const clusterDomain = info.clusterDomain || "cluster.local";
  // The intercepted pods' search domains under the cluster domain come first,
  // and single-label names resolve in the first pod's namespace, as there.
  const extra = (options.extraSearch ?? []).filter((d) =>
    isDnsName(d) && (d === clusterDomain || d.endsWith(`.${clusterDomain}`))
  );
  const podNamespace = extra
    .map((d) => d.slice(0, -(clusterDomain.length + 1)).match(/^([a-z0-9-]+)\.svc$/)?.[1])
    .find((ns) => ns !== undefined && isNamespaceName(ns));
  const namespace = podNamespace ?? options.namespace;
  const clusterInfo = {
    clusterDomain,
    namespace,
    namespaces: info.namespaces,
    podSubnets: parseSubnets(info.podSubnets),
    serviceSubnets: parseSubnets(info.serviceSubnets),
  };
  const domains = clusterDnsDomains({
    clusterDomain,
    namespace,
    namespaces: [...info.namespaces, options.namespace],
    ...(options.include ? { include: options.include } : {}),
    subnets: [...clusterInfo.podSubnets, ...clusterInfo.serviceSubnets],
  });
  const osConfig = {
    address: options.address,
    interfaceName: session.stack?.device.name ?? "",
    searchDomains: [...new Set([...extra, ...domains.searchDomains])],
    routingDomains: domains.routingDomains,
  };
  const existing = dnsOf.get(session);
  if (existing) {
    existing.interceptor.setClusterInfo(clusterInfo);
    await existing.configurator.apply(osConfig);
    existing.config = osConfig;
    return;
  }
  const log = options.log;
  // A crash of an earlier run may have left resolv.conf rewritten: put it back first.
  if (await ResolvConfConfigurator.recover(options.stateDir, { log })) {
    log("info", "dns: restored resolv.conf left behind by an earlier run");
  }
  let upstream: DnsResolve | undefined;
  const resolveCluster: DnsResolve = (query) => session.resolveDns(query);
  const interceptor = new DnsInterceptor({
    ...clusterInfo,
    ...(options.include ? { include: options.include } : {}),
    ...(options.exclude ? { exclude: options.exclude } : {}),
    resolveCluster,
    resolveUpstream: (q) =>
      upstream ? upstream(q) : Promise.reject(new Error("no upstream resolver yet")),
    log,
  });
  const server = await startDnsServer({ address: options.address, port: 53, interceptor, log });
  const env = await detectDnsEnvironment(
    options.resolvConfPath ? { path: options.resolvConfPath } : {},
  );
  const choice = chooseConfigurator(env);
  log("info", choice.log);
  const configurator = makeDnsConfigurator(choice, {
    stateDir: options.stateDir,
    log,
    ...(options.resolvConfPath ? { path: options.resolvConfPath } : {}),
  });
  try {
    const applied = await configurator.apply(osConfig);
    upstream = applied.upstream.length ? upstreamResolver(applied.upstream, { log }) : undefined;
  } catch (error) {
    await server.close();
    throw error;
  }
  dnsOf.set(session, { interceptor, server, configurator, mode: choice.kind, config: osConfig });
  session.onClose(async () => {
    await configurator.restore();
    await server.close();
    log("info", `dns: ${configurator.describe()} restored`);
  });
}

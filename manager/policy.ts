/**
 * Where the traffic-manager agrees to dial, whatever a session asks: the
 * announced pod and service subnets, the cluster DNS server, and a session's
 * `also_proxy` subnets when the cluster admin allowed them
 * (`--allow-also-proxy`). Never, not even with `--allow-any-destination`:
 * loopback, link-local (cloud metadata at 169.254.169.254 among them) and the
 * known metadata addresses outside it, the unspecified, multicast and
 * broadcast ranges, the manager's own addresses on any port, and its own
 * Service's ClusterIPs (which lead back to its own ports through kube-proxy).
 * Else the manager would be a way past a pod's NetworkPolicy to whatever
 * listens next to it, on the node or in the cloud around it.
 *
 * Pure: no I/O, the addresses are given.
 *
 * @module
 */

import { Cidr, formatAddress, parseAddress } from "../mod/net/address.ts";

/** The protocols a tunnel may carry. */
export type TunnelProtocol = "tcp" | "udp" | "icmp";

/** Options of {@linkcode DestinationPolicy}. */
export interface DestinationPolicyOptions {
  /** Pod subnets, as CIDR text or parsed. */
  podSubnets: readonly (string | Cidr)[];
  /** Service subnets, as CIDR text or parsed. */
  serviceSubnets: readonly (string | Cidr)[];
  /** The cluster DNS server: port 53 (and ICMP) on it is allowed even outside the subnets. */
  dnsServer?: string;
  /**
   * The manager's own addresses (its pod IPs, its interfaces' addresses):
   * refused on every port.
   */
  ownAddresses?: readonly string[];
  /** The ClusterIPs of the manager's own Service: refused on every port. */
  serviceIps?: readonly string[];
  /** Subnets a session may add with `also_proxy` (the admin's `--allow-also-proxy`). Default none. */
  allowAlsoProxy?: readonly (string | Cidr)[];
  /** Allow any destination outside the cluster's subnets too (never the refused ranges). */
  allowAnyDestination?: boolean;
  /**
   * Dial loopback destinations (127.0.0.0/8, ::1) allowed by the other rules.
   * Only for a manager run in-process by tests, whose destinations can only
   * listen on the machine's loopback; a manager started from the command line
   * never does.
   */
  allowLoopback?: boolean;
}

/** The policy's answer for one destination. */
export type Verdict = { allowed: true } | { allowed: false; reason: string };

const ALLOWED: Verdict = { allowed: true };
const V4_MAPPED = Cidr.parse("::ffff:0.0.0.0/96");
const NAT64 = Cidr.parse("64:ff9b::/96");

/** Ranges never dialed, with what they are. */
const NEVER: ReadonlyArray<readonly [Cidr, string]> = [
  ["0.0.0.0/8", "an unspecified address"],
  ["127.0.0.0/8", "a loopback address"],
  ["169.254.0.0/16", "a link-local address (cloud metadata lives there)"],
  ["100.100.100.200/32", "a cloud metadata address"],
  ["224.0.0.0/4", "a multicast address"],
  ["255.255.255.255/32", "the broadcast address"],
  ["::/96", "an unspecified, loopback or IPv4-compatible address"],
  ["fe80::/10", "a link-local address"],
  ["fd00:ec2::254/128", "a cloud metadata address"],
  ["ff00::/8", "a multicast address"],
].map(([cidr, what]) => [Cidr.parse(cidr!), what!] as const);

/**
 * Decides whether a tunnel may go to a destination.
 *
 * @example
 * ```ts
 * import { DestinationPolicy } from "./policy.ts";
 * import { parseAddress } from "../mod/net/address.ts";
 *
 * const policy = new DestinationPolicy({
 *   podSubnets: ["198.18.64.0/18"],
 *   serviceSubnets: ["198.18.128.0/20"],
 *   ownAddresses: ["198.18.64.7"],
 * });
 * if (!policy.check("tcp", parseAddress("198.18.64.20")!, 80).allowed) throw new Error();
 * if (policy.check("tcp", parseAddress("198.18.64.7")!, 80).allowed) throw new Error();
 * if (policy.check("tcp", parseAddress("169.254.169.254")!, 80).allowed) throw new Error();
 * ```
 */
export class DestinationPolicy {
  #subnets: Cidr[];
  #dnsServer: Uint8Array | undefined;
  #own: Uint8Array[];
  #service: Uint8Array[];
  #allowAlso: Cidr[];
  #allowAny: boolean;
  #never: ReadonlyArray<readonly [Cidr, string]>;

  /**
   * Makes a policy.
   *
   * @param options The subnets, the DNS server, the manager's own addresses.
   * @throws {SyntaxError} When a subnet is not a CIDR.
   */
  constructor(options: DestinationPolicyOptions) {
    const cidrs = (list: readonly (string | Cidr)[]) =>
      list.map((s) => typeof s === "string" ? Cidr.parse(s) : s);
    this.#subnets = cidrs([...options.podSubnets, ...options.serviceSubnets]);
    const dns = options.dnsServer === undefined ? undefined : parseAddress(options.dnsServer);
    this.#dnsServer = dns === undefined ? undefined : unmap(dns);
    this.#own = addresses(options.ownAddresses ?? []);
    this.#service = addresses(options.serviceIps ?? []);
    this.#allowAlso = cidrs(options.allowAlsoProxy ?? []);
    this.#allowAny = options.allowAnyDestination ?? false;
    this.#never = options.allowLoopback ? NEVER.filter(([cidr]) => !isLoopback(cidr)) : NEVER;
  }

  /**
   * Tells whether a session may add `subnet` with `also_proxy`: only inside a
   * subnet the admin allowed.
   *
   * @param subnet The subnet asked for.
   * @returns `undefined` when allowed, else why not (for the client).
   */
  checkAlsoProxy(subnet: Cidr): string | undefined {
    const inside = (allowed: Cidr) =>
      allowed.prefixLength <= subnet.prefixLength && allowed.containsBytes(subnet.bytes);
    if (this.#allowAlso.some(inside)) return undefined;
    const allowed = this.#allowAlso.length === 0 ? "none" : this.#allowAlso.join(", ");
    return `also_proxy "${subnet}" is outside the subnets the cluster admin allows ` +
      `(--allow-also-proxy of the traffic-manager: ${allowed})`;
  }

  /**
   * Tells whether a tunnel may be opened to `ip` and `port`.
   *
   * @param protocol The tunnel's protocol.
   * @param ip 4 or 16 address bytes; an IPv4-mapped IPv6 address counts as its IPv4 address.
   * @param port The destination port (ignored for ICMP).
   * @param alsoProxy More subnets this session may reach (its `also_proxy`,
   *   already checked against the admin's allowance).
   * @returns Allowed, or refused with the reason to tell the client.
   */
  check(
    protocol: TunnelProtocol,
    ip: Uint8Array,
    port: number,
    alsoProxy: readonly Cidr[] = [],
  ): Verdict {
    if (ip.length !== 4 && ip.length !== 16) {
      return { allowed: false, reason: `destination address has ${ip.length} bytes, not 4 or 16` };
    }
    const address = unmap(ip);
    const text = formatAddress(address);
    if (protocol !== "icmp" && (port < 1 || port > 65535)) {
      return { allowed: false, reason: `destination port "${port}" of "${text}" is not 1–65535` };
    }
    const never = this.#refused(address) ??
      (NAT64.containsBytes(address) ? this.#refused(address.slice(12)) : undefined);
    if (never !== undefined) return { allowed: false, reason: `destination "${text}" is ${never}` };
    if (this.#allowAny) return ALLOWED;
    if (this.#subnets.some((subnet) => subnet.containsBytes(address))) return ALLOWED;
    if (alsoProxy.some((subnet) => subnet.containsBytes(address))) return ALLOWED;
    const dnsPort = protocol === "icmp" || port === 53;
    if (dnsPort && this.#dnsServer !== undefined && sameBytes(this.#dnsServer, address)) {
      return ALLOWED;
    }
    const subnets = this.#subnets.length === 0 ? "none announced" : this.#subnets.join(", ");
    return {
      allowed: false,
      reason: `destination "${text}" is outside the cluster's pod and service subnets (${subnets})`,
    };
  }

  /** What makes `address` one the manager never dials, if anything. */
  #refused(address: Uint8Array): string | undefined {
    if (this.#own.some((own) => sameBytes(own, address))) {
      return "the traffic-manager's own address";
    }
    if (this.#service.some((ip) => sameBytes(ip, address))) {
      return "the traffic-manager's own Service";
    }
    for (const [cidr, what] of this.#never) if (cidr.containsBytes(address)) return what;
    return undefined;
  }
}

const LOOPBACK = [Cidr.parse("127.0.0.0/8"), Cidr.parse("::/96")];

function isLoopback(cidr: Cidr): boolean {
  return LOOPBACK.some((loopback) => loopback.toString() === cidr.toString());
}

function addresses(texts: readonly string[]): Uint8Array[] {
  return texts.flatMap((text) => {
    const bytes = parseAddress(text);
    return bytes === undefined ? [] : [unmap(bytes)];
  });
}

/** `::ffff:198.18.0.1` → `198.18.0.1`; anything else unchanged. */
function unmap(ip: Uint8Array): Uint8Array {
  return ip.length === 16 && V4_MAPPED.containsBytes(ip) ? ip.slice(12) : ip;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * `host:port`, with brackets around an IPv6 host.
 *
 * @param host The address.
 * @param port The port.
 * @returns The text.
 */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

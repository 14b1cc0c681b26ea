/**
 * Where the traffic-manager agrees to dial: the announced pod and service
 * subnets and the cluster DNS server, and never its own API port (else anyone
 * holding the CA could loop tunnels through it, or reach whatever listens next
 * to it). `--allow-any-destination` lifts the subnet rule, not the own-port
 * rule: a tunnel into the manager's own gRPC port is never useful.
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
   * The manager's own addresses (its pod IP, its interfaces' addresses, the
   * address it listens on). Loopback and the unspecified addresses are always
   * counted as its own.
   */
  ownAddresses?: readonly string[];
  /** The manager's API port: refused on its own addresses, for TCP. */
  ownPort: number;
  /** Allow any destination but the manager's own API port. */
  allowAnyDestination?: boolean;
}

/** The policy's answer for one destination. */
export type Verdict = { allowed: true } | { allowed: false; reason: string };

const ALLOWED: Verdict = { allowed: true };
const LOOPBACK_V4 = Cidr.parse("127.0.0.0/8");
const LOOPBACK_V6 = Cidr.parse("::1/128");
const UNSPECIFIED_V4 = Cidr.parse("0.0.0.0/32");
const UNSPECIFIED_V6 = Cidr.parse("::/128");
const V4_MAPPED = Cidr.parse("::ffff:0.0.0.0/96");

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
 *   ownPort: 8081,
 * });
 * if (!policy.check("tcp", parseAddress("198.18.64.20")!, 80).allowed) throw new Error();
 * if (policy.check("tcp", parseAddress("198.18.64.7")!, 8081).allowed) throw new Error();
 * if (policy.check("tcp", parseAddress("203.0.113.9")!, 443).allowed) throw new Error();
 * ```
 */
export class DestinationPolicy {
  #subnets: Cidr[];
  #dnsServer: Uint8Array | undefined;
  #own: Uint8Array[];
  #ownPort: number;
  #allowAny: boolean;

  /**
   * Makes a policy.
   *
   * @param options The subnets, the DNS server, the manager's own addresses and port.
   * @throws {SyntaxError} When a subnet is not a CIDR.
   */
  constructor(options: DestinationPolicyOptions) {
    this.#subnets = [...options.podSubnets, ...options.serviceSubnets].map((s) =>
      typeof s === "string" ? Cidr.parse(s) : s
    );
    const dns = options.dnsServer === undefined ? undefined : parseAddress(options.dnsServer);
    this.#dnsServer = dns === undefined ? undefined : unmap(dns);
    this.#own = (options.ownAddresses ?? []).flatMap((text) => {
      const bytes = parseAddress(text);
      return bytes === undefined ? [] : [unmap(bytes)];
    });
    this.#ownPort = options.ownPort;
    this.#allowAny = options.allowAnyDestination ?? false;
  }

  /**
   * Tells whether a tunnel may be opened to `ip` and `port`.
   *
   * @param protocol The tunnel's protocol.
   * @param ip 4 or 16 address bytes; an IPv4-mapped IPv6 address counts as its IPv4 address.
   * @param port The destination port (ignored for ICMP).
   * @param alsoProxy More subnets this session may reach (its `--also-proxy`); the
   *   manager's own API port stays refused.
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
    if (protocol === "tcp" && port === this.#ownPort && this.#isOwn(address)) {
      return {
        allowed: false,
        reason: `destination "${hostPort(text, port)}" is the traffic-manager's own API`,
      };
    }
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

  #isOwn(address: Uint8Array): boolean {
    return [LOOPBACK_V4, LOOPBACK_V6, UNSPECIFIED_V4, UNSPECIFIED_V6].some((c) =>
      c.containsBytes(address)
    ) || this.#own.some((own) => sameBytes(own, address));
  }
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

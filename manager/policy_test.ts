import { Cidr, parseAddress } from "../mod/net/address.ts";
import { assertEquals } from "../tests/_assert.ts";
import { DestinationPolicy, type DestinationPolicyOptions, type TunnelProtocol } from "./policy.ts";

const BASE: DestinationPolicyOptions = {
  podSubnets: ["198.18.64.0/18", "fd00:64::/64"],
  serviceSubnets: ["198.18.128.0/20"],
  dnsServer: "198.19.0.10",
  ownAddresses: ["198.18.64.7", "240.0.0.9"],
  ownPort: 8081,
};

function check(
  options: Partial<DestinationPolicyOptions>,
  protocol: TunnelProtocol,
  address: string,
  port: number,
): string {
  const ip = parseAddress(address) ?? new Uint8Array(3);
  const verdict = new DestinationPolicy({ ...BASE, ...options }).check(protocol, ip, port);
  return verdict.allowed ? "allowed" : verdict.reason;
}

Deno.test("DestinationPolicy.check() decides by subnet, DNS server, own port and protocol", () => {
  const cases: [Partial<DestinationPolicyOptions>, TunnelProtocol, string, number, string][] = [
    [{}, "tcp", "198.18.64.20", 80, "allowed"],
    [{}, "udp", "198.18.130.1", 53, "allowed"],
    [{}, "icmp", "198.18.100.1", 0, "allowed"],
    [{}, "tcp", "fd00:64::5", 443, "allowed"],
    [{}, "udp", "198.19.0.10", 53, "allowed"], // The DNS server, outside the subnets.
    [{}, "tcp", "198.19.0.10", 53, "allowed"],
    [{}, "icmp", "198.19.0.10", 0, "allowed"],
    [
      {},
      "tcp",
      "198.19.0.10",
      22,
      'destination "198.19.0.10" is outside the cluster\'s pod and service subnets ' +
      "(198.18.64.0/18, fd00:64::/64, 198.18.128.0/20)",
    ],
    [{}, "tcp", "::ffff:198.18.64.20", 80, "allowed"], // IPv4-mapped counts as IPv4.
    [
      {},
      "tcp",
      "203.0.113.5",
      443,
      'destination "203.0.113.5" is outside the cluster\'s pod and service subnets ' +
      "(198.18.64.0/18, fd00:64::/64, 198.18.128.0/20)",
    ],
    [
      { podSubnets: [], serviceSubnets: [] },
      "tcp",
      "198.18.64.20",
      80,
      'destination "198.18.64.20" is outside the cluster\'s pod and service subnets (none announced)',
    ],
    // The manager's own API port: on its pod IP, loopback, unspecified, mapped.
    [
      {},
      "tcp",
      "198.18.64.7",
      8081,
      'destination "198.18.64.7:8081" is the traffic-manager\'s own API',
    ],
    [{}, "tcp", "198.18.64.7", 8080, "allowed"],
    [{}, "udp", "198.18.64.7", 8081, "allowed"],
    [
      { allowAnyDestination: true },
      "tcp",
      "127.0.0.1",
      8081,
      'destination "127.0.0.1:8081" is the traffic-manager\'s own API',
    ],
    [
      { allowAnyDestination: true },
      "tcp",
      "127.3.4.5",
      8081,
      'destination "127.3.4.5:8081" is the traffic-manager\'s own API',
    ],
    [
      { allowAnyDestination: true },
      "tcp",
      "0.0.0.0",
      8081,
      'destination "0.0.0.0:8081" is the traffic-manager\'s own API',
    ],
    [
      { allowAnyDestination: true },
      "tcp",
      "::1",
      8081,
      'destination "[::1]:8081" is the traffic-manager\'s own API',
    ],
    [
      { allowAnyDestination: true },
      "tcp",
      "::ffff:127.0.0.1",
      8081,
      'destination "127.0.0.1:8081" is the traffic-manager\'s own API',
    ],
    [
      { allowAnyDestination: true },
      "tcp",
      "240.0.0.9",
      8081,
      'destination "240.0.0.9:8081" is the traffic-manager\'s own API',
    ],
    [{ allowAnyDestination: true }, "tcp", "127.0.0.1", 8080, "allowed"],
    [{ allowAnyDestination: true }, "tcp", "203.0.113.5", 443, "allowed"],
    // Malformed requests.
    [{}, "tcp", "198.18.64.20", 0, 'destination port "0" of "198.18.64.20" is not 1–65535'],
    [
      { allowAnyDestination: true },
      "udp",
      "198.18.64.20",
      70000,
      'destination port "70000" of "198.18.64.20" is not 1–65535',
    ],
    [{}, "tcp", "bogus", 80, "destination address has 3 bytes, not 4 or 16"],
  ];
  for (const [options, protocol, address, port, expected] of cases) {
    assertEquals(
      check(options, protocol, address, port),
      expected,
      `${protocol} ${address}:${port}`,
    );
  }
});

Deno.test("DestinationPolicy.check() lets a session's --also-proxy subnets through, not the own port", () => {
  const policy = new DestinationPolicy({
    podSubnets: ["198.18.0.0/16"],
    serviceSubnets: ["198.19.0.0/18"],
    ownAddresses: ["198.18.0.9"],
    ownPort: 8081,
  });
  const outside = parseAddress("198.19.200.80")!;
  assertEquals(policy.check("tcp", outside, 80).allowed, false);
  const also = [Cidr.parse("198.19.200.0/24")];
  assertEquals(policy.check("tcp", outside, 80, also).allowed, true);
  assertEquals(
    policy.check("tcp", parseAddress("198.18.0.9")!, 8081, [Cidr.parse("198.18.0.0/16")]).allowed,
    false,
  );
});

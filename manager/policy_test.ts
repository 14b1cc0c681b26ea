import { Cidr, parseAddress } from "../mod/net/address.ts";
import { assertEquals } from "../tests/_assert.ts";
import { DestinationPolicy, type DestinationPolicyOptions, type TunnelProtocol } from "./policy.ts";

const BASE: DestinationPolicyOptions = {
  podSubnets: ["198.18.64.0/18", "fd00:64::/64"],
  serviceSubnets: ["198.18.128.0/20"],
  dnsServer: "198.19.0.10",
  ownAddresses: ["198.18.64.7", "240.0.0.9"],
  serviceIps: ["198.18.128.5"],
};

const OUTSIDE = "is outside the cluster's pod and service subnets " +
  "(198.18.64.0/18, fd00:64::/64, 198.18.128.0/20)";

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

Deno.test("DestinationPolicy.check() decides by subnet, DNS server and protocol", () => {
  const cases: [Partial<DestinationPolicyOptions>, TunnelProtocol, string, number, string][] = [
    [{}, "tcp", "198.18.64.20", 80, "allowed"],
    [{}, "udp", "198.18.130.1", 53, "allowed"],
    [{}, "icmp", "198.18.100.1", 0, "allowed"],
    [{}, "tcp", "fd00:64::5", 443, "allowed"],
    [{}, "udp", "198.19.0.10", 53, "allowed"], // The DNS server, outside the subnets.
    [{}, "tcp", "198.19.0.10", 53, "allowed"],
    [{}, "icmp", "198.19.0.10", 0, "allowed"],
    [{}, "tcp", "198.19.0.10", 22, `destination "198.19.0.10" ${OUTSIDE}`],
    [{}, "tcp", "::ffff:198.18.64.20", 80, "allowed"], // IPv4-mapped counts as IPv4.
    [{}, "tcp", "203.0.113.5", 443, `destination "203.0.113.5" ${OUTSIDE}`],
    [
      { podSubnets: [], serviceSubnets: [] },
      "tcp",
      "198.18.64.20",
      80,
      'destination "198.18.64.20" is outside the cluster\'s pod and service subnets (none announced)',
    ],
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

Deno.test("DestinationPolicy.check() never dials the manager itself, loopback, link-local, metadata, multicast or broadcast, whatever is allowed", () => {
  const everything: Partial<DestinationPolicyOptions> = {
    podSubnets: ["0.0.0.0/0", "::/0"],
    allowAnyDestination: true,
  };
  const cases: [string, string][] = [
    // The manager's own addresses, on every port, and its own Service.
    ["198.18.64.7", "the traffic-manager's own address"],
    ["240.0.0.9", "the traffic-manager's own address"],
    ["::ffff:198.18.64.7", "the traffic-manager's own address"],
    ["198.18.128.5", "the traffic-manager's own Service"],
    // Loopback and unspecified, however written.
    ["127.0.0.1", "a loopback address"],
    ["127.3.4.5", "a loopback address"],
    ["::ffff:127.0.0.1", "a loopback address"],
    ["::1", "an unspecified, loopback or IPv4-compatible address"],
    ["::", "an unspecified, loopback or IPv4-compatible address"],
    ["::7f00:1", "an unspecified, loopback or IPv4-compatible address"],
    ["0.0.0.0", "an unspecified address"],
    ["0.1.2.3", "an unspecified address"],
    // Link-local, where cloud metadata lives, and the metadata addresses outside it.
    ["169.254.169.254", "a link-local address (cloud metadata lives there)"],
    ["::ffff:169.254.169.254", "a link-local address (cloud metadata lives there)"],
    ["64:ff9b::a9fe:a9fe", "a link-local address (cloud metadata lives there)"], // NAT64
    ["fe80::1", "a link-local address"],
    ["fd00:ec2::254", "a cloud metadata address"],
    ["100.100.100.200", "a cloud metadata address"],
    // Multicast and broadcast.
    ["224.0.0.1", "a multicast address"],
    ["239.255.255.250", "a multicast address"],
    ["ff02::1", "a multicast address"],
    ["255.255.255.255", "the broadcast address"],
  ];
  for (const [address, what] of cases) {
    for (const protocol of ["tcp", "udp", "icmp"] as const) {
      for (const port of [53, 8081, 443]) {
        assertEquals(
          check(everything, protocol, address, port),
          `destination "${address.replace(/^::ffff:(?=\d)/, "")}" is ${what}`,
          `${protocol} ${address}:${port}`,
        );
      }
    }
  }
  // Next to them, what the cluster has is allowed.
  assertEquals(check(everything, "tcp", "198.18.64.8", 8081), "allowed");
  assertEquals(check(everything, "tcp", "64:ff9b::c612:4014", 80), "allowed");
});

Deno.test("DestinationPolicy.check() lets a session's also-proxy subnets through, never the refused ranges", () => {
  const policy = new DestinationPolicy({
    podSubnets: ["198.18.0.0/16"],
    serviceSubnets: ["198.19.0.0/18"],
    ownAddresses: ["198.18.0.9"],
    allowAlsoProxy: ["198.19.200.0/24", "0.0.0.0/0"],
  });
  const outside = parseAddress("198.19.200.80")!;
  assertEquals(policy.check("tcp", outside, 80).allowed, false);
  const also = [Cidr.parse("198.19.200.0/24")];
  assertEquals(policy.check("tcp", outside, 80, also).allowed, true);
  const all = [Cidr.parse("0.0.0.0/0")];
  assertEquals(policy.check("tcp", parseAddress("198.18.0.9")!, 80, all).allowed, false);
  assertEquals(policy.check("tcp", parseAddress("169.254.169.254")!, 80, all).allowed, false);
  assertEquals(policy.check("udp", parseAddress("127.0.0.1")!, 53, all).allowed, false);
});

Deno.test("DestinationPolicy.checkAlsoProxy() allows only subnets inside what the admin allowed", () => {
  const none = new DestinationPolicy({ podSubnets: [], serviceSubnets: [] });
  assertEquals(
    none.checkAlsoProxy(Cidr.parse("0.0.0.0/0")),
    'also_proxy "0.0.0.0/0" is outside the subnets the cluster admin allows ' +
      "(--allow-also-proxy of the traffic-manager: none)",
  );
  const some = new DestinationPolicy({
    podSubnets: [],
    serviceSubnets: [],
    allowAlsoProxy: ["198.19.200.0/24", "fd00:db::/48"],
  });
  assertEquals(some.checkAlsoProxy(Cidr.parse("198.19.200.0/24")), undefined);
  assertEquals(some.checkAlsoProxy(Cidr.parse("198.19.200.128/25")), undefined);
  assertEquals(some.checkAlsoProxy(Cidr.parse("198.19.200.7")), undefined);
  assertEquals(some.checkAlsoProxy(Cidr.parse("fd00:db:0:1::/64")), undefined);
  for (const asked of ["198.19.0.0/16", "198.19.201.0/24", "::/0", "0.0.0.0/0"]) {
    assertEquals(
      some.checkAlsoProxy(Cidr.parse(asked)),
      `also_proxy "${asked}" is outside the subnets the cluster admin allows ` +
        "(--allow-also-proxy of the traffic-manager: 198.19.200.0/24, fd00:db::/48)",
    );
  }
});

Deno.test("DestinationPolicy allowLoopback lets loopback through and nothing else of the refused ranges", () => {
  const options = { allowAnyDestination: true, allowLoopback: true };
  assertEquals(check(options, "tcp", "127.0.0.1", 8081), "allowed");
  assertEquals(check(options, "tcp", "::1", 8081), "allowed");
  assertEquals(
    check(options, "tcp", "169.254.169.254", 80),
    'destination "169.254.169.254" is a link-local address (cloud metadata lives there)',
  );
  assertEquals(
    check(options, "tcp", "198.18.64.7", 80),
    `destination "198.18.64.7" is the traffic-manager's own address`,
  );
});

import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import { Cidr } from "../net/address.ts";
import type { SystemRoute } from "../tun/routes.ts";
import { describeRoute, planSubnets, subtractCidr } from "./subnets.ts";

function route(cidr: string, extra: Partial<SystemRoute> = {}): SystemRoute {
  const [address, len] = cidr.split("/");
  return {
    family: 4,
    address: address!,
    prefixLength: Number(len),
    table: 254,
    protocol: 4,
    scope: 0,
    type: 1,
    interfaceName: "eth0",
    ...extra,
  };
}

const CLUSTER = [
  { cidr: "198.18.0.0/16", source: "pods" as const },
  { cidr: "198.19.0.0/18", source: "services" as const },
];

Deno.test("subtractCidr() leaves exactly the addresses not removed", () => {
  const parts = subtractCidr(Cidr.parse("198.18.0.0/16"), Cidr.parse("198.18.5.0/24"));
  assertEquals(parts.map(String), [
    "198.18.128.0/17",
    "198.18.64.0/18",
    "198.18.32.0/19",
    "198.18.16.0/20",
    "198.18.8.0/21",
    "198.18.0.0/22",
    "198.18.6.0/23",
    "198.18.4.0/24",
  ]);
  // Together with the hole they cover the /16 once: 2^16 addresses.
  const size = (c: Cidr) => 2 ** (32 - c.prefixLength);
  assertEquals(parts.reduce((n, c) => n + size(c), 0) + 256, 65536);
  for (const p of parts) assertEquals(p.overlaps(Cidr.parse("198.18.5.0/24")), false);
  assertEquals(subtractCidr(Cidr.parse("198.18.0.0/24"), Cidr.parse("198.18.0.0/16")), []);
  assertEquals(
    subtractCidr(Cidr.parse("198.18.0.0/24"), Cidr.parse("198.19.0.0/24")).map(String),
    ["198.18.0.0/24"],
  );
});

Deno.test("planSubnets() names a route that overlaps a cluster subnet, either way round", () => {
  const plan = planSubnets({
    cluster: CLUSTER,
    system: [
      route("198.18.5.0/24", { gateway: "198.19.200.9" }), // inside the pods' /16
      route("198.19.0.0/16", { interfaceName: "tun9" }), // around the services' /18
      route("198.19.200.0/24"), // the LAN: no overlap
      route("0.0.0.0/0", { gateway: "198.19.200.1" }), // the default route: never a conflict
    ],
  });
  assertEquals(
    plan.conflicts.map((c) => `${c.source} ${c.subnet} × ${describeRoute(c.route)}`),
    [
      "pods 198.18.0.0/16 × 198.18.5.0/24 via 198.19.200.9 dev eth0",
      "services 198.19.0.0/18 × 198.19.0.0/16 dev tun9",
    ],
  );
});

Deno.test("planSubnets() ignores other tables, non-unicast, vif's device, and host routes it needs", () => {
  const plan = planSubnets({
    cluster: CLUSTER,
    system: [
      route("198.18.0.9/32", { gateway: "198.19.200.1" }), // to the manager: how vif reaches it
      route("198.18.0.0/16", { interfaceName: "vif0" }),
      route("198.18.7.0/24", { table: 255 }),
      route("198.18.8.0/24", { type: 6 }),
    ],
    protectedHosts: ["198.18.0.9"],
    ownDevice: "vif0",
  });
  assertEquals(plan.conflicts, []);
  assertEquals(plan.routes.map((r) => String(r.cidr)), ["198.18.0.0/16", "198.19.0.0/18"]);
});

Deno.test("planSubnets(): --never-proxy cuts the subnet and settles the conflict", () => {
  const plan = planSubnets({
    cluster: CLUSTER,
    system: [route("198.18.5.0/24", { gateway: "198.19.200.9" })],
    neverProxy: ["198.18.5.0/24"],
  });
  assertEquals(plan.conflicts, []);
  assertEquals(plan.excluded.map(String), ["198.18.5.0/24"]);
  assertEquals(plan.routes.length, 9);
  assertEquals(plan.routes.some((r) => r.cidr.contains("198.18.5.7")), false);
  assertEquals(plan.routes.some((r) => r.cidr.contains("198.18.6.7")), true);
  assertEquals(plan.routes.at(-1)!.source, "services");
});

Deno.test("planSubnets(): --allow-conflicting-subnets routes over the existing route", () => {
  const plan = planSubnets({
    cluster: CLUSTER,
    system: [route("198.18.5.0/24"), route("198.19.0.0/16")],
    allowConflicting: ["198.18.0.0/16"],
  });
  assertEquals(plan.conflicts.map((c) => String(c.subnet)), ["198.19.0.0/18"]);
  assertEquals(plan.routes.map((r) => String(r.cidr)), ["198.18.0.0/16", "198.19.0.0/18"]);
});

Deno.test("planSubnets() skips malformed subnets and refuses malformed flags", () => {
  const plan = planSubnets({ cluster: [{ cidr: "nonsense", source: "pods" }], system: [] });
  assertEquals(plan.malformed, ["nonsense"]);
  assertThrows(() => planSubnets({ cluster: [], system: [], neverProxy: ["198.18.0/15x"] }));
});

Deno.test("planSubnets(): --also-proxy adds routes, never a conflict, still cut by --never-proxy", () => {
  const plan = planSubnets({
    cluster: CLUSTER,
    system: [route("198.19.200.0/24")],
    alsoProxy: ["198.19.200.0/24"],
    neverProxy: ["198.19.200.2/32"],
  });
  assertEquals(plan.conflicts, []);
  const also = plan.routes.filter((r) => r.source === "also-proxy");
  assertEquals(also.some((r) => r.cidr.contains("198.19.200.80")), true);
  assertEquals(also.some((r) => r.cidr.contains("198.19.200.2")), false);
});

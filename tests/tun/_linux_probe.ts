/**
 * The Linux TUN device's tests, run by `linux_test.ts` as a child
 * `deno test` inside a network namespace it made (this file is not named
 * `*_test.ts`, so `deno test tests/` does not run it in the root namespace).
 * It refuses to run anywhere but the namespace named in `VIF_TUN_PROBE_NETNS`.
 *
 * ```
 *   network namespace vif-tuntest-XXXXXXXX (no uplink)
 *   ┌────────────────────────────────────────────────────────────┐
 *   │  lo (up)                                                   │
 *   │  vifN  TUN ◄──── this process: readSync / writeSync        │
 *   │    240.0.0.1/24, 2001:2::1/64 (nodad)                      │
 *   │    198.18.77.0/24, 2001:2:77::/64 dev vifN proto 0xa5      │
 *   │  ping, UDP sockets of this process ──► routes ──► vifN     │
 *   └────────────────────────────────────────────────────────────┘
 * ```
 *
 * @module
 */

import dgram from "node:dgram";
import { assert, assertEquals, assertRejects } from "../_assert.ts";
import {
  assertIncludes,
  buildUdp,
  configure,
  type Endpoint,
  PLAN,
  runTunSuite,
  type TunHarness,
} from "./_tun_suite.ts";
import { SystemError } from "../../mod/tun/errors.ts";
import { listRoutes, openTun } from "../../mod/tun/mod.ts";
import type { Prefix, TunDevice } from "../../mod/tun/tun.ts";

const NETNS = Deno.env.get("VIF_TUN_PROBE_NETNS");
const inside = NETNS !== undefined && run(["ip", "netns", "identify"]).stdout === NETNS;

if (!inside) {
  Deno.test({
    name: "LinuxTun probe (runs only inside the namespace linux_test.ts makes)",
    ignore: true,
    fn() {},
  });
} else {
  runTunSuite("LinuxTun", linuxHarness());
  linuxOnlyTests();
}

function run(cmd: string[]): { success: boolean; stdout: string } {
  try {
    const out = new Deno.Command(cmd[0]!, { args: cmd.slice(1), stdout: "piped", stderr: "null" })
      .outputSync();
    return { success: out.success, stdout: new TextDecoder().decode(out.stdout).trim() };
  } catch {
    return { success: false, stdout: "" };
  }
}

async function ipJson<T>(args: string[]): Promise<T | undefined> {
  const out = await new Deno.Command("ip", {
    args: ["-j", ...args],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!out.success) return undefined;
  return JSON.parse(new TextDecoder().decode(out.stdout) || "[]") as T;
}

interface IpLink {
  flags: string[];
  mtu: number;
  addr_info?: Array<
    { family: string; local: string; prefixlen: number; scope: string; tentative?: boolean }
  >;
}

interface IpRoute {
  dst: string;
  protocol: string;
}

function prefixOf(dst: string): Prefix {
  const [address, length] = dst.split("/");
  return { address: address!, prefixLength: Number(length ?? (address!.includes(":") ? 128 : 32)) };
}

async function vifRoutes(name: string): Promise<Prefix[] | undefined> {
  const v4 = await ipJson<IpRoute[]>(["route", "show", "dev", name]);
  const v6 = await ipJson<IpRoute[]>(["-6", "route", "show", "dev", name]);
  if (!v4 || !v6) return undefined;
  return [...v4, ...v6].filter((r) => r.protocol === "165").map((r) => prefixOf(r.dst));
}

function linuxHarness(): TunHarness {
  return {
    open: () => openTun(),
    async sendUdp(_device: TunDevice, to: Endpoint, payload: Uint8Array) {
      const socket = dgram.createSocket(to.address.includes(":") ? "udp6" : "udp4");
      try {
        await new Promise<void>((resolve, reject) => {
          socket.send(payload, to.port, to.address, (error) => error ? reject(error) : resolve());
        });
      } finally {
        await new Promise<void>((resolve) => socket.close(() => resolve()));
      }
    },
    async receiveUdp(_device: TunDevice, at: Endpoint) {
      const socket = dgram.createSocket(at.address.includes(":") ? "udp6" : "udp4");
      const received = new Promise<Uint8Array>((resolve) => {
        socket.on("message", (message: Uint8Array) => resolve(new Uint8Array(message)));
      });
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind({ port: at.port, address: at.address }, () => resolve());
      });
      return {
        received,
        close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
      };
    },
    async ping(_device: TunDevice, address: string) {
      const args = [...(address.includes(":") ? ["-6"] : []), "-c1", "-W2", address];
      const out = await new Deno.Command("ping", { args, stdout: "null", stderr: "null" }).output();
      return out.success;
    },
    async view(device: TunDevice) {
      const [link] = await ipJson<IpLink[]>(["addr", "show", "dev", device.name]) ?? [];
      const routes = await vifRoutes(device.name);
      if (!link) return { exists: false, up: false, mtu: 0, addresses: [], routes: routes ?? [] };
      return {
        exists: true,
        up: link.flags.includes("UP"),
        mtu: link.mtu,
        addresses: (link.addr_info ?? []).filter((a) => a.scope === "global").map((a) => ({
          address: a.local,
          prefixLength: a.prefixlen,
        })),
        routes: routes ?? [],
      };
    },
  };
}

function linuxOnlyTests(): void {
  Deno.test("LinuxTun: kernel refusals name the errno and what was being done", async () => {
    const tun = await openTun();
    try {
      const mtu = await assertRejects(() => tun.setMtu(70000), SystemError);
      assertEquals((mtu as SystemError).code, "EINVAL");
      assertIncludes(
        mtu.message,
        `Cannot set MTU "70000" on "${tun.name}": EINVAL (invalid argument`,
      );
      assertIncludes(mtu.message, "mtu greater than device maximum");
      await configure(tun);
      const route = await assertRejects(
        () => tun.addRoute({ address: "198.18.77.5", prefixLength: 24 }),
        SystemError,
        `Cannot add route "198.18.77.5/24" to "${tun.name}": EINVAL (invalid argument`,
      );
      assertEquals((route as SystemError).errno, 22);
    } finally {
      await tun.close();
    }
  });

  Deno.test("LinuxTun: addRoute() on a link that is down fails with ENETDOWN", async () => {
    const tun = await openTun();
    try {
      await assertRejects(() => tun.addRoute(PLAN.route4), SystemError, "ENETDOWN");
    } finally {
      await tun.close();
    }
  });

  Deno.test("LinuxTun: openTun() names devices from the pattern and refuses a taken name", async () => {
    const a = await openTun({ name: "vif-probe%d" });
    try {
      assert(/^vif-probe\d+$/.test(a.name), a.name);
      const error = await assertRejects(() => openTun({ name: a.name }), SystemError, "EBUSY");
      assertIncludes(error.message, `Cannot create TUN device "${a.name}": EBUSY`);
      await assertRejects(
        () => openTun({ name: "a-name-too-long-for-linux" }),
        RangeError,
        "1 to 15 bytes",
      );
    } finally {
      await a.close();
    }
  });

  Deno.test("LinuxTun: a failed openTun() leaves no interface behind", async () => {
    await assertRejects(() => openTun({ name: "vif-bad", mtu: 70000 }), SystemError, "EINVAL");
    assertEquals(run(["ip", "link", "show", "dev", "vif-bad"]).success, false);
  });

  Deno.test("LinuxTun: listRoutes() shows vif routes with protocol 0xa5 and the interface name", async () => {
    const tun = await openTun();
    try {
      await configure(tun);
      const routes = await listRoutes();
      const ours = routes.filter((r) => r.protocol === 0xa5).map((r) => ({
        family: r.family,
        address: r.address,
        prefixLength: r.prefixLength,
        table: r.table,
        interfaceIndex: r.interfaceIndex,
        interfaceName: r.interfaceName,
      }));
      assertEquals(ours, [
        {
          family: 4,
          ...PLAN.route4,
          table: 254,
          interfaceIndex: tun.index,
          interfaceName: tun.name,
        },
        {
          family: 6,
          ...PLAN.route6,
          table: 254,
          interfaceIndex: tun.index,
          interfaceName: tun.name,
        },
      ]);
      const connected = routes.find((r) => r.address === "240.0.0.0" && r.prefixLength === 24);
      assertEquals(connected?.source, "240.0.0.1");
      assertEquals(connected?.protocol, 2);
    } finally {
      await tun.close();
    }
    assertEquals((await listRoutes()).filter((r) => r.protocol === 0xa5), []);
  });

  Deno.test("LinuxTun: the IPv6 address is usable at once (no duplicate address detection)", async () => {
    const tun = await openTun();
    try {
      await configure(tun);
      const [link] = await ipJson<IpLink[]>(["-6", "addr", "show", "dev", tun.name]) ?? [];
      const address = link?.addr_info?.find((a) => a.local === PLAN.tun6.address);
      assert(address, "the address is there");
      assertEquals(address.tentative, undefined);
    } finally {
      await tun.close();
    }
  });

  Deno.test("LinuxTun: reverse-path filtering is relaxed and local sources are accepted", async () => {
    const tun = await openTun();
    try {
      const all = Deno.readTextFileSync("/proc/sys/net/ipv4/conf/all/rp_filter").trim();
      const mine = Deno.readTextFileSync(`/proc/sys/net/ipv4/conf/${tun.name}/rp_filter`).trim();
      assertEquals(mine, all === "0" ? "0" : "2");
      assertEquals(
        Deno.readTextFileSync(`/proc/sys/net/ipv4/conf/${tun.name}/accept_local`).trim(),
        "1",
      );
    } finally {
      await tun.close();
    }
  });

  Deno.test("LinuxTun: writeSync() counts a packet the kernel refuses instead of throwing", async () => {
    const tun = await openTun();
    try {
      await configure(tun);
      assertEquals(tun.writeSync(new Uint8Array(20)), false); // IP version 0: EINVAL
      assertEquals(tun.stats.errors, 1);
      assertEquals(tun.stats.txPackets, 0);
      const ok = buildUdp({ address: PLAN.remote4, port: 9 }, {
        address: PLAN.tun4.address,
        port: 9,
      }, new Uint8Array(1));
      assert(tun.writeSync(ok));
    } finally {
      await tun.close();
    }
  });

  Deno.test("LinuxTun: closing removes the interface and every route through it", async () => {
    const tun = await openTun();
    const name = tun.name;
    await configure(tun);
    await tun.close();
    assertEquals(run(["ip", "link", "show", "dev", name]).success, false);
    const all = [
      run(["ip", "route", "show", "table", "all"]).stdout,
      run(["ip", "-6", "route", "show", "table", "all"]).stdout,
    ]
      .join("\n");
    assert(
      !all.includes("198.18.77.") && !all.includes("2001:2:") && !all.includes("240.0.0."),
      all,
    );
  });
}

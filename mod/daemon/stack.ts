/**
 * The workstation's network stack: a TUN device, its addresses and routes,
 * the TCP listener the kernel hands NAT'd connections to, and the router
 * between them. This is where the pure router meets Deno's sockets.
 *
 * Address plan (DESIGN.md §3, Addresses): one small block, by default
 * `240.0.0.0/24` in class E, never used on real networks:
 *
 * ```
 *   240.0.0.1        the TUN's address; the router's TCP listener binds here
 *   240.0.0.2        reserved for the DNS server (the tunnel issue)
 *   240.0.0.16–254   NAT peer addresses, taken one at a time as ports run out
 * ```
 *
 * @module
 */

import { Cidr, formatAddress } from "../net/address.ts";
import type { Dialer } from "../net/dialer.ts";
import { closeQuietly } from "../net/pipe.ts";
import { Router, type RouterOptions } from "../net/router.ts";
import { openTun, type TunDevice } from "../tun/mod.ts";
import { relieveMemory } from "./memory.ts";

/** Options for {@linkcode startStack}. */
export interface StackOptions {
  /** Who reaches destinations. */
  dialer: Dialer;
  /** Subnets to route into the TUN. */
  routes: string[];
  /** The VIF's own block (default `240.0.0.0/24`); must not overlap `routes`. */
  block?: string;
  /** TUN name (default `vif%d`). */
  name?: string;
  /** TUN MTU (default the device's, 65535). */
  mtu?: number;
  /** More addresses for the TUN, as /32s (the DNS address); each must lie in the block. */
  extraAddresses?: string[];
  /** Log sink. */
  log?: (level: "debug" | "info" | "warn", message: string) => void;
  /** Router limits, passed through. */
  router?: Pick<
    RouterOptions,
    | "natPorts"
    | "natCooldownMs"
    | "closeLingerMs"
    | "dialTimeoutMs"
    | "acceptTimeoutMs"
    | "udpIdleMs"
  >;
}

/** A running stack. */
export interface Stack {
  readonly device: TunDevice;
  readonly router: Router;
  /** The TUN's address. */
  readonly address: string;
  /** Routes now pointing into the TUN. */
  readonly routes: Cidr[];
  /** Ends the router and the listener and removes the device (and its routes). */
  close(): Promise<void>;
  /** Settles when the router has stopped. */
  readonly done: Promise<void>;
}

function nth(block: Cidr, n: number): string {
  const bytes = new Uint8Array(block.bytes);
  let carry = n;
  for (let i = bytes.length - 1; i >= 0 && carry > 0; i--) {
    const v = bytes[i]! + carry;
    bytes[i] = v & 0xff;
    carry = v >> 8;
  }
  return formatAddress(bytes);
}

/**
 * Opens the TUN, assigns the block's first address, routes `routes` into it,
 * listens for NAT'd connections and starts the router.
 *
 * @param options dialer, routes and limits
 * @returns the running stack
 * @throws {Error} when the device cannot be made or configured (the message
 *   names the step and the errno); nothing is left behind
 */
export async function startStack(options: StackOptions): Promise<Stack> {
  const log = options.log ?? (() => {});
  const block = Cidr.parse(options.block ?? "240.0.0.0/24");
  if (block.family !== 4 || block.prefixLength > 24) {
    throw new RangeError(`Cannot use VIF block "${block}": it must be IPv4 and at least a /24`);
  }
  const routes = options.routes.map((r) => Cidr.parse(r));
  for (const r of routes) {
    if (r.overlaps(block)) {
      throw new RangeError(`Cannot route "${r}": it overlaps the VIF's own block "${block}"`);
    }
  }
  const address = nth(block, 1);
  const peers = Array.from({ length: 239 }, (_, i) => nth(block, 16 + i));
  const device = await openTun({
    ...(options.name ? { name: options.name } : {}),
    ...(options.mtu ? { mtu: options.mtu } : {}),
  });
  let listener: Deno.TcpListener | undefined;
  try {
    await device.addAddress({ address, prefixLength: block.prefixLength });
    for (const extra of options.extraAddresses ?? []) {
      if (!block.contains(extra)) {
        throw new RangeError(
          `Cannot use address "${extra}": it is outside the VIF block "${block}"`,
        );
      }
      await device.addAddress({ address: extra, prefixLength: 32 });
    }
    await device.up();
    for (const r of routes) {
      await device.addRoute({ address: r.address, prefixLength: r.prefixLength });
    }
    listener = Deno.listen({ hostname: address, port: 0, transport: "tcp" });
  } catch (error) {
    await device.close();
    throw error;
  }
  const router = new Router({
    device,
    dialer: options.dialer,
    ipv4: { listen: address, listenPort: listener.addr.port, peers },
    log,
    ...options.router,
  });
  log(
    "info",
    `stack: ${device.name} up at ${address}, mtu ${device.mtu}` +
      (routes.length > 0 ? `, routes ${routes.join(" ")}` : ""),
  );
  const sweeper = setInterval(() => router.sweep(), 1000);
  const stopRelief = relieveMemory(() => {
    const st = router.stats;
    return { packets: st.packetsIn + st.packetsOut, bytes: st.bytesIn + st.bytesOut };
  }, log);
  const accepting = (async () => {
    for await (const conn of listener) {
      conn.setNoDelay(true);
      const remote = conn.remoteAddr;
      router.acceptTcp(remote.hostname, remote.port, conn).finally(() => closeQuietly(conn));
    }
  })().catch(() => {});
  const done = router.run();
  let closing: Promise<void> | undefined;
  return {
    device,
    router,
    address,
    routes,
    done,
    close() {
      closing ??= (async () => {
        clearInterval(sweeper);
        stopRelief();
        router.close();
        closeQuietly(listener);
        await device.close();
        await done.catch(() => {});
        await accepting;
        log("info", `stack: ${device.name} removed`);
      })();
      return closing;
    },
  };
}

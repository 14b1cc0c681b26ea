/**
 * The TUN device: a layer-3 virtual interface whose packets this process reads
 * and writes, configured with addresses and routes.
 *
 * {@linkcode openTun} opens the device for the running operating system (Linux
 * today); {@linkcode ChannelTun} is an in-memory device for tests, and
 * {@linkcode PcapTun} records any device's traffic to a pcap file. The contract
 * every device keeps is in `tun.ts`.
 *
 * This is the only file of the project that looks at `Deno.build.os`.
 *
 * @example
 * ```ts ignore
 * import { openTun } from "./mod.ts";
 * const tun = await openTun();
 * await tun.addAddress({ address: "240.0.0.1", prefixLength: 24 });
 * await tun.up();
 * await tun.addRoute({ address: "198.18.77.0", prefixLength: 24 });
 * const buf = new Uint8Array(tun.mtu);
 * while (await tun.readable()) {
 *   for (let n = tun.readSync(buf); n > 0; n = tun.readSync(buf)) {
 *     // handle buf.subarray(0, n)
 *   }
 * }
 * ```
 *
 * @module
 */

import type { SystemRoute } from "./routes.ts";
import type { TunDevice, TunOptions } from "./tun.ts";

export { DEFAULT_MTU } from "./tun.ts";
export type { Prefix, TunDevice, TunOptions, TunStats } from "./tun.ts";
export type { SystemRoute } from "./routes.ts";
export { SystemError } from "./errors.ts";
export { ChannelTun, type ChannelTunOperation, type ChannelTunOptions } from "./channel.ts";
export { type PcapSink, PcapTun, type PcapTunOptions } from "./pcap.ts";
export { VIF_ROUTE_PROTOCOL } from "./_netlink_codec.ts";

function unsupported(what: string): Error {
  return new Error(`Cannot ${what}: not supported yet on "${Deno.build.os}"`);
}

/**
 * Opens a TUN device on the running operating system. Needs root (or
 * CAP_NET_ADMIN) and `--allow-ffi`, `--allow-read`, `--allow-write`.
 *
 * @param options the wanted name (`vif%d` by default) and MTU
 * @returns the open device, link down and without addresses
 * @throws {SystemError} with the errno name when the system refuses
 * @throws {Error} on an operating system without an implementation
 */
export async function openTun(options?: TunOptions): Promise<TunDevice> {
  if (Deno.build.os === "linux") return (await import("./linux.ts")).openTun(options);
  throw unsupported("open a TUN device");
}

/**
 * Lists the host's IPv4 and IPv6 routes (every table), to find subnets that
 * would clash with the ones to be routed into the TUN.
 *
 * @returns the routes
 * @throws {SystemError} with the errno name when the system refuses
 * @throws {Error} on an operating system without an implementation
 */
export async function listRoutes(): Promise<SystemRoute[]> {
  if (Deno.build.os === "linux") return (await import("./linux.ts")).listRoutes();
  throw unsupported("list routes");
}

/**
 * Returns the C allocator's free memory to the system, where the system has a
 * way to ask (glibc's `malloc_trim`).
 *
 * @returns whether any memory was returned
 */
export async function trimHeap(): Promise<boolean> {
  if (Deno.build.os === "linux") return await (await import("./linux.ts")).trimHeap();
  return false;
}

export type {
  ListenUnixOptions,
  PeerCredentials,
  UnixServer,
  UnixServerConnection,
} from "./unix_socket_linux.ts";

/**
 * Listens on a Unix stream socket whose connections carry the peer's
 * credentials (pid, uid, gid), for the daemon's control socket.
 *
 * @param path the socket's path
 * @param options its mode and owner
 * @returns the server
 * @throws {SystemError} when the socket cannot be made
 * @throws {Error} on an operating system without an implementation
 */
export async function listenUnix(
  path: string,
  options?: import("./unix_socket_linux.ts").ListenUnixOptions,
): Promise<import("./unix_socket_linux.ts").UnixServer> {
  if (Deno.build.os === "linux") {
    return (await import("./unix_socket_linux.ts")).listenUnix(path, options);
  }
  throw unsupported("serve a control socket");
}

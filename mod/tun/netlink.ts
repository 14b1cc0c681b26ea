/**
 * A small rtnetlink client over an AF_NETLINK socket reached through FFI:
 * link MTU and up, addresses, routes, and a route dump. Linux only; the message
 * bytes come from `_netlink_codec.ts`.
 *
 * Requests carry NLM_F_ACK and a sequence number; the answer is read until the
 * ACK (or NLMSG_DONE for a dump). The kernel handles an rtnetlink request
 * inside `send()`, so the answer is normally queued before `recv()` is called;
 * the socket is non-blocking all the same and parks on an awaited `poll()` if
 * it is not. Requests on one socket run one at a time.
 *
 * @module
 */

import { ERRNO, errnoError, libc, LINUX } from "./_ffi_linux.ts";
import {
  decodeMessages,
  decodeRoute,
  decodeStatus,
  encodeAddAddress,
  encodeGetRoutes,
  encodeRoute,
  encodeSetLink,
  HOST_LITTLE_ENDIAN,
  type LinkChange,
  type NetlinkMessage,
  NLMSG,
  type RouteOptions,
} from "./_netlink_codec.ts";
import type { SystemRoute } from "./routes.ts";
import type { Prefix } from "./tun.ts";

export { VIF_ROUTE_PROTOCOL } from "./_netlink_codec.ts";
export type { LinkChange, RouteOptions } from "./_netlink_codec.ts";

/** How long one request may wait for the kernel's answer. */
const ANSWER_TIMEOUT_MS = 5000;

/**
 * An rtnetlink socket.
 *
 * @example
 * ```ts ignore
 * import { NetlinkSocket } from "./netlink.ts";
 * const nl = NetlinkSocket.open();
 * try {
 *   await nl.setLink(5, { mtu: 1400, up: true });
 * } finally {
 *   await nl.close();
 * }
 * ```
 */
export class NetlinkSocket {
  #fd: number;
  #seq = Math.floor(Math.random() * 0x7fffffff);
  #buf = new Uint8Array(64 * 1024);
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /**
   * Opens a NETLINK_ROUTE socket (non-blocking, close-on-exec) with extended
   * acks, so errors carry the kernel's explanation.
   *
   * @returns the socket
   * @throws {SystemError} when the socket cannot be made
   */
  static open(): NetlinkSocket {
    const { symbols, errno } = libc();
    const fd = symbols.socket(
      LINUX.AF_NETLINK,
      LINUX.SOCK_RAW | LINUX.SOCK_NONBLOCK | LINUX.SOCK_CLOEXEC,
      LINUX.NETLINK_ROUTE,
    );
    if (fd < 0) throw errnoError("Cannot open a netlink socket", errno());
    // struct sockaddr_nl { u16 family; u16 pad; u32 pid (0: kernel picks); u32 groups; }
    const address = new Uint8Array(12);
    new DataView(address.buffer).setUint16(0, LINUX.AF_NETLINK, HOST_LITTLE_ENDIAN);
    if (symbols.bind(fd, address, address.length) < 0) {
      const e = errno();
      symbols.close(fd);
      throw errnoError("Cannot bind a netlink socket", e);
    }
    // Best effort: older kernels lack these, and requests work without them.
    const one = new Int32Array([1]);
    symbols.setsockopt(fd, LINUX.SOL_NETLINK, LINUX.NETLINK_EXT_ACK, one, 4);
    symbols.setsockopt(fd, LINUX.SOL_NETLINK, LINUX.NETLINK_CAP_ACK, one, 4);
    return new NetlinkSocket(fd);
  }

  /**
   * Changes a link's MTU and/or up state (RTM_NEWLINK).
   *
   * @param index the interface index
   * @param change what to change
   * @param doing what the error message says was being done
   * @throws {SystemError} with the errno name when the kernel refuses
   */
  setLink(
    index: number,
    change: LinkChange,
    doing = `Cannot change link "${index}"`,
  ): Promise<void> {
    return this.#ack((seq) => encodeSetLink(seq, index, change), doing);
  }

  /**
   * Adds an address to a link, or refreshes it if present (RTM_NEWADDR);
   * IPv6 addresses skip duplicate address detection.
   *
   * @param index the interface index
   * @param prefix the address and its prefix length
   * @param doing what the error message says was being done
   * @throws {TypeError} when the address is not an IP address
   * @throws {RangeError} when the prefix length does not fit the family
   * @throws {SystemError} with the errno name when the kernel refuses
   */
  addAddress(
    index: number,
    prefix: Prefix,
    doing = `Cannot add address "${show(prefix)}"`,
  ): Promise<void> {
    return this.#ack((seq) => encodeAddAddress(seq, index, prefix), doing);
  }

  /**
   * Routes a prefix into a link (RTM_NEWROUTE, main table, protocol 0xa5 unless
   * told otherwise). An identical existing route counts as success.
   *
   * @param index the outgoing interface index
   * @param prefix the destination
   * @param options protocol and table
   * @param doing what the error message says was being done
   * @throws {TypeError} when the address is not an IP address
   * @throws {RangeError} when the prefix length does not fit the family
   * @throws {SystemError} with the errno name when the kernel refuses
   */
  addRoute(
    index: number,
    prefix: Prefix,
    options: RouteOptions = {},
    doing = `Cannot add route "${show(prefix)}"`,
  ): Promise<void> {
    return this.#ack((seq) => encodeRoute(seq, "add", index, prefix, options), doing, [
      ERRNO.EEXIST,
    ]);
  }

  /**
   * Removes a route added by {@linkcode addRoute} (matching protocol and
   * interface). A missing route is not an error.
   *
   * @param index the outgoing interface index
   * @param prefix the destination
   * @param options protocol and table
   * @param doing what the error message says was being done
   * @throws {TypeError} when the address is not an IP address
   * @throws {RangeError} when the prefix length does not fit the family
   * @throws {SystemError} with the errno name when the kernel refuses
   */
  deleteRoute(
    index: number,
    prefix: Prefix,
    options: RouteOptions = {},
    doing = `Cannot remove route "${show(prefix)}"`,
  ): Promise<void> {
    // IPv4 answers ESRCH for a missing route, IPv6 ENOENT.
    return this.#ack(
      (seq) => encodeRoute(seq, "delete", index, prefix, options),
      doing,
      [ERRNO.ESRCH, ERRNO.ENOENT],
    );
  }

  /**
   * Lists the routes of every table (RTM_GETROUTE dump). Interface names are
   * not filled in here; see `listRoutes()` in `linux.ts`.
   *
   * @param family `4`, `6`, or omitted for both
   * @returns the routes, IPv4 first
   * @throws {SystemError} with the errno name when the kernel refuses
   */
  async dumpRoutes(family?: 4 | 6): Promise<SystemRoute[]> {
    const routes: SystemRoute[] = [];
    for (const f of family ? [family] : [4, 6] as const) {
      await this.#request(
        (seq) => encodeGetRoutes(seq, f),
        `Cannot list IPv${f} routes`,
        [],
        (msg) => {
          const route = decodeRoute(msg);
          if (route) routes.push(route);
        },
      );
    }
    return routes;
  }

  /**
   * Closes the socket once the request in progress (if any) has ended.
   * Idempotent; later requests reject.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue.catch(() => {});
    libc().symbols.close(this.#fd);
    this.#fd = -1;
  }

  #ack(
    encode: (seq: number) => Uint8Array,
    doing: string,
    tolerated: number[] = [],
  ): Promise<void> {
    return this.#request(encode, doing, tolerated);
  }

  /** Queues one request behind the others and runs it. */
  #request(
    encode: (seq: number) => Uint8Array,
    doing: string,
    tolerated: number[],
    onDumpMessage?: (msg: NetlinkMessage) => void,
  ): Promise<void> {
    const run = async () => {
      if (this.#closed) throw new Error(`${doing}: the netlink socket is closed`);
      this.#seq = (this.#seq + 1) >>> 0;
      await this.#transact(this.#seq, encode(this.#seq), doing, tolerated, onDumpMessage);
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return result;
  }

  async #transact(
    seq: number,
    request: Uint8Array,
    doing: string,
    tolerated: number[],
    onDumpMessage?: (msg: NetlinkMessage) => void,
  ): Promise<void> {
    const { symbols, errno } = libc();
    for (;;) {
      const sent = symbols.send(this.#fd, request, request.length, 0);
      if (sent >= 0) break;
      const e = errno();
      if (e === ERRNO.EINTR) continue;
      throw errnoError(doing, e);
    }
    const deadline = Date.now() + ANSWER_TIMEOUT_MS;
    for (;;) {
      const n = symbols.recv(this.#fd, this.#buf, this.#buf.length, 0);
      if (n < 0) {
        const e = errno();
        if (e === ERRNO.EINTR) continue;
        if (e !== ERRNO.EAGAIN) throw errnoError(doing, e);
        await this.#wait(deadline, doing);
        continue;
      }
      for (const msg of decodeMessages(this.#buf.subarray(0, n))) {
        if (msg.seq !== seq) continue; // a late answer to an earlier, abandoned request
        if (msg.type === NLMSG.ERROR || msg.type === NLMSG.DONE) {
          const status = decodeStatus(msg);
          if (status.errno === 0 || tolerated.includes(status.errno)) {
            // An ACK ends a plain request; a dump ends only at NLMSG_DONE.
            if (!onDumpMessage || msg.type === NLMSG.DONE) return;
            continue;
          }
          throw errnoError(doing, status.errno, status.message);
        }
        if (msg.type === NLMSG.OVERRUN) throw new Error(`${doing}: the netlink answer overran`);
        onDumpMessage?.(msg);
      }
    }
  }

  /** Parks until the socket is readable or the deadline passes. */
  async #wait(deadline: number, doing: string): Promise<void> {
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new Error(`${doing}: no answer from the kernel within ${ANSWER_TIMEOUT_MS} ms`);
    }
    const pollfd = new Uint8Array(8);
    const view = new DataView(pollfd.buffer);
    view.setInt32(0, this.#fd, HOST_LITTLE_ENDIAN);
    view.setInt16(4, LINUX.POLLIN, HOST_LITTLE_ENDIAN);
    await libc().symbols.pollAsync(pollfd, 1, Math.min(left, 1000));
  }
}

function show(prefix: Prefix): string {
  return `${prefix.address}/${prefix.prefixLength}`;
}

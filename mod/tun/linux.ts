/**
 * The Linux TUN device: `/dev/net/tun` with `TUNSETIFF` through FFI, packets
 * moved by synchronous `read()`/`write()` on a non-blocking fd, idle waits on
 * an awaited `poll()`, configuration over rtnetlink. The only file of the
 * device that knows Linux (with its FFI table and netlink helpers).
 *
 * @module
 */

import { cString, ERRNO, errnoError, fromCString, type Libc, libc, LINUX } from "./_ffi_linux.ts";
import { HOST_LITTLE_ENDIAN } from "./_netlink_codec.ts";
import { NetlinkSocket } from "./netlink.ts";
import type { SystemRoute } from "./routes.ts";
import { DEFAULT_MTU, type Prefix, type TunDevice, type TunOptions, type TunStats } from "./tun.ts";

/** How long one `poll()` in {@linkcode TunDevice.readable} may park before it loops. */
const POLL_SLICE_MS = 1000;

/**
 * Opens a TUN device: creates the interface (non-persistent, so it vanishes
 * with its addresses and routes when the device is closed or the process
 * dies), sets its MTU, and relaxes reverse-path filtering on it. The link is
 * left down: call `addAddress`, `up`, then `addRoute` (the kernel refuses a
 * route through a link that is down).
 *
 * @param options the wanted name and MTU
 * @returns the open device
 * @throws {SystemError} with the errno name when the kernel refuses (EPERM
 * without CAP_NET_ADMIN, EBUSY when the name is taken, ENOENT without
 * `/dev/net/tun`)
 * @throws {RangeError} when the name is empty or longer than 15 bytes
 * @example
 * ```ts ignore
 * import { openTun } from "./linux.ts";
 * const tun = await openTun({ name: "vif%d" });
 * await tun.addAddress({ address: "240.0.0.1", prefixLength: 24 });
 * await tun.up();
 * await tun.addRoute({ address: "198.18.77.0", prefixLength: 24 });
 * await tun.close();
 * ```
 */
export async function openTun(options: TunOptions = {}): Promise<TunDevice> {
  const wanted = options.name ?? "vif%d";
  const nameBytes = new TextEncoder().encode(wanted);
  if (nameBytes.length === 0 || nameBytes.length >= LINUX.IFNAMSIZ || nameBytes.includes(0)) {
    throw new RangeError(
      `Cannot create TUN device "${wanted}": the name must be 1 to ${LINUX.IFNAMSIZ - 1} bytes`,
    );
  }
  const lib = libc();
  const { symbols, errno } = lib;
  const fd = symbols.open(
    cString("/dev/net/tun"),
    LINUX.O_RDWR | LINUX.O_NONBLOCK | LINUX.O_CLOEXEC,
    0,
  );
  if (fd < 0) {
    const e = errno();
    const error = errnoError(`Cannot open "/dev/net/tun"`, e);
    if (e === ERRNO.ENOENT) error.message += "; is the tun kernel module loaded?";
    throw error;
  }
  const toClose = [fd];
  let device: LinuxTun | undefined;
  try {
    // struct ifreq { char name[IFNAMSIZ]; union { short flags; ... } } (40 bytes)
    const ifreq = new Uint8Array(LINUX.IFREQ_SIZE);
    ifreq.set(nameBytes);
    new DataView(ifreq.buffer).setUint16(
      LINUX.IFNAMSIZ,
      LINUX.IFF_TUN | LINUX.IFF_NO_PI,
      HOST_LITTLE_ENDIAN,
    );
    if (symbols.ioctl(fd, LINUX.TUNSETIFF, ifreq) < 0) {
      const e = errno();
      const error = errnoError(`Cannot create TUN device "${wanted}"`, e);
      if (e === ERRNO.EPERM || e === ERRNO.EACCES) {
        error.message += "; run as root or with CAP_NET_ADMIN";
      }
      throw error;
    }
    const name = fromCString(ifreq.subarray(0, LINUX.IFNAMSIZ));
    const index = symbols.if_nametoindex(cString(name));
    if (index === 0) throw errnoError(`Cannot find the index of "${name}"`, errno());

    // pipe2(int fds[2], flags): close() writes one byte to wake a parked poll().
    const pipeFds = new Int32Array(2);
    if (symbols.pipe2(pipeFds, LINUX.O_NONBLOCK | LINUX.O_CLOEXEC) < 0) {
      throw errnoError(`Cannot make the wake pipe for "${name}"`, errno());
    }
    toClose.push(pipeFds[0]!, pipeFds[1]!);

    const netlink = NetlinkSocket.open();
    device = new LinuxTun(lib, fd, pipeFds[0]!, pipeFds[1]!, name, index, netlink);
    relaxReversePathFilter(name);
    await device.setMtu(options.mtu ?? DEFAULT_MTU);
    return device;
  } catch (error) {
    if (device) await device.close();
    else for (const f of toClose) symbols.close(f);
    throw error;
  }
}

/**
 * Lists the host's IPv4 and IPv6 routes in every table, with interface names.
 *
 * @returns the routes, IPv4 first
 * @throws {SystemError} with the errno name when the kernel refuses
 */
export async function listRoutes(): Promise<SystemRoute[]> {
  const netlink = NetlinkSocket.open();
  try {
    const routes = await netlink.dumpRoutes();
    const { symbols } = libc();
    const names = new Map<number, string | undefined>();
    const nameBuf = new Uint8Array(LINUX.IFNAMSIZ);
    for (const route of routes) {
      const index = route.interfaceIndex;
      if (index === undefined) continue;
      if (!names.has(index)) {
        nameBuf.fill(0);
        names.set(
          index,
          symbols.if_indextoname(index, nameBuf) === null ? undefined : fromCString(nameBuf),
        );
      }
      const name = names.get(index);
      if (name !== undefined) route.interfaceName = name;
    }
    return routes;
  } finally {
    await netlink.close();
  }
}

/**
 * Lets packets whose source routes elsewhere in through the TUN: the NAT
 * technique writes packets from fake peers into it. The kernel uses the larger
 * of `conf/all/rp_filter` and the interface's value, so 0 only helps when `all`
 * is 0; 2 (loose: the source must be routable at all) is the most permissive
 * setting that wins otherwise. `accept_local` lets in packets whose source is
 * one of this host's addresses. Files that do not exist (no IPv4, or a
 * read-only /proc) are skipped.
 */
function relaxReversePathFilter(name: string): void {
  const all = readSysctl("/proc/sys/net/ipv4/conf/all/rp_filter");
  writeSysctl(`/proc/sys/net/ipv4/conf/${name}/rp_filter`, all === "0" ? "0" : "2");
  writeSysctl(`/proc/sys/net/ipv4/conf/${name}/accept_local`, "1");
}

function readSysctl(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

function writeSysctl(path: string, value: string): void {
  try {
    Deno.writeTextFileSync(path, value);
  } catch (cause) {
    if (cause instanceof Deno.errors.NotFound) return;
    throw new Error(`Cannot write "${value}" to "${path}": ${(cause as Error).message}`, { cause });
  }
}

/** The Linux TUN device; see {@linkcode TunDevice} for the contract. */
class LinuxTun implements TunDevice {
  readonly name: string;
  readonly index: number;
  readonly stats: TunStats = {
    rxPackets: 0,
    rxBytes: 0,
    txPackets: 0,
    txBytes: 0,
    txDropped: 0,
    errors: 0,
  };
  #mtu = 0;
  #lib: Libc;
  #fd: number;
  #wakeRead: number;
  #wakeWrite: number;
  #netlink: NetlinkSocket;
  #closed = false;
  #closing: Promise<void> | undefined;
  #polls = new Set<Promise<number>>();

  constructor(
    lib: Libc,
    fd: number,
    wakeRead: number,
    wakeWrite: number,
    name: string,
    index: number,
    netlink: NetlinkSocket,
  ) {
    this.#lib = lib;
    this.#fd = fd;
    this.#wakeRead = wakeRead;
    this.#wakeWrite = wakeWrite;
    this.name = name;
    this.index = index;
    this.#netlink = netlink;
  }

  get mtu(): number {
    return this.#mtu;
  }

  readSync(buf: Uint8Array): number {
    if (this.#closed) return -1;
    const n = this.#lib.symbols.read(this.#fd, buf, buf.length);
    if (n > 0) {
      this.stats.rxPackets++;
      this.stats.rxBytes += n;
      return n;
    }
    if (n === 0) return 0;
    const e = this.#lib.errno();
    if (e !== ERRNO.EAGAIN && e !== ERRNO.EINTR) this.stats.errors++;
    return 0;
  }

  async readable(): Promise<boolean> {
    // struct pollfd { int fd; short events; short revents; } × 2: the TUN, the wake pipe.
    const pollfds = new Uint8Array(16);
    const view = new DataView(pollfds.buffer);
    view.setInt32(0, this.#fd, HOST_LITTLE_ENDIAN);
    view.setInt16(4, LINUX.POLLIN, HOST_LITTLE_ENDIAN);
    view.setInt32(8, this.#wakeRead, HOST_LITTLE_ENDIAN);
    view.setInt16(12, LINUX.POLLIN, HOST_LITTLE_ENDIAN);
    const ready = LINUX.POLLIN | LINUX.POLLERR | LINUX.POLLHUP | LINUX.POLLNVAL;
    while (!this.#closed) {
      view.setInt16(6, 0, HOST_LITTLE_ENDIAN);
      view.setInt16(14, 0, HOST_LITTLE_ENDIAN);
      // The fds stay open while this poll runs: close() waits for it.
      const poll = this.#lib.symbols.pollAsync(pollfds, 2, POLL_SLICE_MS);
      this.#polls.add(poll);
      let n: number;
      try {
        n = await poll;
      } finally {
        this.#polls.delete(poll);
      }
      if (this.#closed) return false;
      // n < 0 is EINTR in practice (errno belongs to the poll thread): loop.
      if (n > 0 && view.getInt16(6, HOST_LITTLE_ENDIAN) & ready) return true;
    }
    return false;
  }

  writeSync(packet: Uint8Array): boolean {
    if (this.#closed) {
      this.stats.txDropped++;
      return false;
    }
    const n = this.#lib.symbols.write(this.#fd, packet, packet.length);
    if (n === packet.length) {
      this.stats.txPackets++;
      this.stats.txBytes += n;
      return true;
    }
    if (n < 0) {
      const e = this.#lib.errno();
      if (e === ERRNO.EAGAIN || e === ERRNO.ENOBUFS || e === ERRNO.EINTR) {
        this.stats.txDropped++;
      } else {
        this.stats.errors++;
      }
      return false;
    }
    // A TUN write is all or nothing; a short one would be a kernel oddity.
    this.stats.errors++;
    return false;
  }

  async setMtu(mtu: number): Promise<void> {
    const doing = `Cannot set MTU "${mtu}" on "${this.name}"`;
    if (!Number.isInteger(mtu) || mtu < 0 || mtu > 0xffffffff) {
      throw new RangeError(`${doing}: not a whole number of bytes`);
    }
    await this.#netlinkOr(doing).setLink(this.index, { mtu }, doing);
    this.#mtu = mtu;
  }

  addAddress(prefix: Prefix): Promise<void> {
    const doing = `Cannot add address "${show(prefix)}" to "${this.name}"`;
    if (prefix.address.includes(":")) this.#hasV6 = true;
    return this.#run(doing, (nl) => nl.addAddress(this.index, prefix, doing));
  }

  /** Whether an IPv6 address was added: `up()` then waits for it to be usable. */
  #hasV6 = false;

  async up(): Promise<void> {
    const doing = `Cannot bring up "${this.name}"`;
    await this.#run(doing, (nl) => nl.setLink(this.index, { up: true }, doing));
    if (this.#hasV6) await this.#settleIpv6();
  }

  /**
   * An IPv6 address added while the link was down stays tentative until the
   * kernel's address work runs after the link comes up, even with
   * IFA_F_NODAD; packets to it are dropped until then. Wait (up to 1 s) until
   * none of the device's addresses is tentative (IFA_F_TENTATIVE in
   * /proc/net/if_inet6), so the device is usable when `up()` resolves.
   */
  async #settleIpv6(): Promise<void> {
    const IFA_F_TENTATIVE = 0x40;
    const deadline = performance.now() + 1000;
    while (performance.now() < deadline) {
      const table = await Deno.readTextFile("/proc/net/if_inet6").catch(() => "");
      const tentative = table.split("\n").some((line) => {
        const f = line.trim().split(/\s+/);
        return f[5] === this.name && (parseInt(f[4] ?? "0", 16) & IFA_F_TENTATIVE) !== 0;
      });
      if (!tentative) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  addRoute(prefix: Prefix): Promise<void> {
    const doing = `Cannot add route "${show(prefix)}" to "${this.name}"`;
    return this.#run(doing, (nl) => nl.addRoute(this.index, prefix, {}, doing));
  }

  removeRoute(prefix: Prefix): Promise<void> {
    const doing = `Cannot remove route "${show(prefix)}" from "${this.name}"`;
    return this.#run(doing, (nl) => nl.deleteRoute(this.index, prefix, {}, doing));
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    const { symbols } = this.#lib;
    symbols.write(this.#wakeWrite, new Uint8Array(1), 1);
    // Closing an fd another thread is polling would let a new fd take its
    // number under that poll; wait for the parked polls (woken just now).
    await Promise.allSettled([...this.#polls]);
    symbols.close(this.#fd);
    symbols.close(this.#wakeRead);
    symbols.close(this.#wakeWrite);
    this.#fd = this.#wakeRead = this.#wakeWrite = -1;
    await this.#netlink.close();
  }

  #netlinkOr(doing: string): NetlinkSocket {
    if (this.#closed) throw new Error(`${doing}: the device is closed`);
    return this.#netlink;
  }

  async #run(doing: string, op: (nl: NetlinkSocket) => Promise<void>): Promise<void> {
    await op(this.#netlinkOr(doing));
  }
}

function show(prefix: Prefix): string {
  return `${prefix.address}/${prefix.prefixLength}`;
}

/**
 * Gives the memory glibc's allocator holds free back to the system
 * (`malloc_trim(0)`, on a worker thread). After a burst of traffic the
 * daemon's native heap keeps tens of MiB it no longer uses; this returns them.
 *
 * @returns whether any memory was returned; false without glibc
 */
export async function trimHeap(): Promise<boolean> {
  const trim = libc().symbols.malloc_trim;
  return trim ? (await trim(0n)) === 1 : false;
}

/**
 * The libc functions `linux.ts` and `netlink.ts` call through Deno FFI, the
 * Linux constants they pass, and errno → name.
 *
 * The library is opened on first use ({@linkcode libc}), never at import, so
 * importing this file costs nothing on other systems.
 *
 * Read and write results are declared `i32` rather than `isize`: a 64-bit result
 * would come back as a BigInt, allocated on every packet (DESIGN.md §9). The
 * kernel never returns more than 2^31 bytes from one call, and -1 stays -1 in
 * the low 32 bits.
 *
 * Lengths (`size_t`) and poll's `nfds_t` are declared `u32`, not `usize`: Deno
 * types 64-bit parameters as BigInt, and a plain number passed there works but
 * leaves V8's fast call path (measured here: 500 against 320 ns per `write()`).
 * A `u32` reaches the callee zero-extended to 64 bits (x86-64 32-bit moves and
 * arm64 W-register writes clear the upper half), and no packet or netlink
 * buffer is 4 GiB long. ioctl's request and poll's count are 32-bit in the
 * kernel anyway.
 *
 * ioctl and open are variadic in C. Deno FFI has no variadic calls; calling
 * them with fixed arguments is sound on the System V x86-64 and AAPCS64 Linux
 * ABIs, where variadic integer and pointer arguments travel in the same
 * registers as fixed ones.
 *
 * @module
 */

import { SystemError } from "./errors.ts";

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  ioctl: { parameters: ["i32", "u32", "buffer"], result: "i32" },
  poll: { parameters: ["buffer", "u32", "i32"], result: "i32" },
  /** `poll()` run on a worker thread: the awaited way to park. errno is unreadable after it. */
  pollAsync: {
    name: "poll",
    parameters: ["buffer", "u32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  if_indextoname: { parameters: ["u32", "buffer"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
  /**
   * glibc only: gives free heap memory back to the system. Run on a worker
   * thread: after a burst of traffic it takes tens of ms, which the event loop
   * must not wait for.
   */
  malloc_trim: { parameters: ["usize"], result: "i32", optional: true, nonblocking: true },
} as const satisfies Deno.ForeignLibraryInterface;

/** The libc functions, as Deno FFI exposes them. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** libc, opened: its functions and the calling thread's errno. */
export interface Libc {
  /** The functions. */
  readonly symbols: LibcSymbols;
  /**
   * Reads errno. Call it right after the synchronous call that failed: it is a
   * plain memory read (no FFI call, no allocation), so nothing in between can
   * overwrite it.
   */
  errno(): number;
}

let opened: Libc | undefined;

/**
 * Opens libc on first use and returns it.
 *
 * @returns the opened library
 * @throws {Error} when libc cannot be loaded (not glibc, or no `--allow-ffi`)
 */
export function libc(): Libc {
  if (opened) return opened;
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch (cause) {
    throw new Error(`Cannot load "libc.so.6" through FFI: ${(cause as Error).message}`, { cause });
  }
  const where = lib.symbols.__errno_location();
  if (where === null) throw new Error("Cannot find errno: __errno_location() returned null");
  // errno is thread-local; this isolate's JS and its synchronous FFI calls all
  // run on one thread, so its address never changes for this module instance.
  const errnoCell = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(where, 4));
  opened = { symbols: lib.symbols, errno: () => errnoCell[0]! };
  return opened;
}

/**
 * Encodes a string as a NUL-terminated C string.
 *
 * @param text the string
 * @returns its UTF-8 bytes followed by a zero byte
 */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${text}\0`);
}

/**
 * Decodes a NUL-terminated C string from a buffer.
 *
 * @param buf the buffer
 * @returns the text before the first zero byte (or the whole buffer)
 */
export function fromCString(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return new TextDecoder().decode(end < 0 ? buf : buf.subarray(0, end));
}

/** Linux constants (x86-64 and arm64 agree on all of these). */
export const LINUX = {
  O_RDWR: 0x2,
  O_NONBLOCK: 0x800,
  O_CLOEXEC: 0x80000,
  // linux/if_tun.h
  TUNSETIFF: 0x400454ca,
  IFF_TUN: 0x0001,
  IFF_NO_PI: 0x1000,
  IFNAMSIZ: 16,
  IFREQ_SIZE: 40,
  // poll.h
  POLLIN: 0x1,
  POLLOUT: 0x4,
  POLLERR: 0x8,
  POLLHUP: 0x10,
  POLLNVAL: 0x20,
  // sys/socket.h, linux/netlink.h
  AF_NETLINK: 16,
  SOCK_RAW: 3,
  SOCK_NONBLOCK: 0x800,
  SOCK_CLOEXEC: 0x80000,
  NETLINK_ROUTE: 0,
  SOL_NETLINK: 270,
  NETLINK_CAP_ACK: 10,
  NETLINK_EXT_ACK: 11,
  // sys/un.h, sys/socket.h
  AF_UNIX: 1,
  SOCK_STREAM: 1,
  SOL_SOCKET: 1,
  SO_PEERCRED: 17,
  MSG_NOSIGNAL: 0x4000,
  SUN_PATH_MAX: 108,
} as const;

/** errno values the code checks by number. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EAGAIN: 11,
  EACCES: 13,
  EEXIST: 17,
  ENOBUFS: 105,
} as const;

const ERRNO_NAMES: Record<number, [string, string]> = {
  1: ["EPERM", "operation not permitted"],
  2: ["ENOENT", "no such file or directory"],
  3: ["ESRCH", "no such process"],
  4: ["EINTR", "interrupted system call"],
  5: ["EIO", "input/output error"],
  6: ["ENXIO", "no such device or address"],
  7: ["E2BIG", "argument list too long"],
  9: ["EBADF", "bad file descriptor"],
  11: ["EAGAIN", "resource temporarily unavailable"],
  12: ["ENOMEM", "cannot allocate memory"],
  13: ["EACCES", "permission denied"],
  14: ["EFAULT", "bad address"],
  16: ["EBUSY", "device or resource busy"],
  17: ["EEXIST", "file exists"],
  19: ["ENODEV", "no such device"],
  20: ["ENOTDIR", "not a directory"],
  21: ["EISDIR", "is a directory"],
  22: ["EINVAL", "invalid argument"],
  23: ["ENFILE", "too many open files in system"],
  24: ["EMFILE", "too many open files"],
  25: ["ENOTTY", "inappropriate ioctl for device"],
  28: ["ENOSPC", "no space left on device"],
  30: ["EROFS", "read-only file system"],
  32: ["EPIPE", "broken pipe"],
  34: ["ERANGE", "numerical result out of range"],
  36: ["ENAMETOOLONG", "file name too long"],
  38: ["ENOSYS", "function not implemented"],
  61: ["ENODATA", "no data available"],
  71: ["EPROTO", "protocol error"],
  74: ["EBADMSG", "bad message"],
  75: ["EOVERFLOW", "value too large for defined data type"],
  77: ["EBADFD", "file descriptor in bad state"],
  88: ["ENOTSOCK", "socket operation on non-socket"],
  90: ["EMSGSIZE", "message too long"],
  92: ["ENOPROTOOPT", "protocol not available"],
  93: ["EPROTONOSUPPORT", "protocol not supported"],
  95: ["EOPNOTSUPP", "operation not supported"],
  97: ["EAFNOSUPPORT", "address family not supported by protocol"],
  98: ["EADDRINUSE", "address already in use"],
  99: ["EADDRNOTAVAIL", "cannot assign requested address"],
  100: ["ENETDOWN", "network is down"],
  101: ["ENETUNREACH", "network is unreachable"],
  104: ["ECONNRESET", "connection reset by peer"],
  105: ["ENOBUFS", "no buffer space available"],
  110: ["ETIMEDOUT", "connection timed out"],
  111: ["ECONNREFUSED", "connection refused"],
  113: ["EHOSTUNREACH", "no route to host"],
  125: ["ECANCELED", "operation canceled"],
  132: ["ERFKILL", "operation not possible due to RF-kill"],
};

/**
 * Names an errno value.
 *
 * @param errno a positive error number
 * @returns the symbolic name (`EPERM`) and its meaning (`operation not permitted`)
 * @example
 * ```ts
 * import { errnoName } from "./_ffi_linux.ts";
 * errnoName(22); // ["EINVAL", "invalid argument"]
 * ```
 */
export function errnoName(errno: number): [code: string, meaning: string] {
  return ERRNO_NAMES[errno] ?? [`errno ${errno}`, "unknown error"];
}

/**
 * Makes the error for a failed call: `<doing>: EPERM (operation not permitted)`,
 * with the kernel's own explanation appended when it gave one.
 *
 * @param doing what was being done, in sentence case (`Cannot set MTU on "vif0"`)
 * @param errno the positive error number
 * @param detail the kernel's extended-ack message, if any
 * @returns the error, ready to throw
 * @example
 * ```ts
 * import { errnoError } from "./_ffi_linux.ts";
 * errnoError('Cannot set MTU on "vif0"', 1).message;
 * // 'Cannot set MTU on "vif0": EPERM (operation not permitted)'
 * ```
 */
export function errnoError(doing: string, errno: number, detail?: string): SystemError {
  const [code, meaning] = errnoName(errno);
  const extra = detail ? `, the kernel says "${detail}"` : "";
  return new SystemError(`${doing}: ${code} (${meaning}${extra})`, code, errno);
}

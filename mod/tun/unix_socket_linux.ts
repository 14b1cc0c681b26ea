/**
 * A Unix stream socket server that knows who is calling: each accepted
 * connection carries the peer's pid, uid and gid from `SO_PEERCRED`, which
 * the kernel fills in at `connect()` and the peer cannot forge. Deno's own
 * `Deno.listen({ transport: "unix" })` hides the file descriptor, so the
 * daemon's control socket is served here through FFI instead.
 *
 * The socket is bound under a temporary name, given its mode and owner, and
 * only then renamed into place, so there is no moment when it is reachable
 * with the default permissions.
 *
 * I/O is non-blocking: `recv()`/`send()` are synchronous calls that return at
 * once, and waiting is an awaited `poll()` on a worker thread, in slices, so
 * that `close()` is noticed within one slice.
 *
 * @module
 */

import { cString, ERRNO, errnoError, libc, LINUX } from "./_ffi_linux.ts";

/** Who is on the other end of a connection, as the kernel saw it at `connect()`. */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** One accepted connection. */
export interface UnixServerConnection {
  /** The peer's credentials. */
  readonly peer: PeerCredentials;
  /**
   * Reads what is there, waiting when nothing is.
   *
   * @returns the number of bytes read, or `null` at end of stream or after close
   */
  read(buf: Uint8Array<ArrayBuffer>): Promise<number | null>;
  /** Writes all of `bytes`; throws when the peer is gone. */
  write(bytes: Uint8Array<ArrayBuffer>): Promise<void>;
  /** Closes the connection; a pending read returns `null`. Idempotent. */
  close(): void;
}

/** A listening socket. */
export interface UnixServer extends AsyncIterable<UnixServerConnection> {
  /** Its path. */
  readonly path: string;
  /** Stops listening and removes the socket file. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@linkcode listenUnix}. */
export interface ListenUnixOptions {
  /** The socket file's mode (default `0o600`). */
  mode?: number;
  /** Its owner; unchanged when absent. */
  owner?: { uid: number; gid: number };
}

const POLL_SLICE_MS = 100;

/**
 * Listens on a Unix stream socket at `path`, replacing a stale socket file.
 *
 * @param path the socket's path (at most 107 bytes)
 * @param options its mode and owner
 * @returns the server; iterate it for connections
 * @throws {SystemError} when the socket cannot be made
 */
export async function listenUnix(
  path: string,
  options: ListenUnixOptions = {},
): Promise<UnixServer> {
  const { symbols, errno } = libc();
  const temporary = `${path}.${Deno.pid}.new`;
  const address = sockaddrUn(temporary);
  const fd = symbols.socket(
    LINUX.AF_UNIX,
    LINUX.SOCK_STREAM | LINUX.SOCK_NONBLOCK | LINUX.SOCK_CLOEXEC,
    0,
  );
  if (fd < 0) throw errnoError("Cannot make a Unix socket", errno());
  try {
    await Deno.remove(temporary).catch(() => {});
    if (symbols.bind(fd, address, address.length) < 0) {
      throw errnoError(`Cannot bind "${temporary}"`, errno());
    }
    await Deno.chmod(temporary, options.mode ?? 0o600);
    if (options.owner) await Deno.chown(temporary, options.owner.uid, options.owner.gid);
    if (symbols.listen(fd, 64) < 0) throw errnoError(`Cannot listen on "${path}"`, errno());
    await Deno.rename(temporary, path);
  } catch (error) {
    symbols.close(fd);
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
  let closed = false;
  const connections = new Set<UnixServerConnection>();
  return {
    path,
    async *[Symbol.asyncIterator]() {
      while (!closed) {
        const c = symbols.accept4(fd, null, null, LINUX.SOCK_NONBLOCK | LINUX.SOCK_CLOEXEC);
        if (c >= 0) {
          const conn = connection(c, peerCredentials(c), () => connections.delete(conn));
          connections.add(conn);
          yield conn;
          continue;
        }
        const e = errno();
        if (e !== ERRNO.EAGAIN && e !== ERRNO.EINTR && e !== ECONNABORTED) {
          if (closed) return;
          throw errnoError(`Cannot accept on "${path}"`, e);
        }
        await waitFor(fd, LINUX.POLLIN, () => closed);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const c of connections) c.close();
      // Let a parked poll() see the flag before the fd number can be reused.
      await new Promise((r) => setTimeout(r, POLL_SLICE_MS + 50));
      symbols.close(fd);
      // Only our own socket: a newer daemon may have replaced the file.
      await Deno.remove(path).catch(() => {});
    },
  };
}

const ECONNABORTED = 103;

function sockaddrUn(path: string): Uint8Array<ArrayBuffer> {
  const bytes = cString(path);
  if (bytes.length > LINUX.SUN_PATH_MAX) {
    throw new RangeError(
      `Cannot use "${path}" as a Unix socket: the path is longer than ${
        LINUX.SUN_PATH_MAX - 1
      } bytes`,
    );
  }
  const address = new Uint8Array(2 + bytes.length);
  new DataView(address.buffer).setUint16(0, LINUX.AF_UNIX, true);
  address.set(bytes, 2);
  return address;
}

function peerCredentials(fd: number): PeerCredentials {
  const { symbols, errno } = libc();
  const ucred = new Int32Array(3);
  const length = new Uint32Array([12]);
  const buf = new Uint8Array(ucred.buffer);
  if (
    symbols.getsockopt(
      fd,
      LINUX.SOL_SOCKET,
      LINUX.SO_PEERCRED,
      buf,
      new Uint8Array(length.buffer),
    ) <
      0
  ) {
    throw errnoError("Cannot read the peer's credentials", errno());
  }
  return { pid: ucred[0]!, uid: ucred[1]! >>> 0, gid: ucred[2]! >>> 0 };
}

/** Parks on `poll()` until `fd` has `events`, an error, or `stop()` says so. */
async function waitFor(fd: number, events: number, stop: () => boolean): Promise<void> {
  const pollfd = new Uint8Array(8);
  const view = new DataView(pollfd.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, events, true);
  while (!stop()) {
    view.setInt16(6, 0, true);
    const n = await libc().symbols.pollAsync(pollfd, 1, POLL_SLICE_MS);
    if (n > 0) return;
  }
}

function connection(
  fd: number,
  peer: PeerCredentials,
  onClose: () => void,
): UnixServerConnection {
  const { symbols, errno } = libc();
  let closed = false;
  let busy = 0;
  const stopped = () => closed;
  const self: UnixServerConnection = {
    peer,
    async read(buf) {
      busy++;
      try {
        while (!closed) {
          const n = symbols.recv(fd, buf, buf.length, 0);
          if (n > 0) return n;
          if (n === 0) return null;
          const e = errno();
          if (e === ERRNO.EAGAIN || e === ERRNO.EINTR) {
            await waitFor(fd, LINUX.POLLIN, stopped);
            continue;
          }
          if (e === 104 /* ECONNRESET */) return null;
          throw errnoError("Cannot read from the control connection", e);
        }
        return null;
      } finally {
        busy--;
      }
    },
    async write(bytes) {
      busy++;
      try {
        let off = 0;
        while (off < bytes.length) {
          if (closed) throw new Error("the control connection is closed");
          const n = symbols.send(fd, bytes.subarray(off), bytes.length - off, LINUX.MSG_NOSIGNAL);
          if (n >= 0) {
            off += n;
            continue;
          }
          const e = errno();
          if (e === ERRNO.EAGAIN || e === ERRNO.EINTR) {
            await waitFor(fd, LINUX.POLLOUT, stopped);
            continue;
          }
          throw errnoError("Cannot write to the control connection", e);
        }
      } finally {
        busy--;
      }
    },
    close() {
      if (closed) return;
      closed = true;
      onClose();
      // A read or write parked in poll() on a worker thread holds the fd
      // number: close it only once they have seen the flag.
      const finish = () => busy > 0 ? setTimeout(finish, POLL_SLICE_MS) : symbols.close(fd);
      finish();
    },
  };
  return self;
}

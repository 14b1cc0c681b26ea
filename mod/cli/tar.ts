/**
 * A small tar writer: the POSIX ustar format (IEEE 1003.1-2001 "ustar
 * Interchange Format"), with a pax extended header (`x`, the `path`
 * record) for a path that does not fit ustar's 100 + 155 bytes or is not
 * ASCII. Regular files and directories only; everything is in memory per
 * entry. `vif gather-logs` gzips it with the web `CompressionStream`, so no
 * external `tar` is needed.
 *
 * ```
 *   per entry: [pax header block + records, padded to 512]? header (512) data (padded to 512)
 *   at the end: two zero blocks, then zeros up to a multiple of 10240 (tar's default record)
 * ```
 *
 * @example
 * ```ts
 * import { tarGz } from "./tar.ts";
 *
 * const stream = tarGz([
 *   { path: "logs/", type: "directory" },
 *   { path: "logs/a.txt", data: new TextEncoder().encode("hello\n") },
 * ]);
 * const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
 * if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) throw new Error("not gzip");
 * ```
 *
 * @module
 */

/** One member of the archive. */
export interface TarEntry {
  /**
   * Its path inside the archive, `/`-separated, relative, without `.` or `..`
   * parts; a directory's may end with `/`.
   */
  path: string;
  /** `file` (the default) or `directory`. */
  type?: "file" | "directory";
  /** A file's content; empty when absent. */
  data?: Uint8Array;
  /** Permission bits. Default 0o644 for a file, 0o755 for a directory. */
  mode?: number;
  /** Modification time. Default: now. */
  mtime?: Date;
  /** Owner's uid and gid. Default 0. */
  uid?: number;
  /** Owner's gid. Default 0. */
  gid?: number;
  /** Owner's user name (at most 31 bytes). Default empty. */
  uname?: string;
  /** Owner's group name (at most 31 bytes). Default empty. */
  gname?: string;
}

/** The size of a tar block. */
export const BLOCK = 512;
/** What the archive is padded to, as GNU tar and Python's tarfile write it (20 blocks). */
export const RECORD = 20 * BLOCK;
/** The largest member ustar's 11 octal digits can give the size of. */
export const MAX_SIZE = 8 ** 11 - 1;

const encoder = new TextEncoder();

/**
 * The blocks of one entry: its header (with a pax header before it when the
 * path needs one), then its data padded to a whole block.
 *
 * @param entry the member
 * @returns the bytes, a multiple of 512 long
 * @throws {RangeError} for an absolute path, a `.` or `..` part, an empty
 * path, a file larger than {@linkcode MAX_SIZE}, or an owner name too long
 */
export function tarEntry(entry: TarEntry): Uint8Array<ArrayBuffer> {
  const directory = entry.type === "directory";
  let path = entry.path;
  const parts = path.replace(/\/$/, "").split("/");
  if (
    path === "" || path.startsWith("/") || parts.some((p) => p === "" || p === "." || p === "..")
  ) {
    throw new RangeError(`Cannot add "${path}" to a tar archive: not a plain relative path`);
  }
  if (directory && !path.endsWith("/")) path += "/";
  const data = directory ? new Uint8Array() : entry.data ?? new Uint8Array();
  if (data.length > MAX_SIZE) {
    throw new RangeError(
      `Cannot add "${path}" to a tar archive: ${data.length} bytes is too large`,
    );
  }
  const mtime = Math.max(0, Math.floor((entry.mtime ?? new Date()).getTime() / 1000));
  const fields: HeaderFields = {
    mode: entry.mode ?? (directory ? 0o755 : 0o644),
    uid: entry.uid ?? 0,
    gid: entry.gid ?? 0,
    size: data.length,
    mtime,
    typeflag: directory ? "5" : "0",
    uname: entry.uname ?? "",
    gname: entry.gname ?? "",
  };
  const out: Uint8Array[] = [];
  const split = splitPath(path);
  if (split === undefined) {
    // POSIX.1-2001 pax: the record's `path` wins over the header's name.
    const records = paxRecord("path", path);
    const base = parts.at(-1)!;
    const paxName = `PaxHeaders/${asciiOnly(base)}`.slice(0, 100);
    out.push(
      header({ name: paxName, prefix: "" }, {
        ...fields,
        size: records.length,
        typeflag: "x",
        mode: 0o644,
      }),
      padded(records),
    );
    out.push(header({ name: asciiOnly(path).slice(-100).replace(/^\/+/, ""), prefix: "" }, fields));
  } else {
    out.push(header(split, fields));
  }
  if (data.length > 0) out.push(padded(data));
  return concat(out);
}

/**
 * The end of an archive that is `written` bytes long so far: two zero
 * blocks, then zeros up to a multiple of {@linkcode RECORD}.
 *
 * @param written the bytes of the entries
 * @returns the trailer
 */
export function tarTrailer(written: number): Uint8Array<ArrayBuffer> {
  const end = written + 2 * BLOCK;
  return new Uint8Array(2 * BLOCK + (RECORD - end % RECORD) % RECORD);
}

/**
 * A tar archive of `entries`, as a stream.
 *
 * @param entries the members, in order
 * @returns the archive's bytes
 */
export function tar(
  entries: Iterable<TarEntry> | AsyncIterable<TarEntry>,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  let written = 0;
  const iterator = Symbol.asyncIterator in entries
    ? (entries as AsyncIterable<TarEntry>)[Symbol.asyncIterator]()
    : (entries as Iterable<TarEntry>)[Symbol.iterator]();
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull(controller) {
      const next = await iterator.next();
      if (next.done) {
        controller.enqueue(tarTrailer(written));
        controller.close();
        return;
      }
      const bytes = tarEntry(next.value);
      written += bytes.length;
      controller.enqueue(bytes);
    },
    async cancel() {
      await iterator.return?.();
    },
  });
}

/**
 * A gzipped tar archive of `entries` (`.tar.gz`), compressed with the web
 * `CompressionStream`.
 *
 * @param entries the members, in order
 * @returns the compressed bytes
 */
export function tarGz(
  entries: Iterable<TarEntry> | AsyncIterable<TarEntry>,
): ReadableStream<Uint8Array> {
  return tar(entries).pipeThrough(new CompressionStream("gzip"));
}

interface HeaderFields {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: "0" | "5" | "x";
  uname: string;
  gname: string;
}

/**
 * ustar's name and prefix for `path` (the prefix joins it with a `/`), or
 * undefined when it needs a pax header: too long to split at a `/`, or not ASCII.
 */
function splitPath(path: string): { name: string; prefix: string } | undefined {
  if (!/^[\x20-\x7e]*$/.test(path)) return undefined;
  if (path.length <= 100) return { name: path, prefix: "" };
  // The prefix ends before a "/", the name after it; a directory's trailing "/" stays in the name.
  for (let i = path.length - 2; i > 0; i--) {
    if (path[i] !== "/") continue;
    const prefix = path.slice(0, i), name = path.slice(i + 1);
    if (name.length > 100) return undefined;
    if (prefix.length <= 155) return { name, prefix };
  }
  return undefined;
}

/** One pax record, `"<length> <key>=<value>\n"`, the length counting its own digits. */
function paxRecord(key: string, value: string): Uint8Array {
  const body = encoder.encode(` ${key}=${value}\n`).length;
  let length = body + String(body).length;
  if (String(length).length !== String(body).length) length = body + String(length).length;
  return encoder.encode(`${length} ${key}=${value}\n`);
}

function asciiOnly(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "_");
}

/** A 512-byte ustar header. */
function header(where: { name: string; prefix: string }, f: HeaderFields): Uint8Array {
  const h = new Uint8Array(BLOCK);
  const put = (offset: number, length: number, text: string) => {
    const bytes = encoder.encode(text);
    if (bytes.length > length) {
      throw new RangeError(`Cannot write a tar header: "${text}" is longer than ${length} bytes`);
    }
    h.set(bytes, offset);
  };
  const octal = (offset: number, length: number, value: number) => {
    // length - 1 digits, then NUL.
    const digits = Math.floor(value).toString(8);
    if (value < 0 || digits.length > length - 1) {
      throw new RangeError(
        `Cannot write a tar header: ${value} does not fit ${length - 1} octal digits`,
      );
    }
    put(offset, length, digits.padStart(length - 1, "0"));
  };
  put(0, 100, where.name);
  octal(100, 8, f.mode & 0o7777);
  octal(108, 8, f.uid);
  octal(116, 8, f.gid);
  octal(124, 12, f.size);
  octal(136, 12, f.mtime);
  put(148, 8, "        "); // the checksum counts its own field as spaces
  put(156, 1, f.typeflag);
  put(257, 6, "ustar\0");
  put(263, 2, "00");
  put(265, 31, f.uname);
  put(297, 31, f.gname);
  put(345, 155, where.prefix);
  let sum = 0;
  for (const b of h) sum += b;
  // Six octal digits, NUL, space: as tar writes it.
  put(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

function padded(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(data.length / BLOCK) * BLOCK);
  out.set(data);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

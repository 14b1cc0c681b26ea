/**
 * The classic pcap file format (libpcap 2.4, microsecond timestamps,
 * little-endian), as tcpdump and Wireshark read it, for raw IP packets
 * (`LINKTYPE_RAW`: no link header, IPv4 or IPv6 by the first nibble).
 *
 * ```
 * file:   magic a1b2c3d4 | u16 2 | u16 4 | i32 thiszone 0 | u32 sigfigs 0 | u32 snaplen | u32 linktype
 * record: u32 seconds | u32 microseconds | u32 captured length | u32 original length | captured bytes
 * ```
 *
 * `vif capture` moves records, not files: the daemon encodes each packet as
 * a record ({@linkcode writePcapRecord}), sends batches of them over the
 * control socket, and the CLI checks every batch ({@linkcode pcapRecords})
 * before it appends it to the user's file after the file header. Reading
 * never throws anything but a `SyntaxError` and never reads past the bytes
 * given, whatever they hold.
 *
 * Pure: no I/O, no clock (times are passed in).
 *
 * @module
 */

/** The pcap link type for raw IP packets (IPv4 or IPv6, told by the version nibble). */
export const LINKTYPE_RAW = 101;

/** The length of the file header. */
export const PCAP_FILE_HEADER_LENGTH = 24;

/** The length of a record's header. */
export const PCAP_RECORD_HEADER_LENGTH = 16;

/** The snap length used when none is asked for: whole packets, the TUN's MTU being 65535. */
export const DEFAULT_SNAPLEN = 65535;

/** The largest snap length accepted (tcpdump's default). */
export const MAX_SNAPLEN = 262144;

/** The smallest snap length accepted: an IPv6 header and a TCP header with options. */
export const MIN_SNAPLEN = 96;

/** The longest original packet a record may claim: more than any TUN packet. */
const MAX_ORIGINAL_LENGTH = 1 << 20;

const MAGIC = 0xa1b2c3d4;

/**
 * Checks a snap length.
 *
 * @param snaplen the longest part of a packet to record
 * @returns `snaplen`
 * @throws {RangeError} when it is not a whole number from {@linkcode MIN_SNAPLEN} to {@linkcode MAX_SNAPLEN}
 * @example
 * ```ts
 * import { checkSnaplen } from "./pcap.ts";
 * checkSnaplen(65535); // 65535
 * ```
 */
export function checkSnaplen(snaplen: number): number {
  if (!Number.isInteger(snaplen) || snaplen < MIN_SNAPLEN || snaplen > MAX_SNAPLEN) {
    throw new RangeError(
      `Cannot use snap length "${snaplen}": it must be a whole number from ${MIN_SNAPLEN} to ${MAX_SNAPLEN}`,
    );
  }
  return snaplen;
}

/**
 * Encodes the file header.
 *
 * @param snaplen the longest part of a packet recorded
 * @param linktype the link type (default {@linkcode LINKTYPE_RAW})
 * @returns 24 bytes
 * @example
 * ```ts
 * import { pcapFileHeader } from "./pcap.ts";
 * pcapFileHeader(65535).length; // 24
 * ```
 */
export function pcapFileHeader(snaplen: number, linktype: number = LINKTYPE_RAW): Uint8Array {
  const out = new Uint8Array(PCAP_FILE_HEADER_LENGTH);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint16(4, 2, true); // version 2.4
  view.setUint16(6, 4, true);
  view.setInt32(8, 0, true); // thiszone: UTC
  view.setUint32(12, 0, true); // sigfigs
  view.setUint32(16, snaplen, true);
  view.setUint32(20, linktype, true);
  return out;
}

/**
 * The length of the record of a packet: its header and the captured part.
 *
 * @param packetLength the packet's length
 * @param snaplen the longest part recorded
 * @returns the record's length in bytes
 * @example
 * ```ts
 * import { pcapRecordLength } from "./pcap.ts";
 * pcapRecordLength(1500, 96); // 112
 * ```
 */
export function pcapRecordLength(packetLength: number, snaplen: number): number {
  return PCAP_RECORD_HEADER_LENGTH + Math.min(packetLength, snaplen);
}

/**
 * Writes the record of a packet into `out` at `offset`; the caller has made
 * room for {@linkcode pcapRecordLength} bytes.
 *
 * @param out where the record goes
 * @param offset where in `out`
 * @param timeMs when the packet passed, in milliseconds since the Unix epoch (fractions kept to the microsecond)
 * @param packet the packet
 * @param snaplen the longest part recorded
 * @returns the record's length
 * @throws {RangeError} when `out` has no room for the record
 * @example
 * ```ts
 * import { pcapRecordLength, writePcapRecord } from "./pcap.ts";
 * const packet = new Uint8Array(40);
 * const out = new Uint8Array(pcapRecordLength(packet.length, 65535));
 * writePcapRecord(out, 0, 1_700_000_000_000.5, packet, 65535); // 56
 * ```
 */
export function writePcapRecord(
  out: Uint8Array,
  offset: number,
  timeMs: number,
  packet: Uint8Array,
  snaplen: number,
): number {
  const captured = Math.min(packet.length, snaplen);
  const length = PCAP_RECORD_HEADER_LENGTH + captured;
  if (offset < 0 || offset + length > out.length) {
    throw new RangeError(`Cannot write a pcap record of ${length} bytes at ${offset}: no room`);
  }
  const view = new DataView(out.buffer, out.byteOffset + offset, PCAP_RECORD_HEADER_LENGTH);
  const micros = Math.max(0, Math.round(timeMs * 1000));
  view.setUint32(0, Math.floor(micros / 1e6) >>> 0, true);
  view.setUint32(4, micros % 1e6, true);
  view.setUint32(8, captured, true);
  view.setUint32(12, packet.length, true);
  out.set(packet.subarray(0, captured), offset + PCAP_RECORD_HEADER_LENGTH);
  return length;
}

/**
 * Encodes the record of one packet in a buffer of its own.
 *
 * @param timeMs when the packet passed, in milliseconds since the Unix epoch
 * @param packet the packet
 * @param snaplen the longest part recorded
 * @returns the record
 * @example
 * ```ts
 * import { pcapRecord } from "./pcap.ts";
 * pcapRecord(0, new Uint8Array(100), 96).length; // 112
 * ```
 */
export function pcapRecord(timeMs: number, packet: Uint8Array, snaplen: number): Uint8Array {
  const out = new Uint8Array(pcapRecordLength(packet.length, snaplen));
  writePcapRecord(out, 0, timeMs, packet, snaplen);
  return out;
}

/** One record read back: a view into the bytes it was read from. */
export interface PcapRecordView {
  /** Seconds since the Unix epoch. */
  seconds: number;
  /** Microseconds past `seconds`. */
  micros: number;
  /** How long the packet was. */
  originalLength: number;
  /** The captured part (at most the snap length). */
  data: Uint8Array;
}

/**
 * Reads a run of records (no file header), checking each: a whole header,
 * microseconds under a million, a captured part no longer than the snap
 * length nor than the packet, and all of it within `bytes`.
 *
 * @param bytes back-to-back records
 * @param snaplen the snap length they were made with
 * @returns the records, viewing `bytes`
 * @throws {SyntaxError} naming the byte where a record does not follow the format
 * @example
 * ```ts
 * import { pcapRecord, pcapRecords } from "./pcap.ts";
 * pcapRecords(pcapRecord(1500, new Uint8Array(60), 65535), 65535)[0]!.micros; // 500000
 * ```
 */
export function pcapRecords(bytes: Uint8Array, snaplen: number): PcapRecordView[] {
  const records: PcapRecordView[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at < bytes.length;) {
    const bad = (why: string) =>
      new SyntaxError(`Cannot read the pcap record at byte ${at}: ${why}`);
    if (bytes.length - at < PCAP_RECORD_HEADER_LENGTH) throw bad("its header is cut short");
    const micros = view.getUint32(at + 4, true);
    const captured = view.getUint32(at + 8, true);
    const original = view.getUint32(at + 12, true);
    if (micros >= 1e6) throw bad(`${micros} microseconds`);
    if (captured > snaplen) {
      throw bad(`${captured} bytes captured, over the snap length ${snaplen}`);
    }
    if (captured > original) throw bad(`${captured} bytes captured of a ${original}-byte packet`);
    if (original > MAX_ORIGINAL_LENGTH) throw bad(`a ${original}-byte packet`);
    const start = at + PCAP_RECORD_HEADER_LENGTH;
    if (bytes.length - start < captured) throw bad("its data is cut short");
    records.push({
      seconds: view.getUint32(at, true),
      micros,
      originalLength: original,
      data: bytes.subarray(start, start + captured),
    });
    at = start + captured;
  }
  return records;
}

/**
 * Reads a whole pcap file of this module's kind (little-endian,
 * microseconds): its header, then its records.
 *
 * @param bytes the file
 * @returns the snap length, the link type and the records
 * @throws {SyntaxError} when the header or a record does not follow the format
 * @example
 * ```ts
 * import { pcapFileHeader, readPcap } from "./pcap.ts";
 * readPcap(pcapFileHeader(65535)).records.length; // 0
 * ```
 */
export function readPcap(
  bytes: Uint8Array,
): { snaplen: number; linktype: number; records: PcapRecordView[] } {
  if (bytes.length < PCAP_FILE_HEADER_LENGTH) {
    throw new SyntaxError("Cannot read the pcap file: its header is cut short");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  if (magic !== MAGIC) {
    throw new SyntaxError(`Cannot read the pcap file: magic 0x${magic.toString(16)}`);
  }
  const snaplen = view.getUint32(16, true);
  return {
    snaplen,
    linktype: view.getUint32(20, true),
    records: pcapRecords(bytes.subarray(PCAP_FILE_HEADER_LENGTH), snaplen),
  };
}

/**
 * rtnetlink messages (`linux/netlink.h`, `linux/rtnetlink.h`,
 * `linux/if_addr.h`, `linux/if_link.h`): pure encoders and decoders, no I/O,
 * so they are tested with byte fixtures. `netlink.ts` does the socket part.
 *
 * Netlink integers are in the host's byte order; every multi-byte field here
 * goes through a `DataView` with {@linkcode HOST_LITTLE_ENDIAN}.
 *
 * Decoders never throw: a truncated or malformed message decodes to fewer
 * messages, fewer attributes, or `undefined`.
 *
 * @module
 */

import { formatIp, parseIp } from "./_ip.ts";
import type { SystemRoute } from "./routes.ts";
import type { Prefix } from "./tun.ts";

/** Whether this machine stores integers little-endian (netlink uses host order). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Message types (`nlmsg_type`). */
export const NLMSG = {
  NOOP: 1,
  ERROR: 2,
  DONE: 3,
  OVERRUN: 4,
} as const;

/** rtnetlink message types. */
export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
} as const;

/** Message flags (`nlmsg_flags`). */
export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  ECHO: 0x8,
  DUMP_INTR: 0x10,
  /** GET requests: return the whole table. */
  DUMP: 0x300,
  /** NEW requests: replace an existing object. */
  REPLACE: 0x100,
  /** NEW requests: fail if the object exists. */
  EXCL: 0x200,
  /** NEW requests: create the object if it does not exist. */
  CREATE: 0x400,
  /** NLMSG_ERROR: the request echoed is only its header (NETLINK_CAP_ACK). */
  CAPPED: 0x100,
  /** NLMSG_ERROR: extended-ack attributes follow. */
  ACK_TLVS: 0x200,
} as const;

/** Address families. */
export const AF = { UNSPEC: 0, INET: 2, INET6: 10 } as const;

/** Route attributes (`rtattr_type_t`). */
export const RTA = {
  DST: 1,
  SRC: 2,
  IIF: 3,
  OIF: 4,
  GATEWAY: 5,
  PRIORITY: 6,
  PREFSRC: 7,
  METRICS: 8,
  MULTIPATH: 9,
  TABLE: 15,
  VIA: 18,
} as const;

/** Route types (`rtm_type`). */
export const RTN = {
  UNSPEC: 0,
  UNICAST: 1,
  LOCAL: 2,
  BROADCAST: 3,
  ANYCAST: 4,
  MULTICAST: 5,
  BLACKHOLE: 6,
  UNREACHABLE: 7,
  PROHIBIT: 8,
} as const;

/** Route scopes (`rtm_scope`). */
export const RT_SCOPE = { UNIVERSE: 0, LINK: 253, HOST: 254, NOWHERE: 255 } as const;

/** Routing tables. */
export const RT_TABLE = { UNSPEC: 0, MAIN: 254, LOCAL: 255 } as const;

/** Route protocols the kernel and iproute2 name (`rtm_protocol`). */
export const RTPROT = { UNSPEC: 0, KERNEL: 2, BOOT: 3, STATIC: 4 } as const;

/**
 * The route protocol number vif marks its routes with, so they can be told
 * from everyone else's (`ip route` shows `proto 165`). Unassigned in
 * `linux/rtnetlink.h` and in iproute2's `rt_protos`.
 */
export const VIF_ROUTE_PROTOCOL = 0xa5;

const IFF_UP = 0x1;
const IFLA_MTU = 4;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_FLAGS = 8;
const IFA_F_NODAD = 0x02;
const NLMSGERR_ATTR_MSG = 1;

/** Length of `struct nlmsghdr`. */
export const NLMSG_HDRLEN = 16;
const IFINFOMSG_LEN = 16;
const IFADDRMSG_LEN = 8;
const RTMSG_LEN = 12;

function align4(n: number): number {
  return (n + 3) & ~3;
}

/** A netlink message as received: header fields and a view of the payload. */
export interface NetlinkMessage {
  /** `nlmsg_type`. */
  type: number;
  /** `nlmsg_flags`. */
  flags: number;
  /** `nlmsg_seq`: the request this answers. */
  seq: number;
  /** `nlmsg_pid`: the sender's port (0 for the kernel). */
  pid: number;
  /** The bytes after the header, a view into the receive buffer. */
  payload: Uint8Array;
}

/** One attribute to append to a message. */
type Attr = [type: number, value: Uint8Array];

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, HOST_LITTLE_ENDIAN);
  return out;
}

/** Lays out header, fixed part and attributes; `fill` writes the fixed part. */
function message(
  type: number,
  flags: number,
  seq: number,
  fixedLength: number,
  fill: (view: DataView, at: number) => void,
  attrs: Attr[] = [],
): Uint8Array {
  let length = NLMSG_HDRLEN + align4(fixedLength);
  for (const [, value] of attrs) length += align4(4 + value.length);
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  view.setUint32(0, length, HOST_LITTLE_ENDIAN);
  view.setUint16(4, type, HOST_LITTLE_ENDIAN);
  view.setUint16(6, flags, HOST_LITTLE_ENDIAN);
  view.setUint32(8, seq >>> 0, HOST_LITTLE_ENDIAN);
  view.setUint32(12, 0, HOST_LITTLE_ENDIAN);
  fill(view, NLMSG_HDRLEN);
  let at = NLMSG_HDRLEN + align4(fixedLength);
  for (const [attrType, value] of attrs) {
    view.setUint16(at, 4 + value.length, HOST_LITTLE_ENDIAN);
    view.setUint16(at + 2, attrType, HOST_LITTLE_ENDIAN);
    out.set(value, at + 4);
    at += align4(4 + value.length);
  }
  return out;
}

/** A prefix checked and turned into bytes. */
interface ParsedPrefix {
  family: number;
  bytes: Uint8Array;
  prefixLength: number;
}

/**
 * Checks a prefix and turns its address into bytes.
 *
 * @param prefix the prefix
 * @returns its family, bytes and length
 * @throws {TypeError} when the address is not an IP address
 * @throws {RangeError} when the prefix length does not fit the family
 */
export function parsePrefix(prefix: Prefix): ParsedPrefix {
  const bytes = parseIp(prefix.address);
  if (!bytes) throw new TypeError(`Cannot use address "${prefix.address}": not an IP address`);
  const bits = bytes.length * 8;
  if (
    !Number.isInteger(prefix.prefixLength) || prefix.prefixLength < 0 || prefix.prefixLength > bits
  ) {
    throw new RangeError(
      `Cannot use prefix length "${prefix.prefixLength}" for "${prefix.address}": must be 0 to ${bits}`,
    );
  }
  return {
    family: bytes.length === 4 ? AF.INET : AF.INET6,
    bytes,
    prefixLength: prefix.prefixLength,
  };
}

/** What {@linkcode encodeSetLink} changes. */
export interface LinkChange {
  /** The new MTU. */
  mtu?: number;
  /** `true` brings the link up, `false` down; absent leaves it. */
  up?: boolean;
}

/**
 * Encodes RTM_NEWLINK for an existing link: MTU and/or up-down, with an ACK.
 *
 * @param seq the sequence number
 * @param index the interface index
 * @param change what to change
 * @returns the message
 */
export function encodeSetLink(seq: number, index: number, change: LinkChange): Uint8Array {
  const attrs: Attr[] = change.mtu === undefined ? [] : [[IFLA_MTU, u32(change.mtu)]];
  return message(RTM.NEWLINK, NLM_F.REQUEST | NLM_F.ACK, seq, IFINFOMSG_LEN, (view, at) => {
    // struct ifinfomsg { u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change; }
    view.setInt32(at + 4, index, HOST_LITTLE_ENDIAN);
    view.setUint32(at + 8, change.up ? IFF_UP : 0, HOST_LITTLE_ENDIAN);
    view.setUint32(at + 12, change.up === undefined ? 0 : IFF_UP, HOST_LITTLE_ENDIAN);
  }, attrs);
}

/**
 * Encodes RTM_NEWADDR (create or replace, with an ACK). IPv4 gets IFA_LOCAL and
 * IFA_ADDRESS; IPv6 also gets IFA_F_NODAD, so the address is usable at once
 * (no tentative period in which `bind()`/`listen()` fail).
 *
 * @param seq the sequence number
 * @param index the interface index
 * @param prefix the address and its prefix length
 * @returns the message
 * @throws {TypeError} when the address is not an IP address
 * @throws {RangeError} when the prefix length does not fit the family
 */
export function encodeAddAddress(seq: number, index: number, prefix: Prefix): Uint8Array {
  const p = parsePrefix(prefix);
  const v6 = p.family === AF.INET6;
  const attrs: Attr[] = [[IFA_LOCAL, p.bytes], [IFA_ADDRESS, p.bytes]];
  if (v6) attrs.push([IFA_FLAGS, u32(IFA_F_NODAD)]);
  const flags = NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.REPLACE;
  return message(RTM.NEWADDR, flags, seq, IFADDRMSG_LEN, (view, at) => {
    // struct ifaddrmsg { u8 family; u8 prefixlen; u8 flags; u8 scope; u32 index; }
    view.setUint8(at, p.family);
    view.setUint8(at + 1, p.prefixLength);
    view.setUint8(at + 2, v6 ? IFA_F_NODAD : 0);
    view.setUint8(at + 3, RT_SCOPE.UNIVERSE);
    view.setUint32(at + 4, index, HOST_LITTLE_ENDIAN);
  }, attrs);
}

/** Options for {@linkcode encodeRoute}. */
export interface RouteOptions {
  /** The route protocol (default {@linkcode VIF_ROUTE_PROTOCOL}). */
  protocol?: number;
  /** The routing table (default main, 254). */
  table?: number;
}

/**
 * Encodes RTM_NEWROUTE or RTM_DELROUTE for a directly connected route
 * (`<prefix> dev <index> proto 0xa5`), with an ACK.
 *
 * Adding uses NLM_F_CREATE without NLM_F_REPLACE: the kernel answers EEXIST only
 * when an identical route exists, and never replaces someone else's route to
 * the same prefix. Deleting matches the protocol and the interface, so only a
 * route of ours is removed.
 *
 * @param seq the sequence number
 * @param op `"add"` or `"delete"`
 * @param index the outgoing interface index
 * @param prefix the destination
 * @param options protocol and table
 * @returns the message
 * @throws {TypeError} when the address is not an IP address
 * @throws {RangeError} when the prefix length does not fit the family
 */
export function encodeRoute(
  seq: number,
  op: "add" | "delete",
  index: number,
  prefix: Prefix,
  options: RouteOptions = {},
): Uint8Array {
  const p = parsePrefix(prefix);
  const table = options.table ?? RT_TABLE.MAIN;
  const protocol = options.protocol ?? VIF_ROUTE_PROTOCOL;
  const attrs: Attr[] = [[RTA.DST, p.bytes], [RTA.OIF, u32(index)]];
  if (table > 255) attrs.push([RTA.TABLE, u32(table)]);
  const add = op === "add";
  const type = add ? RTM.NEWROUTE : RTM.DELROUTE;
  const flags = NLM_F.REQUEST | NLM_F.ACK | (add ? NLM_F.CREATE : 0);
  // IPv6 has no route scopes (the kernel ignores the field); ip(8) sends universe.
  const scope = !add ? RT_SCOPE.NOWHERE : p.family === AF.INET ? RT_SCOPE.LINK : RT_SCOPE.UNIVERSE;
  return message(type, flags, seq, RTMSG_LEN, (view, at) => {
    // struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags; }
    view.setUint8(at, p.family);
    view.setUint8(at + 1, p.prefixLength);
    view.setUint8(at + 4, table > 255 ? RT_TABLE.UNSPEC : table);
    view.setUint8(at + 5, protocol);
    view.setUint8(at + 6, scope);
    view.setUint8(at + 7, add ? RTN.UNICAST : RTN.UNSPEC);
  }, attrs);
}

/**
 * Encodes an RTM_GETROUTE dump request for one family (all tables).
 *
 * @param seq the sequence number
 * @param family `4` or `6`
 * @returns the message
 */
export function encodeGetRoutes(seq: number, family: 4 | 6): Uint8Array {
  return message(RTM.GETROUTE, NLM_F.REQUEST | NLM_F.DUMP, seq, RTMSG_LEN, (view, at) => {
    view.setUint8(at, family === 4 ? AF.INET : AF.INET6);
  });
}

/**
 * Splits a received datagram into netlink messages.
 *
 * @param buf the bytes received (one `recv()`)
 * @returns the messages, in order; a malformed tail is ignored
 */
export function decodeMessages(buf: Uint8Array): NetlinkMessage[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: NetlinkMessage[] = [];
  let at = 0;
  while (at + NLMSG_HDRLEN <= buf.length) {
    const length = view.getUint32(at, HOST_LITTLE_ENDIAN);
    if (length < NLMSG_HDRLEN || at + length > buf.length) break;
    out.push({
      type: view.getUint16(at + 4, HOST_LITTLE_ENDIAN),
      flags: view.getUint16(at + 6, HOST_LITTLE_ENDIAN),
      seq: view.getUint32(at + 8, HOST_LITTLE_ENDIAN),
      pid: view.getUint32(at + 12, HOST_LITTLE_ENDIAN),
      payload: buf.subarray(at + NLMSG_HDRLEN, at + length),
    });
    at += align4(length);
  }
  return out;
}

/**
 * Lists the attributes (`struct rtattr`/`struct nlattr`) in `buf[start..]`.
 *
 * @param buf the bytes
 * @param start where the first attribute starts
 * @returns type (without the nested/byte-order bits) and value of each
 */
export function decodeAttributes(
  buf: Uint8Array,
  start = 0,
): Array<[type: number, value: Uint8Array]> {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Array<[number, Uint8Array]> = [];
  let at = start;
  while (at + 4 <= buf.length) {
    const length = view.getUint16(at, HOST_LITTLE_ENDIAN);
    if (length < 4 || at + length > buf.length) break;
    out.push([
      view.getUint16(at + 2, HOST_LITTLE_ENDIAN) & 0x3fff,
      buf.subarray(at + 4, at + length),
    ]);
    at += align4(length);
  }
  return out;
}

/** What an NLMSG_ERROR (or the NLMSG_DONE closing a dump) said. */
export interface NetlinkStatus {
  /** 0 for an ACK, else the positive errno. */
  errno: number;
  /** The kernel's extended-ack explanation, when it gave one. */
  message?: string;
}

/**
 * Decodes an NLMSG_ERROR message (an ACK when `errno` is 0) or an NLMSG_DONE
 * (whose payload, when present, is the dump's final status).
 *
 * @param msg the message
 * @returns the errno and the kernel's message; a short payload reads as an ACK
 */
export function decodeStatus(msg: NetlinkMessage): NetlinkStatus {
  const p = msg.payload;
  if (p.length < 4) return { errno: 0 };
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const errno = -view.getInt32(0, HOST_LITTLE_ENDIAN) | 0; // | 0: no -0 for an ACK
  if (msg.type !== NLMSG.ERROR || !(msg.flags & NLM_F.ACK_TLVS) || p.length < 4 + NLMSG_HDRLEN) {
    return { errno };
  }
  // The request is echoed after the error: only its header when capped.
  const echoed = msg.flags & NLM_F.CAPPED ? NLMSG_HDRLEN : view.getUint32(4, HOST_LITTLE_ENDIAN);
  for (const [type, value] of decodeAttributes(p, 4 + align4(echoed))) {
    if (type !== NLMSGERR_ATTR_MSG) continue;
    const end = value.indexOf(0);
    const text = new TextDecoder().decode(end < 0 ? value : value.subarray(0, end));
    if (text) return { errno, message: text };
  }
  return { errno };
}

function readU32(value: Uint8Array): number | undefined {
  if (value.length < 4) return undefined;
  return new DataView(value.buffer, value.byteOffset, 4).getUint32(0, HOST_LITTLE_ENDIAN);
}

function address(value: Uint8Array, family: number): string | undefined {
  const want = family === AF.INET ? 4 : 16;
  return value.length === want ? formatIp(value) : undefined;
}

/**
 * Decodes one RTM_NEWROUTE message of a route dump. For a multipath route the
 * first next hop's interface and gateway are reported.
 *
 * @param msg the message
 * @returns the route, or `undefined` for another message type, another family
 * (multicast routing tables, MPLS) or a malformed message
 */
export function decodeRoute(msg: NetlinkMessage): SystemRoute | undefined {
  const p = msg.payload;
  if (msg.type !== RTM.NEWROUTE || p.length < RTMSG_LEN) return undefined;
  const family = p[0]!;
  if (family !== AF.INET && family !== AF.INET6) return undefined;
  const route: SystemRoute = {
    family: family === AF.INET ? 4 : 6,
    address: family === AF.INET ? "0.0.0.0" : "::",
    prefixLength: p[1]!,
    table: p[4]!,
    protocol: p[5]!,
    scope: p[6]!,
    type: p[7]!,
  };
  for (const [type, value] of decodeAttributes(p, RTMSG_LEN)) {
    switch (type) {
      case RTA.DST: {
        const text = address(value, family);
        if (text === undefined) return undefined;
        route.address = text;
        break;
      }
      case RTA.OIF:
        route.interfaceIndex = readU32(value);
        break;
      case RTA.GATEWAY:
        route.gateway = address(value, family);
        break;
      case RTA.VIA:
        // struct rtvia { u16 family; u8 addr[]; }: an IPv4 route through an IPv6 gateway.
        if (value.length >= 2) {
          const viaFamily = new DataView(value.buffer, value.byteOffset, 2).getUint16(
            0,
            HOST_LITTLE_ENDIAN,
          );
          route.gateway = address(value.subarray(2), viaFamily);
        }
        break;
      case RTA.PREFSRC:
        route.source = address(value, family);
        break;
      case RTA.PRIORITY:
        route.metric = readU32(value);
        break;
      case RTA.TABLE:
        route.table = readU32(value) ?? route.table;
        break;
      case RTA.MULTIPATH: {
        // struct rtnexthop { u16 len; u8 flags; u8 hops; i32 ifindex; } then attributes.
        if (value.length < 8) break;
        const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
        const length = Math.min(view.getUint16(0, HOST_LITTLE_ENDIAN), value.length);
        route.interfaceIndex ??= view.getInt32(4, HOST_LITTLE_ENDIAN);
        for (const [hopType, hopValue] of decodeAttributes(value.subarray(0, length), 8)) {
          if (hopType === RTA.GATEWAY) route.gateway ??= address(hopValue, family);
        }
        break;
      }
    }
  }
  for (const key of Object.keys(route) as Array<keyof SystemRoute>) {
    if (route[key] === undefined) delete route[key];
  }
  return route;
}

/**
 * ICMP (RFC 792) and ICMPv6 (RFC 4443): the types the router reads and writes.
 *
 * @module
 */

/** Offsets of the ICMP header fields (the same for ICMPv6). */
export const ICMP = {
  TYPE: 0,
  CODE: 1,
  CHECKSUM: 2,
  /** Echo identifier. */
  IDENT: 4,
  /** Echo sequence number. */
  SEQ: 6,
  /** The header length. */
  HEADER: 8,
} as const;

/** ICMPv4 types and codes (RFC 792). */
export const Icmp4 = {
  ECHO_REPLY: 0,
  DEST_UNREACHABLE: 3,
  ECHO_REQUEST: 8,
  /** Destination-unreachable codes. */
  NET_UNREACHABLE: 0,
  HOST_UNREACHABLE: 1,
  PORT_UNREACHABLE: 3,
  ADMIN_PROHIBITED: 13,
} as const;

/** ICMPv6 types and codes (RFC 4443). */
export const Icmp6 = {
  DEST_UNREACHABLE: 1,
  PACKET_TOO_BIG: 2,
  ECHO_REQUEST: 128,
  ECHO_REPLY: 129,
  /** Destination-unreachable codes. */
  NO_ROUTE: 0,
  ADDRESS_UNREACHABLE: 3,
  PORT_UNREACHABLE: 4,
} as const;

/** IP protocol numbers. */
export const Proto = {
  ICMP: 1,
  TCP: 6,
  UDP: 17,
  ICMPV6: 58,
} as const;

/**
 * UDP header (RFC 768).
 *
 * @module
 */

/** Offsets of the UDP header fields. */
export const UDP = {
  SRC_PORT: 0,
  DST_PORT: 2,
  LENGTH: 4,
  CHECKSUM: 6,
  /** The header length. */
  HEADER: 8,
} as const;

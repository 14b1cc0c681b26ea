/**
 * Per-packet cost of the router's hot path: decode, then the NAT rewrite
 * (addresses and ports written, checksums adjusted with precomputed deltas),
 * against a full checksum, per packet size.
 *
 * @module
 */

import { adjustChecksum, checksum, checksumDelta } from "./checksum.ts";
import { decodePacket, newPacket } from "./packet.ts";
import { buildUdp } from "./build.ts";
import { FIXTURES } from "./testdata/packets.ts";

const syn = FIXTURES.find((f) => f.name === "tcp4 syn")!.bytes;

function tcpPacket(size: number): Uint8Array {
  const b = new Uint8Array(size);
  b.set(syn.subarray(0, 40));
  b[2] = size >> 8, b[3] = size & 0xff;
  b[32] = 0x50; // data offset 5
  return b;
}

const p = newPacket();
const ipDelta = checksumDelta(
  new Uint8Array([240, 0, 0, 1, 198, 18, 9, 2]),
  new Uint8Array([240, 0, 0, 16, 240, 0, 0, 1]),
);
const l4Delta = checksumDelta(
  new Uint8Array([240, 0, 0, 1, 198, 18, 9, 2, 0xa9, 0x38, 0x1f, 0x90]),
  new Uint8Array([240, 0, 0, 16, 240, 0, 0, 1, 0x04, 0x00, 0x9c, 0x40]),
);
const peer = new Uint8Array([240, 0, 0, 16]), listen = new Uint8Array([240, 0, 0, 1]);

for (const size of [64, 1500, 9000, 65535]) {
  const b = tcpPacket(size);
  Deno.bench(
    `decode + NAT rewrite, TCP ${size} bytes`,
    { group: `${size}`, baseline: true },
    () => {
      decodePacket(b, b.length, p);
      b.set(peer, 12);
      b.set(listen, 16);
      b[20] = 0x04, b[21] = 0x00, b[22] = 0x9c, b[23] = 0x40;
      const c = adjustChecksum((b[10]! << 8) | b[11]!, ipDelta);
      b[10] = c >> 8, b[11] = c & 0xff;
      const t = adjustChecksum((b[36]! << 8) | b[37]!, l4Delta);
      b[36] = t >> 8, b[37] = t & 0xff;
    },
  );
  Deno.bench(`full checksum, ${size} bytes`, { group: `${size}` }, () => {
    checksum(b, 0, b.length);
  });
}

const out = new Uint8Array(2000);
for (const size of [64, 1500]) {
  const payload = new Uint8Array(size - 28);
  Deno.bench(`buildUdp, ${size} bytes`, () => {
    buildUdp(listen, 53, peer, 5353, payload, out);
  });
}

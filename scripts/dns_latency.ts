/**
 * Measures DNS round trips from this network namespace: sends QUERIES A
 * queries for NAME to SERVER over UDP, one at a time, and prints the first,
 * the median and the 99th percentile in milliseconds as one JSON line.
 * `dig` reports whole milliseconds only; the tunnel answers well under one.
 *
 * Usage: `deno run -A scripts/dns_latency.ts SERVER NAME [QUERIES]`
 *
 * @module
 */

import dgram from "node:dgram";
import { Buffer } from "node:buffer";

function query(id: number, name: string): Buffer {
  const labels = name.replace(/\.$/, "").split(".");
  const parts = [Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l, "ascii"));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  return Buffer.concat(parts);
}

if (import.meta.main) {
  const [server, name, countText] = Deno.args;
  if (!server || !name) throw new Error("usage: dns_latency.ts SERVER NAME [QUERIES]");
  const count = Number(countText ?? "200");
  const sock = dgram.createSocket(server.includes(":") ? "udp6" : "udp4");
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const id = (i * 7919 + 1) & 0xffff;
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to query ${i} within 2 s`)), 2000);
      const onMessage = (msg: Buffer) => {
        if (msg.readUInt16BE(0) !== id) return;
        clearTimeout(timer);
        sock.off("message", onMessage);
        resolve();
      };
      sock.on("message", onMessage);
      sock.send(query(id, name), 53, server);
    });
    times.push(performance.now() - t0);
  }
  sock.close();
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  console.log(JSON.stringify({
    queries: count,
    first_ms: Number(times[0]!.toFixed(3)),
    p50_ms: Number(at(0.5).toFixed(3)),
    p99_ms: Number(at(0.99).toFixed(3)),
  }));
}

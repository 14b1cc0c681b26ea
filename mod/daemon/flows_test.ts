import { assertEquals } from "../../tests/_assert.ts";
import type { RouterFlow } from "../net/router.ts";
import type { Accepted } from "../rpc/mux_end.ts";
import type { TcpFlow, TcpSink } from "../rpc/mux_tcp.ts";
import { MuxProtocol } from "../rpc/mux.ts";
import {
  type ConnectionEntry,
  connectionsDocument,
  InterceptFlows,
  MAX_CONNECTIONS,
  routerEntry,
} from "./flows.ts";

function entry(port: number, rate: number, bytes = 0): ConnectionEntry {
  return {
    protocol: "tcp",
    kind: "outbound",
    source: { address: "198.18.0.5", port },
    destination: { address: "198.19.0.10", port: 80 },
    name: "web.default",
    state: "ESTABLISHED",
    ageSeconds: 1,
    bytesSent: bytes,
    bytesReceived: 0,
    rateSent: rate,
    rateReceived: 0,
  };
}

Deno.test("routerEntry() turns a router flow into an entry with its name and age", () => {
  const flow: RouterFlow = {
    protocol: "udp",
    source: { address: "198.18.0.5", port: 5353 },
    destination: { address: "198.19.0.53", port: 53 },
    state: "OPEN",
    openedAt: 1000,
    bytesSent: 40,
    bytesReceived: 120,
    rateSent: 13.4,
    rateReceived: 40.6,
  };
  assertEquals(routerEntry(flow, "kube-dns.kube-system", 3456), {
    protocol: "udp",
    kind: "outbound",
    source: { address: "198.18.0.5", port: 5353 },
    destination: { address: "198.19.0.53", port: 53 },
    name: "kube-dns.kube-system",
    state: "OPEN",
    ageSeconds: 2.5,
    bytesSent: 40,
    bytesReceived: 120,
    rateSent: 13,
    rateReceived: 41,
  });
  assertEquals(routerEntry(flow, undefined, 0).name, null);
});

Deno.test("connectionsDocument() sorts the busiest first and counts what it leaves out", () => {
  const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  const doc = connectionsDocument([entry(1, 10), entry(2, 500), entry(3, 0, 99), entry(4, 0)], {
    at,
    limit: 3,
  });
  assertEquals(doc.flows.map((f) => f.source.port), [2, 1, 3]);
  assertEquals([doc.schema, doc.at, doc.total, doc.truncated], [
    1,
    "2026-01-02T03:04:05.000Z",
    4,
    1,
  ]);
});

Deno.test("connectionsDocument() stays within its byte budget and its entry cap", () => {
  const many = Array.from({ length: MAX_CONNECTIONS + 50 }, (_, i) => entry(i, i));
  const capped = connectionsDocument(many, { at: new Date(0), maxBytes: 1 << 30 });
  assertEquals([capped.flows.length, capped.truncated], [MAX_CONNECTIONS, 50]);
  const top10 = capped.flows.slice(0, 10).reduce((n, e) => n + JSON.stringify(e).length + 1, 0);
  const small = connectionsDocument(many, { at: new Date(0), maxBytes: top10 + 5 });
  assertEquals(small.flows.length, 10);
  assertEquals(small.truncated, many.length - 10);
  // The real budget: whatever the table holds, the answer fits one control line.
  const doc = connectionsDocument(many, { at: new Date(0) });
  assertEquals(JSON.stringify({ id: 1, result: doc }).length < (1 << 20), true);
  assertEquals(doc.truncated > 0, true);
});

Deno.test("InterceptFlows follows an accepted flow from its start to its end, with its bytes", () => {
  let now = 5000;
  const table = new InterceptFlows({ now: () => now });
  const counts = { aToB: 0, bToA: 0 };
  let ended = "";
  const sink = { transferred: counts } as unknown as TcpSink;
  const accepted: Accepted = {
    message: "127.0.0.1:8080",
    tcp: () => sink,
    onEnd: (reason) => void (ended = reason ?? "done"),
  };
  const open = {
    protocol: MuxProtocol.Intercepted,
    sourceIp: new Uint8Array([198, 18, 0, 9]),
    sourcePort: 41000,
    destinationIp: new Uint8Array([198, 18, 0, 20]),
    destinationPort: 80,
    dialTimeoutMs: 0,
    window: 0,
    tag: "default/web:80\x1b",
  };
  const wrapped = table.track(open, accepted);
  assertEquals(table.size, 0, "followed once the flow exists");
  if (!("tcp" in wrapped)) throw new Error("a TCP acceptance");
  assertEquals(wrapped.tcp({} as TcpFlow), sink);
  counts.bToA = 300;
  counts.aToB = 4000;
  now += 1000;
  table.sample();
  assertEquals(table.entries(), [{
    protocol: "tcp",
    kind: "intercept",
    source: { address: "198.18.0.9", port: 41000 },
    destination: { address: "127.0.0.1", port: 8080 },
    name: "intercept default/web:80?",
    state: "ESTABLISHED",
    ageSeconds: 1,
    bytesSent: 300,
    bytesReceived: 4000,
    rateSent: 300,
    rateReceived: 4000,
  }]);
  wrapped.onEnd?.("closed");
  assertEquals([table.size, ended], [0, "closed"]);
  // A refusal passes through untouched; past the table's size flows are served, not listed.
  const refusal = { code: 2, message: "no" };
  assertEquals(table.track(open, refusal), refusal);
  const tiny = new InterceptFlows({ max: 0 });
  assertEquals(tiny.track(open, accepted), accepted);
});

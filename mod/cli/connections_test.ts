import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import type { ConnectionEntry, ConnectionsDocument } from "../daemon/flows.ts";
import {
  formatAge,
  formatBytes,
  formatConnections,
  formatConnectionTable,
  formatRate,
  watchFrame,
  watchHeader,
} from "./connections.ts";
import { visibleWidth } from "./terminal.ts";

function entry(over: Partial<ConnectionEntry> = {}): ConnectionEntry {
  return {
    protocol: "tcp",
    kind: "outbound",
    source: { address: "198.18.0.5", port: 51234 },
    destination: { address: "198.19.0.10", port: 80 },
    name: "web.default",
    state: "ESTABLISHED",
    ageSeconds: 75.4,
    bytesSent: 120,
    bytesReceived: 5 * 1048576,
    rateSent: 0,
    rateReceived: 1572864,
    ...over,
  };
}

function doc(flows: ConnectionEntry[], total = flows.length): ConnectionsDocument {
  return {
    schema: 1,
    at: "2026-01-02T03:04:05.678Z",
    flows,
    total,
    truncated: total - flows.length,
  };
}

Deno.test("formatBytes(), formatRate() and formatAge() read as people read them", () => {
  assertEquals([0, 512, 1536, 5 * 1048576, 3 * 2 ** 40].map(formatBytes), [
    "0 B",
    "512 B",
    "1.5 KiB",
    "5.0 MiB",
    "3.0 TiB",
  ]);
  assertEquals([0, 100.4, 2048].map(formatRate), ["-", "100 B/s", "2.0 KiB/s"]);
  assertEquals([0.4, 59, 187, 7500].map(formatAge), ["0s", "59s", "3m07s", "2h05m"]);
});

Deno.test("formatConnectionTable() aligns the columns: text to the left, numbers to the right", () => {
  const lines = formatConnectionTable([
    entry(),
    entry({
      protocol: "udp",
      state: "OPEN",
      source: { address: "2001:2::5", port: 5353 },
      destination: { address: "198.19.0.53", port: 53 },
      name: null,
      ageSeconds: 2,
      bytesSent: 40,
      bytesReceived: 80,
      rateReceived: 0,
    }),
  ]);
  assertEquals(lines, [
    "PROTO  STATE        SOURCE            DESTINATION     NAME           AGE   SENT" +
    "  RECEIVED  OUT/S       IN/S",
    "tcp    ESTABLISHED  198.18.0.5:51234  198.19.0.10:80  web.default  1m15s  120 B" +
    "   5.0 MiB      -  1.5 MiB/s",
    "udp    OPEN         [2001:2::5]:5353  198.19.0.53:53  -               2s   40 B" +
    "      80 B      -          -",
  ]);
});

Deno.test("formatConnectionTable() shows what the daemon sent only as printable text", () => {
  const [, line] = formatConnectionTable([entry({ name: "evil\x1b[2Jname", state: "X\nY" })]);
  assert([...line!].every((c) => c >= " " && c <= "~" || c === "…"), JSON.stringify(line));
  assertMatch(line!, /evil\?\[2Jname/);
});

Deno.test("formatConnections() says when there is nothing, and what was left out", () => {
  assertEquals(formatConnections(doc([])), ["No open connections."]);
  const some = formatConnections(doc([entry(), entry()], 12));
  assertEquals(some.length, 4);
  assertEquals(some.at(-1), "… and 10 more (12 in all)");
  const capped = formatConnections(doc([entry(), entry(), entry()]), 1);
  assertEquals(capped.at(-1), "… and 2 more (3 in all)");
});

Deno.test("watchFrame() redraws in place on a terminal, clipped to its size, and plain blocks elsewhere", () => {
  const d = doc(
    Array.from(
      { length: 30 },
      (_, i) => entry({ source: { address: "198.18.0.5", port: 40000 + i } }),
    ),
  );
  const frame = watchFrame(d, { tty: true, columns: 60, rows: 12, intervalSeconds: 1 });
  assert(frame.startsWith("\x1b[H"), "from the top left");
  assert(frame.endsWith("\n\x1b[J"), "the rest of the screen erased");
  const lines = frame.slice(3, -4).split("\n");
  assertEquals(
    lines.length,
    12 - 5 + 4,
    "header, blank, table header, rows that fit, the more line",
  );
  for (const l of lines) {
    assert(l.endsWith("\x1b[K"), "each line erased to its end");
    assert(
      visibleWidth(l.slice(0, -"\x1b[K".length)) <= 59,
      `${JSON.stringify(l)} fits 60 columns`,
    );
  }
  assertMatch(lines.at(-1)!, /^… and 23 more/);
  const plain = watchFrame(d, { tty: false, intervalSeconds: 2 });
  assert(!plain.includes("\x1b"), "no escapes in a pipe");
  assert(plain.endsWith("\n\n"), "blocks a blank line apart");
  assertEquals(plain.split("\n").length, 2 + 1 + 30 + 2, "every entry in a pipe");
});

Deno.test("watchHeader() sums the rates and counts the protocols", () => {
  const h = watchHeader(
    doc([entry(), entry({ protocol: "udp", rateSent: 1024, rateReceived: 0 })], 5),
    1,
  );
  assertEquals(
    h,
    "vif connections: 1 tcp, 1 udp (5 in all); out 1.0 KiB/s, in 1.5 MiB/s; every 1s; 03:04:05 UTC (Ctrl-C to quit)",
  );
});

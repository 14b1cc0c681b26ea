import { assertEquals, assertRejects, assertThrows } from "../../tests/_assert.ts";
import { pcapRecord, readPcap } from "../net/pcap.ts";
import { captureParams, captureSummary, PcapWriter, resolveHosts } from "./capture.ts";
import { UserError } from "./errors.ts";

function memorySink() {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    write: (b: Uint8Array) => Promise.resolve(void chunks.push(b.slice())),
    close() {},
    bytes(): Uint8Array {
      return new Uint8Array(chunks.flatMap((c) => [...c]));
    },
  };
}

function batch(records: Uint8Array[], dropped = 0) {
  const bytes = new Uint8Array(records.flatMap((r) => [...r]));
  return { type: "packets", count: records.length, dropped, data: bytes.toBase64() };
}

Deno.test("PcapWriter writes the header at the start, then each batch's records", async () => {
  const sink = memorySink();
  const w = new PcapWriter(sink);
  await w.event({ type: "start", snaplen: 96, linktype: 101 });
  await w.event(batch([pcapRecord(1000, new Uint8Array(40), 96)]));
  await w.event(
    batch([pcapRecord(2000, new Uint8Array(200), 96), pcapRecord(3000, new Uint8Array(20), 96)], 7),
  );
  await w.event({ type: "a later kind" });
  const file = readPcap(sink.bytes());
  assertEquals([file.snaplen, file.linktype], [96, 101]);
  assertEquals(file.records.map((r) => [r.seconds, r.data.length, r.originalLength]), [
    [1, 40, 40],
    [2, 96, 200],
    [3, 20, 20],
  ]);
  assertEquals(w.counts, { packets: 3, dropped: 7, bytes: 24 + 56 + 112 + 36 });
});

Deno.test("PcapWriter refuses what the daemon must not send, and writes none of it", async () => {
  const cases: Array<Array<Record<string, unknown>>> = [
    [batch([pcapRecord(0, new Uint8Array(4), 96)])], // before the start
    [{ type: "start", snaplen: 10, linktype: 101 }],
    [{ type: "start", snaplen: 96, linktype: -1 }],
    [{ type: "start", snaplen: 96, linktype: 101 }, { type: "start", snaplen: 96, linktype: 101 }],
    [{ type: "start", snaplen: 96, linktype: 101 }, {
      type: "packets",
      count: 1,
      dropped: 0,
      data: "!!",
    }],
    [{ type: "start", snaplen: 96, linktype: 101 }, {
      ...batch([pcapRecord(0, new Uint8Array(4), 96)]),
      count: 2,
    }],
    [
      { type: "start", snaplen: 96, linktype: 101 },
      batch([pcapRecord(0, new Uint8Array(200), 200)]),
    ],
    [{ type: "start", snaplen: 96, linktype: 101 }, { type: "packets", data: "" }],
  ];
  for (const events of cases) {
    const sink = memorySink();
    const w = new PcapWriter(sink);
    await assertRejects(async () => {
      for (const e of events) await w.event(e);
    });
    assertEquals(sink.bytes().length, w.started ? 24 : 0, JSON.stringify(events).slice(0, 80));
  }
});

Deno.test("captureParams() checks the flags and turns seconds into milliseconds", () => {
  assertEquals(captureParams({}, []), {});
  assertEquals(
    captureParams({ port: "80", duration: "2.5", count: "10", snaplen: "128" }, ["198.19.0.10"]),
    { hosts: ["198.19.0.10"], port: 80, count: 10, snaplen: 128, durationMs: 2500 },
  );
  for (
    const bad of [{ port: "0" }, { port: "http" }, { count: "-1" }, { snaplen: "20" }, {
      duration: "0",
    }, { duration: "soon" }]
  ) {
    const e = assertThrows(() => captureParams(bad, []), UserError);
    assertEquals((e as UserError).exitCode, 2, JSON.stringify(bad));
  }
});

Deno.test("resolveHosts() keeps addresses as they are and resolves names", async () => {
  assertEquals(await resolveHosts(["198.19.0.10", "2001:2::1", "198.19.0.10"]), [
    "198.19.0.10",
    "2001:2::1",
  ]);
  assertEquals((await resolveHosts(["localhost"])).includes("127.0.0.1"), true);
  await assertRejects(() => resolveHosts(["no-such-host.invalid"]), UserError, "cannot resolve");
  const many = Array.from({ length: 17 }, (_, i) => `198.19.0.${i}`);
  await assertRejects(() => resolveHosts(many), UserError, "more than 16");
});

Deno.test("captureSummary() says what was written, what was dropped, and why it ended", () => {
  const counts = { packets: 12, dropped: 0, bytes: 2000 };
  assertEquals(
    captureSummary(counts, "f.pcap", { packets: 12, dropped: 3, reason: "duration" }),
    "12 packets written to f.pcap, 3 dropped (the reader was behind) (time up)",
  );
  assertEquals(
    captureSummary({ ...counts, packets: 1 }, "stdout"),
    "1 packet written to stdout, 0 dropped (interrupted)",
  );
});

import { assert, assertEquals } from "../_assert.ts";
import { ChannelTun } from "../../mod/tun/channel.ts";
import { channelHarness } from "./_channel_harness.ts";
import { assertIncludes, buildUdp, PLAN, runTunSuite } from "./_tun_suite.ts";
import { LINKTYPE_RAW, pcapFileHeader, pcapRecord, PcapTun } from "../../mod/tun/pcap.ts";
import type { TunDevice } from "../../mod/tun/tun.ts";

function memorySink() {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    writeSync(p: Uint8Array) {
      chunks.push(p.slice());
      return p.length;
    },
    bytes(): Uint8Array {
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.length;
      }
      return out;
    },
  };
}

const inner = new WeakMap<TunDevice, ChannelTun>();
runTunSuite(
  "PcapTun over ChannelTun",
  channelHarness(
    () => {
      const channel = new ChannelTun();
      const device = new PcapTun(channel, memorySink());
      inner.set(device, channel);
      return Promise.resolve(device);
    },
    (device) => inner.get(device)!,
  ),
);

Deno.test("pcapFileHeader() and pcapRecord() lay out the classic pcap format", () => {
  const header = new DataView(pcapFileHeader(65535).buffer);
  assertEquals(header.getUint32(0, true), 0xa1b2c3d4);
  assertEquals([header.getUint16(4, true), header.getUint16(6, true)], [2, 4]);
  assertEquals(header.getUint32(16, true), 65535);
  assertEquals(header.getUint32(20, true), LINKTYPE_RAW);
  const record = pcapRecord(1_700_000_000_123.456, new Uint8Array([1, 2, 3, 4, 5]), 3);
  const view = new DataView(record.buffer);
  assertEquals(view.getUint32(0, true), 1_700_000_000);
  assertEquals(view.getUint32(4, true), 123_456);
  assertEquals([view.getUint32(8, true), view.getUint32(12, true)], [3, 5]);
  assertEquals(record.subarray(16), new Uint8Array([1, 2, 3]));
});

Deno.test("PcapTun records packets read and written, with the injected clock", async () => {
  const channel = new ChannelTun();
  const sink = memorySink();
  let now = 1000;
  const tun = new PcapTun(channel, sink, { now: () => now });
  const a = buildUdp(
    { address: PLAN.remote4, port: 53 },
    { address: PLAN.tun4.address, port: 9 },
    new Uint8Array(3),
  );
  channel.inject(a);
  const buf = new Uint8Array(100);
  assertEquals(tun.readSync(buf), a.length);
  now = 2000;
  assert(tun.writeSync(a));
  assertEquals(tun.readSync(buf), 0); // nothing read, nothing recorded
  assertEquals(sink.chunks.length, 3);
  assertEquals(new DataView(sink.chunks[1]!.buffer).getUint32(0, true), 1);
  assertEquals(new DataView(sink.chunks[2]!.buffer).getUint32(0, true), 2);
  assertEquals(sink.chunks[2]!.subarray(16), a);
  assertEquals(tun.stats, channel.stats);
  await tun.close();
});

Deno.test("PcapTun stops recording, not working, when its sink fails", () => {
  const channel = new ChannelTun();
  let fail = false;
  const tun = new PcapTun(channel, {
    writeSync(p) {
      if (fail) throw new Error("disk full");
      return p.length;
    },
  });
  fail = true;
  assert(tun.writeSync(new Uint8Array([0x45])));
  assert(tun.writeSync(new Uint8Array([0x45])));
  assertEquals(channel.outbound.length, 2);
});

Deno.test({
  name: "PcapTun.create() writes a file tcpdump can read",
  ignore: !hasTcpdump(),
  async fn() {
    const path = await Deno.makeTempFile({ suffix: ".pcap" });
    try {
      const tun = await PcapTun.create(new ChannelTun(), path);
      const payload = new TextEncoder().encode("pcap");
      tun.writeSync(
        buildUdp(
          { address: PLAN.remote4, port: 4000 },
          { address: PLAN.tun4.address, port: 4001 },
          payload,
        ),
      );
      tun.writeSync(
        buildUdp(
          { address: PLAN.remote6, port: 4000 },
          { address: PLAN.tun6.address, port: 4001 },
          payload,
        ),
      );
      await tun.close();
      const out = await new Deno.Command("tcpdump", {
        args: ["-n", "-r", path],
        stdout: "piped",
        stderr: "null",
      })
        .output();
      const text = new TextDecoder().decode(out.stdout);
      assertIncludes(text, "IP 198.18.77.5.4000 > 240.0.0.1.4001: UDP, length 4");
      assertIncludes(text, "IP6 2001:2:77::5.4000 > 2001:2::1.4001: UDP, length 4");
    } finally {
      await Deno.remove(path);
    }
  },
});

function hasTcpdump(): boolean {
  try {
    return Deno.statSync("/usr/bin/tcpdump").isFile;
  } catch {
    return false;
  }
}

import { assert, assertEquals, assertRejects } from "../_assert.ts";
import { channelHarness } from "./_channel_harness.ts";
import { PLAN, runTunSuite } from "./_tun_suite.ts";
import { ChannelTun } from "../../mod/tun/channel.ts";

runTunSuite(
  "ChannelTun",
  channelHarness(() => Promise.resolve(new ChannelTun()), (device) => device as ChannelTun),
);

Deno.test("ChannelTun: readSync() truncates a packet longer than the buffer", () => {
  const tun = new ChannelTun();
  tun.inject(new Uint8Array([1, 2, 3, 4, 5]));
  const buf = new Uint8Array(3);
  assertEquals(tun.readSync(buf), 3);
  assertEquals(buf, new Uint8Array([1, 2, 3]));
  assertEquals(tun.readSync(buf), 0);
});

Deno.test("ChannelTun: inject() copies the packet and readable() resolves for a waiting reader", async () => {
  const tun = new ChannelTun();
  const waiting = tun.readable();
  const packet = new Uint8Array([0x45, 0, 0, 4]);
  tun.inject(packet);
  packet[0] = 0;
  assertEquals(await waiting, true);
  const buf = new Uint8Array(10);
  assertEquals(buf.subarray(0, tun.readSync(buf)), new Uint8Array([0x45, 0, 0, 4]));
});

Deno.test("ChannelTun: writeSync() copies, outbound keeps order and nextWritten() takes each once", async () => {
  const tun = new ChannelTun();
  const next = tun.nextWritten();
  const a = new Uint8Array([1]);
  tun.writeSync(a);
  a[0] = 9;
  tun.writeSync(new Uint8Array([2]));
  assertEquals(await next, new Uint8Array([1]));
  assertEquals(await tun.nextWritten(), new Uint8Array([2]));
  assertEquals(tun.outbound, [new Uint8Array([1]), new Uint8Array([2])]);
  const pending = tun.nextWritten();
  await tun.close();
  await assertRejects(() => pending, Error, "closed");
});

Deno.test("ChannelTun: writeSync() drops and counts once outboundLimit packets wait", async () => {
  const tun = new ChannelTun({ outboundLimit: 2 });
  assert(tun.writeSync(new Uint8Array([1])));
  assert(tun.writeSync(new Uint8Array([2])));
  assertEquals(tun.writeSync(new Uint8Array([3])), false);
  assertEquals(tun.stats.txDropped, 1);
  await tun.nextWritten();
  assert(tun.writeSync(new Uint8Array([4])), "room again after one was taken");
  assertEquals(tun.stats.txPackets, 3);
});

Deno.test("ChannelTun: failNext() makes one configuration call fail", async () => {
  const tun = new ChannelTun();
  tun.failNext("addRoute", new Error("Cannot add route: EPERM (operation not permitted)"));
  await tun.up();
  await assertRejects(() => tun.addRoute(PLAN.route4), Error, "EPERM");
  await tun.addRoute(PLAN.route4);
  assertEquals(tun.routes, [PLAN.route4]);
});

Deno.test("ChannelTun: addRoute() needs the link up, as Linux does", async () => {
  const tun = new ChannelTun();
  await assertRejects(() => tun.addRoute(PLAN.route4), Error, "the link is down");
});

Deno.test("ChannelTun: inject() after close() is ignored", async () => {
  const tun = new ChannelTun();
  await tun.close();
  tun.inject(new Uint8Array([0x45]));
  assertEquals(tun.readSync(new Uint8Array(10)), -1);
  assertEquals(await tun.readable(), false);
});

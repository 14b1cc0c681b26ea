import { assertEquals } from "../../tests/_assert.ts";
import { FlowMeter } from "./flow_meter.ts";

Deno.test("FlowMeter measures a young flow from its start", () => {
  const m = new FlowMeter(10_000);
  m.sent = 500;
  m.received = 2000;
  assertEquals(m.rates(10_500), { sent: 1000, received: 4000 });
  assertEquals(m.rates(10_000), { sent: 0, received: 0 });
  assertEquals(m.openedAt, 10_000);
});

Deno.test("FlowMeter's rate covers the last one to two seconds, not the flow's life", () => {
  const m = new FlowMeter(0);
  // A burst in the first seconds, then a steady 100 B/s.
  m.sent = 1_000_000;
  m.sample(1000);
  m.sample(2000);
  for (let t = 3000; t <= 10_000; t += 1000) {
    m.sent += 100;
    m.sample(t);
  }
  // Just after a sample: the window is the last second (9000..10000).
  assertEquals(m.rates(10_000).sent, 100);
  // Later on: the window still starts at the older sample, 9000.
  m.sent += 50;
  assertEquals(m.rates(10_500).sent, 150 / 1.5);
  // An idle flow's rate falls to zero within two samples.
  m.sample(11_000);
  m.sample(12_000);
  assertEquals(m.rates(12_000), { sent: 0, received: 0 });
});

Deno.test("FlowMeter never reports a negative rate, and a stalled clock gives none", () => {
  const m = new FlowMeter(0);
  m.received = 100;
  m.sample(1000);
  m.sample(2000);
  m.received = 50; // a counter the owner reset
  assertEquals(m.rates(2500).received, 0);
  assertEquals(m.rates(-5), { sent: 0, received: 0 });
});

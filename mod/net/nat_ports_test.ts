import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import { NatPorts } from "./nat_ports.ts";

Deno.test("NatPorts hands out never-used ports in order, then none", () => {
  const ports = new NatPorts(2000, 2002);
  assertEquals([ports.take(0), ports.take(0), ports.take(0)], [2000, 2001, 2002]);
  assertEquals(ports.take(0), undefined);
  assertEquals(ports.inUse, 3);
});

Deno.test("NatPorts rests a released port until its time, in release order", () => {
  const ports = new NatPorts(2000, 2002);
  for (let i = 0; i < 3; i++) ports.take(0);
  ports.release(2001, 100);
  ports.release(2000, 150);
  assertEquals(ports.take(99), undefined);
  assertEquals(ports.take(100), 2001);
  assertEquals(ports.take(149), undefined);
  assertEquals(ports.take(150), 2000);
  assertEquals(ports.inUse, 3);
});

Deno.test("NatPorts frees a port released with no rest at once, before fresh ones", () => {
  const ports = new NatPorts(2000, 2009);
  const a = ports.take(0)!;
  ports.release(a, 0);
  assertEquals(ports.take(0), a);
  assertEquals(ports.take(0), 2001);
});

Deno.test("NatPorts ignores the release of a port not in use", () => {
  const ports = new NatPorts(2000, 2001);
  ports.take(0);
  ports.release(2000, 10);
  ports.release(2000, 10);
  ports.release(2001, 10); // never taken
  assertEquals(ports.inUse, 0);
  assertEquals(ports.take(10), 2001); // still fresh
  assertEquals(ports.take(10), 2000);
  assertEquals(ports.take(10), undefined);
});

Deno.test("NatPorts takes O(1) per port when every port is resting", () => {
  // 64,512 ports cycled twice: a scan per take would be billions of steps.
  const ports = new NatPorts(1024, 65535);
  let now = 0;
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < ports.size; i++) {
      const port = ports.take(now);
      assertEquals(port === undefined, false);
      ports.release(port!, now + 1000);
      now += 0.01;
    }
    assertEquals(ports.take(now), undefined, "all resting");
    now += 1000;
  }
});

Deno.test("NatPorts refuses an empty or out-of-range range", () => {
  assertThrows(() => new NatPorts(10, 9), RangeError);
  assertThrows(() => new NatPorts(0, 9), RangeError);
  assertThrows(() => new NatPorts(1, 65536), RangeError);
});

import { assertEquals, assertThrows } from "../_assert.ts";
import {
  CrashBackoff,
  goDuration,
  ProbeCounter,
  ProbeSpecError,
  probeUrl,
  resolveProbe,
} from "./_probe.ts";

const PORTS = [{ name: "http", containerPort: 8080 }, { name: "health", containerPort: 8082 }];

Deno.test("resolveProbe() applies the API's defaults and resolves a named port", () => {
  const p = resolveProbe({ httpGet: { path: "/readyz", port: "health" } }, "readiness", PORTS);
  assertEquals(p, {
    kind: "readiness",
    action: { type: "http", scheme: "http", path: "/readyz", headers: [] },
    port: 8082,
    initialDelayMs: 0,
    periodMs: 10_000,
    timeoutMs: 1000,
    successThreshold: 1,
    failureThreshold: 3,
  });
  assertEquals(probeUrl(p, "198.18.0.7"), "http://198.18.0.7:8082/readyz");
  const live = resolveProbe(
    {
      httpGet: {
        path: "livez",
        port: 8082,
        scheme: "HTTPS",
        httpHeaders: [{ name: "X", value: "1" }],
      },
      periodSeconds: 10,
      timeoutSeconds: 3,
      failureThreshold: 3,
      initialDelaySeconds: 2,
      terminationGracePeriodSeconds: 5,
    },
    "liveness",
    PORTS,
  );
  assertEquals(live.action, {
    type: "http",
    scheme: "https",
    path: "/livez",
    headers: [["X", "1"]],
  });
  assertEquals(
    [live.initialDelayMs, live.periodMs, live.timeoutMs, live.terminationGraceMs],
    [2000, 10_000, 3000, 5000],
  );
  assertEquals(resolveProbe({ tcpSocket: { port: "http" } }, "readiness", PORTS).port, 8080);
  assertEquals(resolveProbe({ tcpSocket: { port: "9000" } }, "readiness", PORTS).port, 9000);
});

Deno.test("resolveProbe() refuses what the simulated kubelet cannot run, naming the field", () => {
  const bad = (spec: Parameters<typeof resolveProbe>[0], kind: "readiness" | "liveness") =>
    assertThrows(() => resolveProbe(spec, kind, PORTS), ProbeSpecError).message;
  assertEquals(
    bad({ tcpSocket: { port: "grpc" } }, "readiness"),
    `readinessProbe: port "grpc" is not defined in the container's ports`,
  );
  assertEquals(
    bad({ exec: { command: ["true"] } }, "liveness"),
    "livenessProbe: the simulated kubelet runs httpGet and tcpSocket probes only",
  );
  assertEquals(
    bad({ tcpSocket: { port: 80 }, successThreshold: 2 }, "liveness"),
    "livenessProbe.successThreshold: must be 1",
  );
  assertEquals(
    bad({ tcpSocket: { port: 80 }, periodSeconds: 0 }, "readiness"),
    "readinessProbe.periodSeconds: must be an integer of at least 1, not 0",
  );
  assertEquals(
    bad({}, "readiness"),
    "readinessProbe: exactly one of httpGet and tcpSocket must be given",
  );
});

Deno.test("ProbeCounter changes its result only after the thresholds in a row", () => {
  const readiness = new ProbeCounter(false, { successThreshold: 2, failureThreshold: 3 });
  assertEquals([true, false, true, true].map((ok) => readiness.record(ok)), [
    false,
    false,
    false,
    true,
  ]);
  assertEquals([false, false, true, false, false, false].map((ok) => readiness.record(ok)), [
    true,
    true,
    true,
    true,
    true,
    false,
  ]);
  const liveness = new ProbeCounter(true, { successThreshold: 1, failureThreshold: 1 });
  assertEquals(liveness.result, true);
  assertEquals(liveness.record(false), false);
});

Deno.test("CrashBackoff restarts at once, then waits 10 s, 20 s, … up to 5 min, and forgets after 10 min", () => {
  const b = new CrashBackoff();
  let t = 1_000_000;
  const waits: number[] = [];
  for (let i = 0; i < 8; i++) {
    const wait = b.wait(t, t);
    waits.push(wait);
    t += wait;
    b.restarted(t - wait, t);
    t += 1000; // it runs a second, then ends again
  }
  assertEquals(waits, [0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]);
  assertEquals(goDuration(b.currentMs), "5m0s");
  // Half the wait gone: the rest remains.
  assertEquals(b.wait(t, t + 100_000), 200_000);
  // Ten minutes since the last restart: as new.
  assertEquals(b.wait(t + 601_000, t + 601_000), 0);
  b.restarted(t + 601_000, t + 601_000);
  assertEquals(goDuration(b.currentMs), "10s");
});

Deno.test("goDuration() prints whole seconds as Go does", () => {
  assertEquals([10_000, 80_000, 300_000, 3_723_000].map(goDuration), [
    "10s",
    "1m20s",
    "5m0s",
    "1h2m3s",
  ]);
});

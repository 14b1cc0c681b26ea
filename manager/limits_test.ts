import { assertEquals, assertThrows } from "../tests/_assert.ts";
import { Admission, DEFAULT_LIMITS, resolveLimits, Usage } from "./limits.ts";

const MiB = 1024 * 1024;

Deno.test("resolveLimits() fills in the defaults and refuses what cannot be a limit", () => {
  assertEquals(resolveLimits(), { ...DEFAULT_LIMITS });
  assertEquals(resolveLimits({ sessions: 3 }).sessions, 3);
  assertThrows(
    () => resolveLimits({ sessions: 0 }),
    RangeError,
    'The limit --max-sessions "0" is not a positive whole number',
  );
  assertThrows(() => resolveLimits({ tcpFlows: 1.5 }), RangeError, "--max-tcp-flows");
  assertThrows(
    () => resolveLimits({ udpFlowsPerSession: 10, udpFlows: 5 }),
    RangeError,
    "The limit --max-udp-flows-per-session (10) is above --max-udp-flows (5)",
  );
  assertThrows(
    () => resolveLimits({ dnsInFlight: 65_536 }),
    RangeError,
    "is above 60000, what one DNS id space holds",
  );
});

Deno.test("Admission counts per session and in total, and says which limit refused", () => {
  const admission = new Admission(resolveLimits({ udpFlowsPerSession: 2, udpFlows: 3 }));
  const a = new Usage(), b = new Usage();
  assertEquals([admission.take("udp", a), admission.take("udp", a)], [undefined, undefined]);
  assertEquals(
    admission.take("udp", a),
    "the session has 2 UDP flows open, its limit (--max-udp-flows-per-session)",
  );
  assertEquals(admission.take("udp", b), undefined);
  assertEquals(
    admission.take("udp", b),
    "the traffic-manager has 3 UDP flows open, its limit (--max-udp-flows)",
  );
  admission.give("udp", a);
  assertEquals(admission.take("udp", b), undefined);
  assertEquals([a.udp, b.udp, admission.total.udp], [1, 2, 3]);
  assertEquals(admission.refused, { udpFlowsPerSession: 1, udpFlows: 1 });
  assertEquals(admission.takeSession(1023), undefined);
  assertEquals(
    admission.takeSession(1024),
    "the traffic-manager has 1024 sessions, its limit (--max-sessions)",
  );
  assertEquals(admission.refused.sessions, 1);
});

Deno.test("Admission.hold() refuses bytes past a limit and take() refuses TCP flows near it", () => {
  const admission = new Admission(
    resolveLimits({ bufferedPerSession: 4 * MiB, buffered: 6 * MiB }),
  );
  const a = new Usage(), b = new Usage();
  assertEquals(admission.hold(a, 3 * MiB), undefined);
  // Three quarters of the session's limit: no new TCP flow for it; UDP and DNS still.
  assertEquals(
    admission.take("tcp", a),
    "the session holds 3 MiB for destinations that read slowly, near its limit of 4 MiB " +
      "(--max-buffered-per-session)",
  );
  assertEquals(admission.take("udp", a), undefined);
  assertEquals(
    admission.hold(a, 2 * MiB),
    "the session would hold more than 4 MiB for destinations that do not read " +
      "(--max-buffered-per-session)",
  );
  assertEquals(a.buffered, 3 * MiB); // The refused bytes are not counted.
  assertEquals(admission.hold(b, 2 * MiB), undefined);
  assertEquals(
    admission.take("tcp", b),
    "the traffic-manager holds 5 MiB for destinations, near its limit of 6 MiB (--max-buffered)",
  );
  assertEquals(
    admission.hold(b, 2 * MiB),
    "the traffic-manager would hold more than 6 MiB for destinations (--max-buffered)",
  );
  admission.hold(a, -3 * MiB);
  assertEquals(admission.take("tcp", b), undefined);
  assertEquals(admission.total.buffered, 2 * MiB);
});

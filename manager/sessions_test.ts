import { assertEquals } from "../tests/_assert.ts";
import { type SessionClient, SessionTable } from "./sessions.ts";

const ALICE: SessionClient = {
  name: "alice",
  hostname: "box",
  version: "0.1.0",
  namespace: "default",
  os: "linux",
};

function table(ttlMs = 30_000) {
  let now = 0;
  const lines: string[] = [];
  let n = 0;
  const sessions = new SessionTable({
    ttlMs,
    now: () => now,
    log: (line) => lines.push(line),
    newId: () => `${(++n).toString(16).padStart(8, "0")}ffffffff`,
  });
  return { sessions, lines, advance: (ms: number) => void (now += ms) };
}

Deno.test("SessionTable logs one line per arrival, departure and expiry", () => {
  const { sessions, lines, advance } = table();
  const a = sessions.arrive(ALICE);
  const b = sessions.arrive({ ...ALICE, name: "", hostname: "", version: "" });
  sessions.depart(a.id);
  advance(45_000);
  sessions.sweep();
  assertEquals(lines, [
    "manager: session 00000001… arrived from alice@box (vif 0.1.0)",
    "manager: session 00000002… arrived from someone@unknown host (unknown version)",
    "manager: session 00000001… departed",
    "manager: session 00000002… expired after 45 s without a heartbeat",
  ]);
  assertEquals([sessions.size, b.ended], [0, true]);
});

Deno.test("SessionTable keeps a session alive with heartbeats and expires it exactly after the TTL", () => {
  const { sessions, advance } = table(1000);
  const s = sessions.arrive(ALICE);
  for (let i = 0; i < 5; i++) {
    advance(900);
    assertEquals(sessions.remain(s.id)?.id, s.id);
  }
  advance(1000);
  assertEquals(sessions.sweep(), 0); // 1000 ms: not more than the TTL yet.
  advance(1);
  assertEquals(sessions.remain(s.id), undefined); // Looked up past the TTL: ended there.
  assertEquals(sessions.sweep(), 0);
  assertEquals(s.ended, true);
});

Deno.test("Session.onEnd() closers run once with why, and unregistered ones do not", () => {
  const { sessions, lines, advance } = table(1000);
  const s = sessions.arrive(ALICE);
  const calls: string[] = [];
  s.onEnd((end, reason) => calls.push(`tunnel ${end}: ${reason}`));
  s.onEnd((end) => calls.push(`stream ${end}`), "stream");
  const off = s.onEnd(() => calls.push("unregistered"));
  off();
  assertEquals(s.tunnels, 1);
  advance(2000);
  sessions.sweep();
  sessions.sweep();
  assertEquals(calls, ["tunnel expired: the session expired", "stream expired"]);
  assertEquals(
    lines.at(-1),
    "manager: session 00000001… expired after 2 s without a heartbeat (1 tunnel closed)",
  );
});

Deno.test("SessionTable.endAll() ends every session for a shutdown", () => {
  const { sessions } = table();
  const ends: string[] = [];
  sessions.arrive(ALICE).onEnd((end, reason) => ends.push(`${end}: ${reason}`));
  sessions.arrive(ALICE);
  assertEquals(sessions.endAll("the traffic-manager is stopping"), 2);
  assertEquals(ends, ["shutdown: the traffic-manager is stopping"]);
  assertEquals(sessions.depart("00000001ffffffff"), false);
});

import { DialResult_Code } from "../mod/rpc/service.ts";
import { assertEquals } from "../tests/_assert.ts";
import { commandPinger, findPingProgram, NO_PING_MESSAGE, pingOutcome } from "./ping.ts";

Deno.test("pingOutcome() reads iputils and BusyBox results", () => {
  const cases: [number, string, string, DialResult_Code, string][] = [
    [
      0,
      "64 bytes from 198.18.1.2: icmp_seq=1 ttl=64 time=0.045 ms\n",
      "",
      DialResult_Code.OK,
      "reply from 198.18.1.2 in 0.045 ms",
    ],
    [0, "", "", DialResult_Code.OK, "reply from 198.18.1.2"],
    [
      1,
      "\n--- 198.18.1.2 ping statistics ---\n1 packets transmitted, 0 received, 100% packet loss\n",
      "",
      DialResult_Code.TIMEOUT,
      "no reply from 198.18.1.2 in 2 s",
    ],
    [
      1,
      "From 198.18.0.1 icmp_seq=1 Destination Host Unreachable\n",
      "",
      DialResult_Code.UNREACHABLE,
      "198.18.1.2: destination host unreachable",
    ],
    [
      2,
      "",
      "ping: connect: Network is unreachable\n",
      DialResult_Code.UNREACHABLE,
      "198.18.1.2: network is unreachable",
    ],
    [
      2,
      "",
      "ping: socktype: SOCK_RAW\nping: socket: Operation not permitted\n",
      DialResult_Code.UNREACHABLE,
      "ping 198.18.1.2 failed: ping: socktype: SOCK_RAW",
    ],
  ];
  for (const [code, stdout, stderr, expected, message] of cases) {
    assertEquals(pingOutcome("198.18.1.2", 2, { code, stdout, stderr }), {
      code: expected,
      message,
    });
  }
});

Deno.test("commandPinger() without a program answers unreachable with the reason", async () => {
  assertEquals(await commandPinger(undefined)("198.18.1.2", 1000), {
    code: DialResult_Code.UNREACHABLE,
    message: NO_PING_MESSAGE,
  });
});

Deno.test("commandPinger() maps a program's exit code: a stand-in that never gets a reply times out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-ping-" });
  try {
    await Deno.writeTextFile(`${dir}/ping`, '#!/bin/sh\necho "args: $*" >&2\nexit 1\n', {
      mode: 0o755,
    });
    assertEquals(findPingProgram(`${dir}:/nonexistent`), `${dir}/ping`);
    const outcome = await commandPinger(`${dir}/ping`)("198.18.1.2", 1500);
    assertEquals(outcome, {
      code: DialResult_Code.TIMEOUT,
      message: "no reply from 198.18.1.2 in 2 s",
    });
    assertEquals(
      await commandPinger(`${dir}/missing`)("198.18.1.2", 1000).then((o) => o.code),
      DialResult_Code.UNREACHABLE,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("commandPinger() answers unreachable beyond its limit of pings in flight", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-ping-" });
  try {
    await Deno.writeTextFile(`${dir}/ping`, "#!/bin/sh\nsleep 0.3\nexit 0\n", { mode: 0o755 });
    const ping = commandPinger(`${dir}/ping`, { maxInFlight: 2 });
    const outcomes = await Promise.all([1, 2, 3].map(() => ping("198.18.1.2", 1000)));
    assertEquals(outcomes.map((o) => o.code), [
      DialResult_Code.OK,
      DialResult_Code.OK,
      DialResult_Code.UNREACHABLE,
    ]);
    assertEquals(outcomes[2]!.message, "the traffic-manager is already running 2 pings");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * The manager's gRPC API over TLS, in-process, with a real grpc-js client:
 * version, sessions (arrive, remain, depart, expiry), cluster info, trust.
 *
 * @module
 */

import http2 from "node:http2";
import grpc from "@grpc/grpc-js";
import type { ArriveResponse, ClusterInfo, VersionInfo } from "../mod/rpc/service.ts";
import { VERSION } from "../mod/version.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../tests/_assert.ts";
import { call, makeClient, ref, startManager, StreamReader } from "../tests/_manager.ts";
import { serve } from "./server.ts";
import { RECEIVE_WINDOW } from "../mod/rpc/serve.ts";
import { ManagerSetupError } from "./errors.ts";

Deno.test("serve() answers Version over TLS with its name and version", async () => {
  const t = await startManager();
  try {
    const info = await call<VersionInfo>(t.client, "version", {});
    assertEquals([info.name, info.version], ["vif-traffic-manager", VERSION]);
    const serving = t.lines.find((line) => line.startsWith("manager: serving"));
    assertMatch(
      serving!,
      /^manager: serving clients on 127\.0\.0\.1:\d+ \(TLS, traffic-manager\.vif-system; through pods\/portforward\)/,
    );
  } finally {
    await t.close();
  }
});

Deno.test("serve() sessions: arrive returns the cluster info and timings, remain and depart", async () => {
  const t = await startManager({
    podSubnets: ["198.18.64.0/18"],
    serviceSubnets: ["198.18.128.0/20"],
    dnsServer: "198.18.128.10",
    clusterDomain: "corp.example",
    namespaces: ["default", "shop"],
    podIp: "198.18.64.7",
    heartbeatIntervalMs: 4000,
    sessionTtlMs: 20_000,
  });
  try {
    const response = await call<ArriveResponse>(t.client, "arrive", {
      client: { name: "alice", hostname: "box", version: "0.1.0", namespace: "shop", os: "linux" },
    });
    assertMatch(response.sessionId, /^[0-9a-f]{32}$/);
    assertEquals(response.managerVersion, VERSION);
    assertEquals([response.heartbeatIntervalMs, response.sessionTtlMs], [4000, 20_000]);
    const info = response.clusterInfo!;
    assertEquals(info.podSubnets, ["198.18.64.0/18"]);
    assertEquals(info.serviceSubnets, ["198.18.128.0/20"]);
    assertEquals([info.clusterDomain, info.dnsServer, info.managerPodIp], [
      "corp.example",
      "198.18.128.10",
      "198.18.64.7",
    ]);
    assertEquals(info.namespaces, ["default", "shop"]);
    assertEquals(
      t.lines.at(-1),
      `manager: session ${response.sessionId.slice(0, 8)}… arrived from alice@box (vif 0.1.0)`,
    );

    await call(t.client, "remain", { sessionId: response.sessionId });
    await call(t.client, "depart", { sessionId: response.sessionId });
    assertEquals(t.lines.at(-1), `manager: session ${response.sessionId.slice(0, 8)}… departed`);
    const error = await assertRejects(() =>
      call(t.client, "remain", { sessionId: response.sessionId })
    );
    assertEquals((error as grpc.ServiceError).code, grpc.status.NOT_FOUND);
    assertMatch((error as Error).message, /is unknown or expired: arrive again/);
    // Departing again is not an error.
    await call(t.client, "depart", { sessionId: response.sessionId });
  } finally {
    await t.close();
  }
});

Deno.test("serve() expires a session without heartbeats after the TTL, not before", async () => {
  const t = await startManager({ sessionTtlMs: 30_000 });
  try {
    const id = await t.arrive();
    t.advance(20_000);
    await call(t.client, "remain", { sessionId: id }); // Refreshed at 20 s.
    t.advance(25_000);
    assertEquals(t.manager.sweep(), 0); // 25 s since the heartbeat.
    t.advance(6_000);
    assertEquals(t.manager.sweep(), 1);
    assertEquals(
      t.lines.at(-1),
      `manager: session ${id.slice(0, 8)}… expired after 31 s without a heartbeat`,
    );
    const error = await assertRejects(() => call(t.client, "remain", { sessionId: id }));
    assertEquals((error as grpc.ServiceError).code, grpc.status.NOT_FOUND);
    assertEquals(t.manager.sessions.size, 0);
  } finally {
    await t.close();
  }
});

Deno.test("serve() refuses cluster-info watches of an unknown session with NOT_FOUND", async () => {
  const t = await startManager({ dnsUpstream: "127.0.0.1:9" });
  try {
    const reader = new StreamReader<ClusterInfo>(t.client.watchClusterInfo(ref("nope")));
    await reader.over();
    assertEquals(reader.error?.code, grpc.status.NOT_FOUND);
  } finally {
    await t.close();
  }
});

Deno.test("serve() WatchClusterInfo sends the info at once, then each change, and ends on depart", async () => {
  const t = await startManager({ podSubnets: ["198.18.64.0/18"] });
  try {
    const id = await t.arrive();
    const before = t.manager.clusterInfo.subscribers;
    const reader = new StreamReader<ClusterInfo>(t.client.watchClusterInfo(ref(id)));
    assertEquals((await reader.next())?.podSubnets, ["198.18.64.0/18"]);
    t.manager.clusterInfo.set({ podSubnets: ["198.18.64.0/18", "198.18.96.0/19"] });
    t.manager.clusterInfo.set({ podSubnets: ["198.18.64.0/18", "198.18.96.0/19"] }); // No change.
    t.manager.clusterInfo.set({ serviceSubnets: ["198.18.128.0/20"] });
    const changed = await reader.next();
    assertEquals(changed?.podSubnets, ["198.18.64.0/18", "198.18.96.0/19"]);
    assertEquals(changed?.serviceSubnets, []);
    assertEquals((await reader.next())?.serviceSubnets, ["198.18.128.0/20"]);
    assertEquals(t.manager.clusterInfo.subscribers, before + 1);
    await call(t.client, "depart", { sessionId: id });
    await reader.over();
    assertEquals([reader.ended, reader.error], [true, undefined]);
    assertEquals(t.manager.clusterInfo.subscribers, before);
  } finally {
    await t.close();
  }
});

Deno.test("serve() ends a watch with NOT_FOUND when its session expires", async () => {
  const t = await startManager({ sessionTtlMs: 1000 });
  try {
    const id = await t.arrive();
    const reader = new StreamReader<ClusterInfo>(t.client.watchClusterInfo(ref(id)));
    await reader.next();
    t.advance(1001);
    t.manager.sweep();
    await reader.over();
    assertEquals(reader.error?.code, grpc.status.NOT_FOUND);
    assertMatch(reader.error!.message, /the session expired: arrive again/);
  } finally {
    await t.close();
  }
});

Deno.test("serve() is refused by a client that trusts another CA, with a certificate error", async () => {
  const t = await startManager();
  const stranger = makeClient(t.manager.address, t.tls.other.caPem, t.tls.serverName);
  try {
    const error = await assertRejects(() => call(stranger, "version", {}, 3000));
    assertEquals((error as grpc.ServiceError).code, grpc.status.UNAVAILABLE);
    assertMatch((error as Error).message, /certificate|UnknownIssuer|BadSignature/i);
  } finally {
    stranger.close();
    await t.close();
  }
});

Deno.test("serve() is refused by a client that checks another server name", async () => {
  const t = await startManager();
  const wrongName = makeClient(t.manager.address, t.tls.caPem, "traffic-manager.elsewhere");
  try {
    const error = await assertRejects(() => call(wrongName, "version", {}, 3000));
    assertEquals((error as grpc.ServiceError).code, grpc.status.UNAVAILABLE);
  } finally {
    wrongName.close();
    await t.close();
  }
});

Deno.test("serve() fails with a setup error when the TLS files are missing or do not match", async () => {
  const t = await startManager();
  await t.close();
  const missing = await assertRejects(() =>
    serve({ tlsDir: "/nonexistent/tls", listen: "127.0.0.1:0", log: () => {} })
  );
  assert(missing instanceof ManagerSetupError);
  assertMatch(missing.message, /^TLS file "\/nonexistent\/tls\/tls\.crt" does not exist$/);
  assertMatch(missing.hint, /--tls-dir/);
  const mismatched = await assertRejects(() =>
    serve({
      tls: { certPem: t.tls.certPem, keyPem: t.tls.other.keyPem, caPem: t.tls.caPem },
      listen: "127.0.0.1:0",
      log: () => {},
    })
  );
  assert(mismatched instanceof ManagerSetupError);
  assertMatch(mismatched.message, /does not belong to the certificate/);
  const unsigned = await assertRejects(() =>
    serve({
      tls: { certPem: t.tls.certPem, keyPem: t.tls.keyPem, caPem: t.tls.other.caPem },
      listen: "127.0.0.1:0",
      log: () => {},
    })
  );
  assertMatch((unsigned as Error).message, /is not signed by the CA in ca\.crt/);
});

Deno.test("serve() fails with a setup error when the port is taken", async () => {
  const t = await startManager();
  try {
    const error = await assertRejects(() =>
      serve({
        tls: { certPem: t.tls.certPem, keyPem: t.tls.keyPem, caPem: t.tls.caPem },
        listen: t.manager.address,
        log: () => {},
      })
    );
    assert(error instanceof ManagerSetupError, String(error));
    assertEquals(
      error.message,
      `Cannot listen on "${t.manager.address}": the address is already in use`,
    );
  } finally {
    await t.close();
  }
});

Deno.test("serve() rejects bad option values as usage errors", async () => {
  const t = await startManager();
  await t.close();
  const tls = { certPem: t.tls.certPem, keyPem: t.tls.keyPem, caPem: t.tls.caPem };
  for (
    const [options, pattern] of [
      [{ listen: "nowhere" }, /^Cannot listen on "nowhere"/],
      [{ podSubnets: ["198.18.0.0/40"] }, /^Cannot parse pod subnet "198\.18\.0\.0\/40"$/],
      [{ serviceSubnets: ["x"] }, /^Cannot parse service subnet "x"$/],
      [{ podIp: "pod" }, /^The pod IP "pod" is not an IP address$/],
      [{ dialTimeoutMs: -1 }, /not a positive number/],
    ] as const
  ) {
    const error = await assertRejects(() =>
      serve({ tls, listen: "127.0.0.1:0", log: () => {}, ...options })
    );
    assert(error instanceof ManagerSetupError, String(error));
    assertMatch(error.message, pattern);
    assert(error.usage, error.message);
  }
});

Deno.test("serve() advertises the HTTP/2 receive window of CHANNEL_OPTIONS, per stream and per connection", async () => {
  const t = await startManager();
  const session = http2.connect(`https://${t.manager.address}`, {
    ca: t.tls.caPem,
    servername: t.tls.serverName,
  });
  try {
    const settings = await new Promise<http2.Settings>((resolve, reject) => {
      session.once("remoteSettings", resolve);
      session.once("error", reject);
    });
    assertEquals(settings.initialWindowSize, RECEIVE_WINDOW);
    // The connection window's update follows the settings frame.
    const deadline = Date.now() + 2000;
    while ((session.state.remoteWindowSize ?? 0) < RECEIVE_WINDOW && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assertEquals(session.state.remoteWindowSize, RECEIVE_WINDOW);
  } finally {
    await new Promise<void>((resolve) => session.close(() => resolve()));
    await t.close();
  }
});

/**
 * The traffic-agent against an in-process fake traffic-manager: a grpc-js
 * server on 127.0.0.1 with test TLS that serves the Agent service (token
 * checked on every call) and holds the server end of the agent's `AgentMux`
 * call, as the real manager does. Real sockets on loopback throughout:
 *
 * ```
 * test client ──► 127.0.0.1:AGENT_PORT (the agent) ──┬─ pass-through ──► 127.0.0.1:APP_PORT (echo app)
 *                                                    └─ intercepted ──► AgentMux ──► fake manager (echo, or refuse)
 * fake manager ──AgentMux: OPEN sftp──► agent ──► sftp-server (a child per flow)
 * fake manager ──AgentMux: DNS frame──► agent ──► the pod's nameserver (a UDP responder on 127.0.0.1)
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import dgram from "node:dgram";
import * as dp from "dns-packet";
import grpc from "@grpc/grpc-js";
import { assert, assertEquals, assertMatch } from "../tests/_assert.ts";
import { makeTestTls, type TestTls } from "../tests/_tls.ts";
import { APP_MOUNT_PREFIX, encodeAgentConfig } from "../mod/kube/agent_config.ts";
import { formatAddress } from "../mod/net/address.ts";
import { FLOW_WINDOW, MuxProtocol, type OpenFrame } from "../mod/rpc/mux.ts";
import { type Accepted, MuxEnd } from "../mod/rpc/mux_end.ts";
import { AppStream } from "../mod/rpc/mux_socket.ts";
import type { TcpFlow } from "../mod/rpc/mux_tcp.ts";
import {
  AGENT_ID_HEADER,
  type AgentArriveRequest,
  AgentArriveResponseSchema,
  AgentInterceptsSchema,
  type AgentRef,
  AgentService,
  CHANNEL_OPTIONS,
  create,
  DepartResponseSchema,
  DialResult_Code,
  RemainResponseSchema,
} from "../mod/rpc/service.ts";
import { VERSION } from "../mod/version.ts";
import { Agent, type AgentOptions } from "./agent.ts";
import { agentSetup } from "./setup.ts";
import { TokenFile } from "./token.ts";

// deno-lint-ignore no-explicit-any
type Any = any;

const POD_IP = "198.18.64.7";
const TOKEN = "header.payload.signature";

// --- the fake manager -----------------------------------------------------------

interface Intercept {
  id: string;
  containerPort: number;
  holder: string;
}

/** What the fake manager saw, and the knobs a test turns. */
class FakeManager {
  readonly arrivals: AgentArriveRequest[] = [];
  readonly departs: string[] = [];
  readonly opens: OpenFrame[] = [];
  /** Calls refused for their token. */
  refusedTokens = 0;
  remains = 0;
  /** The token the fake takes. */
  token = TOKEN;
  /** Serves an intercepted OPEN: an upper-casing echo unless a test says otherwise. */
  onIntercepted: (open: OpenFrame) => Accepted = () => upperEcho();
  /** The server end of the newest AgentMux call. */
  end: MuxEnd | undefined;
  /** Agent ids whose heartbeats are answered NOT_FOUND (expired). */
  readonly forgotten = new Set<string>();
  /** The agent ids the AgentMux calls named. */
  readonly muxAgentIds: string[] = [];
  #intercepts: Intercept[] = [];
  #watchers = new Set<grpc.ServerWritableStream<AgentRef, unknown>>();
  #server: grpc.Server;
  #ids = 0;
  port = 0;

  constructor(readonly name: string) {
    this.#server = new grpc.Server(CHANNEL_OPTIONS);
    this.#server.addService(AgentService as unknown as grpc.ServiceDefinition, {
      arriveAgent: (call: grpc.ServerUnaryCall<AgentArriveRequest, unknown>, cb: Any) => {
        if (!this.#authorized(call.metadata)) return cb(this.#unauthenticated());
        this.arrivals.push(call.request);
        cb(
          null,
          create(AgentArriveResponseSchema, {
            agentId: `${this.name}-${++this.#ids}`,
            heartbeatIntervalMs: 100,
            agentTtlMs: 1000,
          }),
        );
      },
      watchIntercepts: (call: grpc.ServerWritableStream<AgentRef, unknown>) => {
        if (!this.#authorized(call.metadata)) {
          call.emit("error", this.#unauthenticated());
          return;
        }
        this.#watchers.add(call);
        call.on("cancelled", () => this.#watchers.delete(call));
        call.write(create(AgentInterceptsSchema, { intercepts: this.#intercepts }));
      },
      remainAgent: (call: grpc.ServerUnaryCall<AgentRef, unknown>, cb: Any) => {
        if (!this.#authorized(call.metadata)) return cb(this.#unauthenticated());
        if (this.forgotten.has(call.request.agentId)) {
          return cb({ code: grpc.status.NOT_FOUND, details: "no agent with that id" });
        }
        this.remains++;
        cb(null, create(RemainResponseSchema, {}));
      },
      departAgent: (call: grpc.ServerUnaryCall<AgentRef, unknown>, cb: Any) => {
        if (!this.#authorized(call.metadata)) return cb(this.#unauthenticated());
        this.departs.push(call.request.agentId);
        cb(null, create(DepartResponseSchema, {}));
      },
      agentMux: (call: grpc.ServerDuplexStream<Uint8Array, Uint8Array>) => {
        if (!this.#authorized(call.metadata)) {
          call.emit("error", this.#unauthenticated());
          return;
        }
        this.muxAgentIds.push(String(call.metadata.get(AGENT_ID_HEADER)[0] ?? ""));
        const end: MuxEnd = new MuxEnd(call, {
          role: "server",
          peer: "the traffic-agent",
          accept: (open) => {
            this.opens.push(open);
            return Promise.resolve(this.onIntercepted(open));
          },
          finish: (reason) => {
            if (reason !== undefined) {
              call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: reason });
            } else if (!call.cancelled) call.end();
          },
        });
        this.end = end;
        call.on("end", () => end.end("the agent ended the call", false));
        call.on("cancelled", () => end.lost("the agent went away"));
        call.on("error", () => end.lost("the agent went away"));
      },
    });
  }

  async start(tls: TestTls, port = 0): Promise<this> {
    const credentials = grpc.ServerCredentials.createSsl(
      Buffer.from(tls.caPem),
      [{ private_key: Buffer.from(tls.keyPem), cert_chain: Buffer.from(tls.certPem) }],
      false,
    );
    this.port = await new Promise<number>((resolve, reject) =>
      this.#server.bindAsync(
        `127.0.0.1:${port}`,
        credentials,
        (e, p) => e ? reject(e) : resolve(p),
      )
    );
    return this;
  }

  /** Sets the intercepts and tells every watching agent. */
  setIntercepts(intercepts: Intercept[]): void {
    this.#intercepts = intercepts;
    for (const call of this.#watchers) {
      call.write(create(AgentInterceptsSchema, { intercepts }));
    }
  }

  /** Goes away at once, as a manager pod that is killed. */
  stop(): void {
    this.#server.forceShutdown();
  }

  #authorized(metadata: grpc.Metadata): boolean {
    const ok = metadata.get("authorization")[0] === `Bearer ${this.token}`;
    if (!ok) this.refusedTokens++;
    return ok;
  }

  #unauthenticated(): Partial<grpc.ServiceError> {
    return { code: grpc.status.UNAUTHENTICATED, details: "the token is not valid" };
  }
}

/** Accepts a flow and answers with what it read, upper-cased, then a FIN and the flow's end. */
function upperEcho(): Accepted {
  return {
    message: "intercepted for alice@laptop",
    tcp: (flow) => {
      const stream = new AppStream(flow);
      serveUpper(stream, flow);
      return stream;
    },
  };
}

async function serveUpper(stream: AppStream, flow: TcpFlow): Promise<void> {
  await Promise.resolve(); // The flow is attached after this returns.
  const reader = stream.readable.getReader();
  const writer = stream.writable.getWriter();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      await writer.write(upper(value));
    }
    await writer.close();
  } catch {
    // Reset: nothing more to do.
  }
  flow.closed();
}

function upper(bytes: Uint8Array): Uint8Array {
  return bytes.map((b) => b >= 0x61 && b <= 0x7a ? b - 0x20 : b);
}

// --- the pod's side ---------------------------------------------------------------

/** The app: reads to the end (the client's FIN), then answers `app:` and what it read, and FINs. */
function startApp(): { port: number; connections: () => number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  (async () => {
    for await (const conn of listener) {
      connections++;
      (async () => {
        try {
          const got = await readAll(conn);
          await writeAll(conn, concat(new TextEncoder().encode("app:"), got));
          await conn.closeWrite();
          await readAll(conn);
        } catch {
          // The client went away.
        } finally {
          conn.close();
        }
      })();
    }
  })();
  let closed = false;
  return {
    port: (listener.addr as Deno.NetAddr).port,
    connections: () => connections,
    close: () => {
      if (!closed) listener.close();
      closed = true;
    },
  };
}

/** A DNS server on 127.0.0.1 that answers every A query with 198.18.0.53. */
async function startDns(): Promise<{ server: string; queries: string[]; close(): void }> {
  const socket = dgram.createSocket("udp4");
  const queries: string[] = [];
  socket.on("message", (message: Buffer, from: dgram.RemoteInfo) => {
    const query = dp.decode(message) as Any;
    const name = query.questions[0].name;
    queries.push(name);
    const answer = dp.encode({
      type: "response",
      id: query.id,
      flags: dp.RECURSION_DESIRED | dp.RECURSION_AVAILABLE,
      questions: query.questions,
      answers: [{ type: "A", name, ttl: 30, class: "IN", data: "198.18.0.53" }],
    } as Any);
    socket.send(answer, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    queries,
    close: () => socket.close(),
  };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return concat(...chunks);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Sends `data`, half-closes, and reads the answer to the end. */
async function exchange(port: number, data: Uint8Array): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const reading = readAll(conn);
    await writeAll(conn, data);
    await conn.closeWrite();
    return await reading;
  } finally {
    conn.close();
  }
}

function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** Polls `cond` until it holds (the agent's state follows the network, not a clock). */
async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// --- the harness ------------------------------------------------------------------

let sharedTls: Promise<TestTls> | undefined;

function testTls(): Promise<TestTls> {
  sharedTls ??= makeTestTls().then((tls) => {
    globalThis.addEventListener("unload", () => {
      tls.cleanup().catch(() => {});
    });
    return tls;
  });
  return sharedTls;
}

interface Harness {
  tls: TestTls;
  manager: FakeManager;
  agent: Agent;
  app: ReturnType<typeof startApp>;
  /** The agent port of the app's port. */
  agentPort: number;
  tokenPath: string;
  sftpRoot: string;
  lines: string[];
  close(): Promise<void>;
}

async function start(
  options: { token?: string; agent?: Partial<AgentOptions>; mounts?: boolean } = {},
): Promise<Harness> {
  const tls = await testTls();
  const manager = await new FakeManager("m1").start(tls);
  const app = startApp();
  const agentPort = freePort();
  const dir = await Deno.makeTempDir({ prefix: "vif-agent-test-" });
  const tokenPath = `${dir}/token`;
  await Deno.writeTextFile(tokenPath, options.token ?? TOKEN);
  const sftpRoot = `${dir}/app`;
  await Deno.mkdir(`${sftpRoot}/etc/web`, { recursive: true });
  await Deno.writeTextFile(`${sftpRoot}/etc/web/site.conf`, "listen 80;\n");
  const config = encodeAgentConfig({
    version: 1,
    manager: {
      host: "127.0.0.1",
      port: manager.port,
      serverName: tls.serverName,
      caPem: tls.caPem,
    },
    workload: { kind: "Deployment", name: "web" },
    container: "web",
    ports: [{ name: "http", containerPort: app.port, agentPort, takeover: "name" }],
    mounts: [
      { name: "config", mountPath: "/etc/web", readOnly: true },
      { name: "data", mountPath: "/var/lib/web", readOnly: false },
    ],
  });
  const setup = agentSetup({
    VIF_AGENT_CONFIG: config,
    VIF_POD_NAME: "web-5d8f7c9b6-x2x7q",
    VIF_POD_NAMESPACE: "shop",
    VIF_POD_IP: POD_IP,
    VIF_APP_DATABASE_URL: "postgres://db:5432/shop",
    VIF_APP_LOG_LEVEL: "debug",
    VIF_APP_EMPTY: "",
    HOME: "/home/nonroot",
  }, "search shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
  const lines: string[] = [];
  const agent = Agent.start({
    setup,
    token: new TokenFile(tokenPath),
    log: (level, line) => lines.push(`${level} ${line}`),
    backoff: { minMs: 20, maxMs: 200 },
    listenHost: "127.0.0.1",
    drainMs: 500,
    ...options.agent,
    sftp: { root: sftpRoot, ...options.agent?.sftp },
  });
  return {
    tls,
    manager,
    agent,
    app,
    agentPort,
    tokenPath,
    sftpRoot,
    lines,
    async close() {
      await agent.stop("the test is over");
      manager.stop();
      app.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

// --- the tests --------------------------------------------------------------------

Deno.test("Agent arrives with its pod, workload, ports, the app's environment and mounts", async () => {
  const h = await start();
  try {
    await waitFor("the arrival", () => h.agent.agentId !== undefined);
    const [arrival] = h.manager.arrivals;
    assert(arrival !== undefined);
    assertEquals(
      {
        podName: arrival.podName,
        namespace: arrival.namespace,
        podIp: arrival.podIp,
        workloadKind: arrival.workloadKind,
        workloadName: arrival.workloadName,
        container: arrival.container,
        version: arrival.version,
        searchPath: arrival.searchPath,
      },
      {
        podName: "web-5d8f7c9b6-x2x7q",
        namespace: "shop",
        podIp: POD_IP,
        workloadKind: "Deployment",
        workloadName: "web",
        container: "web",
        version: VERSION,
        searchPath: ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"],
      },
    );
    assertEquals(
      arrival.ports.map((p) => [p.name, p.containerPort, p.agentPort, p.protocol]),
      [["http", h.app.port, h.agentPort, "TCP"]],
    );
    assertEquals({ ...arrival.environment }, {
      DATABASE_URL: "postgres://db:5432/shop",
      LOG_LEVEL: "debug",
      EMPTY: "",
    });
    assertEquals(
      arrival.mounts.map((m) => [m.name, m.mountPath, m.readOnly, m.agentPath]),
      [
        ["config", "/etc/web", true, `${APP_MOUNT_PREFIX}/etc/web`],
        ["data", "/var/lib/web", false, `${APP_MOUNT_PREFIX}/var/lib/web`],
      ],
    );
    assertEquals(h.agent.agentId, "m1-1");
    assert(
      h.lines.includes(
        `info agent: arrived as m1-1: ports http ${h.app.port}→${h.agentPort}, 3 variables, 2 mounts`,
      ),
      h.lines.join("\n"),
    );
    // The mux call names the agent, and heartbeats follow at the manager's interval (100 ms).
    await waitFor("the mux call", () => h.manager.muxAgentIds.length === 1);
    assertEquals(h.manager.muxAgentIds, ["m1-1"]);
    await waitFor("two heartbeats", () => h.manager.remains >= 2);
  } finally {
    await h.close();
  }
  assertEquals(h.manager.departs, ["m1-1"]);
});

Deno.test("Agent retries a refused token and arrives once the kubelet rotated it", async () => {
  const h = await start({ token: "expired.token" });
  try {
    // The manager counts a refusal before the agent has read and logged it: wait for the lines.
    const refusals = () => h.lines.filter((l) => l.includes("UNAUTHENTICATED"));
    await waitFor("three refusals", () => h.manager.refusedTokens >= 3 && refusals().length >= 3);
    assertEquals(h.manager.arrivals.length, 0);
    assertEquals(h.agent.agentId, undefined);
    // Refused again and again: logged once, the retries at debug.
    assertMatch(
      refusals()[0]!,
      /^info agent: cannot arrive at the traffic-manager at 127\.0\.0\.1:\d+: UNAUTHENTICATED: the token is not valid$/,
    );
    assert(refusals().slice(1).every((l) => l.startsWith("debug ")), refusals().join("\n"));
    // Meanwhile the port passes through.
    assertEquals(text(await exchange(h.agentPort, new TextEncoder().encode("hi"))), "app:hi");

    await Deno.writeTextFile(h.tokenPath, TOKEN);
    await waitFor("the arrival", () => h.agent.agentId !== undefined);
    assertEquals(h.manager.arrivals.length, 1);
    assert(h.agent.stats.failedAttempts >= 3);
  } finally {
    await h.close();
  }
});

Deno.test("Agent passes a connection through to the app with no intercept: bytes both ways, half-close", async () => {
  const h = await start();
  try {
    await waitFor("the arrival", () => h.agent.agentId !== undefined);
    // 1 MiB up; the app answers only after the client's FIN, and FINs after its answer.
    const data = new Uint8Array(1024 * 1024).map((_, i) => (i * 7) & 0xff);
    const answer = await exchange(h.agentPort, data);
    assertEquals(answer.length, 4 + data.length);
    assertEquals(text(answer.subarray(0, 4)), "app:");
    assert(answer.subarray(4).every((b, i) => b === data[i]), "the bytes came back changed");
    assertEquals(h.manager.opens.length, 0);
    const stats = h.agent.stats.ports.get(h.app.port)!;
    assertEquals([stats.passedThrough, stats.intercepted], [1, 0]);
  } finally {
    await h.close();
  }
});

Deno.test("Agent closes a connection the app refuses", async () => {
  const h = await start();
  try {
    h.app.close(); // Nothing listens on the app's port now.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.agentPort });
    try {
      const n = await conn.read(new Uint8Array(16)).catch(() => null);
      assertEquals(n, null);
    } finally {
      conn.close();
    }
    await waitFor("the count", () => h.agent.stats.ports.get(h.app.port)!.appRefused === 1);
  } finally {
    await h.close();
  }
});

Deno.test("Agent sends a connection to an intercepted port to the manager as a flow", async () => {
  const h = await start();
  try {
    await waitFor("the mux call", () => h.manager.end !== undefined);
    h.manager.setIntercepts([{ id: "icpt-1", containerPort: h.app.port, holder: "alice@laptop" }]);
    await waitFor("the intercept", () => h.agent.intercepts.get(h.app.port) === "icpt-1");
    assert(
      h.lines.includes(`info agent: port ${h.app.port} intercepted by alice@laptop (icpt-1)`),
      h.lines.join("\n"),
    );

    const data = new Uint8Array(1024 * 1024).map((_, i) => 0x61 + (i % 26));
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.agentPort });
    const local = conn.localAddr as Deno.NetAddr;
    const reading = readAll(conn);
    await writeAll(conn, data);
    await conn.closeWrite();
    const answer = await reading;
    conn.close();
    assertEquals(answer.length, data.length);
    assert(answer.every((b, i) => b === data[i]! - 0x20), "the echo came back changed");

    const [open] = h.manager.opens;
    assert(open !== undefined);
    assertEquals(
      {
        protocol: open.protocol,
        source: `${formatAddress(open.sourceIp)}:${open.sourcePort}`,
        destination: `${formatAddress(open.destinationIp)}:${open.destinationPort}`,
        tag: open.tag,
        window: open.window,
      },
      {
        protocol: MuxProtocol.Intercepted,
        source: `127.0.0.1:${local.port}`,
        destination: `${POD_IP}:${h.app.port}`,
        tag: "icpt-1",
        window: FLOW_WINDOW,
      },
    );
    assertEquals(h.app.connections(), 0, "the app saw an intercepted connection");
    assertEquals(h.agent.stats.ports.get(h.app.port)!.intercepted, 1);
  } finally {
    await h.close();
  }
});

Deno.test("Agent closes an intercepted connection at once when the manager refuses it", async () => {
  const h = await start();
  try {
    await waitFor("the mux call", () => h.manager.end !== undefined);
    h.manager.onIntercepted = () => ({
      code: DialResult_Code.REFUSED,
      message: "connect ECONNREFUSED 127.0.0.1:8080",
    });
    h.manager.setIntercepts([{ id: "icpt-2", containerPort: h.app.port, holder: "bob@box" }]);
    await waitFor("the intercept", () => h.agent.intercepts.size === 1);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.agentPort });
    const started = performance.now();
    try {
      await writeAll(conn, new TextEncoder().encode("GET / HTTP/1.1\r\nHost: web\r\n\r\n"));
      // A reset (the request was unread) or an end: either way at once, not after a timeout.
      const n = await conn.read(new Uint8Array(16)).catch((e) => e.name);
      assert(n === null || n === "ConnectionReset", `read gave ${n}`);
    } finally {
      conn.close();
    }
    const took = performance.now() - started;
    assert(took < 1000, `the refusal took ${took.toFixed(0)} ms`);
    assertEquals(h.agent.stats.ports.get(h.app.port)!.interceptRefused, 1);
    assertEquals(h.app.connections(), 0);
    assert(h.lines.some((l) => l.startsWith("debug ") && l.includes("ECONNREFUSED")));
  } finally {
    await h.close();
  }
});

Deno.test("Agent passes through again once the intercept is removed, or when the manager says it ended", async () => {
  const h = await start();
  try {
    await waitFor("the mux call", () => h.manager.end !== undefined);
    h.manager.setIntercepts([{ id: "icpt-3", containerPort: h.app.port, holder: "alice@laptop" }]);
    await waitFor("the intercept", () => h.agent.intercepts.size === 1);
    assertEquals(text(await exchange(h.agentPort, new TextEncoder().encode("one"))), "ONE");

    h.manager.setIntercepts([]);
    await waitFor("the removal", () => h.agent.intercepts.size === 0);
    assert(h.lines.includes(`info agent: port ${h.app.port} passes through to the app again`));
    assertEquals(text(await exchange(h.agentPort, new TextEncoder().encode("two"))), "app:two");

    // The intercept ended between the agent's look-up and the manager's: NO_SESSION, the app serves it.
    h.manager.onIntercepted = () => ({ code: DialResult_Code.NO_SESSION, message: "no intercept" });
    h.manager.setIntercepts([{ id: "icpt-4", containerPort: h.app.port, holder: "alice@laptop" }]);
    await waitFor("the intercept", () => h.agent.intercepts.size === 1);
    assertEquals(text(await exchange(h.agentPort, new TextEncoder().encode("three"))), "app:three");
    assertEquals(h.manager.opens.length, 2);
    assertEquals(h.app.connections(), 2);
  } finally {
    await h.close();
  }
});

Deno.test("Agent ignores intercepts of ports it does not take", async () => {
  const h = await start();
  try {
    await waitFor("the mux call", () => h.manager.end !== undefined);
    h.manager.setIntercepts([
      { id: "other", containerPort: 1, holder: "mallory" },
      { id: "x".repeat(300), containerPort: h.app.port, holder: "mallory" },
    ]);
    await waitFor("the warning", () => h.lines.some((l) => l.includes("300 bytes: ignored")));
    assertEquals(h.agent.intercepts.size, 0);
    assertEquals(text(await exchange(h.agentPort, new TextEncoder().encode("x"))), "app:x");
  } finally {
    await h.close();
  }
});

/** The pids of this process's `sftp-server` children. */
async function sftpChildren(): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      const match = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
      if (match?.[1] === "sftp-server" && Number(match[2]) === Deno.pid) {
        pids.push(Number(entry.name));
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** Opens an sftp flow toward the agent, as the manager does for a session's sshfs. */
async function openSftp(
  end: MuxEnd,
): Promise<{ stream: AppStream; flow: TcpFlow } | { refused: string; code: number }> {
  let stream: AppStream | undefined;
  const opened = await end.openTcp({
    protocol: MuxProtocol.Sftp,
    sourceIp: new Uint8Array(4),
    sourcePort: 0,
    destinationIp: new Uint8Array(4),
    destinationPort: 0,
    dialTimeoutMs: 0,
    window: FLOW_WINDOW,
    tag: "icpt-sftp",
  }, (flow) => stream = new AppStream(flow));
  if (!opened.ok) return { refused: opened.message, code: opened.code };
  return { stream: stream!, flow: opened.value };
}

/** An sftp packet (draft-ietf-secsh-filexfer-02 3): u32 length, u8 type, the payload. */
function sftpPacket(type: number, ...payload: Uint8Array[]): Uint8Array {
  const body = concat(new Uint8Array([type]), ...payload);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

function sshString(s: string): Uint8Array {
  const bytes = new TextEncoder().encode(s);
  return concat(u32(bytes.length), bytes);
}

/** Reads one sftp packet: its type and payload. */
async function readPacket(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  buffered: { bytes: Uint8Array },
): Promise<{ type: number; payload: Uint8Array }> {
  const need = async (n: number) => {
    while (buffered.bytes.length < n) {
      const { value, done } = await reader.read();
      if (done) throw new Error("The sftp stream ended inside a packet");
      buffered.bytes = concat(buffered.bytes, value);
    }
  };
  await need(4);
  const length = new DataView(buffered.bytes.buffer, buffered.bytes.byteOffset).getUint32(0);
  await need(4 + length);
  const packet = buffered.bytes.slice(4, 4 + length);
  buffered.bytes = buffered.bytes.slice(4 + length);
  return { type: packet[0]!, payload: packet.subarray(1) };
}

Deno.test("Agent serves sftp over a flow the manager opens, one sftp-server each, gone when the flow ends", async () => {
  const h = await start({ agent: { sftp: { max: 2 } } });
  try {
    await waitFor("the mux call", () => h.manager.end !== undefined);
    const first = await openSftp(h.manager.end!);
    assert("stream" in first, JSON.stringify(first));
    assertEquals(h.agent.stats.sftpRunning, 1);
    const reader = first.stream.readable.getReader();
    const writer = first.stream.writable.getWriter();
    const buffered = { bytes: new Uint8Array(0) };
    // SSH_FXP_INIT version 3 → SSH_FXP_VERSION 3.
    await writer.write(sftpPacket(1, u32(3)));
    const version = await readPacket(reader, buffered);
    assertEquals(version.type, 2);
    assertEquals(new DataView(version.payload.buffer, version.payload.byteOffset).getUint32(0), 3);
    // SSH_FXP_REALPATH "." → SSH_FXP_NAME with the directory it started in.
    await writer.write(sftpPacket(16, u32(7), sshString(".")));
    const name = await readPacket(reader, buffered);
    assertEquals(name.type, 104);
    const view = new DataView(name.payload.buffer, name.payload.byteOffset);
    assertEquals([view.getUint32(0), view.getUint32(4)], [7, 1]); // id, one name
    const length = view.getUint32(8);
    const path = new TextDecoder().decode(name.payload.subarray(12, 12 + length));
    assertEquals(path, await Deno.realPath(h.sftpRoot));

    const pids = await sftpChildren();
    assertEquals(pids.length, 1);

    // A second flow runs its own server; a third is past the bound.
    const second = await openSftp(h.manager.end!);
    assert("stream" in second);
    assertEquals(h.agent.stats.sftpRunning, 2);
    const third = await openSftp(h.manager.end!);
    assert("refused" in third);
    assertEquals(third.code, DialResult_Code.UNREACHABLE);
    assertMatch(third.refused, /runs 2 sftp servers already/);

    // The first ends cleanly (sshfs closed its side): the server reads EOF and exits.
    await writer.close();
    assertEquals((await reader.read()).done, true);
    // The second is reset: its server is killed.
    second.flow.abort("sshfs went away");
    await waitFor("the servers to end", () => h.agent.stats.sftpRunning === 0);
    assertEquals(await sftpChildren(), []);
    assertEquals(h.agent.stats.sftpStarted, 2);
  } finally {
    await h.close();
  }
});

Deno.test("Agent refuses flows the manager opens that are not sftp", async () => {
  const h = await start();
  try {
    await waitFor("the mux call", () => h.manager.end !== undefined);
    for (const protocol of [MuxProtocol.Tcp, MuxProtocol.Intercepted]) {
      const opened = await h.manager.end!.openTcp({
        protocol,
        sourceIp: new Uint8Array(4),
        sourcePort: 1,
        destinationIp: new Uint8Array([127, 0, 0, 1]),
        destinationPort: h.app.port,
        dialTimeoutMs: 0,
        window: FLOW_WINDOW,
      }, (flow) => new AppStream(flow));
      assert(!opened.ok);
      assertEquals(opened.code, DialResult_Code.PROHIBITED);
    }
    assertEquals(h.app.connections(), 0);
  } finally {
    await h.close();
  }
});

Deno.test("Agent answers the manager's DNS frames with the pod's nameserver", async () => {
  const dns = await startDns();
  const h = await start({ agent: { dnsServer: dns.server } });
  try {
    await waitFor("the mux call", () => h.manager.end !== undefined);
    const query = new Uint8Array(dp.encode({
      type: "query",
      id: 0x1234,
      flags: dp.RECURSION_DESIRED,
      questions: [{ type: "A", name: "db.shop.svc.cluster.local", class: "IN" }],
    } as Any));
    const answer = dp.decode(Buffer.from(await h.manager.end!.resolve(query, 3000))) as Any;
    assertEquals(answer.id, 0x1234);
    assertEquals(answer.answers.map((a: Any) => [a.name, a.data]), [
      ["db.shop.svc.cluster.local", "198.18.0.53"],
    ]);
    assertEquals(dns.queries, ["db.shop.svc.cluster.local"]);
    assertEquals(h.agent.stats.dnsAnswered, 1);
  } finally {
    await h.close();
    dns.close();
  }
});

Deno.test("Agent refuses DNS frames when the pod has no nameserver", async () => {
  const h = await start();
  try {
    await waitFor("the mux call", () => h.manager.end !== undefined);
    const query = new Uint8Array(dp.encode({
      type: "query",
      id: 1,
      questions: [{ type: "A", name: "x.example", class: "IN" }],
    } as Any));
    const failed = await h.manager.end!.resolve(query, 3000).then(() => "", (e) => e.message);
    assertEquals(failed, "the pod has no nameserver");
    assertEquals(h.agent.stats.dnsFailed, 1);
  } finally {
    await h.close();
  }
});

Deno.test("Agent arrives again when the manager goes away and comes back, passing through meanwhile", async () => {
  const h = await start();
  let second: FakeManager | undefined;
  try {
    await waitFor("the mux call", () => h.manager.end !== undefined);
    h.manager.setIntercepts([{ id: "icpt-5", containerPort: h.app.port, holder: "alice@laptop" }]);
    await waitFor("the intercept", () => h.agent.intercepts.size === 1);

    h.manager.stop();
    await waitFor("the loss", () => h.agent.agentId === undefined);
    assertEquals(h.agent.intercepts.size, 0);
    assert(
      h.lines.some((l) => l.startsWith("info agent: lost the traffic-manager at 127.0.0.1:")),
      h.lines.join("\n"),
    );
    // Nobody holds the port while the manager is away: the app serves it.
    assertEquals(text(await exchange(h.agentPort, new TextEncoder().encode("away"))), "app:away");
    await waitFor("a failed attempt", () => h.agent.stats.failedAttempts >= 1);

    second = await new FakeManager("m2").start(h.tls, h.manager.port);
    second.setIntercepts([{ id: "icpt-5", containerPort: h.app.port, holder: "alice@laptop" }]);
    await waitFor("the second arrival", () => h.agent.agentId === "m2-1");
    assertEquals(second.arrivals.length, 1);
    await waitFor("the mux call", () => second!.muxAgentIds.length === 1);
    await waitFor("the intercept", () => h.agent.intercepts.size === 1);
    assertEquals(text(await exchange(h.agentPort, new TextEncoder().encode("back"))), "BACK");
    assertEquals(h.agent.stats.arrivals, 2);
  } finally {
    await h.close();
    second?.stop();
  }
  assertEquals(second?.departs, ["m2-1"]);
});

Deno.test("Agent closes new connections past its bound, and counts them", async () => {
  const h = await start({ agent: { maxConnectionsPerPort: 2 } });
  try {
    await waitFor("the arrival", () => h.agent.agentId !== undefined);
    // Two connections held open (the app waits for their FIN), then a third.
    const held = await Promise.all(
      [1, 2].map(() => Deno.connect({ hostname: "127.0.0.1", port: h.agentPort })),
    );
    await waitFor("two open", () => h.agent.stats.ports.get(h.app.port)!.open === 2);
    const third = await Deno.connect({ hostname: "127.0.0.1", port: h.agentPort });
    assertEquals(await third.read(new Uint8Array(1)).catch(() => null), null);
    third.close();
    assertEquals(h.agent.stats.ports.get(h.app.port)!.overLimit, 1);
    assert(h.lines.some((l) => l.includes("2 connections open; closing new ones")));
    for (const conn of held) conn.close();
    await waitFor("none open", () => h.agent.stats.ports.get(h.app.port)!.open === 0);
    assertEquals(text(await exchange(h.agentPort, new TextEncoder().encode("ok"))), "app:ok");
  } finally {
    await h.close();
  }
});

Deno.test("vif agent runs the agent until SIGTERM, then departs and exits 0", async () => {
  const tls = await testTls();
  const manager = await new FakeManager("m3").start(tls);
  const app = startApp();
  const dir = await Deno.makeTempDir({ prefix: "vif-agent-cli-" });
  const agentPort = freePort();
  let child: Deno.ChildProcess | undefined;
  try {
    await Deno.writeTextFile(`${dir}/token`, TOKEN);
    await Deno.writeTextFile(`${dir}/resolv.conf`, "search shop.svc.cluster.local\n");
    child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-check",
        new URL("../main.ts", import.meta.url).pathname,
        "agent",
        "--token-file",
        `${dir}/token`,
        "--resolv-conf",
        `${dir}/resolv.conf`,
      ],
      env: {
        VIF_AGENT_CONFIG: encodeAgentConfig({
          version: 1,
          manager: {
            host: "127.0.0.1",
            port: manager.port,
            serverName: tls.serverName,
            caPem: tls.caPem,
          },
          workload: { kind: "StatefulSet", name: "db" },
          container: "db",
          ports: [{ containerPort: app.port, agentPort, takeover: "redirect" }],
          mounts: [],
        }),
        VIF_POD_NAME: "db-0",
        VIF_POD_NAMESPACE: "shop",
        VIF_POD_IP: POD_IP,
        VIF_APP_PGDATA: "/var/lib/postgresql/data",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    await waitFor("the arrival", () => manager.muxAgentIds.length === 1, 30_000);
    const [arrival] = manager.arrivals;
    assertEquals([arrival?.podName, arrival?.workloadKind, arrival?.environment], [
      "db-0",
      "StatefulSet",
      { PGDATA: "/var/lib/postgresql/data" },
    ]);
    // Its port passes through to the app.
    assertEquals(text(await exchange(agentPort, new TextEncoder().encode("q"))), "app:q");
    child.kill("SIGTERM");
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    assertEquals(manager.departs, ["m3-1"]);
    assertEquals(stderr.split("\n").filter((l) => l !== ""), [
      `agent: arrived as m3-1: ports ${app.port}→${agentPort}, 1 variable, 0 mounts`,
      "agent: SIGTERM: stopping",
      "agent: departed (m3-1)",
    ]);
  } finally {
    try {
      child?.kill("SIGKILL");
    } catch {
      // Exited already.
    }
    manager.stop();
    app.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Agent arrives again when the manager forgets it or ends its mux call", async () => {
  const h = await start();
  try {
    await waitFor("the mux call", () => h.manager.muxAgentIds.length === 1);
    // Its heartbeat is answered NOT_FOUND (the manager expired it, or restarted).
    h.manager.forgotten.add("m1-1");
    await waitFor("the second arrival", () => h.agent.agentId === "m1-2");
    assert(
      h.lines.some((l) => l.includes("the heartbeat failed: NOT_FOUND: no agent with that id")),
      h.lines.join("\n"),
    );
    await waitFor("the second mux call", () => h.manager.muxAgentIds.length === 2);
    // The manager ends the mux call.
    h.manager.end!.end("the traffic-manager is rebalancing");
    await waitFor("the third arrival", () => h.agent.agentId === "m1-3");
    assertEquals(h.agent.stats.arrivals, 3);
  } finally {
    await h.close();
  }
});

Deno.test("Agent lets connections under way end before it departs, intercepted ones too", async () => {
  const h = await start({ agent: { drainMs: 5000 } });
  try {
    await waitFor("the mux call", () => h.manager.end !== undefined);
    h.manager.setIntercepts([{ id: "icpt-6", containerPort: h.app.port, holder: "alice@laptop" }]);
    await waitFor("the intercept", () => h.agent.intercepts.size === 1);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.agentPort });
    const reading = readAll(conn);
    await writeAll(conn, new TextEncoder().encode("first half "));
    await waitFor("the flow", () => h.manager.opens.length === 1);

    const stopping = h.agent.stop("SIGTERM: stopping");
    let stopped = false;
    stopping.then(() => stopped = true);
    // No new connection is taken once stopping...
    const refused = await Deno.connect({ hostname: "127.0.0.1", port: h.agentPort }).then(
      (c) => (c.close(), "accepted"),
      (e) => e.name,
    );
    assert(refused === "ConnectionRefused" || refused === "ConnectionReset", refused);
    assertEquals(h.manager.departs, [], "departed with a connection under way");
    // ...and the one under way finishes, through the mux call still held for it.
    await writeAll(conn, new TextEncoder().encode("second half"));
    await conn.closeWrite();
    assertEquals(text(await reading), "FIRST HALF SECOND HALF");
    conn.close();
    await stopping;
    assert(stopped);
    assertEquals(h.manager.departs, ["m1-1"]);
  } finally {
    await h.close();
  }
});

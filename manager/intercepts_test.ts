/**
 * Intercepts through a real manager (in-process, TLS, grpc-js): an agent
 * arrives on the agent listener with a token, a session claims and takes a
 * port, the agent's connections reach the session's daemon as reverse flows
 * spliced hop by hop, and sftp and DNS go the other way. Who may do what is
 * checked: a bad token, a missing claim, a port another session holds.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import grpc from "@grpc/grpc-js";
import { assert, assertEquals, assertMatch, assertRejects } from "../tests/_assert.ts";
import { startManager, type TestManager } from "../tests/_manager.ts";
import { createManagerClient, type ManagerClient, unary } from "../mod/daemon/manager_client.ts";
import { MuxDialer } from "../mod/daemon/mux_dialer.ts";
import type { InterceptClaims } from "../mod/kube/agent_config.ts";
import { FLOW_WINDOW, MuxProtocol, type OpenFrame } from "../mod/rpc/mux.ts";
import { type Accepted, MuxEnd } from "../mod/rpc/mux_end.ts";
import { AppStream } from "../mod/rpc/mux_socket.ts";
import {
  AGENT_ID_HEADER,
  AgentArriveRequestSchema,
  type AgentArriveResponse,
  type AgentIntercepts,
  AgentRefSchema,
  AgentService,
  CHANNEL_OPTIONS,
  create,
  CreateInterceptRequestSchema,
  DialResult_Code,
  type InterceptInfo,
  ListAgentsRequestSchema,
  SessionRefSchema,
} from "../mod/rpc/service.ts";
import { type AgentAuthenticator, AgentAuthError } from "./agent_auth.ts";
import { sessionClaimHash } from "./intercepts.ts";

const TOKEN = "agent-token-of-web-1";
const POD_IP = "198.18.0.21";
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Tokens and pods the test knows: one agent, pod web-1 of Deployment web. */
const auth: AgentAuthenticator = {
  authenticate(token) {
    if (token !== TOKEN) return Promise.reject(new AgentAuthError("the token was refused"));
    return Promise.resolve({
      username: "system:serviceaccount:default:default",
      namespace: "default",
      podName: "web-1",
      podUid: "uid-web-1",
    });
  },
  verify(identity, claims) {
    if (claims.podName !== identity.podName || claims.podIp !== POD_IP) {
      return Promise.reject(new AgentAuthError("not the pod"));
    }
    return Promise.resolve();
  },
};

interface Fixture {
  t: TestManager;
  claims: InterceptClaims;
  client: ManagerClient;
  agent: TestAgent;
  closers: Array<() => unknown>;
}

/** The agent's side: its gRPC client, its id, its AgentMux end. */
interface TestAgent {
  client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  id: string;
  end: MuxEnd;
  /** The intercepts the manager sent, newest last. */
  watched: AgentIntercepts[];
  metadata: grpc.Metadata;
}

const AgentClient = grpc.makeGenericClientConstructor(AgentService, "Agent");

function agentUnary<T>(
  agent: { client: grpc.Client; metadata: grpc.Metadata },
  method: string,
  request: unknown,
): Promise<T> {
  return new Promise((resolve, reject) =>
    (agent.client as unknown as Record<string, (...args: unknown[]) => void>)[method]!.call(
      agent.client,
      request,
      agent.metadata,
      { deadline: Date.now() + 5000 },
      (error: grpc.ServiceError | null, value: T) => error ? reject(error) : resolve(value),
    )
  );
}

async function arriveAgent(
  t: TestManager,
  token: string,
  accept: (open: OpenFrame) => Promise<Accepted>,
): Promise<TestAgent> {
  const credentials = grpc.credentials.createSsl(Buffer.from(t.tls.caPem));
  const client = new AgentClient(t.manager.agentAddress!, credentials, {
    ...CHANNEL_OPTIONS,
    "grpc.ssl_target_name_override": t.tls.serverName,
    "grpc.default_authority": t.tls.serverName,
  }) as TestAgent["client"];
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  const arrived = await agentUnary<AgentArriveResponse>(
    { client, metadata },
    "arriveAgent",
    create(AgentArriveRequestSchema, {
      podName: "web-1",
      namespace: "default",
      podIp: POD_IP,
      workloadKind: "Deployment",
      workloadName: "web",
      container: "web",
      ports: [{ name: "http", containerPort: 80, agentPort: 9900, protocol: "TCP" }],
      environment: { GREETING: "hello", DB_PASSWORD: "s3cret" },
      mounts: [{
        name: "config",
        mountPath: "/etc/web",
        readOnly: true,
        agentPath: "/vif/app/etc/web",
      }],
      version: "0.1.0",
      searchPath: ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
    }),
  );
  const watched: AgentIntercepts[] = [];
  const watch = (client.watchIntercepts as (
    r: unknown,
    m: grpc.Metadata,
  ) => grpc.ClientReadableStream<AgentIntercepts>)(
    create(AgentRefSchema, { agentId: arrived.agentId }),
    metadata,
  );
  watch.on("data", (m: AgentIntercepts) => watched.push(m));
  watch.on("error", () => {});
  const muxMetadata = metadata.clone();
  muxMetadata.set(AGENT_ID_HEADER, arrived.agentId);
  const call =
    (client.agentMux as (m: grpc.Metadata) => grpc.ClientDuplexStream<Uint8Array, Uint8Array>)(
      muxMetadata,
    );
  call.on("error", () => {});
  const end = new MuxEnd(call, {
    role: "client",
    peer: "the traffic-manager",
    names: { me: "the traffic-agent", peer: "the traffic-manager" },
    accept,
    resolve: (query) => Promise.resolve(new Uint8Array([...query, 0xaa])),
    finish: (reason) => {
      if (reason === undefined) call.end();
      call.cancel();
    },
  });
  return { client, id: arrived.agentId, end, watched, metadata };
}

/** A local server that answers each connection with `reply(request)`. */
function localServer(reply: (request: string) => string) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      (async () => {
        const chunks: Uint8Array[] = [];
        const buf = new Uint8Array(65536);
        for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
          chunks.push(buf.slice(0, n));
        }
        const request = text(Buffer.concat(chunks));
        const answer = new TextEncoder().encode(reply(request));
        for (let off = 0; off < answer.length;) off += await conn.write(answer.subarray(off));
        await conn.closeWrite();
      })().catch(() => {});
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
    },
  };
}

/** Sends `request` on a stream, half-closes, reads everything back. */
async function exchange(
  stream: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
  request: Uint8Array,
): Promise<Uint8Array> {
  const writer = stream.writable.getWriter();
  const writing = (async () => {
    await writer.write(request);
    await writer.close();
  })();
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream.readable) chunks.push(chunk);
  await writing;
  return Buffer.concat(chunks);
}

async function withIntercepts(body: (f: Fixture) => Promise<void>): Promise<void> {
  const claims: InterceptClaims = {};
  const t = await startManager({
    agentListen: "127.0.0.1:0",
    agents: { auth, claims: { claims: () => Promise.resolve(claims) } },
  });
  const client = createManagerClient({
    address: t.manager.address,
    caPem: t.tls.caPem,
    managerNamespace: t.tls.namespace,
  });
  const closers: Array<() => unknown> = [];
  let agent: TestAgent | undefined;
  try {
    agent = await arriveAgent(t, TOKEN, (open) => Promise.resolve(sftpEcho(open)));
    await body({ t, claims, client, agent, closers });
  } finally {
    for (const close of closers.reverse()) await close();
    agent?.end.end("the test is over");
    agent?.client.close();
    client.close();
    await t.close();
  }
}

/** The agent's answer to an sftp OPEN: an echo that upper-cases, standing in for sftp-server. */
function sftpEcho(open: OpenFrame): Accepted {
  if (open.protocol !== MuxProtocol.Sftp) {
    return { code: DialResult_Code.PROHIBITED, message: "not here" };
  }
  return {
    message: "sftp",
    tcp: (flow) => {
      const stream = new AppStream(flow);
      (async () => {
        const chunks: Uint8Array[] = [];
        for await (const c of stream.readable) chunks.push(c);
        const w = stream.writable.getWriter();
        await w.write(new TextEncoder().encode(text(Buffer.concat(chunks)).toUpperCase()));
        await w.close();
      })().catch(() => {});
      return stream;
    },
  };
}

/** A session and its daemon-side dialer, whose reverse flows go to `localPort`. */
async function session(f: Fixture, name: string, localPort: () => number) {
  const id = await f.t.arrive(name);
  const dialer = new MuxDialer(f.client, {
    sessionId: () => id,
    accept: async (open) => {
      if (open.protocol !== MuxProtocol.Intercepted) {
        return { code: DialResult_Code.PROHIBITED, message: "no" };
      }
      let conn: Deno.TcpConn;
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port: localPort() });
      } catch (error) {
        return { code: DialResult_Code.REFUSED, message: (error as Error).message };
      }
      return {
        message: "local",
        tcp: (flow) => {
          const stream = new AppStream(flow);
          stream.joinSocket(conn).finally(() => conn.close());
          return stream;
        },
      };
    },
    keepOpen: () => true,
  });
  dialer.open();
  f.closers.push(() => dialer.close());
  const intercept = (port = 80) =>
    unary<InterceptInfo>(
      f.client,
      "createIntercept",
      create(CreateInterceptRequestSchema, {
        sessionId: id,
        namespace: "default",
        workloadKind: "Deployment",
        workloadName: "web",
        containerPort: port,
      }),
      5000,
    );
  return { id, dialer, intercept };
}

const claim = (sessionId: string, holder: string) => ({
  session: sessionClaimHash(sessionId),
  holder,
  since: new Date().toISOString(),
});

/** The agent opens an intercepted connection, as it does for a client of the pod. */
function openIntercepted(agent: TestAgent, id: string) {
  let stream: AppStream | undefined;
  return agent.end.openTcp({
    protocol: MuxProtocol.Intercepted,
    sourceIp: new Uint8Array([198, 18, 0, 30]),
    sourcePort: 51000,
    destinationIp: new Uint8Array([198, 18, 0, 21]),
    destinationPort: 80,
    dialTimeoutMs: 0,
    window: FLOW_WINDOW,
    tag: id,
  }, (flow) => stream = new AppStream(flow)).then((opened) =>
    opened.ok ? { ok: true as const, stream: stream! } : opened
  );
}

async function until(what: string, ok: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("intercepts: the agent's connection reaches the session's local port, both ways, and ends with the session", async () => {
  await withIntercepts(async (f) => {
    const local = localServer((request) =>
      `local answer to ${request.length} bytes: ${request.slice(0, 20)}`
    );
    f.closers.push(() => local.close());
    const s = await session(f, "alice", () => local.port);
    f.claims["80"] = claim(s.id, "alice@box");
    const info = await s.intercept();
    assertEquals(info.id, "default/web:80");
    assertEquals(info.holder, "alice@box");
    assertEquals(info.environment, { GREETING: "hello", DB_PASSWORD: "s3cret" });
    assertEquals(info.mounts.map((m) => m.agentPath), ["/vif/app/etc/web"]);
    assertEquals(info.agents.map((a) => a.podName), ["web-1"]);
    await until(
      "the agent to hear of the intercept",
      () => f.agent.watched.at(-1)?.intercepts.length === 1,
    );
    assertEquals(f.agent.watched.at(-1)!.intercepts[0]!.containerPort, 80);

    // Small, then 12 MiB each way (three windows): credit flows hop by hop.
    const small = await openIntercepted(f.agent, info.id);
    assert(small.ok, JSON.stringify(small));
    const answer = await exchange(small.stream, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
    assertEquals(text(answer), "local answer to 18 bytes: GET / HTTP/1.1\r\n\r\n");
    const big = new Uint8Array(12 * 1024 * 1024).fill(0x61);
    const large = await openIntercepted(f.agent, info.id);
    assert(large.ok);
    assertMatch(text(await exchange(large.stream, big)), /^local answer to 12582912 bytes: a{20}$/);
    assertEquals(f.t.manager.stats.interceptedConnections, 2);

    // The session departs: its intercept goes, the agent is told, new connections are refused.
    await unary(f.client, "depart", create(SessionRefSchema, { sessionId: s.id }), 5000);
    await until(
      "the agent to hear the intercept ended",
      () => f.agent.watched.at(-1)?.intercepts.length === 0,
    );
    const after = await openIntercepted(f.agent, info.id);
    assertEquals(after.ok, false);
    assertEquals(f.t.manager.admission.total.tcp, 0);
  });
});

Deno.test("intercepts: a local port that refuses is a refusal for the agent, at once", async () => {
  await withIntercepts(async (f) => {
    const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (closed.addr as Deno.NetAddr).port;
    closed.close();
    const s = await session(f, "alice", () => port);
    f.claims["80"] = claim(s.id, "alice@box");
    const info = await s.intercept();
    const t0 = performance.now();
    const opened = await openIntercepted(f.agent, info.id);
    assertEquals(opened.ok, false);
    assertEquals(!opened.ok && opened.code, DialResult_Code.REFUSED);
    assert(performance.now() - t0 < 2000, "the refusal took too long");
  });
});

Deno.test("intercepts: no claim on the workload, a port another session holds, a bad token: each refused with why", async () => {
  await withIntercepts(async (f) => {
    const alice = await session(f, "alice", () => 1);
    const bob = await session(f, "bob", () => 1);
    const unclaimed = await assertRejects(() => alice.intercept());
    assertEquals((unclaimed as grpc.ServiceError).code, grpc.status.PERMISSION_DENIED);
    assertMatch((unclaimed as grpc.ServiceError).details, /vif\.dev\/intercepts/);
    f.claims["80"] = claim(alice.id, "alice@box");
    await alice.intercept();
    // Bob claims it on the workload too (he may patch it), but alice holds it now.
    f.claims["80"] = claim(bob.id, "bob@box");
    const taken = await assertRejects(() => bob.intercept());
    assertEquals((taken as grpc.ServiceError).code, grpc.status.ALREADY_EXISTS);
    assertMatch((taken as grpc.ServiceError).details, /intercepted by alice@box/);
    // A port the agent does not take.
    const other = await assertRejects(() => alice.intercept(81));
    assertEquals((other as grpc.ServiceError).code, grpc.status.FAILED_PRECONDITION);

    const refused = await assertRejects(() =>
      arriveAgent(f.t, "not-a-token", () => Promise.reject())
    );
    assertEquals((refused as grpc.ServiceError).code, grpc.status.UNAUTHENTICATED);
    assert(f.t.lines.some((l) => /an agent was refused: the token was refused/.test(l)));
  });
});

Deno.test("intercepts: sftp goes from the session to the agent, DNS through the agent while intercepting", async () => {
  await withIntercepts(async (f) => {
    const s = await session(f, "alice", () => 1);
    // Not intercepting: sftp is refused, DNS is the cluster's (none here: an error).
    const before = await s.dialer.openStream({
      protocol: MuxProtocol.Sftp,
      sourceIp: new Uint8Array(4),
      sourcePort: 0,
      destinationIp: new Uint8Array(4),
      destinationPort: 0,
      dialTimeoutMs: 0,
      window: 0,
      tag: "default/web:80",
    });
    assertEquals(before.ok, false);
    await assertRejects(() => s.dialer.resolveDns(new Uint8Array([1, 2, 3]), 2000));

    f.claims["80"] = claim(s.id, "alice@box");
    const info = await s.intercept();
    const sftp = await s.dialer.openStream({
      protocol: MuxProtocol.Sftp,
      sourceIp: new Uint8Array(4),
      sourcePort: 0,
      destinationIp: new Uint8Array(4),
      destinationPort: 0,
      dialTimeoutMs: 0,
      window: 0,
      tag: info.id,
    });
    assert(sftp.ok);
    assertEquals(text(await exchange(sftp.value, new TextEncoder().encode("ls /etc"))), "LS /ETC");
    const answer = await s.dialer.resolveDns(new Uint8Array([1, 2, 3]), 2000);
    assertEquals([...answer], [1, 2, 3, 0xaa]);
    assertEquals(f.t.manager.stats.dnsByAgents, 1);
  });
});

Deno.test("intercepts: ListAgents shows the agent, its ports and who intercepts what", async () => {
  await withIntercepts(async (f) => {
    const s = await session(f, "alice", () => 1);
    f.claims["80"] = claim(s.id, "alice@box");
    await s.intercept();
    const list = await unary<
      {
        agents: Array<{ podName: string; ports: Array<{ name: string }> }>;
        intercepts: InterceptInfo[];
      }
    >(
      f.client,
      "listAgents",
      create(ListAgentsRequestSchema, {
        sessionId: s.id,
        namespace: "default",
      }),
      5000,
    );
    assertEquals(list.agents.map((a) => [a.podName, a.ports.map((p) => p.name)]), [
      ["web-1", ["http"]],
    ]);
    assertEquals(list.intercepts.map((i) => [i.id, i.holder]), [["default/web:80", "alice@box"]]);
  });
});

/**
 * Fuzzes the traffic-manager's side of the traffic-agent's `AgentMux` call,
 * `agentImplementation(context).agentMux` (`manager/intercepts.ts`), with a
 * fake grpc-js server call fed batches of frames a broken or hostile agent
 * (a pod with a valid token) could send: OPENs of any protocol and tag, ids
 * in the wrong space or reused, DATA past credit, frames of unknown flows,
 * RESULTs and DNS answers for flows it never got, truncated frames.
 *
 * Each input runs against a fresh manager: a session (Alice) that holds the
 * intercept `default/web:80` of Deployment web and has a `Mux` call
 * (`handleMux`) to an in-memory daemon, which dials its local echo server on
 * 127.0.0.1 for each intercepted connection; and agent web-1 of that
 * workload, arrived with a valid token. Once the batches are spent the call
 * ends; then everything the agent's flows held must be given back, and a
 * well-behaved call of the same workload's agent must still reach Alice's
 * echo server.
 *
 * An input is `u8 mode` then batches (`joinRecords`), each one gRPC message
 * of the agent's call. Mode bits: 0-1 how the call ends (the agent
 * half-closes it, cancels it, departs, opens another `AgentMux` call); 2 the
 * session opens an sftp stream to the agent first (the manager's OPEN is
 * flow 2^31); 3 the session sends a DNS query that the manager passes to the
 * agent (flow 2^31, or 2^31 + 1 after the sftp OPEN); 4 the call pushes back
 * (its writes complete a timer later, `write` returns false); 5 the call
 * names an agent id that is not its token's (NOT_FOUND at once); 6 the first
 * batch comes before the agent is checked; 7 the agent is hurried: it sends
 * each batch 1 ms after the one before, where it otherwise waits (50 ms at
 * most) for the manager to answer the OPENs of the one before, as a
 * well-behaved agent waits for a RESULT before it sends DATA.
 *
 * After the target, one test per bug found with it that is not fixed yet:
 * each fails until its fix lands (then the first two, inputs of the target,
 * belong in the corpus).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import net from "node:net";
import { Duplex } from "node:stream";
import grpc from "@grpc/grpc-js";
import {
  agentImplementation,
  type InterceptContext,
  interceptMethods,
  sessionClaimHash,
} from "../../manager/intercepts.ts";
import { AgentRegistry } from "../../manager/agents.ts";
import { type AgentAuthenticator, AgentAuthError } from "../../manager/agent_auth.ts";
import type { FlowContext } from "../../manager/dial.ts";
import { Admission, resolveLimits } from "../../manager/limits.ts";
import { handleMux, type MuxCall } from "../../manager/mux.ts";
import type { DestinationPolicy } from "../../manager/policy.ts";
import { type Session, SessionTable } from "../../manager/sessions.ts";
import { ManagerStats } from "../../manager/stats.ts";
import {
  decodeOpen,
  encodeClose,
  encodeOpen,
  encodeResult,
  encodeWindow,
  FLOW_WINDOW,
  forEachFrame,
  FrameType,
  FrameWriter,
  MuxProtocol,
  type OpenFrame,
} from "../../mod/rpc/mux.ts";
import { type Accepted, MuxEnd, type MuxStream } from "../../mod/rpc/mux_end.ts";
import type { TcpFlow, TcpSink } from "../../mod/rpc/mux_tcp.ts";
import {
  AGENT_ID_HEADER,
  AgentArriveRequestSchema,
  create,
  CreateInterceptRequestSchema,
  DialResult_Code,
  MUX_SESSION_HEADER,
} from "../../mod/rpc/service.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import {
  below,
  concat,
  interestingNumber,
  joinRecords,
  type Mutator,
  pick,
  recordMutators,
  splitRecords,
} from "./_mutators.ts";
import { type EchoServers, SocketTracker, startEchoServers, waitFor } from "./_sockets.ts";

const TOKEN = "agent-token-of-web-1";
const POD_IP = "198.18.0.21";
/** The intercept Alice holds. */
const TAG = "default/web:80";
const CONTAINER_PORT = 80;
/** Alice's local port in inputs' terms; the tracker maps it to the echo server. */
const LOCAL_PORT = 8080;
/** The first id of the flows the manager opens on the agent's call. */
const MANAGER_IDS = 0x8000_0000;

const encoder = new TextEncoder();
const text = (s: string) => encoder.encode(s);

/** The one pod the test knows: web-1 of Deployment web. */
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
    return claims.podName === identity.podName && claims.podIp === POD_IP
      ? Promise.resolve()
      : Promise.reject(new AgentAuthError("not the pod"));
  },
};

/** Alice dials nothing in the cluster: her only flows are intercepts and sftp. */
const policy = {
  check: () => ({ allowed: false, reason: "not in the fuzz policy" }),
} as unknown as DestinationPolicy;

/**
 * A server-side duplex call as grpc-js makes it (`ServerDuplexStreamImpl`):
 * a node `Duplex` in object mode whose "error" event fails the call with a
 * status and ends it, and which the test drives as the transport would
 * (messages, the half-close, a cancel).
 */
class ServerCall extends Duplex {
  readonly metadata = new grpc.Metadata();
  cancelled = false;
  /** The statuses the handler failed the call with (`emit("error", status)`). */
  readonly statuses: { code?: unknown; details?: unknown }[] = [];
  /** Whether the handler ended the call (grpc-js sends the status then). */
  ended = false;
  /** Writes after the call ended. */
  writesAfterEnd = 0;
  /** What the handler wrote, when recorded. */
  readonly written: Uint8Array[] = [];
  /** Where written batches go (the client's side), if anywhere. */
  peer: ((batch: Uint8Array) => void) | undefined;
  #pushBack: boolean;
  #record: boolean;
  #halfClosed = false;

  constructor(metadata: Record<string, string>, options: { pushBack?: boolean; record?: boolean }) {
    super({ objectMode: true, writableHighWaterMark: options.pushBack ? 1 : 16 });
    for (const [key, value] of Object.entries(metadata)) this.metadata.set(key, value);
    this.#pushBack = options.pushBack ?? false;
    this.#record = options.record ?? false;
    this.on("error", (status: { code?: unknown; details?: unknown }) => {
      if ((status as { code?: unknown }).code === "ERR_STREAM_WRITE_AFTER_END") {
        this.writesAfterEnd++;
        return;
      }
      this.statuses.push(status);
      this.end();
    });
  }

  /** Whether the call is over: ended by the handler, or cancelled. */
  get over(): boolean {
    return this.ended || this.cancelled;
  }

  override _read(): void {}

  override _write(chunk: Uint8Array, _encoding: string, callback: () => void): void {
    if (this.#record) this.written.push(chunk);
    this.peer?.(chunk);
    if (this.#pushBack) setTimeout(callback, 1);
    else queueMicrotask(callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.ended = true;
    callback(null);
  }

  /** A message from the client. */
  send(batch: Uint8Array): void {
    if (this.#halfClosed || this.destroyed) return;
    this.push(Buffer.from(batch));
  }

  /** The client half-closes the call. */
  halfClose(): void {
    if (this.#halfClosed || this.destroyed) return;
    this.#halfClosed = true;
    this.push(null);
  }

  /** The client cancels the call, or its connection is gone. */
  cancel(): void {
    if (this.over) return;
    this.cancelled = true;
    this.emit("cancelled", "cancelled");
    this.destroy();
  }
}

/** The client's side of a {@linkcode ServerCall}, for a client-role `MuxEnd`: batches cross in microtasks. */
class ClientSide extends EventEmitter implements MuxStream {
  #call: ServerCall;

  constructor(call: ServerCall) {
    super();
    this.#call = call;
    call.peer = (batch) => queueMicrotask(() => this.emit("data", batch));
  }

  write(batch: Uint8Array, done?: () => void): boolean {
    queueMicrotask(() => {
      this.#call.send(batch);
      done?.();
    });
    return true;
  }

  pause(): this {
    return this;
  }

  resume(): this {
    return this;
  }
}

/** A client-role `MuxEnd` over a fake call, ending the call as grpc-js's client would. */
function clientEnd(
  call: ServerCall,
  options: { peer: string; accept?: (open: OpenFrame) => Promise<Accepted> },
): MuxEnd {
  return new MuxEnd(new ClientSide(call), {
    role: "client",
    peer: options.peer,
    ...(options.accept ? { accept: options.accept } : {}),
    finish: (reason) => reason === undefined ? call.halfClose() : call.cancel(),
  });
}

/** A node socket as a flow's sink, as the daemon joins its local port. */
function socketSink(socket: net.Socket, flow: TcpFlow): TcpSink {
  socket.on("data", (chunk: Uint8Array) => {
    if (!flow.push(chunk)) socket.pause();
  });
  socket.on("end", () => flow.end());
  socket.on("error", (error: Error) => flow.abort(error.message));
  socket.on("close", () => flow.closed());
  return {
    write(bytes) {
      if (socket.destroyed) return;
      socket.write(bytes, () => flow.taken(bytes.length));
    },
    end: () => socket.end(),
    close: () => socket.end(),
    reset: () => socket.destroy(),
    resume: () => socket.resume(),
  };
}

/**
 * The daemon's answer to an OPEN on Alice's call: an intercepted
 * connection is dialed to her local port (through `net.connect`, which the
 * tracker sees), anything else refused.
 */
async function acceptLocally(open: OpenFrame): Promise<Accepted> {
  if (open.protocol !== MuxProtocol.Intercepted) {
    return { code: DialResult_Code.PROHIBITED, message: "the daemon takes intercepts only" };
  }
  const socket = net.connect({ host: "127.0.0.1", port: LOCAL_PORT, allowHalfOpen: true });
  const connected = await new Promise<boolean>((resolve) => {
    socket.once("connect", () => resolve(true));
    socket.once("error", () => resolve(false));
  });
  if (!connected) {
    socket.destroy();
    return { code: DialResult_Code.REFUSED, message: "the local port refused" };
  }
  return { message: "local", tcp: (flow) => socketSink(socket, flow) };
}

/** A sink that takes every byte at once and remembers what came. */
function collector(flow: () => TcpFlow | undefined) {
  const got: Uint8Array[] = [];
  const state = { got, fin: false, closed: false, reset: undefined as string | undefined };
  const sink: TcpSink = {
    write(bytes) {
      got.push(bytes.slice());
      flow()?.taken(bytes.length);
    },
    end: () => void (state.fin = true),
    close: () => void (state.closed = true),
    reset: (reason) => void (state.reset = reason),
    resume: () => {},
  };
  return { state, sink };
}

function openFrame(protocol: number, tag: string | undefined, port = CONTAINER_PORT): OpenFrame {
  return {
    protocol,
    sourceIp: new Uint8Array([198, 18, 0, 30]),
    sourcePort: 51000,
    destinationIp: new Uint8Array([198, 18, 0, 21]),
    destinationPort: port,
    dialTimeoutMs: 0,
    window: FLOW_WINDOW,
    ...(tag !== undefined ? { tag } : {}),
  };
}

type Unary = (
  call: unknown,
  callback: (error: { details?: string } | null, value?: unknown) => void,
) => unknown;

function unary<T>(method: unknown, call: unknown): Promise<T> {
  return new Promise((resolve, reject) =>
    (method as Unary)(
      call,
      (error, value) => error ? reject(new Error(error.details)) : resolve(value as T),
    )
  );
}

function agentMetadata(agentId: string): Record<string, string> {
  return { authorization: `Bearer ${TOKEN}`, [AGENT_ID_HEADER]: agentId };
}

interface Setup {
  echo: EchoServers;
  tracker: SocketTracker;
}

/** One input's manager, session, daemon and agent. */
class World {
  readonly sessions = new SessionTable({ ttlMs: 60_000 });
  readonly registry = new AgentRegistry({ ttlMs: 60_000 });
  readonly stats = new ManagerStats();
  // Small limits, so that inputs reach them.
  readonly admission = new Admission(resolveLimits({
    tcpFlowsPerSession: 3,
    tcpFlows: 6,
    dnsInFlightPerSession: 2,
    bufferedPerSession: 8192,
    buffered: 16_384,
  }));
  readonly open = new Set<{ abort(reason: string): void }>();
  readonly context: InterceptContext;
  readonly implementation: ReturnType<typeof agentImplementation>;
  readonly session: Session;
  readonly sessionCall: ServerCall;
  /** The manager's end of Alice's `Mux` call. */
  readonly managerEnd: MuxEnd;
  /** The daemon's end of it. */
  readonly daemon: MuxEnd;
  agentId = "";

  constructor() {
    this.context = {
      sessions: this.sessions,
      registry: this.registry,
      auth,
      claims: { claims: () => Promise.resolve(this.#claims()) },
      admission: this.admission,
      stats: this.stats,
      heartbeatIntervalMs: 10_000,
      log: () => {},
      open: this.open,
    };
    const flows: FlowContext = {
      sessions: this.sessions,
      policy: () => policy,
      stats: this.stats,
      admission: this.admission,
      log: () => {},
      dialTimeoutMs: 2000,
      udpIdleTimeoutMs: 60_000,
      ping: () => Promise.resolve({ code: DialResult_Code.UNREACHABLE, message: "no ping" }),
      open: this.open,
      resolveDns: (query) => Promise.resolve(concat(query, new Uint8Array([0xbb]))),
      intercepts: this.context,
    };
    this.implementation = agentImplementation(this.context);
    this.session = this.sessions.arrive({
      name: "alice",
      hostname: "box",
      version: "0.1.0",
      namespace: "default",
      os: "linux",
    });
    this.sessionCall = new ServerCall({ [MUX_SESSION_HEADER]: this.session.id }, {});
    this.daemon = clientEnd(this.sessionCall, {
      peer: "the traffic-manager",
      accept: acceptLocally,
    });
    handleMux(this.sessionCall as unknown as MuxCall, flows);
    this.managerEnd = [...this.session.muxEnds][0]!;
  }

  #claims() {
    return {
      [String(CONTAINER_PORT)]: {
        session: sessionClaimHash(this.session.id),
        holder: "alice@box",
        since: new Date(0).toISOString(),
      },
    };
  }

  /** Agent web-1 arrives (again), as `ArriveAgent` with its token. */
  async arrive(): Promise<string> {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${TOKEN}`);
    const arrived = await unary<{ agentId: string }>(this.implementation.arriveAgent, {
      metadata,
      request: create(AgentArriveRequestSchema, {
        podName: "web-1",
        namespace: "default",
        podIp: POD_IP,
        workloadKind: "Deployment",
        workloadName: "web",
        container: "web",
        ports: [{ name: "http", containerPort: CONTAINER_PORT, agentPort: 9900, protocol: "TCP" }],
        version: "0.1.0",
      }),
    });
    return this.agentId = arrived.agentId;
  }

  /** Alice intercepts port 80 of web, as `CreateIntercept`. */
  async intercept(): Promise<void> {
    await unary(interceptMethods(this.context).createIntercept, {
      request: create(CreateInterceptRequestSchema, {
        sessionId: this.session.id,
        namespace: "default",
        workloadKind: "Deployment",
        workloadName: "web",
        containerPort: CONTAINER_PORT,
      }),
    });
  }

  /** Serves an `AgentMux` call the way grpc-js does: the handler is not awaited. */
  serve(call: ServerCall): Promise<unknown> {
    const agentMux = this.implementation.agentMux as unknown as (call: ServerCall) => unknown;
    return Promise.resolve(agentMux(call));
  }

  /** Alice departs, the daemon and the agents go: nothing of this world is left for the next. */
  async close(setup: Setup): Promise<void> {
    this.sessions.depart(this.session.id);
    this.daemon.end("the input is over");
    this.registry.close("the input is over");
    await waitFor(() => setup.tracker.open.length === 0 && setup.echo.connections === 0, 1000);
  }

  /** What the agent's flows and calls still hold, once `agentCalls` calls should be open. */
  leftovers(setup: Setup, agentCalls: number): string[] {
    const problems: string[] = [];
    const open = setup.tracker.open.length;
    if (open > 0) problems.push(`${open} socket(s) toward Alice's local server open`);
    if (setup.echo.connections > 0) {
      problems.push(`the local server still has ${setup.echo.connections} connection(s)`);
    }
    if (this.managerEnd.flows > 0) {
      problems.push(`the manager's end of Alice's call holds ${this.managerEnd.flows} flow(s)`);
    }
    if (this.daemon.flows > 0) problems.push(`the daemon holds ${this.daemon.flows} flow(s)`);
    const usage = { ...this.session.usage }, total = { ...this.admission.total };
    if (Object.values(usage).some((n) => n !== 0)) {
      problems.push(`Alice's session still counts ${JSON.stringify(usage)}`);
    }
    if (Object.values(total).some((n) => n !== 0)) {
      problems.push(`the limits still count ${JSON.stringify(total)}`);
    }
    if (this.stats.mux.outbound !== 0) {
      problems.push(`${this.stats.mux.outbound} written byte(s) still counted as unsent`);
    }
    const ends = this.registry.agents().filter((a) => a.end !== undefined).length;
    if (ends !== agentCalls) problems.push(`${ends} agent(s) have a Mux end, not ${agentCalls}`);
    if (this.open.size !== 1 + agentCalls) {
      problems.push(`${this.open.size} call(s) registered open, not ${1 + agentCalls}`);
    }
    return problems;
  }
}

/**
 * A well-behaved agent's call: one intercepted connection that sends a
 * line, half-closes, and must get the line back from Alice's echo server.
 *
 * @returns what went wrong (nothing when it worked)
 */
async function wellBehaved(world: World, call: ServerCall, end: MuxEnd): Promise<string[]> {
  let flow: TcpFlow | undefined;
  const { state, sink } = collector(() => flow);
  const opened = await end.openTcp(openFrame(MuxProtocol.Intercepted, TAG), (f) => {
    flow = f;
    return sink;
  });
  if (!opened.ok) return [`its intercepted connection was refused: ${opened.message}`];
  const counted = world.stats.interceptedConnections;
  const line = "GET / HTTP/1.1 from a well-behaved agent\r\n\r\n";
  opened.value.push(text(line));
  opened.value.end();
  const echoed = () => new TextDecoder().decode(concat(...state.got));
  const done = await waitFor(
    () => (opened.value.over && state.fin) || state.reset !== undefined,
    2000,
  );
  const problems: string[] = [];
  if (!done) problems.push(`its connection did not end (echoed so far: ${echoed().length} bytes)`);
  if (state.reset !== undefined) problems.push(`its connection was reset: ${state.reset}`);
  if (echoed() !== line) problems.push(`it got ${JSON.stringify(echoed())} back, not the line`);
  if (world.stats.interceptedConnections !== counted) {
    problems.push("its connection was counted before it was opened");
  }
  end.end("the agent is done");
  if (!(await waitFor(() => call.over, 1000))) problems.push("its call did not end");
  return problems;
}

async function check(setup: Setup, input: Uint8Array): Promise<void> {
  setup.tracker.reset();
  const mode = input[0] ?? 0;
  const world = new World();
  try {
    await world.arrive();
    await world.intercept();
    await run(setup, world, mode, splitRecords(input.subarray(1)));
  } finally {
    await world.close(setup);
  }
}

async function run(setup: Setup, world: World, mode: number, batches: Uint8Array[]): Promise<void> {
  const { registry } = world;
  const hostile = new ServerCall(
    agentMetadata((mode & 32) ? "no-such-agent" : world.agentId),
    { pushBack: (mode & 16) !== 0, record: true },
  );
  let served: Promise<unknown>;
  try {
    served = world.serve(hostile);
  } catch (error) {
    property(false, `agentMux() threw: ${(error as Error)?.message}`);
  }
  // Ids the manager answered (RESULT or CLOSE), read from what it wrote.
  const answered = new Set<number>();
  let read = 0;
  const allAnswered = (ids: number[]) => {
    for (; read < hostile.written.length; read++) {
      framesOf(hostile.written[read]!, (id, type) => {
        if (type === FrameType.Result || type === FrameType.Close) answered.add(id);
      });
    }
    return ids.every((id) => answered.has(id));
  };
  let next = 0;
  /** Sends the next batch; returns the ids it opens. */
  const feed = (): number[] => {
    const batch = batches[next++]!;
    const opens: number[] = [];
    framesOf(batch, (id, type) => type === FrameType.Open && opens.push(id));
    try {
      hostile.send(batch);
    } catch (error) {
      property(false, `an exception escaped the data handler: ${(error as Error)?.message}`);
    }
    return opens;
  };
  // As an agent that waits for its OPENs' RESULTs before it sends on, unless hurried.
  const answers = (opens: number[]) =>
    (mode & 128) ? Promise.resolve() : waitFor(() => hostile.over || allAnswered(opens), 50);
  const early = (mode & 64) && batches.length > 0 ? feed() : [];
  try {
    await served;
  } catch (error) {
    property(false, `agentMux() rejected: ${(error as Error)?.message}`);
  }
  await answers(early);
  const hostileEnd = registry.get(world.agentId)?.end;

  // What Alice has going to the agent before it sends anything.
  let sftp: Promise<unknown> | undefined;
  if (mode & 4) {
    let flow: TcpFlow | undefined;
    const { sink } = collector(() => flow);
    sftp = world.daemon.openTcp({ ...openFrame(MuxProtocol.Sftp, TAG, 0), window: 4096 }, (f) => {
      flow = f;
      return sink;
    }).then((opened) => {
      if (opened.ok) {
        opened.value.push(text("ls /etc"));
        opened.value.end();
      }
    });
    await waitFor(() => hostile.written.length > 0 || hostile.over, 100);
  }
  let dns: { answered: boolean; error?: string } | undefined;
  if (mode & 8) {
    const query = text("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x00");
    const answer: { answered: boolean; error?: string } = dns = { answered: false };
    world.daemon.resolve(query, 2500).then(
      () => answer.answered = true,
      (error: Error) => answer.error = error.message,
    );
    const before = hostile.written.length;
    await waitFor(() => hostile.written.length > before || hostile.over, 100);
  }

  while (next < batches.length && !hostile.over) {
    await answers(feed());
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  // The dials of the last batch get their turn before the end.
  await new Promise((resolve) => setTimeout(resolve, 2));

  // The call ends.
  let good: { call: ServerCall; end: MuxEnd } | undefined;
  const how = mode & 3;
  if (how === 0 && !hostile.over) hostile.halfClose();
  else if (how === 1 && !hostile.over) hostile.cancel();
  else if (how === 2) registry.depart(world.agentId, "the agent departed");
  else if (how === 3) good = await startAgentCall(world);
  const agentCalls = good !== undefined ? 1 : 0;
  const settled = await waitFor(
    () => hostile.over && world.leftovers(setup, agentCalls).length === 0,
    1500,
  );
  if (!settled) {
    const problems = world.leftovers(setup, agentCalls);
    if (!hostile.over) problems.unshift("the agent's call did not end");
    property(false, `after the agent's call ended: ${problems.join("; ")}`);
  }
  await sftp; // Settled: the daemon holds no flow.

  // Broken framing fails the call with INVALID_ARGUMENT; an unknown agent with NOT_FOUND.
  const allowed: unknown[] = [grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND];
  for (const s of hostile.statuses) {
    property(
      allowed.includes(s.code) && typeof s.details === "string" && s.details !== "",
      `the call failed with ${JSON.stringify(s)}, not INVALID_ARGUMENT or NOT_FOUND and a reason`,
    );
  }
  property(hostile.statuses.length <= 1, `the call failed ${hostile.statuses.length} times`);
  property(hostile.writesAfterEnd === 0, `${hostile.writesAfterEnd} write(s) after the call ended`);
  property(
    hostileEnd === undefined || (hostileEnd.over !== undefined && hostileEnd.flows === 0),
    `the agent's ended call still holds ${hostileEnd?.flows} flow(s)`,
  );
  if (dns !== undefined) {
    property(dns.answered, `Alice's DNS query was not answered: ${dns.error ?? "no answer"}`);
  }
  checkWritten(hostile.written);

  // Alice is untouched: her call, her intercept, and a well-behaved agent's connection.
  property(
    !world.session.ended && world.managerEnd.over === undefined && world.daemon.over === undefined,
    `Alice's session or Mux call ended with the agent's call: ${world.managerEnd.over}`,
  );
  property(registry.intercept(TAG)?.session === world.session, "Alice's intercept is gone");
  if (good === undefined) {
    if (registry.get(world.agentId) === undefined) await world.arrive();
    good = await startAgentCall(world);
  }
  const problems = await wellBehaved(world, good.call, good.end);
  property(problems.length === 0, `a well-behaved agent after this one: ${problems.join("; ")}`);
  const clean = await waitFor(() => world.leftovers(setup, 0).length === 0, 1500);
  property(
    clean,
    `after the well-behaved agent's call: ${world.leftovers(setup, 0).join("; ")}`,
  );
}

/** Opens a well-behaved `AgentMux` call for the world's agent. */
async function startAgentCall(world: World): Promise<{ call: ServerCall; end: MuxEnd }> {
  const call = new ServerCall(agentMetadata(world.agentId), {});
  const end = clientEnd(call, { peer: "the traffic-manager" });
  try {
    await world.serve(call);
  } catch (error) {
    property(false, `agentMux() rejected a well-behaved call: ${(error as Error)?.message}`);
  }
  property(!call.over, `a well-behaved call was refused: ${JSON.stringify(call.statuses)}`);
  return { call, end };
}

/**
 * The manager's batches to the agent are well formed and keep to its side of
 * the ids: it opens flows (sftp only) and asks DNS queries on ids from 2^31,
 * and answers OPENs (RESULT) on the agent's ids below.
 */
function checkWritten(written: Uint8Array[]): void {
  for (const batch of written) {
    try {
      forEachFrame(batch, (id, type, payload) => {
        property(type >= FrameType.Open && type <= FrameType.Dns, `the manager sent type ${type}`);
        if (type === FrameType.Open) {
          property(id >= MANAGER_IDS, `the manager opened flow ${id}, in the agent's space`);
          const open = decodeOpen(payload);
          property(
            open.protocol === MuxProtocol.Sftp,
            `the manager opened protocol ${open.protocol}`,
          );
        }
        if (type === FrameType.Dns) {
          property(id >= MANAGER_IDS, `the manager sent a DNS frame on the agent's flow ${id}`);
        }
        if (type === FrameType.Result) {
          property(id < MANAGER_IDS, `the manager sent a RESULT on its own flow ${id}`);
        }
      });
    } catch (error) {
      if ((error as Error).name === "PropertyError") throw error;
      property(false, `the manager wrote a broken batch: ${(error as Error).message}`);
    }
  }
}

/** Calls `frame` for the frames of a batch, as far as it is well formed. */
function framesOf(batch: Uint8Array, frame: (id: number, type: number) => unknown): void {
  try {
    forEachFrame(batch, (id, type) => void frame(id, type));
  } catch {
    // A broken batch: the frames before the break were seen.
  }
}

function batch(frames: [number, number, Uint8Array?][]): Uint8Array {
  let out = new Uint8Array(0);
  const writer = new FrameWriter((b) => out = new Uint8Array(b));
  for (const [id, type, payload] of frames) writer.write(id, type as FrameType, payload);
  writer.flush();
  return out;
}

/** An OPEN payload with any tag bytes (too long, not UTF-8), which `encodeOpen` refuses to make. */
function open(protocol: number, tag: Uint8Array | string | undefined, options: {
  port?: number;
  window?: number;
} = {}): Uint8Array {
  const fixed = encodeOpen({
    ...openFrame(protocol, undefined, options.port),
    window: options.window ?? FLOW_WINDOW,
  });
  const bytes = typeof tag === "string" ? text(tag) : tag;
  if (bytes === undefined || bytes.length === 0) return fixed;
  return concat(fixed, new Uint8Array([bytes.length & 0xff]), bytes.subarray(0, 255));
}

const TAGS: (Uint8Array | string | undefined)[] = [
  TAG,
  TAG,
  undefined,
  "default/web:81",
  "kube-system/coredns:53",
  "x".repeat(255),
  new Uint8Array([0xc3, 0x28, 0xff]),
  TAG.toUpperCase(),
];
const PROTOCOLS = [
  MuxProtocol.Intercepted,
  MuxProtocol.Intercepted,
  MuxProtocol.Sftp,
  MuxProtocol.Tcp,
  MuxProtocol.Udp,
  MuxProtocol.Icmp,
  0,
  0xff,
];
const IDS = [0, 1, 2, 3, MANAGER_IDS, MANAGER_IDS + 1, MANAGER_IDS - 1, 0xffff_ffff];

function seeds(): Uint8Array[] {
  const input = (mode: number, batches: Uint8Array[]) =>
    concat(new Uint8Array([mode]), joinRecords(batches));
  const ok = (window: number, message: string) =>
    encodeResult({ code: DialResult_Code.OK, window, message });
  const answer = text("\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x03web\x00");
  const query = text("\x56\x78\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02db\x00");
  return [
    // An intercepted connection, both ways, then a graceful end.
    input(0, [
      batch([[1, FrameType.Open, open(MuxProtocol.Intercepted, TAG)]]),
      batch([[1, FrameType.Data, text("GET / HTTP/1.1\r\n\r\n")]]),
      batch([[1, FrameType.Window, encodeWindow(65_536)], [1, FrameType.Fin]]),
      batch([[1, FrameType.Close, encodeClose("")]]),
    ]),
    // Alice's sftp stream, accepted and answered by the agent.
    input(4, [
      batch([[MANAGER_IDS, FrameType.Result, ok(FLOW_WINDOW, "sftp")]]),
      batch([[MANAGER_IDS, FrameType.Data, text("sftp-server's answer")], [
        MANAGER_IDS,
        FrameType.Window,
        encodeWindow(4096),
      ]]),
      batch([[MANAGER_IDS, FrameType.Fin], [MANAGER_IDS, FrameType.Close, encodeClose("")]]),
    ]),
    // Alice's DNS query answered by the pod's resolver; the agent's own query refused.
    input(8 | 1, [
      batch([[MANAGER_IDS, FrameType.Dns, answer]]),
      batch([[3, FrameType.Dns, query]]),
    ]),
    // Both at once, pushed back, and two connections (one with a small window); the agent departs.
    input(4 | 8 | 16 | 2, [
      batch([
        [MANAGER_IDS, FrameType.Result, ok(16, "sftp")],
        [MANAGER_IDS + 1, FrameType.Result, encodeResult({ code: 3, window: 0, message: "no" })],
      ]),
      batch([
        [1, FrameType.Open, open(MuxProtocol.Intercepted, TAG, { window: 16 })],
        [3, FrameType.Open, open(MuxProtocol.Intercepted, TAG)],
      ]),
      batch([
        [1, FrameType.Data, new Uint8Array(4000).fill(0x61)],
        [3, FrameType.Data, text("second")],
        [1, FrameType.Window, encodeWindow(8000)],
      ]),
      batch([[1, FrameType.Fin], [3, FrameType.Close, encodeClose("the client went away")]]),
    ]),
    // A chunk past what the session may hold (8 KiB here) resets its connection, not the next.
    input(1, [
      batch([[1, FrameType.Open, open(MuxProtocol.Intercepted, TAG)]]),
      batch([[1, FrameType.Data, new Uint8Array(9000).fill(0x63)]]),
      batch([[3, FrameType.Open, open(MuxProtocol.Intercepted, TAG)]]),
      batch([[3, FrameType.Data, text("after the reset")], [3, FrameType.Fin]]),
    ]),
    // OPENs the manager refuses: other protocols, other tags, another port; then another call.
    input(3, [
      batch([
        [1, FrameType.Open, open(MuxProtocol.Sftp, TAG)],
        [3, FrameType.Open, open(MuxProtocol.Tcp, undefined)],
        [5, FrameType.Open, open(MuxProtocol.Udp, TAG)],
        [7, FrameType.Open, open(MuxProtocol.Icmp, undefined, { port: 0 })],
        [9, FrameType.Open, open(200, TAG)],
      ]),
      batch([
        [11, FrameType.Open, open(MuxProtocol.Intercepted, undefined)],
        [13, FrameType.Open, open(MuxProtocol.Intercepted, "default/web:81")],
        [15, FrameType.Open, open(MuxProtocol.Intercepted, TAG, { port: 81 })],
        [17, FrameType.Open, open(MuxProtocol.Intercepted, "y".repeat(255))],
      ]),
    ]),
    // Frames of flows that do not exist, on both sides of the id space.
    input(0, [
      batch([
        [9, FrameType.Fin],
        [9, FrameType.Window, encodeWindow(1)],
        [9, FrameType.Data, text("nobody")],
        [9, FrameType.Close, encodeClose("nobody")],
        [MANAGER_IDS + 5, FrameType.Result, ok(1, "late")],
        [MANAGER_IDS + 5, FrameType.Dns, answer],
      ]),
    ]),
    // The agent id is not its token's: the batches wait and are dropped.
    input(32 | 64, [
      batch([[1, FrameType.Open, open(MuxProtocol.Intercepted, TAG)]]),
      batch([[1, FrameType.Data, text("hello")], [1, FrameType.Fin]]),
    ]),
    // The first batch comes while the agent is being checked.
    input(64 | 1, [
      batch([[1, FrameType.Open, open(MuxProtocol.Intercepted, TAG)]]),
      batch([[1, FrameType.Data, text("early")], [1, FrameType.Fin]]),
    ]),
  ];
}

/** Inside one batch: a frame's id, type or payload changed, the framing kept right. */
const frameFields: Mutator = (b, r) => {
  const records = splitRecords(b.subarray(1));
  if (records.length === 0) return b.slice();
  const i = below(r, records.length);
  const frames: [number, number, Uint8Array][] = [];
  try {
    forEachFrame(records[i]!, (id, type, payload) => frames.push([id, type, payload]));
  } catch {
    return b.slice();
  }
  if (frames.length === 0) return b.slice();
  const f = frames[below(r, frames.length)]!;
  const choice = below(r, 8);
  if (choice === 0) f[0] = r() < 0.7 ? pick(r, IDS) : interestingNumber(r);
  else if (choice === 1) f[1] = below(r, 9);
  else if (choice === 2) f[2] = f[2].subarray(0, below(r, f[2].length + 1));
  else if (choice === 3) {
    frames.splice(below(r, frames.length + 1), 0, [
      f[0],
      FrameType.Window,
      encodeWindow(interestingNumber(r)),
    ]);
  } else if (choice === 4) frames.splice(below(r, frames.length + 1), 0, [...f]);
  else if (choice === 5) {
    // An OPEN of another protocol, tag, port or window.
    const port = r() < 0.8 ? CONTAINER_PORT : below(r, 65536);
    const window = r() < 0.7 ? FLOW_WINDOW : interestingNumber(r);
    frames.splice(below(r, frames.length + 1), 0, [
      r() < 0.5 ? f[0] : pick(r, IDS),
      FrameType.Open,
      open(pick(r, PROTOCOLS), pick(r, TAGS), { port, window }),
    ]);
  } else if (choice === 6) {
    // Several intercepted connections at once, on fresh ids: the session's flow limit.
    const first = 101 + 2 * below(r, 50);
    const n = 2 + below(r, 5);
    const burst: [number, number, Uint8Array][] = [];
    for (let k = 0; k < n; k++) {
      burst.push([first + 2 * k, FrameType.Open, open(MuxProtocol.Intercepted, TAG)]);
      if (r() < 0.5) burst.push([first + 2 * k, FrameType.Data, text(`connection ${k}`)]);
    }
    frames.splice(below(r, frames.length + 1), 0, ...burst);
  } else {
    // A frame of a flow that may exist: the manager's (sftp, DNS) or the agent's first ones.
    const id = r() < 0.5 ? MANAGER_IDS + below(r, 3) : 1 + 2 * below(r, 3);
    const type = pick(r, [
      FrameType.Result,
      FrameType.Data,
      FrameType.Fin,
      FrameType.Close,
      FrameType.Dns,
    ]);
    const payload = type === FrameType.Result
      ? encodeResult({ code: below(r, 8), window: interestingNumber(r), message: "x" })
      : type === FrameType.Data
      // Past the session's byte limit (8 KiB) at times.
      ? new Uint8Array(below(r, 12_000)).fill(0x62)
      : type === FrameType.Close
      ? encodeClose(r() < 0.5 ? "" : "reset")
      : text("\x12\x34\x81\x80");
    frames.splice(below(r, frames.length + 1), 0, [id, type, payload]);
  }
  records[i] = batch(frames);
  return concat(b.subarray(0, 1), joinRecords(records));
};

/** The echo server standing for Alice's local port, and the tracker of the sockets toward it. */
async function startSetup(): Promise<Setup & { close(): Promise<void> }> {
  const echo = await startEchoServers();
  const tracker = new SocketTracker({ tcp: new Map([[LOCAL_PORT, echo.tcp]]), udp: new Map() });
  return {
    echo,
    tracker,
    async close() {
      tracker.uninstall();
      await echo.close();
    },
  };
}

const records = recordMutators();
fuzzTest(
  "manager_agent_mux",
  "agentMux() lets no exception escape, fails a call only with INVALID_ARGUMENT (NOT_FOUND for an unknown agent), writes only well-formed frames on its own side of the ids, and once the agent's call ends its flows are gone, the session counts nothing, the sockets to the session's local server are closed, and a well-behaved agent still reaches the session",
  async () => {
    const setup = await startSetup();
    return {
      seeds: seeds(),
      check: (input) => check(setup, input),
      mutators: [
        frameFields,
        ...records.map((m): Mutator => (b, r, pool) =>
          concat(b.subarray(0, 1), m(b.subarray(1), r, pool.map((p) => p.subarray(1))))
        ),
      ],
      maxLength: 16384,
      hangMs: 8000,
      close: () => setup.close(),
    };
  },
  { sanitize: false },
);

/**
 * Runs one input through the fuzz target's check, as a test of its own: the
 * inputs the fuzzer found that still fail (a bug not yet fixed in the
 * manager); once fixed, they belong in the corpus.
 */
function checkInput(name: string, mode: number, batches: Uint8Array[]): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const setup = await startSetup();
      try {
        await check(setup, concat(new Uint8Array([mode]), joinRecords(batches)));
      } finally {
        await setup.close();
      }
    },
  });
}

checkInput(
  "agentMux() gives back the session's TCP flow when the agent closes an intercepted connection before the session has answered it",
  0,
  [batch([
    [1, FrameType.Open, open(MuxProtocol.Intercepted, TAG)],
    [1, FrameType.Close, encodeClose("the pod's client went away")],
  ])],
);

checkInput(
  "agentMux() ends the session's sftp stream when the agent resets it in the batch that accepts it",
  4,
  [batch([
    [
      MANAGER_IDS,
      FrameType.Result,
      encodeResult({ code: DialResult_Code.OK, window: FLOW_WINDOW, message: "" }),
    ],
    [MANAGER_IDS, FrameType.Close, encodeClose("sftp-server exited")],
  ])],
);

Deno.test({
  name:
    "agentMux() counts the bytes it holds for an agent that gives no credit against the session's byte limit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const setup = await startSetup();
    const world = new World();
    try {
      await world.arrive();
      await world.intercept();
      const call = new ServerCall(agentMetadata(world.agentId), { record: true });
      await world.serve(call);
      // Two connections to which the manager may send nothing (window 0)...
      call.send(batch([
        [1, FrameType.Open, open(MuxProtocol.Intercepted, TAG, { window: 0 })],
        [3, FrameType.Open, open(MuxProtocol.Intercepted, TAG, { window: 0 })],
      ]));
      property(await waitFor(() => world.daemon.flows === 2, 1000), "the connections were refused");
      await new Promise((resolve) => setTimeout(resolve, 10));
      // ...and 8000 bytes on each, which Alice's echo server sends back.
      const chunk = new Uint8Array(8000).fill(0x61);
      call.send(batch([[1, FrameType.Data, chunk], [3, FrameType.Data, chunk]]));
      await waitFor(
        () => world.daemon.stats.bytesSent >= 16_000 || world.managerEnd.flows < 2,
        1000,
      );
      let forwarded = 0;
      for (const written of call.written) {
        forEachFrame(written, (_id, type, payload) => {
          if (type === FrameType.Data) forwarded += payload.length;
        });
      }
      const held = world.daemon.stats.bytesSent - forwarded;
      property(
        world.managerEnd.flows < 2 || world.session.usage.buffered >= held,
        `the manager holds ${held} bytes for the agent and counts ${world.session.usage.buffered} ` +
          `against the session's limit of ${world.admission.limits.bufferedPerSession}`,
      );
    } finally {
      await world.close(setup);
      await setup.close();
    }
  },
});

/**
 * Fuzzes the manager's side of the mux, `handleMux(call, context)`, with a
 * fake server call fed batches of frames a hostile client could send, and a
 * context whose policy allows only a TCP and a UDP echo server on loopback
 * (port 7 in inputs) and a closed port (port 9), pings that answer, and DNS
 * that answers or fails.
 *
 * An input is `u8 mode` then batches (`joinRecords`). Mode bits: 0-1 how the
 * call ends (the client ends it, cancels, the transport fails, the session
 * departs); 2 the call names an unknown session; 3 grpc-js pushes back
 * (`write` returns false) and drains a turn later.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import grpc from "@grpc/grpc-js";
import { handleMux, type MuxCall } from "../../manager/mux.ts";
import { Admission, resolveLimits } from "../../manager/limits.ts";
import type { DestinationPolicy } from "../../manager/policy.ts";
import { SessionTable } from "../../manager/sessions.ts";
import { ManagerStats } from "../../manager/stats.ts";
import type { FlowContext } from "../../manager/dial.ts";
import {
  encodeClose,
  encodeOpen,
  encodeWindow,
  FLOW_WINDOW,
  forEachFrame,
  FrameType,
  FrameWriter,
  MuxProtocol,
} from "../../mod/rpc/mux.ts";
import { DialResult_Code, MUX_SESSION_HEADER } from "../../mod/rpc/service.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import {
  below,
  concat,
  interestingNumber,
  joinRecords,
  type Mutator,
  recordMutators,
  splitRecords,
} from "./_mutators.ts";
import { type EchoServers, SocketTracker, startEchoServers, waitFor } from "./_sockets.ts";

const LOOPBACK = new Uint8Array([127, 0, 0, 1]);
const ECHO_PORT = 7;
const CLOSED_PORT = 9;
/** Frame types a manager sends. */
const MANAGER_SENDS = new Set<number>([
  FrameType.Result,
  FrameType.Data,
  FrameType.Fin,
  FrameType.Close,
  FrameType.Window,
  FrameType.Dns,
]);

/** Allows TCP and UDP to 127.0.0.1 ports 7 and 9 and ICMP to 127.0.0.1; refuses the rest. */
const policy = {
  check(kind: string, ip: Uint8Array, port: number) {
    const loopback = ip.length === 4 && ip.every((b, i) => b === LOOPBACK[i]);
    const allowed = loopback &&
      (kind === "icmp" || port === ECHO_PORT || port === CLOSED_PORT);
    return allowed ? { allowed: true } : { allowed: false, reason: "not in the fuzz policy" };
  },
} as unknown as DestinationPolicy;

/** A server-side Mux call as grpc-js hands it over, recording what the handler does. */
class FakeCall extends EventEmitter {
  readonly metadata = new grpc.Metadata();
  cancelled = false;
  ends = 0;
  statuses: { code?: unknown; details?: unknown }[] = [];
  written: Uint8Array[] = [];
  writesAfterEnd = 0;
  #pushBack: boolean;
  #writes = 0;

  constructor(sessionId: string, pushBack: boolean) {
    super();
    this.metadata.set(MUX_SESSION_HEADER, sessionId);
    this.#pushBack = pushBack;
  }

  get over(): boolean {
    return this.ends > 0 || this.statuses.length > 0 || this.cancelled;
  }

  write(batch: Uint8Array, callback?: () => void): boolean {
    if (this.over) this.writesAfterEnd++;
    this.written.push(batch);
    queueMicrotask(() => callback?.());
    if (this.#pushBack && ++this.#writes % 3 === 0) {
      setTimeout(() => this.emit("drain"), 0);
      return false;
    }
    return true;
  }

  end(): void {
    this.ends++;
  }

  /** grpc-js stops reading the call (flow control toward the client); nothing to do here. */
  pause(): this {
    return this;
  }

  /** See {@linkcode FakeCall.pause}. */
  resume(): this {
    return this;
  }

  /**
   * The handler's `emit("error", status)` sends a status, which grpc-js takes
   * whether or not anyone listens; the test's own events bypass this.
   */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === "error") {
      this.statuses.push(args[0] as { code?: unknown; details?: unknown });
      return true;
    }
    return super.emit(event, ...args);
  }

  /** Emits as the transport would. */
  transport(event: string, ...args: unknown[]): void {
    super.emit(event, ...args);
  }
}

interface Setup {
  echo: EchoServers;
  tracker: SocketTracker;
}

async function check(setup: Setup, input: Uint8Array): Promise<void> {
  const { tracker } = setup;
  tracker.reset();
  const mode = input[0] ?? 0;
  const sessions = new SessionTable({ ttlMs: 60_000 });
  const session = sessions.arrive({
    name: "fuzz",
    hostname: "box",
    version: "0.1.0",
    namespace: "default",
    os: "linux",
  });
  const stats = new ManagerStats();
  // Small limits, so that inputs reach them.
  const admission = new Admission(resolveLimits({
    tcpFlowsPerSession: 3,
    udpFlowsPerSession: 2,
    dnsInFlightPerSession: 2,
    bufferedPerSession: 16_384,
    buffered: 32_768,
  }));
  const context: FlowContext = {
    sessions,
    policy: () => policy,
    stats,
    admission,
    log: () => {},
    dialTimeoutMs: 2000,
    udpIdleTimeoutMs: 60_000,
    ping: (address) =>
      Promise.resolve(
        address === "127.0.0.1"
          ? { code: DialResult_Code.OK, message: "echo reply" }
          : { code: DialResult_Code.UNREACHABLE, message: "no reply" },
      ),
    open: new Set(),
    resolveDns: (query) =>
      (query[0] ?? 0) % 2 === 0
        ? Promise.resolve(query.slice())
        : Promise.reject(new Error("the cluster's DNS server did not answer")),
  };
  const call = new FakeCall((mode & 4) ? "no-such-session" : session.id, (mode & 8) !== 0);
  try {
    handleMux(call as unknown as MuxCall, context);
  } catch (error) {
    property(false, `handleMux() threw: ${(error as Error)?.message}`);
  }
  for (const batch of splitRecords(input.subarray(1))) {
    if (call.over) break;
    try {
      call.transport("data", Buffer.from(batch));
    } catch (error) {
      property(false, `an exception escaped the data handler: ${(error as Error)?.message}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  // The dials of the last batch get their turn before the end.
  await new Promise((resolve) => setTimeout(resolve, 2));
  const how = mode & 3;
  if (!call.over) {
    if (how === 0) call.transport("end");
    else if (how === 1) {
      call.cancelled = true;
      call.transport("cancelled");
    } else if (how === 2) {
      call.cancelled = true;
      call.transport("error", { code: grpc.status.UNAVAILABLE, details: "the connection broke" });
    } else sessions.depart(session.id);
    // A call that names no session has nothing to end it but its client.
    if (!call.over) call.transport("end");
  }
  const settled = await waitFor(
    () =>
      tracker.open.length === 0 && context.open.size === 0 && stats.tcpTunnels === 0 &&
      stats.udpTunnels === 0,
    1500,
  );
  const open = tracker.open;
  property(
    settled,
    `after the call ended: ${open.length} socket(s) open (${
      open.map((s) => s.kind).join(", ")
    }), ${context.open.size} in context.open, tcpTunnels ${stats.tcpTunnels}, udpTunnels ${stats.udpTunnels}`,
  );
  // Broken framing is INVALID_ARGUMENT; an unknown session NOT_FOUND, at once.
  const allowed: unknown[] = [grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND];
  for (const s of call.statuses) {
    property(
      allowed.includes(s.code) && typeof s.details === "string" && s.details !== "",
      `the call failed with ${JSON.stringify(s)}, not INVALID_ARGUMENT or NOT_FOUND and a reason`,
    );
  }
  property(
    call.ends + call.statuses.length <= 1,
    `the call was ended ${call.ends} time(s) and failed ${call.statuses.length} time(s)`,
  );
  property(call.writesAfterEnd === 0, `${call.writesAfterEnd} write(s) after the call ended`);
  property(session.tunnels === 0, `the session still holds ${session.tunnels} flow(s)`);
  await waitFor(() => admission.total.dns === 0, 500); // DNS answers settle a turn later
  const held = { ...admission.total };
  property(
    held.tcp === 0 && held.udp === 0 && held.dns === 0 && held.buffered === 0,
    `the limits still count ${JSON.stringify(held)} after the call ended`,
  );
  property(
    JSON.stringify({ ...session.usage }) === JSON.stringify({ ...admission.total }),
    `the session's usage ${JSON.stringify({ ...session.usage })} differs from the total`,
  );
  await new Promise((resolve) => setTimeout(resolve, 0));
  property(
    stats.bufferedToClient === 0 && stats.bufferedToDestination === 0,
    `buffered bytes left counted: to client ${stats.bufferedToClient}, to destinations ${stats.bufferedToDestination}`,
  );
  for (const batch of call.written) {
    try {
      forEachFrame(batch, (_id, type) => {
        property(MANAGER_SENDS.has(type), `the manager sent a frame of type ${type}`);
      });
    } catch (error) {
      if ((error as Error).name === "PropertyError") throw error;
      property(false, `the manager wrote a broken batch: ${(error as Error).message}`);
    }
  }
}

function batch(frames: [number, number, Uint8Array?][]): Uint8Array {
  let out = new Uint8Array(0);
  const writer = new FrameWriter((b) => out = new Uint8Array(b));
  for (const [id, type, payload] of frames) writer.write(id, type as FrameType, payload);
  writer.flush();
  return out;
}

function open(protocol: number, port: number, window = FLOW_WINDOW, ip = LOOPBACK): Uint8Array {
  return encodeOpen({
    protocol,
    sourceIp: new Uint8Array(ip.length).fill(0xf0, 0, 1),
    sourcePort: 40000,
    destinationIp: ip,
    destinationPort: port,
    dialTimeoutMs: 1000,
    window,
  });
}

function seeds(): Uint8Array[] {
  const text = (s: string) => new TextEncoder().encode(s);
  const input = (mode: number, batches: Uint8Array[]) =>
    concat(new Uint8Array([mode]), joinRecords(batches));
  const dns = new Uint8Array([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0x77, 0x65, 0x62, 0]);
  return [
    input(0, [
      batch([[1, FrameType.Open, open(MuxProtocol.Tcp, ECHO_PORT)]]),
      batch([[1, FrameType.Data, text("hello")], [1, FrameType.Window, encodeWindow(1024)]]),
      batch([[1, FrameType.Fin]]),
      batch([[1, FrameType.Close, encodeClose("")]]),
    ]),
    input(1, [
      batch([
        [2, FrameType.Open, open(MuxProtocol.Udp, ECHO_PORT, 0)],
        [3, FrameType.Dns, dns],
        [5, FrameType.Dns, dns.map((b, i) => i === 0 ? 0x13 : b)],
      ]),
      batch([[2, FrameType.Data, text("datagram one")], [2, FrameType.Data, text("two")]]),
    ]),
    input(2, [
      batch([
        [4, FrameType.Open, open(MuxProtocol.Icmp, 0, 0)],
        [
          5,
          FrameType.Open,
          open(MuxProtocol.Tcp, 80, FLOW_WINDOW, new Uint8Array([198, 18, 0, 1])),
        ],
        [6, FrameType.Open, open(MuxProtocol.Tcp, CLOSED_PORT)],
        [7, FrameType.Open, open(MuxProtocol.Udp, CLOSED_PORT, 0)],
      ]),
    ]),
    input(3, [
      batch([[1, FrameType.Open, open(MuxProtocol.Tcp, ECHO_PORT, 16)]]),
      batch([[1, FrameType.Data, new Uint8Array(4000).fill(0x61)], [1, FrameType.Fin]]),
      batch([[1, FrameType.Data, text("after FIN")], [
        1,
        FrameType.Window,
        encodeWindow(0xffff_ffff),
      ]]),
    ]),
    input(8, [
      batch([[1, FrameType.Open, open(MuxProtocol.Tcp, ECHO_PORT)], [
        1,
        FrameType.Open,
        open(MuxProtocol.Tcp, ECHO_PORT),
      ]]),
    ]),
    input(0, [
      batch([[1, FrameType.Open, open(MuxProtocol.Tcp, ECHO_PORT)]]),
      batch([[1, FrameType.Open, new Uint8Array(7)], [1, 0x42, text("?")]]),
    ]),
    input(4, [
      batch([[1, FrameType.Open, open(MuxProtocol.Tcp, ECHO_PORT)], [2, FrameType.Dns, dns]]),
    ]),
    input(9, [
      batch([[1, FrameType.Open, open(MuxProtocol.Tcp, ECHO_PORT)], [
        1,
        FrameType.Close,
        encodeClose("changed my mind"),
      ]]),
      batch([[1, FrameType.Data, text("late")], [1, FrameType.Window, encodeWindow(5)]]),
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
  const choice = below(r, 5);
  if (choice === 0) f[0] = r() < 0.7 ? below(r, 8) : interestingNumber(r);
  else if (choice === 1) f[1] = below(r, 9);
  else if (choice === 2) f[2] = f[2].subarray(0, below(r, f[2].length + 1));
  else if (choice === 3) {
    frames.splice(below(r, frames.length + 1), 0, [
      f[0],
      FrameType.Window,
      encodeWindow(interestingNumber(r)),
    ]);
  } else frames.splice(below(r, frames.length + 1), 0, [...f]);
  records[i] = batch(frames);
  return concat(b.subarray(0, 1), joinRecords(records));
};

const records = recordMutators();
fuzzTest(
  "manager_mux",
  "handleMux() lets no exception escape, ends the call at most once and only with INVALID_ARGUMENT (NOT_FOUND for an unknown session), writes only well-formed manager frames, and once the call ends every socket it opened is closed and nothing stays counted",
  async () => {
    const echo = await startEchoServers();
    const tracker = new SocketTracker({
      tcp: new Map([[ECHO_PORT, echo.tcp], [CLOSED_PORT, echo.closedPort]]),
      udp: new Map([[ECHO_PORT, echo.udp], [CLOSED_PORT, echo.closedPort]]),
    });
    const setup = { echo, tracker };
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
      hangMs: 5000,
      async close() {
        tracker.uninstall();
        await echo.close();
      },
    };
  },
  { sanitize: false },
);

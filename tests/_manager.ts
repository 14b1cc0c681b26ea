/**
 * Test helpers of the manager's tests: a manager served in-process on a random
 * loopback port with test certificates, a real grpc-js client over TLS, and a
 * reader of a stream's messages one by one.
 *
 * @module
 */

import grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { EventEmitter } from "node:events";
import {
  ArriveRequestSchema,
  type ArriveResponse,
  CHANNEL_OPTIONS,
  type ClusterInfo,
  create,
  DialResult_Code,
  ManagerService,
  Protocol,
  type SessionRef,
  SessionRefSchema,
  type VersionInfo,
  VersionRequestSchema,
} from "../mod/rpc/service.ts";
import { makeTestTls, type TestTls } from "./_tls.ts";
import { type ManagerHandle, serve, type ServeOptions } from "../manager/server.ts";

/** The generated client, as the tests call it. */
export interface TestClient extends grpc.Client {
  version: UnaryMethod;
  arrive: UnaryMethod;
  remain: UnaryMethod;
  depart: UnaryMethod;
  watchClusterInfo(request: unknown): grpc.ClientReadableStream<ClusterInfo>;
  mux(metadata: grpc.Metadata): grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
}

type UnaryMethod = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, value?: unknown) => void,
) => void;

const Client = grpc.makeGenericClientConstructor(ManagerService, "Manager");

/**
 * Makes a client that trusts `caPem` and checks `serverName`.
 *
 * @param address `host:port`.
 * @param caPem The CA to trust.
 * @param serverName The name the certificate must carry.
 * @param clientCertificate The certificate and key to show a direct listener, if any.
 * @returns The client.
 */
export function makeClient(
  address: string,
  caPem: string,
  serverName: string,
  clientCertificate?: { certPem: string; keyPem: string },
): TestClient {
  const credentials = grpc.credentials.createSsl(
    Buffer.from(caPem),
    clientCertificate ? Buffer.from(clientCertificate.keyPem) : null,
    clientCertificate ? Buffer.from(clientCertificate.certPem) : null,
  );
  return new Client(address, credentials, {
    ...CHANNEL_OPTIONS,
    "grpc.ssl_target_name_override": serverName,
    "grpc.default_authority": serverName,
  }) as unknown as TestClient;
}

const REQUESTS = {
  version: VersionRequestSchema,
  arrive: ArriveRequestSchema,
  remain: SessionRefSchema,
  depart: SessionRefSchema,
} as const;

/**
 * Calls a unary method.
 *
 * @param client The client.
 * @param method The method.
 * @param request The request's fields (made into the method's message here).
 * @param timeoutMs The deadline.
 * @returns The response.
 */
export function call<T>(
  client: TestClient,
  method: "version" | "arrive" | "remain" | "depart",
  request: Record<string, unknown>,
  timeoutMs = 5000,
): Promise<T> {
  return new Promise((resolve, reject) =>
    client[method].call(
      client,
      create(REQUESTS[method], request),
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error, value) => error ? reject(error) : resolve(value as T),
    )
  );
}

let sharedTls: Promise<TestTls> | undefined;

/** One set of test certificates for the whole test run (removed at exit). */
export function testTls(): Promise<TestTls> {
  sharedTls ??= makeTestTls().then((tls) => {
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(tls.dir.replace(/\/main$/, ""), { recursive: true });
      } catch {
        // Gone already.
      }
    });
    return tls;
  });
  return sharedTls;
}

/** A manager served for one test, with a client. */
export interface TestManager {
  manager: ManagerHandle;
  client: TestClient;
  tls: TestTls;
  /** The manager's log lines. */
  lines: string[];
  /** Moves the fake clock forward. */
  advance(ms: number): void;
  /** Arrives and returns the session id. */
  arrive(name?: string): Promise<string>;
  /** Closes the client and the manager. */
  close(): Promise<void>;
}

/**
 * Serves a manager on 127.0.0.1 with a random port, a fake clock (no sweep
 * timer) and its log kept, plus a client. Its destinations are servers the
 * test runs on loopback, so it may dial loopback (`allowLoopback`), which a
 * manager never does otherwise.
 *
 * @param options Overrides of the serve options.
 * @returns The manager and its client.
 */
export async function startManager(options: Partial<ServeOptions> = {}): Promise<TestManager> {
  const tls = await testTls();
  const lines: string[] = [];
  let now = 1_000_000;
  const manager = await serve({
    tls: { certPem: tls.certPem, keyPem: tls.keyPem, caPem: tls.caPem },
    listen: "127.0.0.1:0",
    managerNamespace: tls.namespace,
    resolvConfPath: "/nonexistent/resolv.conf",
    sweepIntervalMs: 0,
    allowLoopback: true,
    now: () => now,
    log: (line) => lines.push(line),
    ...options,
  });
  const client = makeClient(manager.address, tls.caPem, tls.serverName);
  return {
    manager,
    client,
    tls,
    lines,
    advance: (ms) => void (now += ms),
    async arrive(name = "alice") {
      const response = await call<ArriveResponse>(client, "arrive", {
        client: { name, hostname: "box", version: "0.1.0", namespace: "default", os: "linux" },
      });
      return response.sessionId;
    },
    async close() {
      client.close();
      await manager.close();
    },
  };
}

/**
 * A `SessionRef` message.
 *
 * @param sessionId The session id.
 * @returns The message.
 */
export function ref(sessionId: string): SessionRef {
  return create(SessionRefSchema, { sessionId });
}

/** A queue of what a stream emits, read one at a time. */
export class StreamReader<T> {
  #items: T[] = [];
  #waiters: (() => void)[] = [];
  /** Set when the stream ended (`end`). */
  ended = false;
  /** Set when the stream failed. */
  error: grpc.ServiceError | undefined;

  /**
   * Follows `stream`.
   *
   * @param stream A readable gRPC stream.
   */
  constructor(stream: EventEmitter) {
    stream.on("data", (item: T) => this.#push(() => this.#items.push(item)));
    stream.on("end", () => this.#push(() => this.ended = true));
    stream.on("error", (error: grpc.ServiceError) => this.#push(() => this.error = error));
  }

  #push(change: () => void): void {
    change();
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /**
   * The next item, or `undefined` once the stream is over.
   *
   * @param timeoutMs How long to wait.
   * @returns The item.
   */
  async next(timeoutMs = 5000): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.#items.length === 0 && !this.ended && this.error === undefined) {
      if (Date.now() > deadline) throw new Error(`No stream item within ${timeoutMs} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
      });
      clearTimeout(timer);
    }
    return this.#items.shift();
  }

  /**
   * Waits until the stream is over (ended or failed).
   *
   * @param timeoutMs How long to wait.
   */
  async over(timeoutMs = 5000): Promise<void> {
    while (!this.ended && this.error === undefined) {
      if ((await this.next(timeoutMs)) === undefined) break;
    }
  }
}

export { DialResult_Code, Protocol, type VersionInfo };

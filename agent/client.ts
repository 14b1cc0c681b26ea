/**
 * The agent's gRPC client of the manager's agent listener: TLS trusting only
 * the manager's CA from the configuration, the certificate's name checked
 * whatever address is dialed, and the agent's token on every call (read
 * again when the kubelet rotates it).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import grpc from "@grpc/grpc-js";
import {
  type AgentArriveResponse,
  type AgentIntercepts,
  AgentService,
  CHANNEL_OPTIONS,
} from "../mod/rpc/service.ts";
import type { TokenFile } from "./token.ts";

type Callback<T> = (error: grpc.ServiceError | null, value?: T) => void;
type Unary<T> = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: Callback<T>,
) => void;

/** The Agent service's client, as grpc-js builds it from {@linkcode AgentService}. */
export interface AgentClient extends grpc.Client {
  arriveAgent: Unary<AgentArriveResponse>;
  remainAgent: Unary<unknown>;
  departAgent: Unary<unknown>;
  watchIntercepts(
    request: unknown,
    metadata?: grpc.Metadata,
  ): grpc.ClientReadableStream<AgentIntercepts>;
  agentMux(metadata: grpc.Metadata): grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
}

const AgentClientCtor = grpc.makeGenericClientConstructor(AgentService, "Agent");

/** Options of {@linkcode createAgentClient}. */
export interface AgentClientOptions {
  /** `host:port` of the manager's agent listener. */
  address: string;
  /** The CA (PEM) that signed the manager's certificate: the only one trusted. */
  caPem: string;
  /** The name the manager's certificate must carry. */
  serverName: string;
  /** The token every call presents. */
  token: TokenFile;
  /** The longest wait between reconnection attempts of the channel. */
  maxReconnectMs?: number;
}

/**
 * Makes a client; nothing is dialed until the first call.
 *
 * @param options where, whom to trust, the token
 * @returns the client
 */
export function createAgentClient(options: AgentClientOptions): AgentClient {
  const ssl = grpc.credentials.createSsl(Buffer.from(options.caPem));
  const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    options.token.token().then((token) => {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${token}`);
      callback(null, metadata);
    }, (error: Error) => callback(error));
  });
  return new AgentClientCtor(
    options.address,
    grpc.credentials.combineChannelCredentials(ssl, bearer),
    {
      ...CHANNEL_OPTIONS,
      "grpc.ssl_target_name_override": options.serverName,
      "grpc.default_authority": options.serverName,
      "grpc.max_reconnect_backoff_ms": options.maxReconnectMs ?? 10_000,
    },
  ) as unknown as AgentClient;
}

/**
 * Calls a unary method with a deadline.
 *
 * @param client the client
 * @param method the method's name on the client
 * @param request the request message
 * @param timeoutMs the deadline
 * @returns the response
 * @throws {grpc.ServiceError} when the call fails
 */
export function unary<T>(
  client: AgentClient,
  method: "arriveAgent" | "remainAgent" | "departAgent",
  request: unknown,
  timeoutMs: number,
): Promise<T> {
  return new Promise((resolve, reject) => {
    (client[method] as Unary<T>).call(
      client,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error, value) => error ? reject(error) : resolve(value as T),
    );
  });
}

/**
 * What a failed call says, in a few words: grpc-js's details (the status's
 * message), else its message.
 *
 * @param error what the call failed with
 * @returns the reason
 */
export function callProblem(error: unknown): string {
  const e = error as Partial<grpc.ServiceError> | null;
  if (e && typeof e.code === "number") {
    const name = grpc.status[e.code] ?? String(e.code);
    return `${name}: ${e.details || e.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

export { grpc };

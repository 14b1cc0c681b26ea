/**
 * The gRPC client of the traffic-manager: TLS against the manager's own CA,
 * the name `traffic-manager.<namespace>` checked whatever address is dialed,
 * and typed promise wrappers for the unary calls.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import grpc from "@grpc/grpc-js";
import {
  type AgentList,
  type ArriveResponse,
  CHANNEL_OPTIONS,
  type ClusterInfo,
  create,
  type InterceptInfo,
  managerServerName,
  ManagerService,
  type VersionInfo,
} from "../rpc/service.ts";

/** The Manager service's client, as grpc-js builds it from {@linkcode ManagerService}. */
export interface ManagerClient extends grpc.Client {
  version(req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<VersionInfo>): void;
  arrive(
    req: unknown,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: Callback<ArriveResponse>,
  ): void;
  remain(req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<unknown>): void;
  depart(req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<unknown>): void;
  createIntercept(
    req: unknown,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: Callback<InterceptInfo>,
  ): void;
  removeIntercept(
    req: unknown,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: Callback<unknown>,
  ): void;
  listAgents(
    req: unknown,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: Callback<AgentList>,
  ): void;
  watchClusterInfo(req: unknown): grpc.ClientReadableStream<ClusterInfo>;
  mux(metadata: grpc.Metadata): grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
}

type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void;

const ManagerClientCtor = grpc.makeGenericClientConstructor(ManagerService, "Manager");

/** Options of {@linkcode createManagerClient}. */
export interface ManagerClientOptions {
  /** `host:port` to dial. */
  address: string;
  /** The CA certificate (PEM) that signed the manager's certificate. */
  caPem: string;
  /** The manager's namespace: its certificate names `traffic-manager.<namespace>`. */
  managerNamespace: string;
  /** A client certificate and its key (PEM), for a manager's direct (mutual TLS) listener. */
  clientCertificate?: { certPem: string; keyPem: string };
}

/**
 * Makes a client; nothing is dialed until the first call.
 *
 * @param options address, CA and namespace
 * @returns the client
 */
export function createManagerClient(options: ManagerClientOptions): ManagerClient {
  const name = managerServerName(options.managerNamespace);
  const client = options.clientCertificate;
  const creds = grpc.credentials.createSsl(
    Buffer.from(options.caPem),
    client ? Buffer.from(client.keyPem) : null,
    client ? Buffer.from(client.certPem) : null,
  );
  return new ManagerClientCtor(options.address, creds, {
    ...CHANNEL_OPTIONS,
    "grpc.ssl_target_name_override": name,
    "grpc.default_authority": name,
  }) as unknown as ManagerClient;
}

/**
 * Calls a unary method with a deadline.
 *
 * @param client the client
 * @param method the method's name on the client
 * @param request the request message's fields
 * @param timeoutMs the deadline
 * @returns the response
 * @throws {grpc.ServiceError} when the call fails
 */
export function unary<T>(
  client: ManagerClient,
  method:
    | "version"
    | "arrive"
    | "remain"
    | "depart"
    | "createIntercept"
    | "removeIntercept"
    | "listAgents",
  request: unknown,
  timeoutMs: number,
): Promise<T> {
  return new Promise((resolve, reject) => {
    (client[method] as (
      r: unknown,
      md: grpc.Metadata,
      o: grpc.CallOptions,
      cb: Callback<T>,
    ) => void).call(
      client,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err, value) => err ? reject(err) : resolve(value as T),
    );
  });
}

export { create, grpc };

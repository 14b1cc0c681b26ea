/**
 * The Manager service as grpc-js wants it: a method table with protobuf-es
 * (de)serialisers, shared by the client (`mod/daemon`) and the server
 * (`manager/`). The messages are generated from `proto/vif/v1/manager.proto`
 * into `gen/` by `scripts/gen_proto.sh`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { muxDeserialize, muxSerialize } from "./mux.ts";
import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import type { MethodDefinition } from "@grpc/grpc-js";
import {
  AgentArriveRequestSchema,
  AgentArriveResponseSchema,
  AgentInterceptsSchema,
  AgentListSchema,
  AgentRefSchema,
  ArriveRequestSchema,
  ArriveResponseSchema,
  ClusterInfoSchema,
  CreateInterceptRequestSchema,
  DepartResponseSchema,
  InterceptInfoSchema,
  InterceptRefSchema,
  ListAgentsRequestSchema,
  RemainResponseSchema,
  RemoveInterceptResponseSchema,
  SessionRefSchema,
  VersionInfoSchema,
  VersionRequestSchema,
} from "./gen/vif/v1/manager_pb.ts";

export * from "./gen/vif/v1/manager_pb.ts";
export { create } from "@bufbuild/protobuf";

function method<I extends DescMessage, O extends DescMessage>(
  name: string,
  input: I,
  output: O,
  requestStream: boolean,
  responseStream: boolean,
): MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path: `/vif.v1.Manager/${name}`,
    originalName: name,
    requestStream,
    responseStream,
    requestSerialize: (m) => toBuffer(toBinary(input, m)),
    requestDeserialize: (b) => fromBinary(input, b),
    responseSerialize: (m) => toBuffer(toBinary(output, m)),
    responseDeserialize: (b) => fromBinary(output, b),
  };
}

function toBuffer(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** A bidirectional stream of `MuxBatch` bytes, passed through untouched (the frames are mux.ts's). */
function muxMethod(path: string, name: string): MethodDefinition<Uint8Array, Uint8Array> {
  return {
    path,
    originalName: name,
    requestStream: true,
    responseStream: true,
    requestSerialize: muxSerialize,
    requestDeserialize: muxDeserialize,
    responseSerialize: muxSerialize,
    responseDeserialize: muxDeserialize,
  };
}

/** The `vif.v1.Manager` service definition for grpc-js `Server.addService` and clients. */
export const ManagerService = {
  version: method("Version", VersionRequestSchema, VersionInfoSchema, false, false),
  arrive: method("Arrive", ArriveRequestSchema, ArriveResponseSchema, false, false),
  watchClusterInfo: method("WatchClusterInfo", SessionRefSchema, ClusterInfoSchema, false, true),
  remain: method("Remain", SessionRefSchema, RemainResponseSchema, false, false),
  depart: method("Depart", SessionRefSchema, DepartResponseSchema, false, false),
  /** `MuxBatch` bytes pass through untouched: the frames inside are the mux framing's (mux.ts). */
  mux: muxMethod("/vif.v1.Manager/Mux", "Mux"),
  createIntercept: method(
    "CreateIntercept",
    CreateInterceptRequestSchema,
    InterceptInfoSchema,
    false,
    false,
  ),
  removeIntercept: method(
    "RemoveIntercept",
    InterceptRefSchema,
    RemoveInterceptResponseSchema,
    false,
    false,
  ),
  listAgents: method("ListAgents", ListAgentsRequestSchema, AgentListSchema, false, false),
} as const;

/** The `vif.v1.Agent` service: the traffic-agent's calls, on the manager's agent listener only. */
export const AgentService = {
  arriveAgent: agentMethod(
    "ArriveAgent",
    AgentArriveRequestSchema,
    AgentArriveResponseSchema,
    false,
  ),
  watchIntercepts: agentMethod("WatchIntercepts", AgentRefSchema, AgentInterceptsSchema, true),
  remainAgent: agentMethod("RemainAgent", AgentRefSchema, RemainResponseSchema, false),
  departAgent: agentMethod("DepartAgent", AgentRefSchema, DepartResponseSchema, false),
  agentMux: muxMethod("/vif.v1.Agent/AgentMux", "AgentMux"),
} as const;

function agentMethod<I extends DescMessage, O extends DescMessage>(
  name: string,
  input: I,
  output: O,
  responseStream: boolean,
): MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return { ...method(name, input, output, false, responseStream), path: `/vif.v1.Agent/${name}` };
}

/** The `ArriveResponse.features` entry of intercepts (`CreateIntercept` and the reverse flows). */
export const FEATURE_INTERCEPT = "intercept";

/** The metadata key that carries the agent id of an `AgentMux` call. */
export const AGENT_ID_HEADER = "vif-agent-id";

/** The `ArriveResponse.features` entry of the `Mux` call, which every manager serves and announces. */
export const FEATURE_MUX = "mux";

/** The metadata key that carries the session id of a `Mux` call. */
export const MUX_SESSION_HEADER = "vif-session-id";

/**
 * The gRPC channel options both sides use: large messages (a `MuxBatch`
 * carries up to 1 MiB of frames and one frame more), and HTTP/2 windows
 * sized for throughput rather than the 64 KiB defaults.
 */
export const CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": 4 * 1024 * 1024,
  "grpc.max_send_message_length": 4 * 1024 * 1024,
  "grpc.keepalive_time_ms": 20_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc-node.flow_control_window": 8 * 1024 * 1024,
  "grpc.http2.max_frame_size": 1024 * 1024 - 1,
} as const;

/** The largest data chunk a flow sends in one DATA frame. */
export const MAX_CHUNK = 256 * 1024;

/**
 * The most UDP bytes either side holds unsent for the tunnel (or for one flow's
 * socket) before it drops datagrams: UDP may lose them, and must not queue
 * without bound.
 */
export const UDP_BUFFER_LIMIT = 1024 * 1024;

// Names and ports, in a module without protobuf or gRPC, so that the CLI's
// commands that need only these do not load them.
export {
  certificateDnsNames,
  DEFAULT_DIRECT_PORT,
  DEFAULT_HEALTH_PORT,
  DEFAULT_MANAGER_NAMESPACE,
  DEFAULT_MANAGER_PORT,
  managerServerName,
} from "./names.ts";

/**
 * Fuzzes the protobuf messages both sides read: every deserialiser of
 * `ManagerService` (what grpc-js calls on each message it receives) and
 * `fromBinary` of every message schema in `manager_pb.ts`.
 *
 * @module
 */

import { create, type DescMessage, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Buffer } from "node:buffer";
import * as pb from "../../mod/rpc/gen/vif/v1/manager_pb.ts";
import { ManagerService } from "../../mod/rpc/service.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import { below, concat, type Mutator, pick } from "./_mutators.ts";

interface Reader {
  label: string;
  read(bytes: Buffer): unknown;
  /** The schema of what it returns; none for the mux pass-through. */
  schema: DescMessage | undefined;
}

const schemas = Object.entries(pb)
  .filter(([name, value]) =>
    name.endsWith("Schema") && (value as { kind?: string }).kind === "message"
  )
  .map(([name, value]) => [name, value as DescMessage] as const)
  .sort(([a], [b]) => a.localeCompare(b));

/** The input and output types of each method, from the service descriptor. */
const methods = pb.Manager.method as Record<string, { input: DescMessage; output: DescMessage }>;

const readers: Reader[] = [
  ...Object.entries(ManagerService).flatMap(([method, def]) => {
    const mux = def.path === "/vif.v1.Manager/Mux";
    return [
      {
        label: `ManagerService.${method}.requestDeserialize`,
        read: (b: Buffer) => def.requestDeserialize(b),
        schema: mux ? undefined : methods[method]!.input,
      },
      {
        label: `ManagerService.${method}.responseDeserialize`,
        read: (b: Buffer) => def.responseDeserialize(b),
        schema: mux ? undefined : methods[method]!.output,
      },
    ];
  }),
  ...schemas.map(([name, schema]) => ({
    label: `fromBinary(${name})`,
    read: (b: Buffer) => fromBinary(schema, b),
    schema,
  })),
];

function check(input: Uint8Array): void {
  const reader = readers[(input[0] ?? 0) % readers.length]!;
  const bytes = Buffer.from(input.subarray(1));
  let message: unknown;
  try {
    message = reader.read(bytes);
  } catch (error) {
    property(
      error instanceof Error,
      `${reader.label} threw a non-Error: ${String(error)}`,
    );
    return;
  }
  property(typeof message === "object" && message !== null, `${reader.label} returned no object`);
  if (reader.schema === undefined) {
    property(message === bytes, `${reader.label} did not pass the batch through`);
    return;
  }
  const schema = reader.schema;
  property(
    (message as { $typeName?: string }).$typeName === schema.typeName,
    `${reader.label} returned a ${(message as { $typeName?: string }).$typeName}`,
  );
  // Written and read again: the same message (invalid UTF-8 was replaced on the first read).
  const again = fromBinary(schema, toBinary(schema, message as never));
  property(equals(schema, again as never, message as never), `${reader.label}: not idempotent`);
}

function seeds(): Uint8Array[] {
  const messages: [DescMessage, Record<string, unknown>][] = [
    [pb.VersionRequestSchema, {}],
    [pb.VersionInfoSchema, { name: "vif traffic-manager", version: "0.1.0" }],
    [pb.ClientInfoSchema, {
      name: "alice",
      hostname: "box",
      version: "0.1.0",
      namespace: "default",
      os: "linux",
    }],
    [pb.ArriveRequestSchema, {
      client: { name: "alice", hostname: "box", version: "0.1.0", namespace: "shop", os: "linux" },
      alsoProxy: ["198.19.0.0/16", "2001:db8::/64"],
    }],
    [pb.ArriveResponseSchema, {
      sessionId: "0123456789abcdef0123456789abcdef",
      managerVersion: "0.1.0",
      clusterInfo: {
        podSubnets: ["198.18.64.0/18"],
        serviceSubnets: ["198.18.128.0/20"],
        clusterDomain: "cluster.local",
        dnsServer: "198.18.128.10",
        managerPodIp: "198.18.64.7",
        searchPath: ["default.svc.cluster.local", "svc.cluster.local"],
        namespaces: ["default", "shop"],
      },
      heartbeatIntervalMs: 10_000,
      sessionTtlMs: 60_000,
      features: ["mux"],
    }],
    [pb.SessionRefSchema, { sessionId: "0123456789abcdef0123456789abcdef" }],
    [pb.RemainResponseSchema, {}],
    [pb.DepartResponseSchema, {}],
    [pb.DialResultSchema, { code: pb.DialResult_Code.REFUSED, message: "no" }],
    [pb.MuxBatchSchema, { frames: new Uint8Array([0, 0, 0, 1, 4, 0, 0, 0, 0]) }],
  ];
  const out: Uint8Array[] = [];
  for (const [schema, init] of messages) {
    const bytes = toBinary(schema, create(schema, init as never));
    // One input per reader that reads this type, so that each starts from its own.
    for (const [i, r] of readers.entries()) {
      if (r.schema?.typeName === schema.typeName) out.push(concat(new Uint8Array([i]), bytes));
    }
  }
  return out;
}

/** Protobuf-aware changes: a huge length, a field of another wire type, nested groups. */
const wire: Mutator[] = [
  // A length-delimited field whose length is a huge varint.
  (b, r) => {
    const at = 1 + below(r, Math.max(b.length - 1, 0) + 1);
    const huge = pick(r, [
      [0xff, 0xff, 0xff, 0xff, 0x0f],
      [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
      [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
      [0x80, 0x80, 0x80, 0x80, 0x08],
    ]);
    const tag = (1 + below(r, 8)) << 3 | 2;
    return concat(b.subarray(0, at), new Uint8Array([tag, ...huge]), b.subarray(at));
  },
  // A known field number with every wire type, including the deprecated groups.
  (b, r) => {
    const at = 1 + below(r, Math.max(b.length - 1, 0) + 1);
    const tag = (1 + below(r, 8)) << 3 | below(r, 8);
    return concat(b.subarray(0, at), new Uint8Array([tag, 0x01, 0x02]), b.subarray(at));
  },
  // Nested start-group tags (depth) and unmatched end-groups.
  (b, r) => {
    const depth = 1 + below(r, 3000);
    const open = new Uint8Array(depth).fill(r() < 0.5 ? 0x0b : 0x53);
    const close = new Uint8Array(r() < 0.5 ? depth : below(r, depth)).fill(0x0c);
    return concat(b.subarray(0, 1), open, close, b.subarray(1));
  },
];

fuzzTest(
  "protobuf",
  "every deserialiser grpc-js calls, and fromBinary of every message, returns a message of its type or throws an Error, never hangs, and reads its own output back the same",
  () => ({ seeds: seeds(), check, mutators: wire, maxLength: 8192 }),
);

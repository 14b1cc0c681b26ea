/**
 * The JSON document of `vif status --output json`, schema 1, as docs/daemon.md
 * describes it, checked field by field: a test fails when a field is missing,
 * has another type, or a field nobody documented appears.
 *
 * @module
 */

type Shape =
  | "string"
  | "number"
  | "boolean"
  | { nullable: Shape }
  | { array: Shape }
  | { enum: readonly string[] }
  | { object: Record<string, Shape>; optional?: readonly string[] }
  | { literal: number };

const S = "string";
const N = "number";
const B = "boolean";
const nullable = (s: Shape): Shape => ({ nullable: s });

const CONNECTION: Shape = {
  object: {
    state: { enum: ["connected", "reconnecting"] },
    since: S,
    uptimeSeconds: N,
    context: nullable(S),
    cluster: nullable(S),
    namespace: S,
    manager: {
      object: {
        namespace: S,
        version: S,
        address: S,
        pod: nullable(S),
        via: { enum: ["port-forward", "direct"] },
        tunnel: { enum: ["mux"] },
      },
    },
    sessionId: S,
    tun: nullable({ object: { name: S, mtu: N, addresses: { array: S } } }),
    subnets: {
      object: {
        routed: {
          array: {
            object: { cidr: S, source: { enum: ["pods", "services", "also-proxy"] } },
          },
        },
        excluded: {
          array: {
            object: { cidr: S, reason: { enum: ["never-proxy", "conflict"] }, route: S },
            optional: ["route"],
          },
        },
      },
    },
    dns: {
      object: {
        mode: nullable({ enum: ["resolved", "resolv.conf"] }),
        address: S,
        domains: { array: S },
        search: { array: S },
        description: nullable(S),
      },
    },
    counters: {
      object: Object.fromEntries(
        [
          "connectionsOpen",
          "connectionsTotal",
          "udpFlowsOpen",
          "udpFlowsTotal",
          "dnsQueries",
          "dnsCacheHits",
          "bytesToCluster",
          "bytesFromCluster",
          "dialFailures",
          "packetsDropped",
        ].map((k) => [k, N]),
      ),
    },
    intercepts: {
      array: {
        object: {
          id: S,
          namespace: S,
          workload: S,
          port: N,
          local: S,
          holder: S,
          mountPoint: nullable(S),
          pods: { array: S },
          connections: N,
          variables: N,
        },
      },
    },
  },
};

/** Schema 1 of the status document. */
export const STATUS_SCHEMA: Shape = {
  object: {
    schema: { literal: 1 },
    client: { object: { version: S } },
    daemon: {
      object: {
        running: B,
        version: nullable(S),
        pid: nullable(N),
        uptimeSeconds: nullable(N),
        logFile: nullable(S),
        logLevel: nullable({ enum: ["debug", "info", "warn"] }),
        memory: nullable({ object: { rssMb: N, heapUsedMb: N, heapTotalMb: N, externalMb: N } }),
      },
    },
    connected: B,
    connection: nullable(CONNECTION),
    lastError: nullable({ object: { message: S, hint: S } }),
    alreadyConnected: B,
  },
  optional: ["alreadyConnected"],
};

/**
 * Checks a value against a shape.
 *
 * @param value the parsed JSON
 * @param shape the shape (default the status schema)
 * @param path where in the document (for messages)
 * @returns the problems found, empty when it conforms
 */
export function schemaProblems(value: unknown, shape: Shape = STATUS_SCHEMA, path = "$"): string[] {
  if (typeof shape === "string") {
    const actual = typeof value as string;
    return actual === shape ? [] : [`${path}: want ${shape}, got ${JSON.stringify(value)}`];
  }
  if ("nullable" in shape) return value === null ? [] : schemaProblems(value, shape.nullable, path);
  if ("literal" in shape) return value === shape.literal ? [] : [`${path}: want ${shape.literal}`];
  if ("enum" in shape) {
    return typeof value === "string" && shape.enum.includes(value)
      ? []
      : [`${path}: want one of ${shape.enum.join("|")}, got ${JSON.stringify(value)}`];
  }
  if ("array" in shape) {
    if (!Array.isArray(value)) return [`${path}: want an array`];
    return value.flatMap((v, i) => schemaProblems(v, shape.array, `${path}[${i}]`));
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return [`${path}: want an object`];
  }
  const o = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const [k, s] of Object.entries(shape.object)) {
    if (!(k in o)) {
      if (!shape.optional?.includes(k)) problems.push(`${path}.${k}: missing`);
      continue;
    }
    problems.push(...schemaProblems(o[k], s, `${path}.${k}`));
  }
  for (const k of Object.keys(o)) {
    if (!(k in shape.object)) problems.push(`${path}.${k}: not in the schema`);
  }
  return problems;
}

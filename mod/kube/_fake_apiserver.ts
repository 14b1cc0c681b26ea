/**
 * A tiny Kubernetes API server for the tests of `mod/kube/`: HTTPS on
 * 127.0.0.1 with a certificate from `x509.ts`, bearer-token auth, and an
 * in-memory store for GET, POST, PUT and DELETE of single objects, as the
 * typed clients of @kubernetes/client-node call them. It records every
 * request, so tests can check the sequence (GET 404 → POST; GET 200 → PUT).
 *
 * What it imitates of the real server: `Status` bodies with `reason` and
 * `code`; 409 `AlreadyExists` on a second POST and `Conflict` on a PUT with a
 * stale `resourceVersion`; 422 on a Service PUT that drops its allocated
 * ClusterIP; 403 `Forbidden` for what a test forbids, and for new objects
 * in a namespace that is being deleted. The fuller fake of the simulated
 * cluster lives in `tests/sim/apiserver/`.
 *
 * @module
 */

import { createCertificateAuthority, issueServerCertificate } from "./x509.ts";

/** One request the fake received. */
export interface RecordedRequest {
  method: string;
  /** The URL path, e.g. `/api/v1/namespaces/vif-system/secrets/traffic-manager-tls`. */
  path: string;
  /** The parsed JSON body, if any. */
  body?: Record<string, unknown>;
}

/** A stored object, as JSON. */
// deno-lint-ignore no-explicit-any
export type StoredObject = Record<string, any>;

/** The running fake. */
export interface FakeApiServer {
  /** `https://127.0.0.1:<port>`. */
  url: string;
  /** The CA that signed the server's certificate (PEM). */
  caPem: string;
  /** The token it accepts. */
  token: string;
  /** Every request, in order. */
  requests: RecordedRequest[];
  /** Objects by path (`/api/v1/namespaces/vif-system`, `/apis/apps/v1/namespaces/x/deployments/y`). */
  store: Map<string, StoredObject>;
  /** Called with each request after it is recorded and before it is handled (to race a write). */
  onRequest: ((request: RecordedRequest) => void) | undefined;
  /** Answers 403 to `verb` (`get`, `create`, `update`, `delete`) on `resource` (plural). */
  forbid(verb: string, resource: string): void;
  /** Requests as `METHOD path` lines, for comparing sequences. */
  log(): string[];
  /** A kubeconfig (YAML text) with one context, `fake`, pointing at it. */
  kubeconfig(options?: { token?: string; withCa?: boolean }): string;
  /** Stops serving. */
  close(): Promise<void>;
}

/**
 * Starts the fake on a random loopback port.
 *
 * @returns The running fake.
 */
export async function startFakeApiServer(): Promise<FakeApiServer> {
  const ca = await createCertificateAuthority("fake apiserver CA");
  const cert = await issueServerCertificate(ca, {
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
  });
  const token = "fake-token";
  const requests: RecordedRequest[] = [];
  const store = new Map<string, StoredObject>();
  const forbidden = new Set<string>();
  let version = 100;

  const handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const path = url.pathname;
    const text = await request.text();
    const body = text ? JSON.parse(text) as StoredObject : undefined;
    const recorded = { method: request.method, path, ...(body ? { body } : {}) };
    requests.push(recorded);
    fake.onRequest?.(recorded);
    if (request.headers.get("authorization") !== `Bearer ${token}`) {
      return status(401, "Unauthorized", "Unauthorized");
    }
    const route = parsePath(path);
    if (route === undefined) return status(404, "NotFound", `the server could not find ${path}`);
    const verb = { GET: "get", POST: "create", PUT: "update", DELETE: "delete" }[request.method];
    if (verb === undefined) return status(405, "MethodNotAllowed", request.method);
    if (forbidden.has(`${verb} ${route.resource}`)) {
      const scope = route.namespace
        ? `in the namespace "${route.namespace}"`
        : "at the cluster scope";
      return status(
        403,
        "Forbidden",
        `${route.resource}${route.group ? "." + route.group : ""} "${
          route.name ?? body?.metadata?.name ?? ""
        }" is forbidden: User "alice" cannot ${verb} resource "${route.resource}" in API group "${route.group}" ${scope}`,
      );
    }
    if (request.method === "POST") {
      if (route.name !== undefined || body === undefined) {
        return status(405, "MethodNotAllowed", "POST");
      }
      const name = body.metadata?.name as string;
      const key = `${path}/${name}`;
      if (
        route.namespace &&
        store.get(namespacePath(route.namespace))?.status?.phase === "Terminating"
      ) {
        return status(
          403,
          "Forbidden",
          `${route.resource} "${name}" is forbidden: unable to create new content in namespace ${route.namespace} because it is being terminated`,
        );
      }
      if (store.has(key)) {
        return status(409, "AlreadyExists", `${route.resource} "${name}" already exists`);
      }
      const object = structuredClone(body);
      object.metadata = {
        ...object.metadata,
        ...(route.namespace ? { namespace: route.namespace } : {}),
        uid: crypto.randomUUID(),
        resourceVersion: String(++version),
        creationTimestamp: "2030-01-01T00:00:00Z",
      };
      if (route.resource === "services") {
        object.spec = { clusterIP: "198.18.128.10", clusterIPs: ["198.18.128.10"], ...object.spec };
      }
      if (route.resource === "namespaces") object.status = { phase: "Active" };
      store.set(key, object);
      return Response.json(object, { status: 201 });
    }
    if (route.name === undefined) return status(405, "MethodNotAllowed", request.method);
    const existing = store.get(path);
    if (existing === undefined) {
      return status(404, "NotFound", `${route.resource} "${route.name}" not found`);
    }
    if (request.method === "GET") return Response.json(existing);
    if (request.method === "DELETE") {
      store.delete(path);
      if (route.resource === "namespaces") {
        for (const key of [...store.keys()]) {
          if (key.includes(`/namespaces/${route.name}/`)) store.delete(key);
        }
      }
      return Response.json({ kind: "Status", apiVersion: "v1", status: "Success" });
    }
    // PUT
    if (body?.metadata?.resourceVersion !== existing.metadata.resourceVersion) {
      return status(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${route.resource} "${route.name}": the object has been modified; please apply your changes to the latest version and try again`,
      );
    }
    if (route.resource === "services" && body?.spec?.clusterIP !== existing.spec?.clusterIP) {
      return status(
        422,
        "Invalid",
        `Service "${route.name}" is invalid: spec.clusterIP: Invalid value: "": field is immutable`,
      );
    }
    const object = structuredClone(body!);
    object.metadata = {
      ...object.metadata,
      uid: existing.metadata.uid,
      creationTimestamp: existing.metadata.creationTimestamp,
      resourceVersion: String(++version),
    };
    if (existing.status) object.status = existing.status;
    store.set(path, object);
    return Response.json(object);
  };

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: cert.certPem,
    key: cert.keyPem,
    onListen() {},
  }, handler);
  const url = `https://127.0.0.1:${server.addr.port}`;

  const fake: FakeApiServer = {
    url,
    caPem: ca.certPem,
    token,
    requests,
    store,
    forbid: (verb, resource) => void forbidden.add(`${verb} ${resource}`),
    log: () => requests.map((r) => `${r.method} ${r.path}`),
    kubeconfig(options = {}) {
      return kubeconfigYaml(
        url,
        options.withCa === false ? undefined : ca.certPem,
        options.token ?? token,
      );
    },
    onRequest: undefined,
    close: () => server.shutdown(),
  };
  return fake;
}

/**
 * A kubeconfig with one cluster, one user with a bearer token and one
 * context, `fake`, which is current.
 *
 * @param server The API server's URL.
 * @param caPem The CA to trust; the system's when absent.
 * @param token The bearer token.
 * @returns The YAML text.
 */
export function kubeconfigYaml(server: string, caPem: string | undefined, token: string): string {
  const ca = caPem === undefined ? "" : `\n    certificate-authority-data: ${btoa(caPem)}`;
  return `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: ${server}${ca}
users:
- name: fake
  user:
    token: ${token}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
current-context: fake
`;
}

function namespacePath(namespace: string): string {
  return `/api/v1/namespaces/${namespace}`;
}

interface Route {
  group: string;
  resource: string;
  namespace?: string;
  name?: string;
}

function parsePath(path: string): Route | undefined {
  const match = /^\/(?:api\/v1|apis\/([^/]+)\/[^/]+)\/(.*)$/.exec(path);
  if (!match) return undefined;
  const group = match[1] ?? "";
  const parts = match[2]!.split("/").filter(Boolean);
  if (parts[0] === "namespaces" && parts.length >= 3) {
    return {
      group,
      namespace: parts[1]!,
      resource: parts[2]!,
      ...(parts[3] ? { name: parts[3] } : {}),
    };
  }
  if (parts.length === 0 || parts.length > 2) return undefined;
  return { group, resource: parts[0]!, ...(parts[1] ? { name: parts[1] } : {}) };
}

function status(code: number, reason: string, message: string): Response {
  return Response.json(
    { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code },
    { status: code },
  );
}

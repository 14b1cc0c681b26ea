/**
 * The simulated API server (`tests/sim/apiserver/`) in-process, as the tests of
 * vif's own Kubernetes clients (`vif install`, `uninstall`, `client-cert`) use
 * it: HTTPS on loopback, RBAC from the objects in the store as in the
 * simulated cluster, and the requests it received, from its audit events.
 *
 * The kubeconfig's user is `alice`, an ordinary user (not in `system:masters`)
 * bound to a ClusterRole that allows everything; {@linkcode TestCluster.revoke}
 * takes one verb on one resource out of that role, so a test sees the 403 a
 * real cluster gives to someone without that permission.
 *
 * ```
 *   test ──kubeconfig (alice's token)──► client-node / kubeApi ──HTTPS──► startApiServer()
 *     ▲                                                                 │ authn → RBAC (rbac.ts)
 *     └──── requests (audit events) ◄───────────────────────────────────┘ → Store
 * ```
 *
 * @module
 */

import { kubeconfigYaml } from "./_kubeconfig.ts";
import { TEST_SERVICE_CIDR, waitFor, withApi } from "./sim/apiserver/_testing.ts";
import {
  type ApiServer,
  type AuditEvent,
  type KubeObject,
  type ResourceInfo,
  RESOURCES,
  Store,
} from "./sim/apiserver/mod.ts";
import { resourceAt } from "./sim/apiserver/resources.ts";
import { bootstrapRbac, type PolicyRule, rbacAuthorize } from "./sim/rbac.ts";

/** The user of the kubeconfigs {@linkcode TestCluster.kubeconfig} writes. */
export const USER = "alice";
/** Her bearer token. */
export const USER_TOKEN = "alice-token-0123456789";
/** The ClusterRole (and ClusterRoleBinding) that gives her what she may do. */
const USER_ROLE = "test-user";

/** A stored object as JSON, for tests that reach into it. */
// deno-lint-ignore no-explicit-any
export type StoredObject = Record<string, any>;

/** One request the server answered, as its audit event tells it. */
export interface RecordedRequest {
  /** The HTTP method (`GET`, `POST`, `PUT`, `PATCH`, `DELETE`). */
  method: string;
  /** The URL path, without the query. */
  path: string;
  /** The HTTP status code of the answer. */
  code: number;
  /** The JSON body the client sent, if any. */
  body?: StoredObject;
}

/** A running test cluster. */
export interface TestCluster {
  /** The server. */
  api: ApiServer;
  /** `https://127.0.0.1:PORT`. */
  url: string;
  /** The CA of the server's certificate (PEM). */
  caPem: string;
  /** The objects; write here to play another client or a controller. */
  store: Store;
  /** A temporary directory, removed at the end. */
  dir: string;
  /** Every answered request, in the order they completed; empty it to start afresh. */
  requests: RecordedRequest[];
  /** Called as each authenticated request arrives, before it is handled. */
  onRequest: ((request: { method: string; path: string }) => void) | undefined;
  /** The requests as `METHOD path` lines. */
  log(): string[];
  /**
   * The object an API path names (`/api/v1/namespaces/ns/secrets/name`).
   *
   * @param path the object's path
   * @returns a copy, or undefined
   */
  get(path: string): StoredObject | undefined;
  /**
   * Changes the object an API path names, as another client's update would.
   *
   * @param path the object's path
   * @param fn changes the copy it is given
   * @returns the stored object
   */
  modify(path: string, fn: (object: StoredObject) => void): KubeObject;
  /**
   * Deletes the object an API path names, as another client would.
   *
   * @param path the object's path
   */
  delete(path: string): void;
  /**
   * Waits until the object an API path names is gone (a namespace that
   * finishes terminating).
   *
   * @param path the object's path
   * @param ms how long to wait at most. Default 5 s
   * @throws {Error} when it is still there
   */
  gone(path: string, ms?: number): Promise<void>;
  /**
   * Every stored object as `resource namespace/name` (`resource name` when
   * cluster-scoped), sorted: to compare what a command left with what was there.
   *
   * @returns the lines
   */
  objects(): string[];
  /**
   * Takes `verb` on `resource` (plural, `clusterroles`) out of the user's role.
   *
   * @param verb `get`, `create`, `update`, `delete`, …
   * @param resource the plural resource
   */
  revoke(verb: string, resource: string): void;
  /**
   * A kubeconfig for the server, context `sim`.
   *
   * @param options another token; `withCa: false` to leave the CA out
   * @returns the YAML text
   */
  kubeconfig(options?: { token?: string; withCa?: boolean }): string;
}

/** Options of {@linkcode withCluster}. */
export interface WithClusterOptions {
  /** How long a deleted namespace stays Terminating. Default 300 ms. */
  namespaceDeletionDelayMs?: number;
}

const METHODS: Record<string, string> = {
  get: "GET",
  list: "GET",
  watch: "GET",
  create: "POST",
  update: "PUT",
  patch: "PATCH",
  delete: "DELETE",
  deletecollection: "DELETE",
};

function methodOf(event: AuditEvent): string {
  return METHODS[event.verb] ?? event.verb.toUpperCase();
}

function pathOf(event: AuditEvent): string {
  return event.requestURI.split("?")[0]!;
}

/** `/apis/apps/v1/namespaces/ns/deployments/name` → the resource, namespace and name. */
function locate(path: string): { info: ResourceInfo; namespace?: string; name: string } {
  const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))\/(.+)$/.exec(path);
  const rest = m?.[4]?.split("/") ?? [];
  const namespaced = rest[0] === "namespaces" && rest.length >= 4;
  const [resource, name] = namespaced ? [rest[2], rest[3]] : [rest[0], rest[1]];
  const info = m && resource ? resourceAt(m[2] ?? "", m[1] ?? m[3]!, resource) : undefined;
  if (!info || !name || rest.length > (namespaced ? 4 : 2)) {
    throw new RangeError(`Cannot find the object of path "${path}"`);
  }
  return { info, ...(namespaced ? { namespace: rest[1]! } : {}), name };
}

/** Rules for every verb on every resource (subresources included) but the revoked ones. */
function rulesWithout(revoked: Set<string>): PolicyRule[] {
  const rules: PolicyRule[] = [{ nonResourceURLs: ["*"], verbs: ["*"] }];
  for (const group of new Set(RESOURCES.map((r) => r.group))) {
    const whole: string[] = [];
    for (const r of RESOURCES.filter((x) => x.group === group)) {
      whole.push(...r.subresources.map((s) => `${r.resource}/${s.name}`));
      const kept = r.verbs.filter((v) => !revoked.has(`${v} ${r.resource}`));
      if (kept.length === r.verbs.length) whole.push(r.resource);
      else if (kept.length > 0) {
        rules.push({ apiGroups: [group], resources: [r.resource], verbs: kept });
      }
    }
    rules.push({ apiGroups: [group], resources: whole, verbs: ["*"] });
  }
  // Impersonation (kubectl --as): users and groups are no stored resource.
  const impersonable = IMPERSONABLE.filter((r) => !revoked.has(`impersonate ${r}`));
  if (impersonable.length > 0) {
    rules.push({ apiGroups: [""], resources: impersonable, verbs: ["impersonate"] });
  }
  return rules;
}

/** What `impersonate` applies to besides stored resources (`--as`, `--as-group`). */
const IMPERSONABLE = ["users", "groups"];

/**
 * Runs `fn` with a simulated API server on 127.0.0.1, then closes it and
 * removes every file made.
 *
 * @param fn the test body
 * @param options namespace deletion delay
 */
export async function withCluster(
  fn: (cluster: TestCluster) => Promise<void>,
  options: WithClusterOptions = {},
): Promise<void> {
  const store = new Store({
    serviceCidr: TEST_SERVICE_CIDR,
    ...(options.namespaceDeletionDelayMs !== undefined
      ? { namespaceDeletionDelayMs: options.namespaceDeletionDelayMs }
      : {}),
  });
  for (const object of bootstrapRbac()) store.create(object);
  const revoked = new Set<string>();
  store.create({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: USER_ROLE },
    rules: rulesWithout(revoked),
  });
  store.create({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: USER_ROLE },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: USER_ROLE },
    subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: USER }],
  });
  const requests: RecordedRequest[] = [];
  /** Long-running requests recorded when they started, not yet complete. */
  const started = new Set<string>();
  let cluster: TestCluster | undefined;
  const sink = (event: AuditEvent) => {
    const request = { method: methodOf(event), path: pathOf(event) };
    if (event.stage === "RequestReceived") {
      cluster?.onRequest?.(request);
      return;
    }
    // One record a request: when it started (a watch, a port-forward, a
    // refused token), or else when it completed.
    if (event.stage === "ResponseComplete" && started.delete(event.auditID)) return;
    if (event.stage === "ResponseStarted" && event.user.username !== undefined) {
      started.add(event.auditID);
    }
    const body = event.requestObject;
    requests.push({
      ...request,
      code: event.responseStatus?.code ?? 0,
      ...(body !== null && typeof body === "object" && !Array.isArray(body)
        ? { body: body as StoredObject }
        : {}),
    });
  };
  await withApi(async (t) => {
    const ref = (path: string) => {
      const { info, namespace, name } = locate(path);
      return {
        resource: info.group ? `${info.resource}.${info.group}` : info.resource,
        ...(namespace ? { namespace } : {}),
        name,
      };
    };
    cluster = {
      api: t.api,
      url: t.api.url,
      caPem: t.tls.caPem,
      store,
      dir: t.dir,
      requests,
      onRequest: undefined,
      log: () => requests.map((r) => `${r.method} ${r.path}`),
      get: (path) => store.get(ref(path)),
      modify: (path, fn) => store.modify(ref(path), fn),
      delete: (path) => void store.delete(ref(path)),
      gone: (path, ms = 5000) =>
        waitFor(() => store.get(ref(path)) === undefined, ms, `${path} to be gone`),
      objects() {
        return RESOURCES.flatMap((info) =>
          store.list(info).map((o) =>
            `${info.resource} ${
              o.metadata.namespace ? `${o.metadata.namespace}/` : ""
            }${o.metadata.name}`
          )
        ).sort();
      },
      revoke(verb, resource) {
        const impersonation = verb === "impersonate" && IMPERSONABLE.includes(resource);
        if (
          !impersonation &&
          !RESOURCES.some((r) => r.resource === resource && r.verbs.includes(verb))
        ) {
          throw new RangeError(
            `Cannot revoke "${verb}" on "${resource}": no such resource or verb`,
          );
        }
        revoked.add(`${verb} ${resource}`);
        store.modify(
          { resource: "clusterroles.rbac.authorization.k8s.io", name: USER_ROLE },
          (r) => {
            r.rules = rulesWithout(revoked);
          },
        );
      },
      kubeconfig(kubeconfigOptions = {}) {
        return kubeconfigYaml(t.api.url, {
          token: kubeconfigOptions.token ?? USER_TOKEN,
          ...(kubeconfigOptions.withCa === false ? {} : { caPem: t.tls.caPem }),
        });
      },
    };
    await fn(cluster);
  }, {
    store,
    tokens: { [USER_TOKEN]: { user: USER } },
    authorize: (a) => rbacAuthorize(store, a),
    audit: { level: "Request", sink },
  });
}

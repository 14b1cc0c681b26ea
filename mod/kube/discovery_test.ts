/**
 * Manager discovery against an in-memory {@linkcode KubeApi}: what it reads,
 * and the two lines a user sees for each permission of the Role `vif-user`
 * the API server refuses.
 */

import { assertEquals, assertMatch, assertRejects } from "../../tests/_assert.ts";
import { type KubeApi, KubeApiError } from "./api.ts";
import {
  discoverDirectListener,
  discoverManager,
  DiscoveryError,
  portForwardVerbsDenied,
  readManagerCa,
} from "./discovery.ts";
import { managerManifests } from "./manifests.ts";
import { createClientCa, createManagerTls } from "./x509.ts";

/** The DiscoveryError `run` rejects with. */
async function refusal(run: () => Promise<unknown>): Promise<DiscoveryError> {
  return await assertRejects(run, DiscoveryError) as DiscoveryError;
}

const SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

// deno-lint-ignore no-explicit-any
type Json = any;

/** A fake cluster: objects by path, paths that answer 403, and port-forward verbs allowed. */
class MemoryApi implements KubeApi {
  readonly server = "https://198.18.0.1:6443";
  readonly objects = new Map<string, Json>();
  readonly forbidden = new Set<string>();
  readonly requests: string[] = [];
  allowedVerbs = new Set(["create", "get"]);
  /** What a SelfSubjectReview answers: a name, or undefined for a 404 (an old server). */
  username: string | undefined = undefined;

  get<T>(path: string): Promise<T> {
    this.requests.push(`GET ${path}`);
    const key = path.split("?")[0]!;
    if (this.forbidden.has(key)) {
      const resource = key.split("/")[5] ?? key.split("/")[4];
      return Promise.reject(
        new KubeApiError(
          `HTTP 403: ${resource} is forbidden: User "alice" cannot get resource "${resource}"`,
          403,
          { reason: "Forbidden" },
        ),
      );
    }
    if (key.endsWith("/pods")) {
      const items = [...this.objects.entries()]
        .filter(([p]) => p.startsWith(`${key}/`))
        .map(([, o]) => o);
      return Promise.resolve({ items } as T);
    }
    const found = this.objects.get(key);
    if (found === undefined) {
      return Promise.reject(new KubeApiError(`HTTP 404: not found`, 404, { reason: "NotFound" }));
    }
    return Promise.resolve(structuredClone(found) as T);
  }

  post<T>(path: string, body: Json): Promise<T> {
    this.requests.push(`POST ${path}`);
    if (path === SSAR) {
      const verb = body.spec.resourceAttributes.verb;
      return Promise.resolve({ status: { allowed: this.allowedVerbs.has(verb) } } as T);
    }
    if (path === WHOAMI && this.username !== undefined) {
      return Promise.resolve({ status: { userInfo: { username: this.username } } } as T);
    }
    return Promise.reject(new KubeApiError("HTTP 404: not found", 404));
  }
}

const tls = await createManagerTls("vif-system");
const clientCa = await createClientCa("vif-system");

/** A cluster with the manager installed as `vif install` makes it, and one Ready pod. */
function installed(options: { namespace?: string; direct?: boolean } = {}): MemoryApi {
  const namespace = options.namespace ?? "vif-system";
  const api = new MemoryApi();
  const objects = managerManifests({
    namespace,
    tls,
    ...(options.direct ? { clientCa } : {}),
  }) as Json[];
  const path = (o: Json) =>
    `/api/v1/namespaces/${namespace}/${o.kind.toLowerCase()}s/${o.metadata.name}`;
  for (const o of objects) {
    if (["Secret", "ConfigMap", "Service"].includes(o.kind)) api.objects.set(path(o), o);
  }
  const deployment = objects.find((o) => o.kind === "Deployment");
  api.objects.set(`/api/v1/namespaces/${namespace}/pods/traffic-manager-1`, {
    metadata: { name: "traffic-manager-1", labels: deployment.spec.template.metadata.labels },
    spec: deployment.spec.template.spec,
    status: {
      phase: "Running",
      podIP: "198.18.1.5",
      conditions: [{ type: "Ready", status: "True" }],
    },
  });
  return api;
}

const CONFIGMAP = "/api/v1/namespaces/vif-system/configmaps/traffic-manager-ca";

Deno.test("discoverManager() finds the ready pod and port, and reads the CA from the ConfigMap only", async () => {
  const api = installed();
  const found = await discoverManager(api, "vif-system");
  assertEquals([found.pod, found.podIP, found.port], ["traffic-manager-1", "198.18.1.5", 8081]);
  assertEquals(found.caPem, tls.caPem);
  assertEquals(api.requests.filter((r) => r.includes("/secrets/")), []);
  assertEquals(api.requests.filter((r) => r === `POST ${SSAR}`).length, 2);
});

Deno.test("discoverManager() says an install without the ConfigMap is an older vif's", async () => {
  const api = installed();
  api.objects.delete(CONFIGMAP);
  const error = await refusal(() => discoverManager(api, "vif-system"));
  assertEquals(
    error.message,
    'the traffic-manager in "vif-system" was installed by an older vif (no ConfigMap "traffic-manager-ca")',
  );
  assertEquals(error.hint, "Run `vif install` again to upgrade it.");
});

Deno.test("discoverManager() names the ConfigMap and the Role when it may not read the CA", async () => {
  const api = installed();
  api.forbidden.add(CONFIGMAP);
  const error = await refusal(() => discoverManager(api, "vif-system"));
  assertEquals(
    error.message,
    'not allowed to read the ConfigMap "traffic-manager-ca" in "vif-system"',
  );
  // The user the API server named in its refusal.
  assertEquals(
    error.hint,
    "Ask a cluster admin to run `vif install --grant-user alice` (Role vif-user in vif-system).",
  );
});

Deno.test("discoverManager() names the missing port-forward permission in two lines", async () => {
  const api = installed();
  api.allowedVerbs = new Set(["get"]);
  const error = await refusal(() => discoverManager(api, "vif-system"));
  assertEquals(
    error.message,
    'not allowed to port-forward to pods in namespace "vif-system" (create pods/portforward)',
  );
  assertEquals(
    error.hint,
    'Ask a cluster admin to run `vif install --grant-user <you>`, which grants the Role vif-user in "vif-system".',
  );
  // With the name the API server knows the user by, quoted for a shell when it needs it.
  api.username = "oidc:dev@example.com";
  const named = await refusal(() => discoverManager(api, "vif-system"));
  assertMatch(named.hint, /`vif install --grant-user oidc:dev@example\.com`/);
  api.username = "Dev Team";
  const quoted = await refusal(() => discoverManager(api, "vif-system"));
  assertMatch(quoted.hint, /`vif install --grant-user 'Dev Team'`/);
  // A WebSocket port-forward is a GET: a Role with create alone is not enough before 1.35.
  api.allowedVerbs = new Set(["create"]);
  const get = await refusal(() => discoverManager(api, "vif-system"));
  assertMatch(get.message, /\(get pods\/portforward\)$/);
});

Deno.test("discoverManager() names the verb and resource when listing pods or reading the Service is refused", async () => {
  const pods = installed();
  pods.forbidden.add("/api/v1/namespaces/vif-system/pods");
  const listing = await refusal(() => discoverManager(pods, "vif-system"));
  assertEquals(
    listing.message,
    `not allowed to list the traffic-manager's pods in namespace "vif-system" (list pods)`,
  );
  assertMatch(listing.hint, /`vif install --grant-user alice`, which grants the Role vif-user/);

  const service = installed({ namespace: "dev" });
  service.forbidden.add("/api/v1/namespaces/dev/services/traffic-manager");
  const reading = await refusal(() => discoverManager(service, "dev"));
  assertEquals(
    reading.message,
    `not allowed to read the traffic-manager's Service in namespace "dev" (get services)`,
  );
  assertEquals(
    reading.hint,
    'Ask a cluster admin to run `vif install --namespace dev --grant-user alice`, which grants the Role vif-user in "dev".',
  );
});

Deno.test("discoverManager() goes on when the server cannot answer an access review", async () => {
  const api = installed();
  api.post = <T>(path: string) => Promise.reject(new KubeApiError(`HTTP 404: ${path}`, 404)) as T;
  assertEquals(await portForwardVerbsDenied(api, "vif-system"), []);
  assertEquals((await discoverManager(api, "vif-system")).caPem, tls.caPem);
});

Deno.test("readManagerCa() refuses a ConfigMap without a certificate", async () => {
  const api = installed();
  api.objects.set(CONFIGMAP, { data: { "ca.crt": "not a certificate" } });
  const error = await refusal(() => readManagerCa(api, "vif-system"));
  assertMatch(
    error.message,
    /^the ConfigMap "vif-system\/traffic-manager-ca" holds no usable CA in ca\.crt: it holds no PEM certificate$/,
  );
});

Deno.test("discoverDirectListener() reads the client CA, the manager's CA and the direct port", async () => {
  const api = installed({ direct: true });
  const listener = await discoverDirectListener(api, "vif-system");
  assertEquals(listener.clientCa, { certPem: clientCa.certPem, keyPem: clientCa.keyPem });
  assertEquals(listener.caPem, tls.caPem);
  assertEquals(listener.port, 8443);
});

Deno.test("discoverDirectListener() says when there is no direct listener, or the Secret is not for this user", async () => {
  const none = installed();
  const error = await refusal(() => discoverDirectListener(none, "vif-system"));
  assertEquals(
    error.message,
    'the traffic-manager in "vif-system" has no direct listener (no Secret "traffic-manager-client-ca")',
  );
  assertEquals(error.hint, "Install it with `vif install --direct`.");

  const off = installed({ direct: true });
  const service = off.objects.get("/api/v1/namespaces/vif-system/services/traffic-manager");
  service.spec.ports = service.spec.ports.slice(0, 1); // Installed again without --direct.
  const noPort = await refusal(() => discoverDirectListener(off, "vif-system"));
  assertMatch(noPort.message, /has no direct listener \(its Service has no port "direct"\)$/);

  const user = installed({ direct: true });
  user.forbidden.add("/api/v1/namespaces/vif-system/secrets/traffic-manager-client-ca");
  const refused = await refusal(() => discoverDirectListener(user, "vif-system"));
  assertEquals(
    refused.message,
    'not allowed to read the Secret "traffic-manager-client-ca" in "vif-system"',
  );
  assertMatch(refused.hint, /^Only an admin who may read Secrets in "vif-system"/);
});

import { main, memoryIo } from "../cli/mod.ts";
import { VERSION } from "../version.ts";
import { assert, assertEquals, assertThrows } from "../../tests/_assert.ts";
import {
  clusterRoleName,
  defaultImage,
  displayName,
  grantSubjects,
  managerManifests,
  managerSelector,
  mergeSubjects,
  TLS_MOUNT_PATH,
} from "./manifests.ts";

const TLS = { caPem: "CA PEM\n", certPem: "CERT PEM\n", keyPem: "KEY PEM\n" };
const CLIENT_CA = { certPem: "CLIENT CA PEM\n", keyPem: "CLIENT CA KEY\n" };

// deno-lint-ignore no-explicit-any
type Any = any;

function byKind(objects: readonly { kind: string }[], kind: string): Any {
  const found = objects.find((o) => o.kind === kind);
  assert(found !== undefined, `no ${kind}`);
  return found;
}

Deno.test("managerManifests() lists the objects in apply order with their names", () => {
  const objects = managerManifests({ tls: TLS });
  assertEquals(objects.map(displayName), [
    "namespace/vif-system",
    "serviceaccount/traffic-manager",
    "clusterrole.rbac.authorization.k8s.io/vif-traffic-manager",
    "clusterrolebinding.rbac.authorization.k8s.io/vif-traffic-manager",
    "clusterrolebinding.rbac.authorization.k8s.io/vif-traffic-manager-auth-delegator",
    "secret/traffic-manager-tls",
    "configmap/traffic-manager-ca",
    "role.rbac.authorization.k8s.io/vif-user",
    "deployment.apps/traffic-manager",
    "service/traffic-manager",
  ]);
  const all = managerManifests({
    tls: TLS,
    clientCa: CLIENT_CA,
    userSubjects: grantSubjects(["dev"]),
  });
  assertEquals(all.map(displayName), [
    "namespace/vif-system",
    "serviceaccount/traffic-manager",
    "clusterrole.rbac.authorization.k8s.io/vif-traffic-manager",
    "clusterrolebinding.rbac.authorization.k8s.io/vif-traffic-manager",
    "clusterrolebinding.rbac.authorization.k8s.io/vif-traffic-manager-auth-delegator",
    "secret/traffic-manager-tls",
    "secret/traffic-manager-client-ca",
    "configmap/traffic-manager-ca",
    "role.rbac.authorization.k8s.io/vif-user",
    "rolebinding.rbac.authorization.k8s.io/vif-user",
    "deployment.apps/traffic-manager",
    "service/traffic-manager",
  ]);
  for (const object of all.slice(1)) {
    const namespaced = !object.kind.startsWith("Cluster");
    assertEquals(object.metadata.namespace, namespaced ? "vif-system" : undefined);
    assertEquals(object.metadata.labels?.["app.kubernetes.io/part-of"], "vif");
    assertEquals(object.metadata.labels?.["app.kubernetes.io/version"], VERSION);
    assertEquals(object.metadata.annotations?.["vif.dev/version"], VERSION);
  }
});

Deno.test("managerManifests() grants exactly what the manager needs", () => {
  const objects = managerManifests({ tls: TLS });
  assertEquals(byKind(objects, "ClusterRole").rules, [
    {
      apiGroups: [""],
      resources: ["pods", "services", "nodes", "namespaces"],
      verbs: ["get", "list", "watch"],
    },
    { apiGroups: [""], resources: ["services"], verbs: ["create", "delete"] },
    { apiGroups: ["networking.k8s.io"], resources: ["servicecidrs"], verbs: ["list", "watch"] },
    // Intercepts: read, never write, the workloads and their claims.
    {
      apiGroups: ["apps"],
      resources: ["deployments", "replicasets", "statefulsets"],
      verbs: ["get"],
    },
  ]);
  const bindings: Any[] = objects.filter((o) => o.kind === "ClusterRoleBinding");
  assertEquals(bindings.map((b) => b.roleRef), [
    { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "vif-traffic-manager" },
    // TokenReview, for the agents' tokens.
    { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:auth-delegator" },
  ]);
  for (const binding of bindings) {
    assertEquals(binding.subjects, [
      { kind: "ServiceAccount", name: "traffic-manager", namespace: "vif-system" },
    ]);
  }
});

Deno.test("managerManifests() lets users find, port-forward to and trust the manager, and read no Secret", () => {
  const objects = managerManifests({ tls: TLS });
  const role = byKind(objects, "Role");
  assertEquals(role.metadata.name, "vif-user");
  assertEquals(role.metadata.namespace, "vif-system");
  assertEquals(role.rules, [
    { apiGroups: [""], resources: ["pods", "services"], verbs: ["get", "list"] },
    // get: a WebSocket upgrade is a GET, all API servers before 1.35 ask for that alone.
    { apiGroups: [""], resources: ["pods/portforward"], verbs: ["create", "get"] },
    {
      apiGroups: [""],
      resources: ["configmaps"],
      verbs: ["get"],
      resourceNames: ["traffic-manager-ca"],
    },
  ]);
  assert(!JSON.stringify(role.rules).includes("secrets"), "users may read a Secret");
  // Nobody is bound until someone is granted.
  assert(!objects.some((o) => o.kind === "RoleBinding"), "a RoleBinding with no subjects");
  const configMap = byKind(objects, "ConfigMap");
  assertEquals(configMap.metadata.name, "traffic-manager-ca");
  assertEquals(configMap.data, { "ca.crt": TLS.caPem });
});

Deno.test("managerManifests() binds the users and groups granted to the Role vif-user", () => {
  const objects = managerManifests({
    tls: TLS,
    namespace: "dev",
    userSubjects: grantSubjects(["alice", "bob@example.com"], ["devs"]),
  });
  const binding = byKind(objects, "RoleBinding");
  assertEquals(binding.metadata.name, "vif-user");
  assertEquals(binding.metadata.namespace, "dev");
  assertEquals(binding.roleRef, {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "Role",
    name: "vif-user",
  });
  assertEquals(binding.subjects, [
    { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "alice" },
    { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "bob@example.com" },
    { apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "devs" },
  ]);
});

Deno.test("grantSubjects() and mergeSubjects() add subjects once and never drop one", () => {
  const existing = [
    { kind: "ServiceAccount", name: "ci", namespace: "build" },
    ...grantSubjects(["alice"]),
  ];
  const merged = mergeSubjects(existing, grantSubjects(["alice", "bob"], ["alice"]));
  assertEquals(merged.map((s) => `${s.kind}:${s.name}`), [
    "ServiceAccount:ci",
    "User:alice",
    "User:bob",
    "Group:alice",
  ]);
  assertEquals(mergeSubjects(existing, []), existing);
  assertEquals(grantSubjects(["a", "a"]).length, 1);
  assertThrows(() => grantSubjects([""]), RangeError);
  assertThrows(() => grantSubjects([], ["dev\nops"]), RangeError);
});

Deno.test("managerManifests() puts the TLS material in a kubernetes.io/tls Secret with ca.crt", () => {
  const secret = byKind(managerManifests({ tls: TLS }), "Secret");
  assertEquals(secret.type, "kubernetes.io/tls");
  assertEquals(Object.keys(secret.data).sort(), ["ca.crt", "tls.crt", "tls.key"]);
  assertEquals(atob(secret.data["ca.crt"]), TLS.caPem);
  assertEquals(atob(secret.data["tls.crt"]), TLS.certPem);
  assertEquals(atob(secret.data["tls.key"]), TLS.keyPem);
});

Deno.test("managerManifests() runs the manager locked down, with the Secret as its --tls-dir", () => {
  const deployment = byKind(managerManifests({ tls: TLS }), "Deployment");
  assertEquals(deployment.spec.replicas, 1);
  assertEquals(deployment.spec.selector.matchLabels, managerSelector());
  const pod = deployment.spec.template.spec;
  assertEquals(
    deployment.spec.template.metadata.labels["app.kubernetes.io/name"],
    "traffic-manager",
  );
  assertEquals(pod.serviceAccountName, "traffic-manager");
  assertEquals(pod.securityContext.runAsNonRoot, true);
  assertEquals(pod.securityContext.runAsUser, 65532);
  assertEquals(pod.securityContext.seccompProfile, { type: "RuntimeDefault" });
  const [container] = pod.containers;
  assertEquals(container.image, `ghcr.io/vif-dev/vif:${VERSION}`);
  assertEquals(container.command, ["/vif"]);
  assertEquals(container.args, ["--serve", "--tls-dir", TLS_MOUNT_PATH]);
  assertEquals(TLS_MOUNT_PATH, "/var/run/secrets/vif/tls");
  assertEquals(container.env, [
    { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
    { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
  ]);
  assertEquals(container.ports, [
    { name: "grpc", containerPort: 8081, protocol: "TCP" },
    { name: "health", containerPort: 8082, protocol: "TCP" },
    { name: "agent", containerPort: 8083, protocol: "TCP" },
  ]);
  // The kubelet probes the pod IP: the health port, not the loopback-only client port.
  assertEquals(container.readinessProbe, {
    httpGet: { path: "/readyz", port: "health" },
    periodSeconds: 5,
    failureThreshold: 3,
  });
  assertEquals(container.livenessProbe, {
    httpGet: { path: "/livez", port: "health" },
    initialDelaySeconds: 5,
    periodSeconds: 10,
    timeoutSeconds: 3,
    failureThreshold: 3,
  });
  assertEquals(container.securityContext, {
    runAsNonRoot: true,
    runAsUser: 65532,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
  });
  assert(container.resources.requests.cpu && container.resources.limits.memory, "no resources");
  assertEquals(container.volumeMounts[0], {
    name: "tls",
    mountPath: TLS_MOUNT_PATH,
    readOnly: true,
  });
  assertEquals(pod.volumes[0].secret.secretName, "traffic-manager-tls");
  // The pod mounts no other Secret (the client CA's key stays out of it).
  assertEquals(
    pod.volumes.filter((v: Any) => v.secret).map((v: Any) => v.secret.secretName),
    ["traffic-manager-tls"],
  );
});

Deno.test("managerManifests() with a client CA serves mutual TLS on port 8443 named direct", () => {
  const objects = managerManifests({ tls: TLS, clientCa: CLIENT_CA });
  const secrets = objects.filter((o) => o.kind === "Secret") as Any[];
  assertEquals(secrets.map((s) => s.metadata.name), [
    "traffic-manager-tls",
    "traffic-manager-client-ca",
  ]);
  const [tls, clientCa] = secrets;
  assertEquals(Object.keys(tls.data).sort(), ["ca.crt", "client-ca.crt", "tls.crt", "tls.key"]);
  assertEquals(atob(tls.data["client-ca.crt"]), CLIENT_CA.certPem);
  assertEquals(clientCa.type, "Opaque");
  assertEquals(clientCa.data, {
    "ca.crt": btoa(CLIENT_CA.certPem),
    "ca.key": btoa(CLIENT_CA.keyPem),
  });
  const deployment = byKind(objects, "Deployment");
  const [container] = deployment.spec.template.spec.containers;
  assertEquals(container.args, [
    "--serve",
    "--tls-dir",
    TLS_MOUNT_PATH,
    "--direct-listen",
    "0.0.0.0:8443",
  ]);
  assertEquals(container.ports.at(-1), { name: "direct", containerPort: 8443, protocol: "TCP" });
  const service = byKind(objects, "Service");
  assertEquals(service.spec.ports, [
    { name: "grpc", port: 8081, targetPort: "grpc", protocol: "TCP" },
    { name: "agent", port: 8083, targetPort: "agent", protocol: "TCP" },
    { name: "direct", port: 8443, targetPort: "direct", protocol: "TCP" },
  ]);
  // A new client CA restarts the manager, which reads what it trusts when it starts.
  const hash = (o: typeof objects) =>
    (byKind(o, "Deployment")).spec.template.metadata.annotations["vif.dev/tls-sha256"];
  assert(hash(objects) !== hash(managerManifests({ tls: TLS })), "the hash did not change");
});

Deno.test("managerManifests() passes the allowed also-proxy subnets, and refuses what is not a CIDR", () => {
  const objects = managerManifests({
    tls: TLS,
    allowAlsoProxy: ["198.18.64.0/24", "2001:db8::/64", "198.18.64.9/24"],
  });
  const [container] = byKind(objects, "Deployment").spec.template.spec.containers;
  assertEquals(container.args.slice(3), [
    "--allow-also-proxy",
    "198.18.64.0/24",
    "--allow-also-proxy",
    "2001:db8::/64",
  ]);
  assertThrows(
    () => managerManifests({ tls: TLS, allowAlsoProxy: ["198.18.64.0/33"] }),
    RangeError,
    'Cannot allow also-proxy subnet "198.18.64.0/33": not a CIDR',
  );
});

Deno.test("managerManifests() rolls the pods when the certificate changes", () => {
  const hash = (certPem: string) =>
    byKind(managerManifests({ tls: { ...TLS, certPem } }), "Deployment").spec.template.metadata
      .annotations["vif.dev/tls-sha256"];
  assertEquals(hash("a"), hash("a"));
  assert(hash("a") !== hash("b"), "the hash did not change");
});

Deno.test("managerManifests() takes the namespace, image, replicas and extra flags", () => {
  const objects = managerManifests({
    tls: TLS,
    namespace: "dev",
    image: "registry.example/vif:test",
    replicas: 2,
    extraArgs: ["--namespaces", "a,b"],
  });
  assertEquals(objects[0].metadata.name, "dev");
  assertEquals(objects[2].metadata.name, clusterRoleName("dev"));
  const deployment = byKind(objects, "Deployment");
  assertEquals(deployment.metadata.namespace, "dev");
  assertEquals(deployment.spec.replicas, 2);
  const [container] = deployment.spec.template.spec.containers;
  assertEquals(container.image, "registry.example/vif:test");
  assertEquals(container.args.slice(-2), ["--namespaces", "a,b"]);
  assertThrows(() => managerManifests({ tls: TLS, replicas: -1 }), RangeError);
  assertEquals(defaultImage("9.9.9"), "ghcr.io/vif-dev/vif:9.9.9");
});

Deno.test("managerManifests() names port 8081 grpc in a ClusterIP Service, for discovery", () => {
  const service = byKind(managerManifests({ tls: TLS }), "Service");
  assertEquals(service.spec, {
    type: "ClusterIP",
    selector: managerSelector(),
    ports: [
      { name: "grpc", port: 8081, targetPort: "grpc", protocol: "TCP" },
      { name: "agent", port: 8083, targetPort: "agent", protocol: "TCP" },
    ],
  });
});

Deno.test("the Deployment passes only flags that vif manager knows", async () => {
  const io = memoryIo();
  assertEquals(await main(["manager", "--help"], { io }), 0);
  const [container] = byKind(managerManifests({ tls: TLS }), "Deployment").spec.template.spec
    .containers;
  for (const arg of container.args.slice(1) as string[]) {
    if (arg.startsWith("--")) assert(io.out.includes(`${arg} `), `vif manager has no ${arg}`);
  }
  assertEquals(container.args[0], "--serve");
});

Deno.test("the Deployment's direct and also-proxy flags are flags vif manager knows", async () => {
  const io = memoryIo();
  assertEquals(await main(["manager", "--help"], { io }), 0);
  const objects = managerManifests({
    tls: TLS,
    clientCa: CLIENT_CA,
    allowAlsoProxy: ["198.18.64.0/24"],
  });
  const [container] = byKind(objects, "Deployment").spec.template.spec.containers;
  for (const arg of container.args.slice(1) as string[]) {
    if (arg.startsWith("--")) assert(io.out.includes(`${arg} `), `vif manager has no ${arg}`);
  }
});

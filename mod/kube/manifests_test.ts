import { main, memoryIo } from "../cli/mod.ts";
import { VERSION } from "../version.ts";
import { assert, assertEquals, assertThrows } from "../../tests/_assert.ts";
import {
  clusterRoleName,
  defaultImage,
  displayName,
  managerManifests,
  managerSelector,
  TLS_MOUNT_PATH,
} from "./manifests.ts";

const TLS = { caPem: "CA PEM\n", certPem: "CERT PEM\n", keyPem: "KEY PEM\n" };

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
    "secret/traffic-manager-tls",
    "deployment.apps/traffic-manager",
    "service/traffic-manager",
  ]);
  for (const object of objects.slice(1)) {
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
  ]);
  const binding = byKind(objects, "ClusterRoleBinding");
  assertEquals(binding.roleRef, {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "ClusterRole",
    name: "vif-traffic-manager",
  });
  assertEquals(binding.subjects, [
    { kind: "ServiceAccount", name: "traffic-manager", namespace: "vif-system" },
  ]);
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
  assertEquals(container.ports, [{ name: "grpc", containerPort: 8081, protocol: "TCP" }]);
  assertEquals(container.readinessProbe.tcpSocket, { port: 8081 });
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

Deno.test("managerManifests() exposes port 8081 named grpc through a ClusterIP Service", () => {
  const service = byKind(managerManifests({ tls: TLS }), "Service");
  assertEquals(service.spec, {
    type: "ClusterIP",
    selector: managerSelector(),
    ports: [{ name: "grpc", port: 8081, targetPort: "grpc", protocol: "TCP" }],
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

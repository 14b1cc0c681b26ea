/**
 * The traffic-manager's Kubernetes objects, as plain values: what `vif
 * install` applies and `vif install --dry-run -o yaml` prints. Pure: no I/O,
 * no clock; the TLS material is passed in.
 *
 * The names are exported constants so that discovery (the client finds the
 * Service, a Ready pod of {@linkcode managerSelector}, and reads `ca.crt` from
 * the {@linkcode CA_CONFIGMAP_NAME} ConfigMap) uses the same ones.
 *
 * Who may read what: the manager's key is in the {@linkcode TLS_SECRET_NAME}
 * Secret, which only the manager's pod mounts; users get the Role
 * {@linkcode USER_ROLE_NAME} (read pods and services, port-forward, read the
 * CA's ConfigMap: no Secret), which is all `vif connect` needs. The manager's
 * client port listens on loopback in its pod, so `pods/portforward` is the
 * only way in, and RBAC decides who takes it. With a client CA (`vif install
 * --direct`) the manager also serves mutual TLS on the pod IP; the client
 * CA's key is in the {@linkcode CLIENT_CA_SECRET_NAME} Secret, mounted by
 * nothing, read only by admins who issue client certificates.
 *
 * @example The objects in apply order
 * ```ts
 * import { managerManifests } from "./manifests.ts";
 *
 * const tls = { caPem: "ca", certPem: "cert", keyPem: "key" };
 * const kinds = managerManifests({ tls }).map((o) => o.kind);
 * if (kinds[0] !== "Namespace" || kinds.at(-1) !== "Service") throw new Error(kinds.join());
 * if (!kinds.includes("ConfigMap") || !kinds.includes("Role")) throw new Error(kinds.join());
 * ```
 *
 * @module
 */

import { DEFAULT_AGENT_LISTENER_PORT } from "./agent_config.ts";
import type {
  RbacV1Subject,
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1Deployment,
  V1Namespace,
  V1ResourceRequirements,
  V1Role,
  V1RoleBinding,
  V1Secret,
  V1Service,
  V1ServiceAccount,
} from "@kubernetes/client-node";
import { createHash } from "node:crypto";
import { Cidr } from "../net/address.ts";
import {
  DEFAULT_DIRECT_PORT,
  DEFAULT_HEALTH_PORT,
  DEFAULT_MANAGER_NAMESPACE,
  DEFAULT_MANAGER_PORT,
} from "../rpc/names.ts";
import { VERSION } from "../version.ts";
import type { ManagerTls, PemKeyPair } from "./pem.ts";

/** The name of the manager's Deployment, Service and ServiceAccount. */
export const MANAGER_NAME = "traffic-manager";
/**
 * The name of the Secret (type `kubernetes.io/tls`, with `ca.crt`, and
 * `client-ca.crt` when the direct listener is on) the manager serves with.
 * Only the manager's pod mounts it; users never read it.
 */
export const TLS_SECRET_NAME = "traffic-manager-tls";
/** The name of the ConfigMap that publishes the manager's CA certificate (`ca.crt`) to users. */
export const CA_CONFIGMAP_NAME = "traffic-manager-ca";
/** The key of the CA certificate in the {@linkcode CA_CONFIGMAP_NAME} ConfigMap. */
export const CA_CONFIGMAP_KEY = "ca.crt";
/**
 * The name of the Secret holding the client CA's certificate and key (`ca.crt`,
 * `ca.key`), with which admins issue the direct listener's client certificates.
 * No pod mounts it.
 */
export const CLIENT_CA_SECRET_NAME = "traffic-manager-client-ca";
/** The keys of the {@linkcode CLIENT_CA_SECRET_NAME} Secret. */
export const CLIENT_CA_KEYS = { certPem: "ca.crt", keyPem: "ca.key" } as const;
/** The key in the TLS Secret of the client CA's certificate, which the manager trusts. */
export const CLIENT_CA_TLS_KEY = "client-ca.crt";
/** The name of the Role (and its RoleBinding) that lets a user run `vif connect`. */
export const USER_ROLE_NAME = "vif-user";
/** Where the TLS Secret is mounted in the manager's container (its `--tls-dir`). */
export const TLS_MOUNT_PATH = "/var/run/secrets/vif/tls";
/**
 * The name of the manager's client port, in the container and the Service.
 * The port listens on loopback in the pod: the Service names it so that
 * discovery learns its number, not for traffic.
 */
export const GRPC_PORT_NAME = "grpc";
/** The name of the manager's health port (HTTP `/readyz`, `/livez`), for the kubelet's probes. */
export const HEALTH_PORT_NAME = "health";
/** The name of the manager's direct (mutual TLS) port, in the container and the Service. */
export const DIRECT_PORT_NAME = "direct";
/** The name of the manager's agent port (the traffic-agents'), in the container and the Service. */
export const AGENT_PORT_NAME = "agent";
/** The RBAC API group, as subjects and role references name it. */
export const RBAC_GROUP = "rbac.authorization.k8s.io";
/** The image repository of vif; the tag is the version. */
export const IMAGE_REPOSITORY = "ghcr.io/vif-dev/vif";
/** The uid and gid the manager runs as (distroless "nonroot"). */
export const MANAGER_UID = 65532;
/** The path of the vif binary in the image (see the Dockerfile). */
export const IMAGE_BINARY = "/vif";

/** Label keys (the recommended `app.kubernetes.io/` ones). */
export const LABEL = {
  name: "app.kubernetes.io/name",
  partOf: "app.kubernetes.io/part-of",
  version: "app.kubernetes.io/version",
  managedBy: "app.kubernetes.io/managed-by",
} as const;

/** Annotation keys of vif. */
export const ANNOTATION = {
  /** The version of vif that wrote the object. */
  version: "vif.dev/version",
  /** SHA-256 of the served certificate, on the pod template: a new certificate rolls the pods. */
  tlsSha256: "vif.dev/tls-sha256",
} as const;

/** The `ca.crt`, `tls.crt` and `tls.key` keys of the TLS Secret. */
export const TLS_KEYS = { caPem: "ca.crt", certPem: "tls.crt", keyPem: "tls.key" } as const;

/** The fields every object here has, enough to apply, name and delete it. */
export interface KubeObject {
  /** `v1`, `apps/v1`, `rbac.authorization.k8s.io/v1`. */
  apiVersion: string;
  /** `Namespace`, `Deployment`, … */
  kind: string;
  /** Name, namespace (for namespaced objects), labels and annotations. */
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
  };
}

/** One of the objects after the fixed first four. */
export type ManagerObject =
  | V1Secret & KubeObject
  | V1ConfigMap & KubeObject
  | V1Role & KubeObject
  | V1RoleBinding & KubeObject
  | V1Deployment & KubeObject
  | V1Service & KubeObject;

/**
 * The objects {@linkcode managerManifests} returns, in apply order: the
 * Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding first, then
 * the rest (how many depends on the options).
 */
export type ManagerObjects = [
  V1Namespace & KubeObject,
  V1ServiceAccount & KubeObject,
  V1ClusterRole & KubeObject,
  V1ClusterRoleBinding & KubeObject,
  ...ManagerObject[],
];

/** A subject of the {@linkcode USER_ROLE_NAME} RoleBinding: a user, a group, or what others bound. */
export type UserSubject = RbacV1Subject;

/** Options of {@linkcode managerManifests}. */
export interface ManagerManifestOptions {
  /** The PEM texts the Secret holds. */
  tls: ManagerTls;
  /**
   * The client CA's certificate and key: when given, the manager also serves
   * mutual TLS on the pod IP (port {@linkcode DEFAULT_DIRECT_PORT}, trusting
   * only this CA), and the key goes into the {@linkcode CLIENT_CA_SECRET_NAME}
   * Secret. Off when absent.
   */
  clientCa?: PemKeyPair;
  /**
   * The subnets outside the cluster that sessions may route through the
   * manager (`--allow-also-proxy`), as CIDRs. Default: none.
   */
  allowAlsoProxy?: readonly string[];
  /**
   * Who is bound to the Role {@linkcode USER_ROLE_NAME} (see
   * {@linkcode grantSubjects}). No RoleBinding is made when empty.
   */
  userSubjects?: readonly UserSubject[];
  /** The manager's namespace. Default `vif-system`. */
  namespace?: string;
  /** The container image. Default `ghcr.io/vif-dev/vif:<version>`. */
  image?: string;
  /** The version of vif written in labels and annotations. Default: this vif's. */
  version?: string;
  /** How many manager pods. Default 1. */
  replicas?: number;
  /** The image pull policy. Default `IfNotPresent`. */
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  /** More flags for `vif --serve` (e.g. `--namespaces a,b`). */
  extraArgs?: readonly string[];
  /** The container's resources. Default: requests 100m CPU and 128Mi, limits 2 CPUs and 512Mi. */
  resources?: V1ResourceRequirements;
}

/**
 * The labels that select the manager's pods (the Deployment's selector and the
 * Service's): they never change between versions.
 *
 * @returns `app.kubernetes.io/name: traffic-manager`, `app.kubernetes.io/part-of: vif`.
 *
 * @example A label selector for a list call
 * ```ts
 * import { managerSelector } from "./manifests.ts";
 *
 * const selector = Object.entries(managerSelector()).map(([k, v]) => `${k}=${v}`).join(",");
 * if (selector !== "app.kubernetes.io/name=traffic-manager,app.kubernetes.io/part-of=vif") {
 *   throw new Error(selector);
 * }
 * ```
 */
export function managerSelector(): Record<string, string> {
  return { [LABEL.name]: MANAGER_NAME, [LABEL.partOf]: "vif" };
}

/**
 * The name of the manager's ClusterRole and ClusterRoleBinding:
 * `vif-traffic-manager`, with `-<namespace>` added outside the default
 * namespace, so that managers in two namespaces do not share (and uninstall)
 * one binding.
 *
 * @param namespace The manager's namespace.
 * @returns The name.
 *
 * @example
 * ```ts
 * import { clusterRoleName } from "./manifests.ts";
 *
 * if (clusterRoleName("vif-system") !== "vif-traffic-manager") throw new Error();
 * if (clusterRoleName("dev") !== "vif-traffic-manager-dev") throw new Error();
 * ```
 */
export function clusterRoleName(namespace: string): string {
  return namespace === DEFAULT_MANAGER_NAMESPACE
    ? "vif-traffic-manager"
    : `vif-traffic-manager-${namespace}`;
}

/**
 * The default image of a version: `ghcr.io/vif-dev/vif:<version>`.
 *
 * @param version The version of vif. Default: this vif's.
 * @returns The image reference.
 */
export function defaultImage(version: string = VERSION): string {
  return `${IMAGE_REPOSITORY}:${version}`;
}

/**
 * The permissions the manager needs, and nothing more: read pods, services,
 * nodes and namespaces (CIDR discovery and DNS), read the `servicecidrs` API,
 * and create and delete services (the service-CIDR probe: a Service with an
 * impossible ClusterIP whose error names the range).
 *
 * @returns The ClusterRole's rules.
 */
export function managerRules(): NonNullable<V1ClusterRole["rules"]> {
  return [
    {
      apiGroups: [""],
      resources: ["pods", "services", "nodes", "namespaces"],
      verbs: ["get", "list", "watch"],
    },
    { apiGroups: [""], resources: ["services"], verbs: ["create", "delete"] },
    { apiGroups: ["networking.k8s.io"], resources: ["servicecidrs"], verbs: ["list", "watch"] },
    // Intercepts: an agent's pod and workload, and the claims users wrote on
    // the workload, are read to check who may take what; never written.
    {
      apiGroups: ["apps"],
      resources: ["deployments", "replicasets", "statefulsets"],
      verbs: ["get"],
    },
  ];
}

/**
 * What a vif user needs in the manager's namespace, and nothing more: find
 * the manager (get and list pods and services), port-forward to it, and read
 * its CA from the {@linkcode CA_CONFIGMAP_NAME} ConfigMap. No Secret.
 *
 * `pods/portforward` takes `create` (SPDY, and every WebSocket upgrade from
 * Kubernetes 1.35 on) and `get`: vif's port-forward is a WebSocket, an HTTP
 * GET, which API servers before 1.35 authorize as `get` only.
 *
 * @returns The Role's rules.
 */
export function userRules(): NonNullable<V1Role["rules"]> {
  return [
    { apiGroups: [""], resources: ["pods", "services"], verbs: ["get", "list"] },
    { apiGroups: [""], resources: ["pods/portforward"], verbs: ["create", "get"] },
    {
      apiGroups: [""],
      resources: ["configmaps"],
      verbs: ["get"],
      resourceNames: [CA_CONFIGMAP_NAME],
    },
  ];
}

/**
 * The subnets a manager lets sessions also-proxy, as its
 * `--allow-also-proxy` flags carry them: each in network form
 * (`198.18.64.9/24` is `198.18.64.0/24`), each once, in the order given.
 *
 * @param cidrs The subnets, as CIDRs (a bare address is a /32 or /128).
 * @returns The subnets in network form.
 * @throws {RangeError} When one is not a CIDR.
 *
 * @example
 * ```ts
 * import { alsoProxyCidrs } from "./manifests.ts";
 *
 * const cidrs = alsoProxyCidrs(["198.18.64.9/24", "198.18.64.0/24"]);
 * if (cidrs.join() !== "198.18.64.0/24") throw new Error(cidrs.join());
 * ```
 */
export function alsoProxyCidrs(cidrs: readonly string[]): string[] {
  return [
    ...new Set(cidrs.map((text) => {
      try {
        return Cidr.parse(text).toString();
      } catch (cause) {
        throw new RangeError(`Cannot allow also-proxy subnet "${text}": not a CIDR`, { cause });
      }
    })),
  ];
}

/**
 * The RoleBinding subjects for `--grant-user` and `--grant-group`: users,
 * then groups, each once, in the order given.
 *
 * @param users User names, as the API server authenticates them.
 * @param groups Group names.
 * @returns The subjects.
 * @throws {RangeError} When a name is empty or holds a control character.
 *
 * @example
 * ```ts
 * import { grantSubjects } from "./manifests.ts";
 *
 * const [dev] = grantSubjects(["dev", "dev"], []);
 * if (dev?.kind !== "User" || dev.apiGroup !== "rbac.authorization.k8s.io") throw new Error();
 * ```
 */
export function grantSubjects(
  users: readonly string[],
  groups: readonly string[] = [],
): UserSubject[] {
  const subjects = [
    ...users.map((name) => ({ kind: "User", name })),
    ...groups.map((name) => ({ kind: "Group", name })),
  ];
  for (const { kind, name } of subjects) {
    // deno-lint-ignore no-control-regex
    if (name === "" || /[\x00-\x1f\x7f]/.test(name)) {
      throw new RangeError(
        `Cannot grant the Role to ${kind.toLowerCase()} "${name}": the name is empty or holds a control character`,
      );
    }
  }
  return mergeSubjects([], subjects.map((s) => ({ apiGroup: RBAC_GROUP, ...s })));
}

/**
 * The union of two subject lists: `existing` as it is, then each of `added`
 * that it does not hold yet (the same kind, name and namespace). Granting
 * adds and never takes away.
 *
 * @param existing The subjects already bound.
 * @param added The subjects to bind too.
 * @returns The union, `existing` first.
 *
 * @example
 * ```ts
 * import { grantSubjects, mergeSubjects } from "./manifests.ts";
 *
 * const merged = mergeSubjects(grantSubjects(["a"]), grantSubjects(["b", "a"]));
 * if (merged.map((s) => s.name).join() !== "a,b") throw new Error();
 * ```
 */
export function mergeSubjects(
  existing: readonly UserSubject[],
  added: readonly UserSubject[],
): UserSubject[] {
  const key = (s: UserSubject) => JSON.stringify([s.kind, s.name, s.namespace ?? ""]);
  const seen = new Set(existing.map(key));
  const out = [...existing];
  for (const subject of added) {
    if (seen.has(key(subject))) continue;
    seen.add(key(subject));
    out.push(subject);
  }
  return out;
}

/**
 * The traffic-manager's objects, in the order to apply them: Namespace,
 * ServiceAccount, ClusterRole, ClusterRoleBinding, the TLS Secret, the client
 * CA's Secret (with `clientCa`), the CA's ConfigMap, the users' Role, its
 * RoleBinding (with `userSubjects`), Deployment, Service. Delete them in the
 * reverse order of dependence (see `install.ts`).
 *
 * @param options The TLS material, namespace, image and the rest.
 * @returns The objects.
 * @throws {RangeError} When `replicas` is not a whole number of 0 or more, or
 *   an `allowAlsoProxy` entry is not a CIDR.
 *
 * @example
 * ```ts
 * import { CA_CONFIGMAP_NAME, managerManifests, TLS_SECRET_NAME } from "./manifests.ts";
 *
 * const objects = managerManifests({
 *   namespace: "dev",
 *   tls: { caPem: "ca", certPem: "cert", keyPem: "key" },
 * });
 * const secret = objects.find((o) => o.kind === "Secret")!;
 * if (secret.metadata.name !== TLS_SECRET_NAME || secret.metadata.namespace !== "dev") {
 *   throw new Error("wrong secret");
 * }
 * const configMap = objects.find((o) => o.kind === "ConfigMap")!;
 * if (configMap.metadata.name !== CA_CONFIGMAP_NAME) throw new Error("wrong config map");
 * ```
 */
export function managerManifests(options: ManagerManifestOptions): ManagerObjects {
  const namespace = options.namespace ?? DEFAULT_MANAGER_NAMESPACE;
  const version = options.version ?? VERSION;
  const image = options.image ?? defaultImage(version);
  const replicas = options.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 0) {
    throw new RangeError(`Cannot make a Deployment with ${replicas} replicas`);
  }
  const allowAlsoProxy = alsoProxyCidrs(options.allowAlsoProxy ?? []);
  const clientCa = options.clientCa;
  const subjects = options.userSubjects ?? [];
  const roleName = clusterRoleName(namespace);
  const labels = {
    ...managerSelector(),
    [LABEL.version]: version,
    [LABEL.managedBy]: "vif",
  };
  const annotations = { [ANNOTATION.version]: version };
  const meta = (name: string, namespaced = true) => ({
    name,
    ...(namespaced ? { namespace } : {}),
    labels: { ...labels },
    annotations: { ...annotations },
  });

  return [
    {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: {
        name: namespace,
        labels: {
          [LABEL.partOf]: "vif",
          [LABEL.managedBy]: "vif",
          // The manager's pod meets the "restricted" Pod Security Standard.
          "pod-security.kubernetes.io/enforce": "restricted",
        },
        annotations: { ...annotations },
      },
    },
    {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: meta(MANAGER_NAME),
    },
    {
      apiVersion: RBAC_API_VERSION,
      kind: "ClusterRole",
      metadata: meta(roleName, false),
      rules: managerRules(),
    },
    {
      apiVersion: RBAC_API_VERSION,
      kind: "ClusterRoleBinding",
      metadata: meta(roleName, false),
      roleRef: { apiGroup: RBAC_GROUP, kind: "ClusterRole", name: roleName },
      subjects: [{ kind: "ServiceAccount", name: MANAGER_NAME, namespace }],
    },
    {
      // TokenReview, to check the agents' projected tokens (the built-in role
      // grants that and SubjectAccessReview, nothing else).
      apiVersion: RBAC_API_VERSION,
      kind: "ClusterRoleBinding",
      metadata: meta(`${roleName}-auth-delegator`, false),
      roleRef: { apiGroup: RBAC_GROUP, kind: "ClusterRole", name: "system:auth-delegator" },
      subjects: [{ kind: "ServiceAccount", name: MANAGER_NAME, namespace }],
    },
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: meta(TLS_SECRET_NAME),
      type: "kubernetes.io/tls",
      data: {
        [TLS_KEYS.certPem]: base64(options.tls.certPem),
        [TLS_KEYS.keyPem]: base64(options.tls.keyPem),
        [TLS_KEYS.caPem]: base64(options.tls.caPem),
        ...(clientCa ? { [CLIENT_CA_TLS_KEY]: base64(clientCa.certPem) } : {}),
      },
    },
    ...(clientCa
      ? [{
        apiVersion: "v1",
        kind: "Secret",
        metadata: meta(CLIENT_CA_SECRET_NAME),
        type: "Opaque",
        data: {
          [CLIENT_CA_KEYS.certPem]: base64(clientCa.certPem),
          [CLIENT_CA_KEYS.keyPem]: base64(clientCa.keyPem),
        },
      }]
      : []),
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: meta(CA_CONFIGMAP_NAME),
      data: { [CA_CONFIGMAP_KEY]: options.tls.caPem },
    },
    {
      apiVersion: RBAC_API_VERSION,
      kind: "Role",
      metadata: meta(USER_ROLE_NAME),
      rules: userRules(),
    },
    ...(subjects.length > 0
      ? [{
        apiVersion: RBAC_API_VERSION,
        kind: "RoleBinding",
        metadata: meta(USER_ROLE_NAME),
        roleRef: { apiGroup: RBAC_GROUP, kind: "Role", name: USER_ROLE_NAME },
        subjects: subjects.map((subject) => ({ ...subject })),
      }]
      : []),
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: meta(MANAGER_NAME),
      spec: {
        replicas,
        revisionHistoryLimit: 3,
        selector: { matchLabels: managerSelector() },
        template: {
          metadata: {
            labels: { ...labels },
            annotations: {
              ...annotations,
              // The client CA too: the manager reads what it trusts when it starts.
              [ANNOTATION.tlsSha256]: sha256(options.tls.certPem + (clientCa?.certPem ?? "")),
            },
          },
          spec: managerPodSpec(image, { ...options, allowAlsoProxy, direct: !!clientCa }),
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: meta(MANAGER_NAME),
      spec: {
        type: "ClusterIP",
        selector: managerSelector(),
        ports: [
          {
            name: GRPC_PORT_NAME,
            port: DEFAULT_MANAGER_PORT,
            targetPort: GRPC_PORT_NAME,
            protocol: "TCP",
          },
          {
            name: AGENT_PORT_NAME,
            port: DEFAULT_AGENT_LISTENER_PORT,
            targetPort: AGENT_PORT_NAME,
            protocol: "TCP",
          },
          ...(clientCa
            ? [{
              name: DIRECT_PORT_NAME,
              port: DEFAULT_DIRECT_PORT,
              targetPort: DIRECT_PORT_NAME,
              protocol: "TCP",
            }]
            : []),
        ],
      },
    },
  ];
}

/**
 * How kubectl names an object in its output: `<resource>[.<group>]/<name>`,
 * e.g. `namespace/vif-system`, `deployment.apps/traffic-manager`,
 * `clusterrole.rbac.authorization.k8s.io/vif-traffic-manager`.
 *
 * @param object The object.
 * @returns The name.
 *
 * @example
 * ```ts
 * import { displayName } from "./manifests.ts";
 *
 * const name = displayName({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x" } });
 * if (name !== "deployment.apps/x") throw new Error(name);
 * ```
 */
export function displayName(object: KubeObject): string {
  const group = object.apiVersion.includes("/") ? object.apiVersion.split("/")[0] : undefined;
  return `${object.kind.toLowerCase()}${group ? `.${group}` : ""}/${object.metadata.name}`;
}

function managerPodSpec(
  image: string,
  options: ManagerManifestOptions & { allowAlsoProxy: string[]; direct: boolean },
): NonNullable<NonNullable<V1Deployment["spec"]>["template"]["spec"]> {
  const fieldEnv = (name: string, fieldPath: string) => ({
    name,
    valueFrom: { fieldRef: { fieldPath } },
  });
  return {
    serviceAccountName: MANAGER_NAME,
    // The manager reads the API with its service account (CIDR discovery).
    automountServiceAccountToken: true,
    nodeSelector: { "kubernetes.io/os": "linux" },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: MANAGER_UID,
      runAsGroup: MANAGER_UID,
      // The Secret's files are 0440 root:65532, readable by the manager only.
      fsGroup: MANAGER_UID,
      seccompProfile: { type: "RuntimeDefault" },
    },
    containers: [{
      name: MANAGER_NAME,
      image,
      imagePullPolicy: options.imagePullPolicy ?? "IfNotPresent",
      // The command is given in full, so the pod does not depend on the image's
      // ENTRYPOINT (the Dockerfile's is the same: /vif --serve).
      command: [IMAGE_BINARY],
      // The client port is on loopback by default (reached by port-forward
      // only), and health on 0.0.0.0 by default: neither needs a flag.
      args: [
        "--serve",
        "--tls-dir",
        TLS_MOUNT_PATH,
        ...(options.direct ? ["--direct-listen", `0.0.0.0:${DEFAULT_DIRECT_PORT}`] : []),
        ...options.allowAlsoProxy.flatMap((cidr) => ["--allow-also-proxy", cidr]),
        ...(options.extraArgs ?? []),
      ],
      env: [fieldEnv("POD_IP", "status.podIP"), fieldEnv("POD_NAMESPACE", "metadata.namespace")],
      ports: [
        // Informational: it listens on 127.0.0.1 and ::1 in the pod only.
        { name: GRPC_PORT_NAME, containerPort: DEFAULT_MANAGER_PORT, protocol: "TCP" },
        { name: HEALTH_PORT_NAME, containerPort: DEFAULT_HEALTH_PORT, protocol: "TCP" },
        { name: AGENT_PORT_NAME, containerPort: DEFAULT_AGENT_LISTENER_PORT, protocol: "TCP" },
        ...(options.direct
          ? [{ name: DIRECT_PORT_NAME, containerPort: DEFAULT_DIRECT_PORT, protocol: "TCP" }]
          : []),
      ],
      // The kubelet probes the pod IP, where the client port does not listen:
      // the health port answers for it.
      readinessProbe: {
        httpGet: { path: "/readyz", port: HEALTH_PORT_NAME },
        periodSeconds: 5,
        failureThreshold: 3,
      },
      livenessProbe: {
        httpGet: { path: "/livez", port: HEALTH_PORT_NAME },
        initialDelaySeconds: 5,
        periodSeconds: 10,
        timeoutSeconds: 3,
        failureThreshold: 3,
      },
      resources: options.resources ?? {
        requests: { cpu: "100m", memory: "128Mi" },
        limits: { cpu: "2", memory: "512Mi" },
      },
      securityContext: {
        runAsNonRoot: true,
        runAsUser: MANAGER_UID,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ["ALL"] },
      },
      volumeMounts: [
        { name: "tls", mountPath: TLS_MOUNT_PATH, readOnly: true },
        { name: "tmp", mountPath: "/tmp" },
      ],
    }],
    volumes: [
      { name: "tls", secret: { secretName: TLS_SECRET_NAME, defaultMode: 0o440 } },
      { name: "tmp", emptyDir: { sizeLimit: "64Mi" } },
    ],
  };
}

const RBAC_API_VERSION = `${RBAC_GROUP}/v1`;

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

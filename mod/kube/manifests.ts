/**
 * The traffic-manager's Kubernetes objects, as plain values: what `vif
 * install` applies and `vif install --dry-run -o yaml` prints. Pure: no I/O,
 * no clock; the TLS material is passed in.
 *
 * The names are exported constants so that discovery (the client finds the
 * Service, a Ready pod of {@linkcode managerSelector}, and reads `ca.crt` from
 * the {@linkcode TLS_SECRET_NAME} Secret) uses the same ones.
 *
 * @example The objects in apply order
 * ```ts
 * import { managerManifests } from "./manifests.ts";
 *
 * const tls = { caPem: "ca", certPem: "cert", keyPem: "key" };
 * const kinds = managerManifests({ tls }).map((o) => o.kind);
 * if (kinds[0] !== "Namespace" || kinds.at(-1) !== "Service") throw new Error(kinds.join());
 * ```
 *
 * @module
 */

import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Deployment,
  V1Namespace,
  V1ResourceRequirements,
  V1Secret,
  V1Service,
  V1ServiceAccount,
} from "@kubernetes/client-node";
import { createHash } from "node:crypto";
import { DEFAULT_MANAGER_NAMESPACE, DEFAULT_MANAGER_PORT } from "../rpc/service.ts";
import { VERSION } from "../version.ts";
import type { ManagerTls } from "./x509.ts";

/** The name of the manager's Deployment, Service and ServiceAccount. */
export const MANAGER_NAME = "traffic-manager";
/** The name of the Secret (type `kubernetes.io/tls`, with `ca.crt`) the manager serves with. */
export const TLS_SECRET_NAME = "traffic-manager-tls";
/** Where the TLS Secret is mounted in the manager's container (its `--tls-dir`). */
export const TLS_MOUNT_PATH = "/var/run/secrets/vif/tls";
/** The name of the manager's gRPC port, in the container and the Service. */
export const GRPC_PORT_NAME = "grpc";
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

/** The objects {@linkcode managerManifests} returns, in apply order. */
export type ManagerObjects = [
  V1Namespace & KubeObject,
  V1ServiceAccount & KubeObject,
  V1ClusterRole & KubeObject,
  V1ClusterRoleBinding & KubeObject,
  V1Secret & KubeObject,
  V1Deployment & KubeObject,
  V1Service & KubeObject,
];

/** Options of {@linkcode managerManifests}. */
export interface ManagerManifestOptions {
  /** The PEM texts the Secret holds. */
  tls: ManagerTls;
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
  ];
}

/**
 * The traffic-manager's objects, in the order to apply them: Namespace,
 * ServiceAccount, ClusterRole, ClusterRoleBinding, Secret, Deployment, Service.
 * Delete them in the reverse order of dependence (see `install.ts`).
 *
 * @param options The TLS material, namespace, image and the rest.
 * @returns The objects.
 * @throws {RangeError} When `replicas` is not a whole number of 0 or more.
 *
 * @example
 * ```ts
 * import { managerManifests, TLS_SECRET_NAME } from "./manifests.ts";
 *
 * const objects = managerManifests({
 *   namespace: "dev",
 *   tls: { caPem: "ca", certPem: "cert", keyPem: "key" },
 * });
 * const secret = objects.find((o) => o.kind === "Secret")!;
 * if (secret.metadata.name !== TLS_SECRET_NAME || secret.metadata.namespace !== "dev") {
 *   throw new Error("wrong secret");
 * }
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
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: meta(roleName, false),
      rules: managerRules(),
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: meta(roleName, false),
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: roleName },
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
      },
    },
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
              [ANNOTATION.tlsSha256]: sha256(options.tls.certPem),
            },
          },
          spec: managerPodSpec(image, options),
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
        ports: [{
          name: GRPC_PORT_NAME,
          port: DEFAULT_MANAGER_PORT,
          targetPort: GRPC_PORT_NAME,
          protocol: "TCP",
        }],
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
  options: ManagerManifestOptions,
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
      args: ["--serve", "--tls-dir", TLS_MOUNT_PATH, ...(options.extraArgs ?? [])],
      env: [fieldEnv("POD_IP", "status.podIP"), fieldEnv("POD_NAMESPACE", "metadata.namespace")],
      ports: [{ name: GRPC_PORT_NAME, containerPort: DEFAULT_MANAGER_PORT, protocol: "TCP" }],
      readinessProbe: {
        tcpSocket: { port: DEFAULT_MANAGER_PORT },
        initialDelaySeconds: 1,
        periodSeconds: 5,
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

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * The parts of a `core/v1` Pod spec the simulated kubelet reads, as types:
 * containers and init containers, their environment, mounts and security
 * context, and the pod's volumes. The API server has validated names and
 * paths before a kubelet sees them (`apiserver/_pod_validation.ts`).
 *
 * @module
 */

import type { Protocol } from "./_model.ts";
import type { ProbeSpec } from "./_probe.ts";
import type { RestartPolicy } from "./_container.ts";

/** `valueFrom` of an env var. */
export interface EnvVarSource {
  fieldRef?: { fieldPath: string; apiVersion?: string };
  resourceFieldRef?: { resource: string; containerName?: string; divisor?: string | number };
  configMapKeyRef?: { name: string; key: string; optional?: boolean };
  secretKeyRef?: { name: string; key: string; optional?: boolean };
}

/** `env[]`. */
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: EnvVarSource;
}

/** `envFrom[]`. */
export interface EnvFromSource {
  prefix?: string;
  configMapRef?: { name: string; optional?: boolean };
  secretRef?: { name: string; optional?: boolean };
}

/** `volumeMounts[]`. */
export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
  subPath?: string;
}

/** A container's `securityContext`. */
export interface SecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  privileged?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
}

/** `resources`: quantities as the API spells them (`500m`, `128Mi`). */
export interface ResourceRequirements {
  limits?: Record<string, string | number>;
  requests?: Record<string, string | number>;
}

/** A container or an init container. */
export interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: EnvVar[];
  envFrom?: EnvFromSource[];
  ports?: Array<{ name?: string; containerPort: number; protocol?: Protocol }>;
  readinessProbe?: ProbeSpec;
  livenessProbe?: ProbeSpec;
  securityContext?: SecurityContext;
  volumeMounts?: VolumeMount[];
  resources?: ResourceRequirements;
}

/** `items[]` of a ConfigMap or Secret volume (or projection). */
export interface KeyToPath {
  key: string;
  path: string;
  mode?: number;
}

/** `items[]` of a downward API volume (or projection). */
export interface DownwardApiFile {
  path: string;
  fieldRef?: { fieldPath: string };
  resourceFieldRef?: { resource: string; containerName?: string; divisor?: string | number };
  mode?: number;
}

/** One source of a projected volume. */
export interface VolumeProjection {
  serviceAccountToken?: { audience?: string; expirationSeconds?: number; path: string };
  configMap?: { name: string; items?: KeyToPath[]; optional?: boolean };
  secret?: { name: string; items?: KeyToPath[]; optional?: boolean };
  downwardAPI?: { items?: DownwardApiFile[] };
}

/** `volumes[]`: the kinds the simulated kubelet has. */
export interface Volume {
  name: string;
  emptyDir?: { medium?: string; sizeLimit?: string };
  configMap?: { name: string; items?: KeyToPath[]; defaultMode?: number; optional?: boolean };
  secret?: { secretName: string; items?: KeyToPath[]; defaultMode?: number; optional?: boolean };
  projected?: { sources?: VolumeProjection[]; defaultMode?: number };
  downwardAPI?: { items?: DownwardApiFile[]; defaultMode?: number };
}

/** The pod's `securityContext`. */
export interface PodSecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  fsGroup?: number;
  supplementalGroups?: number[];
}

/** A Pod's `spec`. */
export interface PodSpecObj {
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  hostname?: string;
  subdomain?: string;
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  enableServiceLinks?: boolean;
  securityContext?: PodSecurityContext;
  initContainers?: Container[];
  containers: Container[];
  volumes?: Volume[];
  dnsPolicy?: string;
  restartPolicy?: RestartPolicy;
  terminationGracePeriodSeconds?: number;
}

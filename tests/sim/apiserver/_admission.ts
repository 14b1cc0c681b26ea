/**
 * The mutating admission kube-apiserver applies to a new Pod: the
 * ServiceAccount plugin, which refuses a pod whose service account does not
 * exist and, unless `automountServiceAccountToken` says no (the pod's, else
 * the service account's), adds the projected `kube-api-access-<random>`
 * volume (a token for the API server's audience, `ca.crt` from the
 * `kube-root-ca.crt` ConfigMap, the namespace from the downward API) and
 * mounts it read-only at `/var/run/secrets/kubernetes.io/serviceaccount` in
 * every container and init container that has nothing mounted there.
 *
 * @module
 */

import type { KubeObject } from "./store.ts";
import { forbidden } from "./status.ts";

/** Where a pod's containers find their service account's token, CA and namespace. */
export const SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount";
/** The prefix of the volume the plugin adds. */
export const TOKEN_VOLUME_PREFIX = "kube-api-access-";
/** The token's lifetime the plugin asks for (a little over an hour, as the real one). */
export const TOKEN_VOLUME_EXPIRATION_SECONDS = 3607;

type Obj = Record<string, unknown>;

function list(v: unknown): Obj[] {
  return Array.isArray(v) ? v.filter((x): x is Obj => x !== null && typeof x === "object") : [];
}

function randomSuffix(n: number): string {
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  return [...crypto.getRandomValues(new Uint8Array(n))].map((b) => alphabet[b % alphabet.length])
    .join("");
}

/**
 * Admits a Pod being created: see the module documentation. Changes `pod`
 * in place.
 *
 * @param pod the Pod, defaults applied
 * @param serviceAccount looks up a ServiceAccount
 * @throws {ApiError} 403 when the service account does not exist
 */
export function admitPod(
  pod: KubeObject,
  serviceAccount: (namespace: string, name: string) => KubeObject | undefined,
): void {
  const spec = (pod.spec ??= {}) as Obj;
  const namespace = pod.metadata.namespace ?? "default";
  const name = String(spec.serviceAccountName || "default");
  spec.serviceAccountName = name;
  spec.serviceAccount ??= name;
  const sa = serviceAccount(namespace, name);
  if (!sa) {
    throw forbidden(
      { group: "", resource: "pods" },
      pod.metadata.name ?? "",
      `error looking up service account ${namespace}/${name}: serviceaccount "${name}" not found`,
    );
  }
  const automount = spec.automountServiceAccountToken ??
    (sa as Obj).automountServiceAccountToken ?? true;
  if (automount === false) return;
  const volumes = list(spec.volumes);
  const existing = volumes.find((v) => String(v.name ?? "").startsWith(TOKEN_VOLUME_PREFIX));
  const volumeName = existing ? String(existing.name) : TOKEN_VOLUME_PREFIX + randomSuffix(5);
  let mounted = false;
  for (const c of [...list(spec.initContainers), ...list(spec.containers)]) {
    const mounts = list(c.volumeMounts);
    if (mounts.some((m) => m.mountPath === SERVICE_ACCOUNT_PATH)) continue;
    c.volumeMounts = [...mounts, {
      name: volumeName,
      readOnly: true,
      mountPath: SERVICE_ACCOUNT_PATH,
    }];
    mounted = true;
  }
  if (existing || !mounted) return;
  spec.volumes = [...volumes, {
    name: volumeName,
    projected: {
      defaultMode: 0o644,
      sources: [
        {
          serviceAccountToken: {
            expirationSeconds: TOKEN_VOLUME_EXPIRATION_SECONDS,
            path: "token",
          },
        },
        { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
        {
          downwardAPI: {
            items: [{
              path: "namespace",
              fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" },
            }],
          },
        },
      ],
    },
  }];
}

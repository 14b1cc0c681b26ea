/**
 * `vif install` and `vif uninstall` against a cluster: {@linkcode install}
 * applies the traffic-manager's objects (`manifests.ts`) idempotently, and
 * {@linkcode uninstall} deletes them.
 *
 * Applying one object: GET it; when it is missing, POST it (`created`); when
 * every field vif sets already has vif's value, leave it (`unchanged`); else PUT
 * vif's object with the server's `resourceVersion` (`configured`), keeping the
 * labels and annotations others added and the Service's allocated ClusterIP.
 * A conflict (someone else wrote in between) is retried. An existing
 * Namespace is never changed, and `uninstall` deletes it only when vif made it.
 *
 * The TLS Secret keeps its certificate across installs, so connected clients
 * keep trusting the manager, unless `rotateTls` is asked or the certificate
 * cannot serve any more (missing, unreadable, not for `traffic-manager.<ns>`,
 * not signed by its `ca.crt`, or expiring within 30 days). The client CA of
 * the direct listener is kept the same way, so the client certificates it
 * issued stay good; it is kept even by an install without `direct`, for the
 * next one with it.
 *
 * The users' RoleBinding only grows: an install binds the users and groups it
 * is given on top of those already bound, and one given none revokes nobody.
 *
 * An install made by an older vif (a TLS Secret that users had to read, and no
 * CA ConfigMap) is upgraded in place: its certificate is kept when it can
 * still serve, the ConfigMap is written from it, and the result says
 * `migrated`.
 *
 * Every failure is a {@linkcode KubeError}: HTTP 401, 403, a namespace being
 * deleted, connection refused, an untrusted certificate, a timeout.
 *
 * @example Install, then uninstall
 * ```ts ignore
 * import { loadKubeConfig } from "./client.ts";
 * import { install, uninstall } from "./install.ts";
 *
 * const { kubeConfig } = loadKubeConfig({ context: "dev" });
 * const result = await install(kubeConfig, { namespace: "vif-system" });
 * for (const step of result.applied) console.log(`${step.name} ${step.action}`);
 * await uninstall(kubeConfig, { namespace: "vif-system" });
 * ```
 *
 * @module
 */

import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  RbacAuthorizationV1Api,
  type V1ClusterRole,
  type V1ClusterRoleBinding,
  type V1ConfigMap,
  type V1Deployment,
  type V1Namespace,
  type V1Role,
  type V1RoleBinding,
  type V1Secret,
  type V1Service,
  type V1ServiceAccount,
} from "@kubernetes/client-node";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { certificateDnsNames, DEFAULT_MANAGER_NAMESPACE, managerServerName } from "../rpc/names.ts";
import { KubeError } from "./errors.ts";
import {
  alsoProxyCidrs,
  CA_CONFIGMAP_NAME,
  CLIENT_CA_KEYS,
  CLIENT_CA_SECRET_NAME,
  clusterRoleName,
  displayName,
  grantSubjects,
  type KubeObject,
  LABEL,
  MANAGER_NAME,
  type ManagerManifestOptions,
  managerManifests,
  mergeSubjects,
  TLS_KEYS,
  TLS_SECRET_NAME,
  USER_ROLE_NAME,
  type UserSubject,
} from "./manifests.ts";
import type { ManagerTls, PemKeyPair } from "./pem.ts";

/** What applying one object did, in kubectl's words. */
export type ApplyAction = "created" | "configured" | "unchanged";

/** One object applied by {@linkcode install}. */
export interface AppliedObject {
  /** kubectl's name for it: `deployment.apps/traffic-manager`. */
  name: string;
  /** What was done. */
  action: ApplyAction;
}

/** What happened to the TLS material. */
export interface TlsOutcome {
  /** `created`: there was none; `kept`: the Secret's is reused; `rotated`: asked for; `replaced`: the old one could not serve. */
  action: "created" | "kept" | "rotated" | "replaced";
  /** Why it was replaced, e.g. `it expires on 2031-01-01`. */
  reason?: string;
  /** When the certificate in use expires. */
  notAfter: Date;
}

/** What happened to the client CA of the direct listener. */
export interface ClientCaOutcome {
  /** `created`: there was none; `kept`: the Secret's is reused; `replaced`: the old one could not sign. */
  action: "created" | "kept" | "replaced";
  /** Why it was replaced, e.g. `the certificate expires on 2031-01-01`. */
  reason?: string;
  /** When the client CA expires (and with it every client certificate it issued). */
  notAfter: Date;
}

/** What {@linkcode install} did. */
export interface InstallResult {
  /** The manager's namespace. */
  namespace: string;
  /** Each object, in apply order. */
  applied: AppliedObject[];
  /** What happened to the certificate. */
  tls: TlsOutcome;
  /** What happened to the client CA, when the direct listener is on. */
  clientCa?: ClientCaOutcome;
  /** The direct listener is off, but a client CA from an earlier install is kept for a later one. */
  clientCaUnused?: boolean;
  /** This upgraded an install of an older vif: a TLS Secret and no CA ConfigMap were there. */
  migrated: boolean;
  /** Who is bound to the users' Role now (empty: nobody has been granted it). */
  userSubjects: UserSubject[];
  /** The subnets outside the cluster that sessions may route through the manager. */
  allowAlsoProxy: string[];
}

/** Options of {@linkcode install}. */
export interface InstallOptions
  extends Omit<ManagerManifestOptions, "tls" | "clientCa" | "userSubjects"> {
  /** Make a new CA and certificate even when the Secret's can still serve. */
  rotateTls?: boolean;
  /** The TLS material to use when new material is needed; made with `createManagerTls` when absent. */
  tls?: ManagerTls;
  /** Serve the direct (mutual TLS) listener too; its client CA is made the first time. */
  direct?: boolean;
  /** The client CA to use when a new one is needed; made with `createClientCa` when absent. */
  clientCa?: PemKeyPair;
  /** Users to bind to the Role `vif-user`, on top of those already bound. */
  grantUsers?: readonly string[];
  /** Groups to bind to the Role `vif-user`, on top of those already bound. */
  grantGroups?: readonly string[];
  /** The time, for certificate validity. Default: now. */
  now?: Date;
  /** How long one API request may take, in milliseconds. Default 30 s. */
  timeoutMs?: number;
  /** Called after each object is applied, for progress output. */
  onApplied?: (step: AppliedObject) => void;
}

/**
 * What deleting one object did: `deleting` is a namespace already on its way
 * out (its finalizers still run), `kept` a namespace vif did not create.
 */
export type DeleteAction = "deleted" | "not found" | "deleting" | "kept";

/** One object handled by {@linkcode uninstall}. */
export interface DeletedObject {
  /** kubectl's name for it. */
  name: string;
  /** What was done. */
  action: DeleteAction;
  /** Why it was kept. */
  reason?: string;
}

/** Options of {@linkcode uninstall}. */
export interface UninstallOptions {
  /** The manager's namespace. Default `vif-system`. */
  namespace?: string;
  /** How long one API request may take, in milliseconds. Default 30 s. */
  timeoutMs?: number;
  /** Called after each object is handled, for progress output. */
  onDeleted?: (step: DeletedObject) => void;
}

/** A certificate that expires sooner than this is replaced by `install`. */
export const RENEW_BEFORE_MS = 30 * 86_400_000;
const DEFAULT_TIMEOUT_MS = 30_000;
const CONFLICT_RETRIES = 3;

/**
 * Applies the traffic-manager's objects to the cluster of `kubeConfig`'s
 * current context, in order: Namespace, ServiceAccount, ClusterRole,
 * ClusterRoleBinding, the TLS Secret, the client CA's Secret (direct only),
 * the CA's ConfigMap, the users' Role and RoleBinding, Deployment, Service.
 *
 * @param kubeConfig The kubeconfig, its current context the target cluster.
 * @param options Namespace, image, TLS rotation, grants and the rest of the manifest options.
 * @returns What was done to each object, and to the certificates.
 * @throws {KubeError} When a request fails: not allowed, unauthenticated, unreachable.
 * @throws {RangeError} When an also-proxy subnet is not a CIDR, or a granted name is empty.
 */
export async function install(
  kubeConfig: KubeConfig,
  options: InstallOptions = {},
): Promise<InstallResult> {
  // Before any request: a bad flag changes nothing in the cluster.
  const allowAlsoProxy = alsoProxyCidrs(options.allowAlsoProxy ?? []);
  const granted = grantSubjects(options.grantUsers ?? [], options.grantGroups ?? []);
  const api = new ResourceApi(kubeConfig, "install", options.timeoutMs);
  try {
    return await installWith(api, options, allowAlsoProxy, granted);
  } finally {
    await api.close();
  }
}

async function installWith(
  api: ResourceApi,
  options: InstallOptions,
  allowAlsoProxy: string[],
  granted: UserSubject[],
): Promise<InstallResult> {
  const namespace = options.namespace ?? DEFAULT_MANAGER_NAMESPACE;
  const now = options.now ?? new Date();
  const ref = (apiVersion: string, kind: string, name: string): KubeObject => ({
    apiVersion,
    kind,
    metadata: { name, namespace },
  });

  const existingSecret = await api.read(ref("v1", "Secret", TLS_SECRET_NAME)) as
    | V1Secret
    | undefined;
  const existingCa = await api.read(ref("v1", "ConfigMap", CA_CONFIGMAP_NAME));
  const existingClientCa = await api.read(ref("v1", "Secret", CLIENT_CA_SECRET_NAME)) as
    | V1Secret
    | undefined;
  const existingBinding = await api.read(
    ref("rbac.authorization.k8s.io/v1", "RoleBinding", USER_ROLE_NAME),
  ) as V1RoleBinding | undefined;

  const reuse = reusableTls(existingSecret, namespace, now);
  let tls: ManagerTls;
  let outcome: TlsOutcome;
  if ("tls" in reuse && !options.rotateTls) {
    tls = reuse.tls;
    outcome = { action: "kept", notAfter: reuse.notAfter };
  } else {
    // x509.ts (and @peculiar/x509 with it) loads only when a certificate is made.
    tls = options.tls ?? await (await import("./x509.ts")).createManagerTls(namespace, { now });
    outcome = {
      action: existingSecret === undefined ? "created" : options.rotateTls ? "rotated" : "replaced",
      ...("reason" in reuse && existingSecret !== undefined ? { reason: reuse.reason } : {}),
      notAfter: new Date(new X509Certificate(tls.certPem).validTo),
    };
  }

  let clientCa: PemKeyPair | undefined;
  let clientCaOutcome: ClientCaOutcome | undefined;
  if (options.direct) {
    const reuseCa = await usableClientCa(existingClientCa, now);
    if ("ca" in reuseCa) {
      clientCa = reuseCa.ca;
      clientCaOutcome = { action: "kept", notAfter: reuseCa.notAfter };
    } else {
      clientCa = options.clientCa ??
        await (await import("./x509.ts")).createClientCa(namespace, { now });
      clientCaOutcome = {
        action: existingClientCa === undefined ? "created" : "replaced",
        ...(existingClientCa !== undefined ? { reason: reuseCa.reason } : {}),
        notAfter: new Date(new X509Certificate(clientCa.certPem).validTo),
      };
    }
  }

  const userSubjects = mergeSubjects(existingBinding?.subjects ?? [], granted);
  const {
    rotateTls: _r,
    tls: _t,
    direct: _d,
    clientCa: _c,
    grantUsers: _u,
    grantGroups: _g,
    now: _n,
    timeoutMs: _m,
    onApplied,
    ...manifestOptions
  } = options;
  const objects = managerManifests({
    ...manifestOptions,
    namespace,
    tls,
    allowAlsoProxy,
    userSubjects,
    ...(clientCa ? { clientCa } : {}),
  });
  const applied: AppliedObject[] = [];
  for (const object of objects) {
    const step = { name: displayName(object), action: await applyObject(api, object) };
    applied.push(step);
    onApplied?.(step);
  }
  return {
    namespace,
    applied,
    tls: outcome,
    ...(clientCaOutcome ? { clientCa: clientCaOutcome } : {}),
    ...(!options.direct && existingClientCa !== undefined ? { clientCaUnused: true } : {}),
    migrated: existingSecret !== undefined && existingCa === undefined,
    userSubjects,
    allowAlsoProxy,
  };
}

/**
 * Deletes the traffic-manager's objects: Deployment, Service, the TLS Secret,
 * the client CA's Secret, the CA's ConfigMap, the users' RoleBinding and
 * Role, ServiceAccount, ClusterRoleBinding, ClusterRole, then the Namespace (only
 * when vif created it, that is when it carries `app.kubernetes.io/managed-by:
 * vif`). Objects already gone are reported `not found`; a namespace already
 * being deleted is not deleted again (`deleting`).
 *
 * @param kubeConfig The kubeconfig, its current context the target cluster.
 * @param options The namespace.
 * @returns What was done to each object.
 * @throws {KubeError} When a request fails: not allowed, unauthenticated, unreachable.
 */
export async function uninstall(
  kubeConfig: KubeConfig,
  options: UninstallOptions = {},
): Promise<DeletedObject[]> {
  const api = new ResourceApi(kubeConfig, "uninstall", options.timeoutMs);
  try {
    return await uninstallWith(
      api,
      options.namespace ?? DEFAULT_MANAGER_NAMESPACE,
      options.onDeleted ?? (() => {}),
    );
  } finally {
    await api.close();
  }
}

/**
 * What {@linkcode uninstall} deletes, in its order, for a dry run: the
 * objects by kubectl's name, then the namespace, which it deletes only when
 * vif created it.
 *
 * @param namespace The manager's namespace.
 * @returns The objects' names.
 */
export function uninstallTargets(namespace: string): Array<{ name: string; reason?: string }> {
  return [
    ...uninstallObjects(namespace).map((o) => ({ name: displayName(o) })),
    {
      name: displayName(objectRef(namespace)("v1", "Namespace", namespace, false)),
      reason: "only if vif created it",
    },
  ];
}

function objectRef(namespace: string) {
  return (apiVersion: string, kind: string, name: string, namespaced = true): KubeObject => ({
    apiVersion,
    kind,
    metadata: { name, ...(namespaced ? { namespace } : {}) },
  });
}

/** The objects of an install, in the order uninstall deletes them (the namespace apart). */
function uninstallObjects(namespace: string): KubeObject[] {
  const role = clusterRoleName(namespace);
  const ref = objectRef(namespace);
  return [
    ref("apps/v1", "Deployment", MANAGER_NAME),
    ref("v1", "Service", MANAGER_NAME),
    ref("v1", "Secret", TLS_SECRET_NAME),
    ref("v1", "Secret", CLIENT_CA_SECRET_NAME),
    ref("v1", "ConfigMap", CA_CONFIGMAP_NAME),
    ref("rbac.authorization.k8s.io/v1", "RoleBinding", USER_ROLE_NAME),
    ref("rbac.authorization.k8s.io/v1", "Role", USER_ROLE_NAME),
    ref("v1", "ServiceAccount", MANAGER_NAME),
    ref("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", `${role}-auth-delegator`, false),
    ref("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", role, false),
    ref("rbac.authorization.k8s.io/v1", "ClusterRole", role, false),
  ];
}

async function uninstallWith(
  api: ResourceApi,
  namespace: string,
  onDeleted: (step: DeletedObject) => void,
): Promise<DeletedObject[]> {
  const objects = uninstallObjects(namespace);
  const results: DeletedObject[] = [];
  const report = (step: DeletedObject) => {
    results.push(step);
    onDeleted(step);
  };
  for (const object of objects) {
    const found = await api.remove(object);
    report({ name: displayName(object), action: found ? "deleted" : "not found" });
  }
  const namespaceRef = objectRef(namespace)("v1", "Namespace", namespace, false);
  const existing = await api.read(namespaceRef);
  const terminating = existing !== undefined &&
    ((existing as V1Namespace).status?.phase === "Terminating" ||
      (existing as V1Namespace).metadata?.deletionTimestamp !== undefined);
  if (existing === undefined) {
    report({ name: displayName(namespaceRef), action: "not found" });
  } else if (terminating) {
    report({ name: displayName(namespaceRef), action: "deleting" });
  } else if (existing.metadata?.labels?.[LABEL.managedBy] !== "vif") {
    report({ name: displayName(namespaceRef), action: "kept", reason: "vif did not create it" });
  } else {
    const found = await api.remove(namespaceRef);
    report({ name: displayName(namespaceRef), action: found ? "deleted" : "not found" });
  }
  return results;
}

/**
 * Tells whether the TLS Secret's material can keep serving: all three keys
 * present, the certificate parses, names `traffic-manager.<namespace>`, was
 * signed by `ca.crt`, matches `tls.key`, and is valid for 30 days more.
 *
 * @param secret The Secret as read, or `undefined` when there is none.
 * @param namespace The manager's namespace.
 * @param now The time to check validity at.
 * @returns The material and its expiry, or why it cannot be used.
 *
 * @example
 * ```ts
 * import { reusableTls } from "./install.ts";
 *
 * const verdict = reusableTls(undefined, "vif-system", new Date());
 * if (!("reason" in verdict)) throw new Error("nothing to reuse");
 * ```
 */
export function reusableTls(
  secret: V1Secret | undefined,
  namespace: string,
  now: Date,
): { tls: ManagerTls; notAfter: Date } | { reason: string } {
  if (secret === undefined) return { reason: "there is no TLS secret" };
  const tls: Partial<ManagerTls> = {};
  for (const [field, key] of Object.entries(TLS_KEYS) as [keyof ManagerTls, string][]) {
    const value = secret.data?.[key];
    if (!value) return { reason: `the secret has no ${key}` };
    try {
      tls[field] = decodeBase64(value);
    } catch {
      return { reason: `${key} is not base64` };
    }
  }
  const material = tls as ManagerTls;
  try {
    const cert = new X509Certificate(material.certPem);
    const ca = new X509Certificate(material.caPem);
    const name = managerServerName(namespace);
    const notAfter = new Date(cert.validTo);
    // What clients check: the subjectAltName's DNS names, never the subject's CN.
    if (!certificateDnsNames(cert.subjectAltName).includes(name)) {
      return { reason: `the certificate does not name "${name}"` };
    }
    if (!cert.verify(ca.publicKey)) return { reason: "the certificate is not signed by ca.crt" };
    if (!cert.checkPrivateKey(createPrivateKey(material.keyPem))) {
      return { reason: "tls.key does not belong to the certificate" };
    }
    if (notAfter.getTime() - now.getTime() < RENEW_BEFORE_MS) {
      const when = notAfter.toISOString().slice(0, 10);
      return {
        reason: notAfter < now
          ? `the certificate expired on ${when}`
          : `the certificate expires on ${when}`,
      };
    }
    return { tls: material, notAfter };
  } catch (error) {
    return { reason: `the certificate or key does not parse: ${firstLine(error)}` };
  }
}

/**
 * Tells whether the client CA's Secret can keep signing: `ca.crt` and
 * `ca.key` present, the certificate parses, is a CA's, signed itself, matches
 * the key, and is valid for 30 days more.
 *
 * @param secret The Secret as read, or `undefined` when there is none.
 * @param now The time to check validity at.
 * @returns The CA's PEM texts and its expiry, or why it cannot be used.
 *
 * @example
 * ```ts
 * import { reusableClientCa } from "./install.ts";
 *
 * const verdict = reusableClientCa({ data: {} }, new Date());
 * if (!("reason" in verdict) || verdict.reason !== "the secret has no ca.crt") throw new Error();
 * ```
 */
export function reusableClientCa(
  secret: V1Secret | undefined,
  now: Date,
): { ca: PemKeyPair; notAfter: Date } | { reason: string } {
  if (secret === undefined) return { reason: "there is no client CA secret" };
  const pair: Partial<PemKeyPair> = {};
  for (const [field, key] of Object.entries(CLIENT_CA_KEYS) as [keyof PemKeyPair, string][]) {
    const value = secret.data?.[key];
    if (!value) return { reason: `the secret has no ${key}` };
    try {
      pair[field] = decodeBase64(value);
    } catch {
      return { reason: `${key} is not base64` };
    }
  }
  const ca = pair as PemKeyPair;
  try {
    const cert = new X509Certificate(ca.certPem);
    const notAfter = new Date(cert.validTo);
    if (!cert.ca) return { reason: "ca.crt is not a CA certificate" };
    if (!cert.verify(cert.publicKey)) return { reason: "ca.crt is not self-signed" };
    if (!cert.checkPrivateKey(createPrivateKey(ca.keyPem))) {
      return { reason: "ca.key does not belong to ca.crt" };
    }
    if (notAfter.getTime() - now.getTime() < RENEW_BEFORE_MS) {
      const when = notAfter.toISOString().slice(0, 10);
      return {
        reason: notAfter < now
          ? `the client CA expired on ${when}`
          : `the client CA expires on ${when}`,
      };
    }
    return { ca, notAfter };
  } catch (error) {
    return { reason: `the client CA or its key does not parse: ${firstLine(error)}` };
  }
}

/**
 * {@linkcode reusableClientCa}, and then whether vif can sign with the CA it
 * keeps (`loadCertificateAuthority` in `x509.ts`, which loads the X.509
 * library, so only when there is a CA to keep): what `vif install --direct`
 * keeps.
 *
 * @param secret The Secret as read, or `undefined` when there is none.
 * @param now The time to check validity at.
 * @returns The CA's PEM texts and its expiry, or why it cannot be used.
 */
export async function usableClientCa(
  secret: V1Secret | undefined,
  now: Date,
): Promise<{ ca: PemKeyPair; notAfter: Date } | { reason: string }> {
  const verdict = reusableClientCa(secret, now);
  if (!("ca" in verdict)) return verdict;
  try {
    await (await import("./x509.ts")).loadCertificateAuthority(verdict.ca);
  } catch (error) {
    return { reason: `vif cannot sign with the client CA: ${firstLine(error)}` };
  }
  return verdict;
}

// --- applying one object ------------------------------------------------------

async function applyObject(api: ResourceApi, desired: KubeObject): Promise<ApplyAction> {
  for (let attempt = 0;; attempt++) {
    const existing = await api.read(desired);
    try {
      if (existing === undefined) {
        await api.create(desired);
        return "created";
      }
      if (desired.kind === "Namespace") {
        // Never change a namespace that exists: it may not be vif's.
        if ((existing as V1Namespace).status?.phase === "Terminating") {
          throw new KubeError(`namespace "${desired.metadata.name}" is being deleted`, {
            hint: `Wait until "kubectl get namespace ${desired.metadata.name}" finds nothing, ` +
              `then run "vif install" again.`,
          });
        }
        return "unchanged";
      }
      if (contains(existing, desired) && sameDataKeys(existing, desired)) return "unchanged";
      await api.replace(updateOf(desired, existing));
      return "configured";
    } catch (error) {
      // 409: created or changed by someone else since the GET; read it again.
      if (error instanceof KubeError && error.status === 409 && attempt < CONFLICT_RETRIES) {
        continue;
      }
      throw error;
    }
  }
}

/**
 * Whether every field of `desired` has the same value in `actual`: objects by
 * their keys (more keys in `actual` are defaults and others' additions),
 * arrays element by element at the same length, the rest by `===`.
 *
 * @param actual The object as the server has it.
 * @param desired The object vif would write.
 * @returns Whether writing `desired` would change nothing vif cares about.
 *
 * @example
 * ```ts
 * import { contains } from "./install.ts";
 *
 * if (!contains({ a: 1, b: [1, 2], c: "x" }, { a: 1, b: [1, 2] })) throw new Error();
 * if (contains({ b: [1, 2, 3] }, { b: [1, 2] })) throw new Error();
 * ```
 */
export function contains(actual: unknown, desired: unknown): boolean {
  if (Array.isArray(desired)) {
    return Array.isArray(actual) && actual.length === desired.length &&
      desired.every((item, i) => contains(actual[i], item));
  }
  if (desired !== null && typeof desired === "object") {
    if (actual === null || typeof actual !== "object") return false;
    return Object.entries(desired).every(([key, value]) =>
      value === undefined || contains((actual as Record<string, unknown>)[key], value)
    );
  }
  return actual === desired;
}

/**
 * Whether a Secret's or ConfigMap's `data` has exactly the keys vif writes:
 * a key vif no longer writes (`client-ca.crt` once the direct listener is
 * off) is taken out, unlike what others add to other objects.
 */
function sameDataKeys(existing: KubeObject, desired: KubeObject): boolean {
  if (desired.kind !== "Secret" && desired.kind !== "ConfigMap") return true;
  const keys = (o: KubeObject) =>
    Object.keys((o as { data?: Record<string, unknown> }).data ?? {}).sort().join("\n");
  return keys(existing) === keys(desired);
}

/** The body of the PUT: vif's object on the server's resourceVersion, keeping what others own. */
function updateOf(desired: KubeObject, existing: KubeObject): KubeObject {
  const body = structuredClone(desired) as KubeObject & { spec?: Record<string, unknown> };
  const meta = existing.metadata ?? { name: desired.metadata.name };
  body.metadata = {
    ...body.metadata,
    ...(meta.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}),
    labels: { ...meta.labels, ...body.metadata.labels },
    annotations: { ...meta.annotations, ...body.metadata.annotations },
  };
  if (desired.kind === "Service" && body.spec) {
    // Allocated by the server; a PUT without them would ask for a new ClusterIP.
    const spec = (existing as V1Service).spec ?? {};
    for (const field of ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] as const) {
      if (spec[field] !== undefined && body.spec[field] === undefined) {
        body.spec[field] = spec[field];
      }
    }
  }
  return body;
}

// --- the API, by kind ---------------------------------------------------------

interface KindApi {
  /** The resource's plural and group, as RBAC names it: `clusterroles`. */
  resource: string;
  read(name: string, namespace: string): Promise<KubeObject>;
  create(namespace: string, body: KubeObject): Promise<unknown>;
  replace(name: string, namespace: string, body: KubeObject): Promise<unknown>;
  remove(name: string, namespace: string): Promise<unknown>;
}

/** The typed clients of @kubernetes/client-node behind one interface, with errors mapped. */
class ResourceApi {
  #kinds: Record<string, KindApi>;
  #command: "install" | "uninstall";
  #server: string;
  #context: string;
  #session: RequestSession;

  constructor(kubeConfig: KubeConfig, command: "install" | "uninstall", timeoutMs?: number) {
    this.#command = command;
    this.#server = kubeConfig.getCurrentCluster()?.server ?? "(no server)";
    this.#context = kubeConfig.getCurrentContext();
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const apps = kubeConfig.makeApiClient(AppsV1Api);
    const rbac = kubeConfig.makeApiClient(RbacAuthorizationV1Api);
    this.#session = new RequestSession(timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const o = () => this.#session.options();
    const background = { propagationPolicy: "Background" };
    type Body<T> = T & KubeObject;
    this.#kinds = {
      Namespace: {
        resource: "namespaces",
        read: (name) => core.readNamespace({ name }, o()) as Promise<Body<V1Namespace>>,
        create: (_, body) => core.createNamespace({ body }, o()),
        replace: (name, _, body) => core.replaceNamespace({ name, body }, o()),
        remove: (name) => core.deleteNamespace({ name }, o()),
      },
      ServiceAccount: {
        resource: "serviceaccounts",
        read: (name, namespace) =>
          core.readNamespacedServiceAccount({ name, namespace }, o()) as Promise<
            Body<V1ServiceAccount>
          >,
        create: (namespace, body) => core.createNamespacedServiceAccount({ namespace, body }, o()),
        replace: (name, namespace, body) =>
          core.replaceNamespacedServiceAccount({ name, namespace, body }, o()),
        remove: (name, namespace) => core.deleteNamespacedServiceAccount({ name, namespace }, o()),
      },
      Secret: {
        resource: "secrets",
        read: (name, namespace) =>
          core.readNamespacedSecret({ name, namespace }, o()) as Promise<Body<V1Secret>>,
        create: (namespace, body) => core.createNamespacedSecret({ namespace, body }, o()),
        replace: (name, namespace, body) =>
          core.replaceNamespacedSecret({ name, namespace, body }, o()),
        remove: (name, namespace) => core.deleteNamespacedSecret({ name, namespace }, o()),
      },
      ConfigMap: {
        resource: "configmaps",
        read: (name, namespace) =>
          core.readNamespacedConfigMap({ name, namespace }, o()) as Promise<Body<V1ConfigMap>>,
        create: (namespace, body) => core.createNamespacedConfigMap({ namespace, body }, o()),
        replace: (name, namespace, body) =>
          core.replaceNamespacedConfigMap({ name, namespace, body }, o()),
        remove: (name, namespace) => core.deleteNamespacedConfigMap({ name, namespace }, o()),
      },
      Service: {
        resource: "services",
        read: (name, namespace) =>
          core.readNamespacedService({ name, namespace }, o()) as Promise<Body<V1Service>>,
        create: (namespace, body) => core.createNamespacedService({ namespace, body }, o()),
        replace: (name, namespace, body) =>
          core.replaceNamespacedService({ name, namespace, body }, o()),
        remove: (name, namespace) => core.deleteNamespacedService({ name, namespace }, o()),
      },
      Deployment: {
        resource: "deployments.apps",
        read: (name, namespace) =>
          apps.readNamespacedDeployment({ name, namespace }, o()) as Promise<Body<V1Deployment>>,
        create: (namespace, body) => apps.createNamespacedDeployment({ namespace, body }, o()),
        replace: (name, namespace, body) =>
          apps.replaceNamespacedDeployment({ name, namespace, body }, o()),
        remove: (name, namespace) =>
          apps.deleteNamespacedDeployment({ name, namespace, ...background }, o()),
      },
      Role: {
        resource: "roles.rbac.authorization.k8s.io",
        read: (name, namespace) =>
          rbac.readNamespacedRole({ name, namespace }, o()) as Promise<Body<V1Role>>,
        create: (namespace, body) => rbac.createNamespacedRole({ namespace, body }, o()),
        replace: (name, namespace, body) =>
          rbac.replaceNamespacedRole({ name, namespace, body }, o()),
        remove: (name, namespace) => rbac.deleteNamespacedRole({ name, namespace }, o()),
      },
      RoleBinding: {
        resource: "rolebindings.rbac.authorization.k8s.io",
        read: (name, namespace) =>
          rbac.readNamespacedRoleBinding({ name, namespace }, o()) as Promise<Body<V1RoleBinding>>,
        create: (namespace, body) =>
          rbac.createNamespacedRoleBinding({ namespace, body: body as Body<V1RoleBinding> }, o()),
        replace: (name, namespace, body) =>
          rbac.replaceNamespacedRoleBinding(
            { name, namespace, body: body as Body<V1RoleBinding> },
            o(),
          ),
        remove: (name, namespace) => rbac.deleteNamespacedRoleBinding({ name, namespace }, o()),
      },
      ClusterRole: {
        resource: "clusterroles.rbac.authorization.k8s.io",
        read: (name) => rbac.readClusterRole({ name }, o()) as Promise<Body<V1ClusterRole>>,
        create: (_, body) => rbac.createClusterRole({ body }, o()),
        replace: (name, _, body) => rbac.replaceClusterRole({ name, body }, o()),
        remove: (name) => rbac.deleteClusterRole({ name }, o()),
      },
      ClusterRoleBinding: {
        resource: "clusterrolebindings.rbac.authorization.k8s.io",
        read: (name) =>
          rbac.readClusterRoleBinding({ name }, o()) as Promise<Body<V1ClusterRoleBinding>>,
        create: (_, body) =>
          rbac.createClusterRoleBinding({ body: body as Body<V1ClusterRoleBinding> }, o()),
        replace: (name, _, body) =>
          rbac.replaceClusterRoleBinding({ name, body: body as Body<V1ClusterRoleBinding> }, o()),
        remove: (name) => rbac.deleteClusterRoleBinding({ name }, o()),
      },
    };
  }

  /** Closes the connections to the API server. */
  close(): Promise<void> {
    return this.#session.close();
  }

  /** GETs the object; `undefined` when it does not exist. */
  async read(object: KubeObject): Promise<KubeObject | undefined> {
    try {
      return await this.#call("get", object, (k, name, ns) => k.read(name, ns));
    } catch (error) {
      if (error instanceof KubeError && error.status === 404) return undefined;
      throw error;
    }
  }

  async create(object: KubeObject): Promise<void> {
    await this.#call("create", object, (k, _, ns) => k.create(ns, object));
  }

  async replace(object: KubeObject): Promise<void> {
    await this.#call("update", object, (k, name, ns) => k.replace(name, ns, object));
  }

  /** DELETEs the object; `false` when it did not exist. */
  async remove(object: KubeObject): Promise<boolean> {
    try {
      await this.#call("delete", object, (k, name, ns) => k.remove(name, ns));
      return true;
    } catch (error) {
      if (error instanceof KubeError && error.status === 404) return false;
      throw error;
    }
  }

  async #call<T>(
    verb: string,
    object: KubeObject,
    run: (kind: KindApi, name: string, namespace: string) => Promise<T>,
  ): Promise<T> {
    const kind = this.#kinds[object.kind];
    if (kind === undefined) throw new TypeError(`Cannot handle kind "${object.kind}"`);
    try {
      return await run(kind, object.metadata.name, object.metadata.namespace ?? "");
    } catch (error) {
      throw this.#explain(error, verb, kind.resource, object);
    }
  }

  /** Turns what the client threw into a {@linkcode KubeError}: one line what, one line what to do. */
  #explain(error: unknown, verb: string, resource: string, object: KubeObject): KubeError {
    return explainApiError(error, {
      server: this.#server,
      context: this.#context,
      command: this.#command,
      verb,
      resource,
      object,
    });
  }
}

/** What {@linkcode explainApiError} needs to know about the failed request. */
export interface ApiRequestInfo {
  /** The API server's URL and the kubeconfig context, for the message. */
  server: string;
  context: string;
  /** The vif command to run again (`install`, `list`). */
  command: string;
  /** The verb and resource (`list`, `services`). */
  verb: string;
  resource: string;
  /** The object (or, for a list, a stand-in with the namespace). */
  object: KubeObject;
}

/**
 * Turns what client-node threw into a {@linkcode KubeError}: one line what,
 * one line what to do (401, 403, a namespace being deleted, 404/409, 400/422,
 * other codes, and connection failures).
 *
 * @param error what was thrown
 * @param req the request
 * @returns the error to show
 */
export function explainApiError(error: unknown, req: ApiRequestInfo): KubeError {
  const { server, context, verb, resource, object } = req;
  const where = object.metadata.namespace ? ` in namespace "${object.metadata.namespace}"` : "";
  const plural = resource.split(".")[0]!;
  if (error instanceof ApiException) {
    const status = statusOf(error.body);
    const code = error.code;
    const detail = status.message ?? `HTTP ${code}`;
    if (code === 401) {
      return new KubeError(
        `the API server at ${server} refused the credentials of context "${context}"`,
        {
          hint: "Log in to the cluster again (the token or certificate may have expired), " +
            `then run "vif ${req.command}" again.`,
          cause: error,
          status: code,
        },
      );
    }
    if (code === 403 && /being terminated/.test(detail)) {
      return new KubeError(`namespace "${object.metadata.namespace}" is being deleted`, {
        hint: `Wait until "kubectl get namespace ${object.metadata.namespace}" finds nothing, ` +
          `then run "vif ${req.command}" again.`,
        cause: error,
        status: code,
      });
    }
    const impersonating =
      /^(users|groups) "([^"]*)" is forbidden: User "([^"]*)" cannot impersonate/
        .exec(detail);
    if (code === 403 && impersonating) {
      const [, kind, name, user] = impersonating;
      return new KubeError(
        `user "${user}" may not act as the ${kind === "users" ? "user" : "group"} "${name}"`,
        {
          hint: `Leave out --as, or ask a cluster admin to grant you impersonate on ${kind} ` +
            `(kubectl auth can-i impersonate ${kind}/${name}).`,
          cause: error,
          status: code,
        },
      );
    }
    if (code === 403) {
      const user = /User "([^"]*)"/.exec(detail)?.[1];
      return new KubeError(
        `${user ? `user "${user}" is ` : ""}not allowed to ${verb} ${plural}${where}`,
        {
          hint: `Ask a cluster admin to run "vif ${req.command}", or to grant you that ` +
            `permission (kubectl auth can-i ${verb} ${resource}).`,
          cause: error,
          status: code,
        },
      );
    }
    if (code === 404 || code === 409) {
      // Handled by the callers (absent, conflict); reported as is when they do not.
      return new KubeError(`cannot ${verb} ${displayName(object)}: ${detail}`, {
        hint: `Run "vif ${req.command}" again.`,
        cause: error,
        status: code,
      });
    }
    if (code === 422 || code === 400) {
      return new KubeError(`the API server rejected ${displayName(object)}: ${detail}`, {
        hint: "An admission policy of the cluster may forbid it; " +
          'otherwise this is a bug in vif (run with "--debug" and report it).',
        cause: error,
        status: code,
      });
    }
    return new KubeError(
      `the API server answered ${code} to ${verb} ${displayName(object)}: ${detail}`,
      {
        hint: `Check the cluster's health ("kubectl get --raw /readyz"), then run ` +
          `"vif ${req.command}" again.`,
        cause: error,
        status: code,
      },
    );
  }
  return networkError(error, server, context);
}

/**
 * A connection-level failure as a {@linkcode KubeError}: refused, unknown host,
 * untrusted certificate, timeout, or whatever else the HTTP client said.
 */
function networkError(error: unknown, server: string, context: string): KubeError {
  const causes: { name?: string; code?: string; message?: string }[] = [];
  for (let e: unknown = error; e !== undefined && e !== null && causes.length < 6;) {
    causes.push(e as { name?: string; code?: string; message?: string });
    e = (e as { cause?: unknown }).cause;
  }
  const has = (test: (e: { name?: string; code?: string; message?: string }) => boolean) =>
    causes.some((e) => typeof e === "object" && test(e));
  const innermost = causes.at(-1);
  const detail = firstLine(innermost instanceof Error ? innermost : error);
  const checkContext = `Check that the cluster is up and that context "${context}" points at it ` +
    '("kubectl cluster-info").';
  if (has((e) => e.name === "TimeoutError" || e.name === "AbortError")) {
    return new KubeError(`the API server at ${server} did not answer in time`, {
      hint: checkContext,
      cause: error,
    });
  }
  if (has((e) => e.code === "ECONNREFUSED")) {
    return new KubeError(`cannot reach the API server at ${server}: connection refused`, {
      hint: checkContext,
      cause: error,
    });
  }
  if (has((e) => e.code === "ENOTFOUND" || e.code === "EAI_AGAIN")) {
    return new KubeError(`cannot reach the API server at ${server}: unknown host`, {
      hint: checkContext,
      cause: error,
    });
  }
  if (
    has((e) =>
      /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/i.test(e.code ?? "") ||
      /certificate|UnknownIssuer|NotValidForName/i.test(e.message ?? "")
    )
  ) {
    return new KubeError(
      `the API server at ${server} has a certificate this machine does not trust: ${detail}`,
      {
        hint:
          `Check "certificate-authority" or "certificate-authority-data" of the cluster of context "${context}" in the kubeconfig.`,
        cause: error,
      },
    );
  }
  return new KubeError(`cannot talk to the API server at ${server}: ${detail}`, {
    hint: checkContext,
    cause: error,
  });
}

/** The `Status` the API server sent as the error body, when it parses. */
function statusOf(body: unknown): { message?: string; reason?: string } {
  let value = body;
  if (typeof body === "string") {
    try {
      value = JSON.parse(body);
    } catch {
      return body.trim() ? { message: firstLine(body) } : {};
    }
  }
  if (value !== null && typeof value === "object") {
    const { message, reason } = value as { message?: unknown; reason?: unknown };
    return {
      ...(typeof message === "string" ? { message } : {}),
      ...(typeof reason === "string" ? { reason } : {}),
    };
  }
  return {};
}

/**
 * The per-request options of one run, passed to every call of the typed
 * clients: a middleware (observable-style, which is what the object-parameter
 * API of @kubernetes/client-node 2.x hands to its HTTP layer: it calls
 * `.toPromise()` on what `pre` returns) that
 *
 * - aborts a request after `timeoutMs`;
 * - reuses one HTTP dispatcher for the whole run. The client makes a new
 *   undici Agent for every request (a TLS handshake each, ~45 ms here, and a
 *   connection left open); the first one it made is kept and set on every
 *   later request, and {@linkcode RequestSession.close} closes it, so that no
 *   connection outlives the run.
 */
class RequestSession {
  #timeoutMs: number;
  #dispatcher: { close(): Promise<void> } | undefined;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  /** The options for one call. */
  // deno-lint-ignore no-explicit-any
  options(): any {
    type Context = {
      setSignal(signal: AbortSignal): void;
      getDispatcher(): unknown;
      setDispatcher(dispatcher: unknown): void;
    };
    const settled = <T>(value: T) => ({ toPromise: () => Promise.resolve(value) });
    return {
      middleware: [{
        pre: (context: Context) => {
          context.setSignal(AbortSignal.timeout(this.#timeoutMs));
          const made = context.getDispatcher() as { close(): Promise<void> } | undefined;
          if (this.#dispatcher === undefined) this.#dispatcher = made;
          else if (made !== undefined) context.setDispatcher(this.#dispatcher);
          return settled(context);
        },
        post: <T>(response: T) => settled(response),
      }],
      middlewareMergeStrategy: "append",
    };
  }

  /** Closes the connections of the run. */
  async close(): Promise<void> {
    const dispatcher = this.#dispatcher;
    this.#dispatcher = undefined;
    await dispatcher?.close().catch(() => {});
  }
}

function decodeBase64(text: string): string {
  const binary = atob(text);
  return new TextDecoder("utf-8", { fatal: true }).decode(
    Uint8Array.from(binary, (c) => c.charCodeAt(0)),
  );
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.trim().split("\n", 1)[0] ?? text;
}

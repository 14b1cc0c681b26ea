/**
 * Kubernetes for vif: loading a kubeconfig and picking a context
 * (`client.ts`), the traffic-manager's objects (`manifests.ts`), installing
 * and uninstalling them (`install.ts`), and the PEM texts of their
 * certificates (`pem.ts`). Failures are {@linkcode KubeError}s with a hint;
 * YAML output is the CLI's (`mod/cli/output.ts`).
 * Finding the manager (`discovery.ts`) and port-forwarding to it
 * (`portforward.ts`) are imported on their own by those that need them, as
 * are making the manager's certificates and the direct listener's client
 * certificates (`x509.ts`, which loads an X.509 library), and what the roles
 * that run in pods share: the service account's access (`in_cluster.ts`) and
 * list+watch (`informer.ts`).
 *
 * @example The objects `vif install` applies
 * ```ts
 * import { managerManifests } from "./mod.ts";
 * import { createManagerTls } from "./x509.ts";
 *
 * const tls = await createManagerTls("vif-system");
 * const objects = managerManifests({ tls });
 * if (objects[0]?.kind !== "Namespace") throw new Error(JSON.stringify(objects[0]));
 * ```
 *
 * @module
 */

export {
  type LoadedKubeConfig,
  loadKubeConfig,
  type LoadKubeConfigOptions,
  resolveAccess,
} from "./client.ts";
export { type ApiAccess, type KubeApi, kubeApi, KubeApiError } from "./api.ts";
export { KubeError, type KubeErrorOptions } from "./errors.ts";
export {
  type AppliedObject,
  type ApplyAction,
  type ClientCaOutcome,
  contains,
  type DeleteAction,
  type DeletedObject,
  install,
  type InstallOptions,
  type InstallResult,
  RENEW_BEFORE_MS,
  reusableClientCa,
  reusableTls,
  type TlsOutcome,
  uninstall,
  type UninstallOptions,
  uninstallTargets,
} from "./install.ts";
export {
  alsoProxyCidrs,
  ANNOTATION,
  CA_CONFIGMAP_KEY,
  CA_CONFIGMAP_NAME,
  CLIENT_CA_KEYS,
  CLIENT_CA_SECRET_NAME,
  CLIENT_CA_TLS_KEY,
  clusterRoleName,
  defaultImage,
  DIRECT_PORT_NAME,
  displayName,
  grantSubjects,
  GRPC_PORT_NAME,
  HEALTH_PORT_NAME,
  IMAGE_BINARY,
  IMAGE_REPOSITORY,
  type KubeObject,
  LABEL,
  MANAGER_NAME,
  MANAGER_UID,
  type ManagerManifestOptions,
  managerManifests,
  type ManagerObject,
  type ManagerObjects,
  managerRules,
  managerSelector,
  mergeSubjects,
  RBAC_GROUP,
  TLS_KEYS,
  TLS_MOUNT_PATH,
  TLS_SECRET_NAME,
  USER_ROLE_NAME,
  userRules,
  type UserSubject,
} from "./manifests.ts";
export type {
  CertificateAuthority,
  CertificateAuthorityOptions,
  IssuedCertificate,
  ManagerTlsOptions,
  ServerCertificateOptions,
  ValidityOptions,
} from "./x509.ts";
export { type ManagerTls, pem, type PemKeyPair } from "./pem.ts";

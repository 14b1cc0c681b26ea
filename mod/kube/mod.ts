/**
 * Kubernetes for vif: loading a kubeconfig and picking a context
 * (`client.ts`), the traffic-manager's objects (`manifests.ts`), installing
 * and uninstalling them (`install.ts`), the manager's certificates made
 * in-process (`x509.ts`), and YAML output (`yaml.ts`). Failures are
 * {@linkcode KubeError}s with a hint.
 *
 * @example Print what `vif install` would apply
 * ```ts
 * import { createManagerTls, managerManifests, toYamlStream } from "./mod.ts";
 *
 * const tls = await createManagerTls("vif-system");
 * const yaml = toYamlStream(managerManifests({ tls }));
 * if (!yaml.startsWith("apiVersion: v1\nkind: Namespace\n")) throw new Error(yaml);
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
  contains,
  type DeleteAction,
  type DeletedObject,
  install,
  type InstallOptions,
  type InstallResult,
  RENEW_BEFORE_MS,
  reusableTls,
  type TlsOutcome,
  uninstall,
  type UninstallOptions,
} from "./install.ts";
export {
  ANNOTATION,
  clusterRoleName,
  defaultImage,
  displayName,
  GRPC_PORT_NAME,
  IMAGE_BINARY,
  IMAGE_REPOSITORY,
  type KubeObject,
  LABEL,
  MANAGER_NAME,
  MANAGER_UID,
  type ManagerManifestOptions,
  managerManifests,
  type ManagerObjects,
  managerRules,
  managerSelector,
  TLS_KEYS,
  TLS_MOUNT_PATH,
  TLS_SECRET_NAME,
} from "./manifests.ts";
export {
  type CertificateAuthority,
  type CertificateAuthorityOptions,
  createCertificateAuthority,
  createManagerTls,
  DEFAULT_VALID_DAYS,
  type IssuedCertificate,
  issueServerCertificate,
  managerDnsNames,
  type ManagerTls,
  type ManagerTlsOptions,
  p1363ToDer,
  pem,
  type ServerCertificateOptions,
  type ValidityOptions,
} from "./x509.ts";
export { toYaml, toYamlStream } from "./yaml.ts";

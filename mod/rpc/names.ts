/**
 * The traffic-manager's names and ports, which the CLI, `vif install` and the
 * manager share: a module with no protobuf and no gRPC in it, so that every
 * `vif` command that only needs a default namespace or a port starts without
 * loading them. `service.ts` re-exports them.
 *
 * @module
 */

/** The TLS server name every manager certificate carries: `traffic-manager.<namespace>`. */
export function managerServerName(namespace: string): string {
  return `traffic-manager.${namespace}`;
}

/**
 * The DNS names of a certificate's subjectAltName, lower-cased: the names a
 * client checks the server name against (RFC 6125 6.4.4: never the
 * subject's CN), so the manager's check of its certificate and `vif
 * install`'s agree with what clients do.
 *
 * @param subjectAltName `X509Certificate.subjectAltName`, e.g. `DNS:a, IP Address:198.18.0.1`.
 * @returns The DNS names.
 */
export function certificateDnsNames(subjectAltName: string | undefined): string[] {
  return (subjectAltName ?? "").split(/,\s*/).flatMap((entry) =>
    entry.startsWith("DNS:") ? [entry.slice(4).toLowerCase()] : []
  );
}

/** The default namespace of the traffic-manager. */
export const DEFAULT_MANAGER_NAMESPACE = "vif-system";

/**
 * The manager's client port: on loopback inside its pod only, so that it is
 * reached through the API server's `pods/portforward` and nothing else.
 */
export const DEFAULT_MANAGER_PORT = 8081;

/** The manager's health port (HTTP `/livez`, `/readyz`), for the kubelet's probes. */
export const DEFAULT_HEALTH_PORT = 8082;

/** The manager's direct port (mutual TLS, off unless asked for), for clients that dial it. */
export const DEFAULT_DIRECT_PORT = 8443;

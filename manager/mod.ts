/**
 * The traffic-manager: the in-cluster side of the tunnel, started as
 * `vif --serve` (alias `vif manager`) by the container entrypoint, running as a
 * non-root user (DESIGN.md §1 and §6). It serves the `vif.v1.Manager` gRPC API
 * over TLS only, keeps the session table (heartbeats, expiry), dials in-cluster
 * destinations for each tunnel stream within a destination policy, forwards DNS
 * queries to the cluster's resolver, discovers the pod and service subnets and
 * the namespaces from the Kubernetes API, and pushes the cluster info to
 * watchers.
 *
 * It never imports `mod/tun/` or any FFI code (tests/architecture_test.ts).
 *
 * @example Serve in-process, as the tests do
 * ```ts ignore
 * import { serve } from "./mod.ts";
 *
 * const manager = await serve({
 *   tlsDir: "/var/run/secrets/vif/tls",
 *   listen: "127.0.0.1:0",
 *   podSubnets: ["198.18.64.0/18"],
 *   serviceSubnets: ["198.18.128.0/20"],
 *   sessionTtlMs: 30_000,
 * });
 * manager.clusterInfo.set({ podSubnets: ["198.18.64.0/18", "198.18.96.0/19"] }); // pushed to watchers
 * await manager.close();
 * ```
 *
 * @module
 */

export {
  MANAGER_NAME,
  type ManagerHandle,
  serve,
  type ServeDiscoveryOptions,
  type ServeOptions,
} from "./server.ts";
export {
  aggregateCidrs,
  coveringCidrs,
  type CoveringOptions,
  type DiscoveredField,
  type Discovery,
  type DiscoveryOptions,
  managerKubeAccess,
  normalizeCidrs,
  parseServiceRangeError,
  PROBE_CLUSTER_IPS,
  PROBE_SERVICE_NAME,
  startDiscovery,
} from "./discovery.ts";
export { parseListen } from "../mod/rpc/serve.ts";
export { ClusterInfoSource, type ClusterInfoValue, toClusterInfoMessage } from "./cluster_info.ts";
export { ManagerSetupError, type ManagerSetupErrorOptions } from "./errors.ts";
export {
  DnsForwarder,
  type DnsForwarderOptions,
  DnsForwardError,
} from "../mod/kube/dns_forwarder.ts";
export { DestinationPolicy, type DestinationPolicyOptions, type Verdict } from "./policy.ts";
export { type Session, type SessionClient, SessionTable } from "./sessions.ts";
export { ManagerStats } from "./stats.ts";
export { checkTls, readTlsDir, serverCredentials, type TlsMaterial } from "../mod/rpc/tls.ts";

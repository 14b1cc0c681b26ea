/**
 * The traffic-manager: the in-cluster side of the tunnel, started as
 * `vif --serve` (alias `vif manager`) by the container entrypoint, running as a
 * non-root user. It will serve the gRPC API over TLS, dial in-cluster
 * destinations for each tunnel stream, answer DNS queries through the cluster's
 * resolver, discover and push the pod and service subnets, and keep the session
 * table (DESIGN.md §1 and §6). Nothing is here yet.
 *
 * It never imports `mod/tun/` or any FFI code (tests/architecture_test.ts).
 *
 * @module
 */

/**
 * A fake Kubernetes API server for the simulated cluster: HTTPS with bearer
 * tokens (audience-bound service-account tokens and TokenReview included),
 * discovery, REST with list/watch, `pods/portforward` over WebSocket as the
 * kubelet serves it, `pods/log`, and audit events of every request; plus the
 * {@linkcode Store} that in-process controllers read and write.
 *
 * @module
 */

export {
  type ApiServer,
  type ApiServerOptions,
  type AuthorizationAttributes,
  type AuthorizationDecision,
  SERVER_VERSION,
  startApiServer,
  type TokenInfo,
} from "./server.ts";
export {
  type DeleteOptions,
  type DeleteResult,
  type EventType,
  type KubeObject,
  type ListOptions,
  type ObjectMeta,
  type ObjectRef,
  type OwnerReference,
  Store,
  type StoreEvent,
  type StoreOptions,
  type WriteOptions,
} from "./store.ts";
export { ApiError, type Status, type StatusDetails } from "./status.ts";
export { type PodLogLine, type PodLogRef, type PodLogSource } from "./pod_log.ts";
export {
  type AuditEvent,
  type AuditLevel,
  type AuditObjectRef,
  type AuditOptions,
  type AuditResponseStatus,
  type AuditStage,
} from "./audit.ts";
export { findResource, type ResourceInfo, RESOURCES } from "./resources.ts";
export {
  API_AUDIENCE,
  authenticateToken,
  type BoundObject,
  type IssuedToken,
  issueServiceAccountToken,
  jwtClaims,
  type TokenCheck,
  type TokenRequestSpec,
  type UserInfo,
} from "./tokens.ts";

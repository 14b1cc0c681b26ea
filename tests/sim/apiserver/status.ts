/**
 * `metav1.Status` bodies exactly as kube-apiserver writes them, and the
 * {@linkcode ApiError} that carries one through the fake API server and its
 * {@linkcode Store}.
 *
 * The messages follow `k8s.io/apimachinery/pkg/api/errors`: `pods "web" not
 * found`, `deployments.apps "web" already exists`, `Service "web" is invalid:
 * spec.clusterIPs: Invalid value: …`.
 *
 * @module
 */

/** `metav1.StatusCause`. */
export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** `metav1.StatusDetails`. */
export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

/** `metav1.Status`, the body of every error response. */
export interface Status {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure" | "Success";
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

/** A request the API server refuses; `status` is the body it answers with. */
export class ApiError extends Error {
  /** The `Status` body. */
  readonly status: Status;

  /**
   * @param status the Status body (its `message` becomes the error's message)
   * @param options the cause, if any
   */
  constructor(status: Status, options?: ErrorOptions) {
    super(status.message ?? status.reason ?? `HTTP ${status.code}`, options);
    this.name = "ApiError";
    this.status = status;
  }

  /** The HTTP status code. */
  get code(): number {
    return this.status.code;
  }

  /** The `reason` (`NotFound`, `Conflict`, `Invalid`, …). */
  get reason(): string {
    return this.status.reason ?? "";
  }
}

/** A resource and its API group, as errors name it: `pods`, `deployments.apps`. */
export interface GroupResource {
  group: string;
  resource: string;
}

function qualified(gr: GroupResource): string {
  return gr.group ? `${gr.resource}.${gr.group}` : gr.resource;
}

function failure(
  code: number,
  reason: string,
  message: string,
  details?: StatusDetails,
): ApiError {
  const status: Status = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
  return new ApiError(status);
}

function grDetails(gr: GroupResource, name: string): StatusDetails {
  return {
    ...(name ? { name } : {}),
    ...(gr.group ? { group: gr.group } : {}),
    kind: gr.resource,
  };
}

/**
 * A `Success` Status, as a delete of a resource that does not return the
 * object answers.
 *
 * @param details the deleted object's name, group, resource (as `kind`) and uid
 * @returns the Status body
 */
export function successStatus(details: StatusDetails): Status {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details, code: 200 };
}

/**
 * 401: no or an unknown bearer token.
 *
 * @returns the error
 */
export function unauthorized(): ApiError {
  return failure(401, "Unauthorized", "Unauthorized");
}

/**
 * 403 from the authorizer: `pods "web" is forbidden: User "u" cannot create
 * resource "pods/portforward" in API group "" in the namespace "shop"`, then
 * `: ` and the authorizer's reason when it gave one.
 *
 * @param attrs the denied request, and the authorizer's reason
 * @returns the error
 */
export function forbiddenByRbac(attrs: {
  user: string;
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  reason?: string;
}): ApiError {
  const full = attrs.subresource ? `${attrs.resource}/${attrs.subresource}` : attrs.resource;
  const where = attrs.namespace ? `in the namespace "${attrs.namespace}"` : "at the cluster scope";
  const why =
    `User "${attrs.user}" cannot ${attrs.verb} resource "${full}" in API group "${attrs.group}" ${where}`;
  return forbidden(
    { group: attrs.group, resource: attrs.resource },
    attrs.name ?? "",
    attrs.reason ? `${why}: ${attrs.reason}` : why,
  );
}

/**
 * 403 with a reason: `<resource> "<name>" is forbidden: <reason>`.
 *
 * @param gr the resource
 * @param name the object's name, or `""`
 * @param reason why
 * @returns the error
 */
export function forbidden(gr: GroupResource, name: string, reason: string): ApiError {
  const what = name ? `${qualified(gr)} "${name}"` : qualified(gr);
  return failure(403, "Forbidden", `${what} is forbidden: ${reason}`, grDetails(gr, name));
}

/**
 * 404: `pods "web" not found`.
 *
 * @param gr the resource
 * @param name the object's name
 * @returns the error
 */
export function notFound(gr: GroupResource, name: string): ApiError {
  return failure(404, "NotFound", `${qualified(gr)} "${name}" not found`, grDetails(gr, name));
}

/**
 * 409: `namespaces "shop" already exists`.
 *
 * @param gr the resource
 * @param name the object's name
 * @returns the error
 */
export function alreadyExists(gr: GroupResource, name: string): ApiError {
  return failure(
    409,
    "AlreadyExists",
    `${qualified(gr)} "${name}" already exists`,
    grDetails(gr, name),
  );
}

/**
 * 409 on a stale `resourceVersion`.
 *
 * @param gr the resource
 * @param name the object's name
 * @param detail what went wrong
 * @returns the error
 */
export function conflict(
  gr: GroupResource,
  name: string,
  detail =
    "the object has been modified; please apply your changes to the latest version and try again",
): ApiError {
  return failure(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualified(gr)} "${name}": ${detail}`,
    grDetails(gr, name),
  );
}

/** One field error, as `field.Error` renders it. */
export interface FieldError {
  /** `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueDuplicate`, `FieldValueForbidden`, `FieldValueNotFound`. */
  type:
    | "FieldValueInvalid"
    | "FieldValueRequired"
    | "FieldValueNotSupported"
    | "FieldValueDuplicate"
    | "FieldValueForbidden"
    | "FieldValueNotFound";
  /** The field path: `spec.clusterIPs`, `metadata.name`. */
  field: string;
  /** The bad value already in Go's `%#v` form (`"x"`, `[]string{"1.2.3.4"}`), for Invalid. */
  value?: string;
  /** The explanation after the value. */
  detail?: string;
}

function fieldErrorBody(e: FieldError): string {
  switch (e.type) {
    case "FieldValueRequired":
      return e.detail ? `Required value: ${e.detail}` : "Required value";
    case "FieldValueForbidden":
      return e.detail ? `Forbidden: ${e.detail}` : "Forbidden";
    case "FieldValueDuplicate":
      return `Duplicate value: ${e.value ?? ""}`;
    case "FieldValueNotFound":
      return `Not found: ${e.value ?? ""}`;
    case "FieldValueNotSupported":
      return `Unsupported value: ${e.value ?? ""}${e.detail ? `: ${e.detail}` : ""}`;
    default:
      return `Invalid value: ${e.value ?? ""}${e.detail ? `: ${e.detail}` : ""}`;
  }
}

/**
 * 422: `Service "web" is invalid: spec.clusterIPs: Invalid value: …` with one
 * cause per field error.
 *
 * @param kind the kind, qualified by group outside core (`Deployment.apps`)
 * @param group the API group (`""` for core)
 * @param name the object's name
 * @param errors what is wrong
 * @returns the error
 */
export function invalid(
  kind: string,
  group: string,
  name: string,
  errors: FieldError[],
): ApiError {
  const qualifiedKind = group ? `${kind}.${group}` : kind;
  const lines = errors.map((e) => `${e.field}: ${fieldErrorBody(e)}`);
  const summary = lines.length === 1 ? lines[0] : `[${lines.join(", ")}]`;
  return failure(422, "Invalid", `${qualifiedKind} "${name}" is invalid: ${summary}`, {
    name,
    ...(group ? { group } : {}),
    kind,
    causes: errors.map((e) => ({ reason: e.type, message: fieldErrorBody(e), field: e.field })),
  });
}

/**
 * 400 BadRequest.
 *
 * @param message what is wrong with the request
 * @returns the error
 */
export function badRequest(message: string): ApiError {
  return failure(400, "BadRequest", message);
}

/**
 * 405 MethodNotAllowed.
 *
 * @param message what is not allowed
 * @returns the error
 */
export function methodNotAllowed(message: string): ApiError {
  return failure(405, "MethodNotAllowed", message);
}

/**
 * 410 Expired, the answer (as a watch `ERROR` event) to a `resourceVersion`
 * older than the kept history: `too old resource version: 5 (120)`.
 *
 * @param requested the resourceVersion asked for
 * @param oldest the oldest one still served, less one
 * @returns the error
 */
export function expired(requested: number, oldest: number): ApiError {
  return failure(410, "Expired", `too old resource version: ${requested} (${oldest})`);
}

/**
 * 415 UnsupportedMediaType for a body or patch type the server does not take.
 *
 * @param contentType what the client sent
 * @returns the error
 */
export function unsupportedMediaType(contentType: string): ApiError {
  return failure(
    415,
    "UnsupportedMediaType",
    `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got "${contentType}")`,
  );
}

/**
 * 404 for a path that names no resource (`the server could not find the requested resource`).
 *
 * @returns the error
 */
export function pathNotFound(): ApiError {
  return failure(404, "NotFound", "the server could not find the requested resource");
}

/**
 * 500 InternalError.
 *
 * @param message what failed
 * @returns the error
 */
export function internalError(message: string): ApiError {
  return failure(
    500,
    "InternalError",
    `Internal error occurred: ${message}`,
    { causes: [{ message }] },
  );
}

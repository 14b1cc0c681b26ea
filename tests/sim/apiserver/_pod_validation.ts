/**
 * Validation of a pod spec (a Pod's, or a workload's template), the part of
 * kube-apiserver's `ValidatePodSpec` that a client notices and that the
 * simulated kubelet relies on: names it turns into file names (containers,
 * volumes, projected paths) are held to the API's rules here, before any
 * kubelet sees them, and so are container ports (a name a Service's
 * `targetPort` can use, unique in its container; a number in range).
 *
 * @module
 */

import type { FieldError } from "./status.ts";

type Obj = Record<string, unknown>;

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_DETAIL =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
/** Since 1.32 (`RelaxedEnvironmentVariableValidation`, on by default): any printable ASCII but `=`. */
const ENV_NAME_DETAIL =
  "a valid environment variable name must consist only of printable ASCII characters other than '='";
/** The `fieldRef` paths an env var may name (labels and annotations with a subscript only). */
export const ENV_FIELD_PATHS = [
  "metadata.name",
  "metadata.namespace",
  "metadata.uid",
  "spec.nodeName",
  "spec.serviceAccountName",
  "status.hostIP",
  "status.hostIPs",
  "status.podIP",
  "status.podIPs",
];
/** The `fieldRef` paths a downward API volume file may name. */
export const VOLUME_FIELD_PATHS = [
  "metadata.annotations",
  "metadata.labels",
  "metadata.name",
  "metadata.namespace",
  "metadata.uid",
];
/** The shortest `expirationSeconds` of a projected service-account token. */
export const MIN_TOKEN_EXPIRATION_SECONDS = 600;

function obj(v: unknown): Obj | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v as Obj : undefined;
}

function list(v: unknown): Obj[] {
  return Array.isArray(v) ? v.filter((x): x is Obj => obj(x) !== undefined) : [];
}

function quoted(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

/**
 * Whether `name` is an environment variable name as 1.33 accepts it: not
 * empty, printable ASCII only, no `=`.
 *
 * @param name the name
 * @returns true when valid
 */
export function isEnvVarName(name: string): boolean {
  return name.length > 0 && /^[\x20-\x7e]+$/.test(name) && !name.includes("=");
}

/** `metadata.labels['app']` → `["labels", "app"]`; a plain path → undefined. */
export function subscriptOf(path: string): ["labels" | "annotations", string] | undefined {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  return m ? [m[1] as "labels" | "annotations", m[2]!] : undefined;
}

/**
 * The errors of a relative path inside a volume (`items[].path`, `subPath`),
 * as `validateLocalDescendingPath` words them.
 *
 * @param path the path
 * @param field where it is
 * @returns the errors
 */
export function localPathErrors(path: string, field: string): FieldError[] {
  if (path.startsWith("/")) {
    return [{
      type: "FieldValueInvalid",
      field,
      value: quoted(path),
      detail: "must be a relative path",
    }];
  }
  if (path.split("/").includes("..")) {
    return [{
      type: "FieldValueInvalid",
      field,
      value: quoted(path),
      detail: "must not contain '..'",
    }];
  }
  if (path.startsWith("..")) {
    return [{
      type: "FieldValueInvalid",
      field,
      value: quoted(path),
      detail: "must not start with '..'",
    }];
  }
  return [];
}

function itemsErrors(items: unknown, field: string): FieldError[] {
  return list(items).flatMap((item, i) => {
    const f = `${field}.items[${i}]`;
    if (!item.path) return [{ type: "FieldValueRequired" as const, field: `${f}.path` }];
    return localPathErrors(String(item.path), `${f}.path`);
  });
}

function fieldRefErrors(ref: Obj, field: string, allowed: string[]): FieldError[] {
  const path = String(ref.fieldPath ?? "");
  if (allowed.includes(path) || subscriptOf(path)) return [];
  return [{
    type: "FieldValueNotSupported",
    field: `${field}.fieldPath`,
    value: quoted(path),
    detail: `supported values: ${allowed.map((p) => `"${p}"`).join(", ")}`,
  }];
}

function volumeErrors(v: Obj, field: string): FieldError[] {
  const errors: FieldError[] = [];
  const secret = obj(v.secret), configMap = obj(v.configMap), projected = obj(v.projected);
  const downward = obj(v.downwardAPI);
  if (secret) errors.push(...itemsErrors(secret.items, `${field}.secret`));
  if (configMap) errors.push(...itemsErrors(configMap.items, `${field}.configMap`));
  if (downward) {
    list(downward.items).forEach((item, i) => {
      const f = `${field}.downwardAPI.items[${i}]`;
      errors.push(...localPathErrors(String(item.path ?? ""), `${f}.path`));
      const ref = obj(item.fieldRef);
      if (ref) errors.push(...fieldRefErrors(ref, `${f}.fieldRef`, VOLUME_FIELD_PATHS));
    });
  }
  if (projected) {
    list(projected.sources).forEach((source, i) => {
      const f = `${field}.projected.sources[${i}]`;
      const token = obj(source.serviceAccountToken);
      if (token) {
        const seconds = token.expirationSeconds;
        if (
          seconds !== undefined &&
          (typeof seconds !== "number" || seconds < MIN_TOKEN_EXPIRATION_SECONDS)
        ) {
          errors.push({
            type: "FieldValueInvalid",
            field: `${f}.serviceAccountToken.expirationSeconds`,
            value: String(seconds),
            detail: "may not specify a duration less than 10 minutes",
          });
        }
        if (!token.path) {
          errors.push({ type: "FieldValueRequired", field: `${f}.serviceAccountToken.path` });
        } else errors.push(...localPathErrors(String(token.path), `${f}.serviceAccountToken.path`));
      }
      const cm = obj(source.configMap), sec = obj(source.secret), down = obj(source.downwardAPI);
      if (cm) errors.push(...itemsErrors(cm.items, `${f}.configMap`));
      if (sec) errors.push(...itemsErrors(sec.items, `${f}.secret`));
      if (down) {
        list(down.items).forEach((item, j) => {
          const g = `${f}.downwardAPI.items[${j}]`;
          errors.push(...localPathErrors(String(item.path ?? ""), `${g}.path`));
          const ref = obj(item.fieldRef);
          if (ref) errors.push(...fieldRefErrors(ref, `${g}.fieldRef`, VOLUME_FIELD_PATHS));
        });
      }
    });
  }
  return errors;
}

/**
 * What is wrong with a port name, as `IsValidPortName` says it (an IANA
 * service name): one message per rule broken.
 *
 * @param name the name
 * @returns the messages, empty when valid
 */
export function portNameErrors(name: string): string[] {
  const errors: string[] = [];
  if (name.length > 15) errors.push("must be no more than 15 characters");
  if (!/^[-a-z0-9]+$/.test(name)) {
    errors.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
  }
  if (!/[a-z]/.test(name)) errors.push("must contain at least one letter (a-z)");
  if (name.includes("--")) errors.push("must not contain consecutive hyphens");
  if (name.startsWith("-") || name.endsWith("-")) {
    errors.push("must not begin or end with a hyphen");
  }
  return errors;
}

/** A container's `ports`, as `validateContainerPorts` checks them: numbers in range, names valid and distinct. */
function portErrors(ports: unknown, field: string): FieldError[] {
  const errors: FieldError[] = [];
  const names = new Set<string>();
  list(ports).forEach((p, i) => {
    const f = `${field}.ports[${i}]`;
    const name = typeof p.name === "string" ? p.name : "";
    if (name !== "") {
      const messages = portNameErrors(name);
      for (const detail of messages) {
        errors.push({ type: "FieldValueInvalid", field: `${f}.name`, value: quoted(name), detail });
      }
      if (messages.length === 0 && names.has(name)) {
        errors.push({ type: "FieldValueDuplicate", field: `${f}.name`, value: quoted(name) });
      }
      names.add(name);
    }
    const port = p.containerPort;
    if (port === undefined || port === 0) {
      errors.push({ type: "FieldValueRequired", field: `${f}.containerPort` });
    } else if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
      errors.push({
        type: "FieldValueInvalid",
        field: `${f}.containerPort`,
        value: String(port),
        detail: "must be between 1 and 65535, inclusive",
      });
    }
  });
  return errors;
}

function containerErrors(c: Obj, field: string, volumes: Set<string>): FieldError[] {
  const errors: FieldError[] = [];
  if (!c.image) errors.push({ type: "FieldValueRequired", field: `${field}.image` });
  errors.push(...portErrors(c.ports, field));
  list(c.env).forEach((e, i) => {
    const f = `${field}.env[${i}]`;
    if (!isEnvVarName(String(e.name ?? ""))) {
      errors.push({
        type: "FieldValueInvalid",
        field: `${f}.name`,
        value: quoted(e.name ?? ""),
        detail: ENV_NAME_DETAIL,
      });
    }
    const ref = obj(obj(e.valueFrom)?.fieldRef);
    if (ref) errors.push(...fieldRefErrors(ref, `${f}.valueFrom.fieldRef`, ENV_FIELD_PATHS));
  });
  const paths = new Set<string>();
  list(c.volumeMounts).forEach((m, i) => {
    const f = `${field}.volumeMounts[${i}]`;
    const name = String(m.name ?? "");
    if (!name) errors.push({ type: "FieldValueRequired", field: `${f}.name` });
    else if (!volumes.has(name)) {
      errors.push({ type: "FieldValueNotFound", field: `${f}.name`, value: quoted(name) });
    }
    const path = String(m.mountPath ?? "");
    if (!path) errors.push({ type: "FieldValueRequired", field: `${f}.mountPath` });
    else if (paths.has(path)) {
      errors.push({
        type: "FieldValueInvalid",
        field: `${f}.mountPath`,
        value: quoted(path),
        detail: "must be unique",
      });
    }
    paths.add(path);
    if (m.subPath) errors.push(...localPathErrors(String(m.subPath), `${f}.subPath`));
  });
  return errors;
}

/**
 * The validation errors of a pod spec.
 *
 * @param spec the spec (defaults applied)
 * @param prefix its field path: `spec`, `spec.template.spec`
 * @returns the errors, empty when valid
 */
export function podSpecErrors(spec: Obj | undefined, prefix: string): FieldError[] {
  const errors: FieldError[] = [];
  const volumes = new Set<string>();
  list(spec?.volumes).forEach((v, i) => {
    const field = `${prefix}.volumes[${i}]`;
    const name = String(v.name ?? "");
    if (!name) errors.push({ type: "FieldValueRequired", field: `${field}.name` });
    else if (name.length > 63 || !DNS1123_LABEL.test(name)) {
      errors.push({
        type: "FieldValueInvalid",
        field: `${field}.name`,
        value: quoted(name),
        detail: LABEL_DETAIL,
      });
    } else if (volumes.has(name)) {
      errors.push({ type: "FieldValueDuplicate", field: `${field}.name`, value: quoted(name) });
    }
    volumes.add(name);
    errors.push(...volumeErrors(v, field));
  });
  const containers = list(spec?.containers);
  if (containers.length === 0) {
    errors.push({ type: "FieldValueRequired", field: `${prefix}.containers` });
  }
  const names = new Set<string>();
  const each = (c: Obj, field: string) => {
    const name = String(c.name ?? "");
    if (!name) errors.push({ type: "FieldValueRequired", field: `${field}.name` });
    else if (name.length > 63 || !DNS1123_LABEL.test(name)) {
      errors.push({
        type: "FieldValueInvalid",
        field: `${field}.name`,
        value: quoted(name),
        detail: LABEL_DETAIL,
      });
    } else if (names.has(name)) {
      errors.push({ type: "FieldValueDuplicate", field: `${field}.name`, value: quoted(name) });
    }
    names.add(name);
    errors.push(...containerErrors(c, field, volumes));
  };
  containers.forEach((c, i) => each(c, `${prefix}.containers[${i}]`));
  list(spec?.initContainers).forEach((c, i) => each(c, `${prefix}.initContainers[${i}]`));
  return errors;
}

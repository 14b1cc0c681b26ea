/**
 * Per-kind defaulting and validation, the parts of kube-apiserver's
 * `SetDefaults_*` and `Validate*` that clients notice: container and service
 * port defaults, workload strategies, name formats, required fields, a
 * workload's selector against its template (pod specs: `_pod_validation.ts`).
 *
 * @module
 */

import type { FieldError } from "./status.ts";
import type { ResourceInfo } from "./resources.ts";
import type { KubeObject } from "./store.ts";
import { labelSelectorText, matchLabels, parseLabelSelector } from "./selectors.ts";
import { podSpecErrors } from "./_pod_validation.ts";

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v as Obj : undefined;
}

function ensure(parent: Obj, key: string): Obj {
  const v = obj(parent[key]);
  if (v) return v;
  const fresh: Obj = {};
  parent[key] = fresh;
  return fresh;
}

function list(v: unknown): Obj[] {
  return Array.isArray(v) ? v.filter((x): x is Obj => obj(x) !== undefined) : [];
}

/**
 * Go's `%#v` of a value, as validation messages print it.
 *
 * @param v the value
 * @returns `"x"`, `3`, `[]string{"a"}`, `map[string]string{"app":"web"}`
 */
export function goValue(v: unknown): string {
  if (Array.isArray(v)) {
    return v.length === 0
      ? "[]string(nil)"
      : `[]string{${v.map((x) => JSON.stringify(x)).join(", ")}}`;
  }
  if (v && typeof v === "object") {
    const entries = Object.entries(v as Obj).sort(([a], [b]) => a < b ? -1 : 1);
    return `map[string]string{${
      entries.map(([k, x]) => `${JSON.stringify(k)}:${JSON.stringify(x)}`).join(", ")
    }}`;
  }
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

function defaultContainer(c: Obj): void {
  c.terminationMessagePath ??= "/dev/termination-log";
  c.terminationMessagePolicy ??= "File";
  if (c.imagePullPolicy === undefined) {
    const image = String(c.image ?? "");
    const tag = /:([^/:@]+)$/.exec(image.split("@")[0] ?? "")?.[1];
    c.imagePullPolicy = !image.includes("@") && (tag === undefined || tag === "latest")
      ? "Always"
      : "IfNotPresent";
  }
  c.resources ??= {};
  for (const p of list(c.ports)) p.protocol ??= "TCP";
}

function defaultPodSpec(spec: Obj): void {
  spec.restartPolicy ??= "Always";
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= "ClusterFirst";
  spec.securityContext ??= {};
  spec.schedulerName ??= "default-scheduler";
  spec.serviceAccountName ??= spec.serviceAccount ?? "default";
  spec.serviceAccount ??= spec.serviceAccountName;
  spec.enableServiceLinks ??= true;
  spec.preemptionPolicy ??= "PreemptLowerPriority";
  spec.priority ??= 0;
  for (const c of [...list(spec.containers), ...list(spec.initContainers)]) defaultContainer(c);
}

function b64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/**
 * Fills in the defaults the real server sets, in place.
 *
 * @param info the resource
 * @param o the object
 */
export function applyDefaults(info: ResourceInfo, o: KubeObject): void {
  switch (info.kind) {
    case "Pod":
      defaultPodSpec(ensure(o, "spec"));
      break;
    case "Deployment": {
      const spec = ensure(o, "spec");
      spec.replicas ??= 1;
      spec.revisionHistoryLimit ??= 10;
      spec.progressDeadlineSeconds ??= 600;
      const strategy = ensure(spec, "strategy");
      strategy.type ??= "RollingUpdate";
      if (strategy.type === "RollingUpdate") {
        const ru = ensure(strategy, "rollingUpdate");
        ru.maxUnavailable ??= "25%";
        ru.maxSurge ??= "25%";
      }
      const template = ensure(spec, "template");
      defaultPodSpec(ensure(template, "spec"));
      break;
    }
    case "ReplicaSet": {
      const spec = ensure(o, "spec");
      spec.replicas ??= 1;
      spec.minReadySeconds ??= 0;
      defaultPodSpec(ensure(ensure(spec, "template"), "spec"));
      break;
    }
    case "StatefulSet": {
      const spec = ensure(o, "spec");
      spec.replicas ??= 1;
      spec.podManagementPolicy ??= "OrderedReady";
      spec.revisionHistoryLimit ??= 10;
      const strategy = ensure(spec, "updateStrategy");
      strategy.type ??= "RollingUpdate";
      if (strategy.type === "RollingUpdate") ensure(strategy, "rollingUpdate").partition ??= 0;
      spec.persistentVolumeClaimRetentionPolicy ??= { whenDeleted: "Retain", whenScaled: "Retain" };
      defaultPodSpec(ensure(ensure(spec, "template"), "spec"));
      break;
    }
    case "Service": {
      const spec = ensure(o, "spec");
      spec.type ??= "ClusterIP";
      if (spec.type !== "ExternalName") {
        spec.sessionAffinity ??= "None";
        spec.internalTrafficPolicy ??= "Cluster";
      }
      for (const p of list(spec.ports)) {
        p.protocol ??= "TCP";
        p.targetPort ??= p.port;
      }
      break;
    }
    case "Namespace": {
      const meta = o.metadata;
      meta.labels = { ...(meta.labels ?? {}), "kubernetes.io/metadata.name": meta.name ?? "" };
      const spec = ensure(o, "spec");
      spec.finalizers ??= ["kubernetes"];
      break;
    }
    case "Secret": {
      o.type ??= "Opaque";
      const stringData = obj(o.stringData);
      if (stringData) {
        const data = ensure(o, "data");
        for (const [k, v] of Object.entries(stringData)) data[k] = b64(String(v));
        delete o.stringData;
      }
      break;
    }
  }
}

/**
 * The status an object gets when created through the API (the `status` the
 * client sent is dropped for kinds with a status subresource).
 *
 * @param info the resource
 * @returns the initial status, or undefined to keep none
 */
export function initialStatus(info: ResourceInfo): Obj | undefined {
  switch (info.kind) {
    case "Pod":
      return { phase: "Pending", qosClass: "BestEffort" };
    case "Namespace":
      return { phase: "Active" };
    case "Service":
      return { loadBalancer: {} };
    case "ReplicaSet":
      return { replicas: 0 };
    case "StatefulSet":
      return { replicas: 0, availableReplicas: 0 };
    case "Deployment":
    case "Node":
    case "ServiceCIDR":
      return {};
    default:
      return undefined;
  }
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

function nameErrors(info: ResourceInfo, name: string): FieldError[] {
  if (name === "") {
    return [{
      type: "FieldValueRequired",
      field: "metadata.name",
      detail: "name or generateName is required",
    }];
  }
  if (info.kind === "Namespace") {
    if (name.length > 63 || !DNS1123_LABEL.test(name)) {
      return [{
        type: "FieldValueInvalid",
        field: "metadata.name",
        value: goValue(name),
        detail:
          "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
      }];
    }
    return [];
  }
  if (info.kind === "Service") {
    if (name.length > 63 || !DNS1035_LABEL.test(name)) {
      return [{
        type: "FieldValueInvalid",
        field: "metadata.name",
        value: goValue(name),
        detail:
          "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
      }];
    }
    return [];
  }
  if (info.group === "rbac.authorization.k8s.io") return []; // path segment names: lenient
  if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    return [{
      type: "FieldValueInvalid",
      field: "metadata.name",
      value: goValue(name),
      detail:
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    }];
  }
  return [];
}

/**
 * Validation errors of an object about to be stored (ClusterIPs are checked
 * by the allocator, not here).
 *
 * @param info the resource
 * @param o the object, defaults applied
 * @param old the stored object on update
 * @returns the errors, empty when valid
 */
export function validate(info: ResourceInfo, o: KubeObject, old?: KubeObject): FieldError[] {
  const errors = nameErrors(info, o.metadata.name ?? "");
  switch (info.kind) {
    case "Pod":
      errors.push(...podSpecErrors(obj(o.spec), "spec"));
      break;
    case "Deployment":
    case "ReplicaSet":
    case "StatefulSet": {
      const spec = obj(o.spec) ?? {};
      const template = obj(spec.template) ?? {};
      const labels = obj(obj(template.metadata)?.labels) as Record<string, string> | undefined;
      if (!obj(spec.selector)) {
        errors.push({ type: "FieldValueRequired", field: "spec.selector" });
      } else {
        const text = labelSelectorText(spec.selector);
        if (text === "") {
          errors.push({
            type: "FieldValueInvalid",
            field: "spec.selector",
            value:
              "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}",
            detail: `empty selector is invalid for ${info.kind.toLowerCase()}`,
          });
        } else if (!matchLabels(parseLabelSelector(text), labels)) {
          errors.push({
            type: "FieldValueInvalid",
            field: "spec.template.metadata.labels",
            value: goValue(labels ?? {}),
            detail: "`selector` does not match template `labels`",
          });
        }
        const oldSelector = obj(old?.spec)?.selector;
        if (old && JSON.stringify(oldSelector) !== JSON.stringify(spec.selector)) {
          errors.push({
            type: "FieldValueInvalid",
            field: "spec.selector",
            value: `v1.LabelSelector{${labelSelectorText(spec.selector)}}`,
            detail: "field is immutable",
          });
        }
      }
      errors.push(...podSpecErrors(obj(template.spec), "spec.template.spec"));
      break;
    }
    case "Service": {
      const spec = obj(o.spec) ?? {};
      const types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
      if (!types.includes(String(spec.type))) {
        errors.push({
          type: "FieldValueNotSupported",
          field: "spec.type",
          value: goValue(spec.type),
          detail: `supported values: ${types.map((t) => `"${t}"`).join(", ")}`,
        });
      }
      const ports = list(spec.ports);
      const headless = spec.clusterIP === "None";
      if (ports.length === 0 && !headless && spec.type !== "ExternalName") {
        errors.push({ type: "FieldValueRequired", field: "spec.ports" });
      }
      const names = new Set<string>();
      ports.forEach((p, i) => {
        const port = p.port;
        if (typeof port !== "number" || port < 1 || port > 65535) {
          errors.push({
            type: "FieldValueInvalid",
            field: `spec.ports[${i}].port`,
            value: goValue(port ?? 0),
            detail: "must be between 1 and 65535, inclusive",
          });
        }
        if (ports.length > 1 && !p.name) {
          errors.push({ type: "FieldValueRequired", field: `spec.ports[${i}].name` });
        }
        if (p.name && names.has(String(p.name))) {
          errors.push({
            type: "FieldValueDuplicate",
            field: `spec.ports[${i}].name`,
            value: goValue(p.name),
          });
        }
        if (p.name) names.add(String(p.name));
        if (!["TCP", "UDP", "SCTP"].includes(String(p.protocol))) {
          errors.push({
            type: "FieldValueNotSupported",
            field: `spec.ports[${i}].protocol`,
            value: goValue(p.protocol),
            detail: `supported values: "SCTP", "TCP", "UDP"`,
          });
        }
      });
      break;
    }
  }
  return errors;
}

/**
 * A container's environment as the kubelet makes it
 * (`makeEnvironmentVariables`), and the `$(VAR)` expansion of its env values,
 * command and args. Pure: ConfigMaps, Secrets and Services are looked up
 * through the context given.
 *
 * 1. The service variables: `KUBERNETES_SERVICE_HOST` and the others of the
 *    `default/kubernetes` Service always, and with `enableServiceLinks` (the
 *    default) `<NAME>_SERVICE_HOST`, `<NAME>_PORT_<port>_TCP`, … for every
 *    Service of the pod's namespace that has a ClusterIP.
 * 2. `envFrom`, in order: each key of the ConfigMap or Secret, after its
 *    `prefix`; a key that is no environment variable name (1.33's rule: any
 *    printable ASCII but `=`) is skipped and reported.
 * 3. `env`, in order: a `value` with its `$(VAR)` references expanded from
 *    what is defined so far and the service variables; `valueFrom` from a
 *    `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`.
 *    An `optional` reference to what does not exist defines nothing.
 * 4. The service variables not defined otherwise.
 *
 * A missing ConfigMap, Secret or key that is not optional is a
 * {@linkcode ContainerConfigError} with the kubelet's message
 * (`configmap "cfg" not found`, `couldn't find key k in ConfigMap ns/cfg`).
 *
 * @module
 */

import type { Container } from "./_pod_spec.ts";
import {
  type Allocatable,
  DownwardApiError,
  fieldRefValue,
  type PodFacts,
  resourceFieldValue,
} from "./_downward.ts";
import { isEnvVarName } from "./apiserver/_pod_validation.ts";

/** A Service as its environment variables need it. */
export interface ServiceForEnv {
  namespace: string;
  name: string;
  clusterIP: string;
  ports: Array<{ name?: string; port: number; protocol?: string }>;
}

/** What the kubelet reads to make an environment. */
export interface EnvContext {
  pod: PodFacts;
  /** The pod's `enableServiceLinks` (default true). */
  enableServiceLinks?: boolean;
  /** Every Service of the pod's namespace, and `default/kubernetes`. */
  services: ServiceForEnv[];
  /** A ConfigMap's `data` (and `binaryData`, base64), or undefined when it does not exist. */
  configMap(name: string): { data?: Record<string, string> } | undefined;
  /** A Secret's `data` (base64), or undefined when it does not exist. */
  secret(name: string): { data?: Record<string, string> } | undefined;
  /** Every container of the pod, for a `resourceFieldRef` naming another one. */
  containers: Container[];
  allocatable: Allocatable;
}

/** Keys of an `envFrom` source that were skipped, for the kubelet's Warning event. */
export interface SkippedKeys {
  kind: "configMap" | "secret";
  namespace: string;
  name: string;
  keys: string[];
}

/** A container's environment, in order. */
export interface ContainerEnv {
  env: Array<[string, string]>;
  skipped: SkippedKeys[];
}

/** Why a container cannot be started: `reason` and `message` go to its waiting state. */
export class ContainerConfigError extends Error {
  /**
   * @param message the kubelet's message
   * @param reason the waiting reason; default `CreateContainerConfigError`
   */
  constructor(message: string, readonly reason = "CreateContainerConfigError") {
    super(message);
    this.name = "ContainerConfigError";
  }
}

/**
 * `$(VAR)` expansion as Kubernetes does it: a defined name is replaced, an
 * undefined one kept as written, `$$` is one `$`, and a `$` that starts no
 * reference is kept.
 *
 * @example
 * ```ts
 * import { expand } from "./_container_env.ts";
 * const vars: Record<string, string> = { A: "1" };
 * const out = expand("$(A)-$(B)-$$(A)", (n) => vars[n]);
 * console.assert(out === "1-$(B)-$(A)");
 * ```
 *
 * @param input the text
 * @param lookup a name's value, or undefined
 * @returns the expanded text
 */
export function expand(input: string, lookup: (name: string) => string | undefined): string {
  let out = "";
  let checkpoint = 0;
  for (let cursor = 0; cursor < input.length; cursor++) {
    if (input[cursor] !== "$" || cursor + 1 >= input.length) continue;
    out += input.slice(checkpoint, cursor);
    const next = input[cursor + 1]!;
    let advance = 1;
    if (next === "$") {
      out += "$";
    } else if (next === "(") {
      const close = input.indexOf(")", cursor + 2);
      if (close < 0) {
        out += "$(";
      } else {
        const name = input.slice(cursor + 2, close);
        out += lookup(name) ?? `$(${name})`;
        advance = close - cursor;
      }
    } else {
      out += "$" + next;
    }
    cursor += advance;
    checkpoint = cursor + 1;
  }
  return out + input.slice(checkpoint);
}

/**
 * A container's `command` and `args` with `$(VAR)` references expanded from
 * its final environment.
 *
 * @param words the words
 * @param env the environment
 * @returns the expanded words
 */
export function expandWords(
  words: readonly string[],
  env: ReadonlyArray<[string, string]>,
): string[] {
  const map = new Map(env);
  return words.map((w) => expand(w, (n) => map.get(n)));
}

/**
 * The Docker-link variables of Services, as the kubelet makes them: for
 * `web` at 198.19.0.20 with port `http` 80/TCP, `WEB_SERVICE_HOST`,
 * `WEB_SERVICE_PORT`, `WEB_SERVICE_PORT_HTTP`, `WEB_PORT`,
 * `WEB_PORT_80_TCP`, `WEB_PORT_80_TCP_PROTO`, `…_PORT`, `…_ADDR`.
 *
 * @param services the Services (headless ones and those without ports are skipped)
 * @returns the variables
 */
export function serviceEnv(services: readonly ServiceForEnv[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const s of services) {
    if (!s.clusterIP || s.clusterIP === "None" || s.ports.length === 0) continue;
    const name = s.name.toUpperCase().replaceAll("-", "_");
    const first = s.ports[0]!;
    out.push([`${name}_SERVICE_HOST`, s.clusterIP], [`${name}_SERVICE_PORT`, String(first.port)]);
    for (const p of s.ports) {
      if (p.name) {
        out.push([
          `${name}_SERVICE_PORT_${p.name.toUpperCase().replaceAll("-", "_")}`,
          String(p.port),
        ]);
      }
    }
    const proto = (p: { protocol?: string }) => (p.protocol ?? "TCP").toLowerCase();
    out.push([`${name}_PORT`, `${proto(first)}://${s.clusterIP}:${first.port}`]);
    for (const p of s.ports) {
      const prefix = `${name}_PORT_${p.port}_${proto(p).toUpperCase()}`;
      out.push(
        [prefix, `${proto(p)}://${s.clusterIP}:${p.port}`],
        [`${prefix}_PROTO`, proto(p)],
        [`${prefix}_PORT`, String(p.port)],
        [`${prefix}_ADDR`, s.clusterIP],
      );
    }
  }
  return out;
}

function decodeBase64(text: string): string {
  const binary = atob(text);
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}

/**
 * A container's environment: see the module documentation.
 *
 * @param container the container
 * @param ctx the pod, its namespace's Services, ConfigMaps and Secrets
 * @returns the variables in order, and the keys skipped
 * @throws {ContainerConfigError} for a missing ConfigMap, Secret or key that is not optional,
 *   or a field the kubelet cannot resolve
 */
export function containerEnv(container: Container, ctx: EnvContext): ContainerEnv {
  const ns = ctx.pod.namespace;
  const links = ctx.enableServiceLinks ?? true;
  const services = serviceEnv(
    ctx.services.filter((s) =>
      (s.namespace === "default" && s.name === "kubernetes") || (links && s.namespace === ns)
    ),
  );
  const serviceMap = new Map(services);
  const env = new Map<string, string>();
  const skipped: SkippedKeys[] = [];

  for (const from of container.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    if (!ref) continue;
    const kind = from.configMapRef ? "configMap" : "secret";
    const o = kind === "configMap" ? ctx.configMap(ref.name) : ctx.secret(ref.name);
    if (!o) {
      if (ref.optional) continue;
      throw new ContainerConfigError(`${kind.toLowerCase()} "${ref.name}" not found`);
    }
    const bad: string[] = [];
    for (const [key, raw] of Object.entries(o.data ?? {})) {
      const name = (from.prefix ?? "") + key;
      if (!isEnvVarName(name)) {
        bad.push(name);
        continue;
      }
      env.set(name, kind === "secret" ? decodeBase64(raw) : raw);
    }
    if (bad.length > 0) skipped.push({ kind, namespace: ns, name: ref.name, keys: bad.sort() });
  }

  for (const v of container.env ?? []) {
    const from = v.valueFrom;
    if (!from) {
      env.set(v.name, expand(v.value ?? "", (n) => env.get(n) ?? serviceMap.get(n)));
      continue;
    }
    try {
      if (from.fieldRef) {
        env.set(v.name, fieldRefValue(from.fieldRef.fieldPath, ctx.pod, "env"));
      } else if (from.resourceFieldRef) {
        const ref = from.resourceFieldRef;
        const target = ref.containerName
          ? ctx.containers.find((c) => c.name === ref.containerName)
          : container;
        if (!target) {
          throw new ContainerConfigError(`container ${ref.containerName} not found in the pod`);
        }
        env.set(v.name, resourceFieldValue(ref, target, ctx.allocatable));
      } else if (from.configMapKeyRef || from.secretKeyRef) {
        const ref = (from.configMapKeyRef ?? from.secretKeyRef)!;
        const isMap = from.configMapKeyRef !== undefined;
        const o = isMap ? ctx.configMap(ref.name) : ctx.secret(ref.name);
        if (!o) {
          if (ref.optional) continue;
          throw new ContainerConfigError(
            `${isMap ? "configmap" : "secret"} "${ref.name}" not found`,
          );
        }
        const data = o.data ?? {};
        if (!Object.hasOwn(data, ref.key)) {
          if (ref.optional) continue;
          throw new ContainerConfigError(
            `couldn't find key ${ref.key} in ${isMap ? "ConfigMap" : "Secret"} ${ns}/${ref.name}`,
          );
        }
        const raw = String(data[ref.key]);
        env.set(v.name, isMap ? raw : decodeBase64(raw));
      }
    } catch (error) {
      if (error instanceof DownwardApiError) throw new ContainerConfigError(error.message);
      throw error;
    }
  }

  for (const [k, value] of services) if (!env.has(k)) env.set(k, value);
  return { env: [...env], skipped };
}

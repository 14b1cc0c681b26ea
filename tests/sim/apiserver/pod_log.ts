/**
 * `GET pods/NAME/log`: a container's log, as kube-apiserver and the kubelet
 * answer it between them. The API server checks the options
 * (`ValidatePodLogOptions`: 422 `PodLogOptions "web" is invalid: …`) and the
 * container (400 `a container name must be specified for pod web, choose one
 * of: [a b]` when the pod has several and none is named, 400 `container x is
 * not valid for pod web` for a name the pod lacks); a pod on no node yet
 * answers an empty log. The kubelet picks the container's run from the pod's
 * status (`validateContainerLogStatus`): the running one, else the one that
 * ended; `previous=true` the one before (400 `previous terminated container
 * "app" in pod "web" not found` when there is none), and a container that
 * has not started is 400 `container "app" in pod "web" is waiting to start:
 * ContainerCreating`. The lines themselves come from a {@linkcode PodLogSource}
 * (the simulated kubelet's container logs).
 *
 * Served: `container`, `previous`, `tailLines`, `limitBytes`, `timestamps`,
 * `sinceSeconds`, `sinceTime`. `follow=true` answers what is there now and
 * ends, as if it were not given.
 *
 * @module
 */

import { badRequest, type FieldError, invalid } from "./status.ts";
import type { KubeObject } from "./store.ts";

/** One line of a container's log. */
export interface PodLogLine {
  /** When it was written, in ms since the epoch. */
  time: number;
  /** The line, without its newline. */
  text: string;
}

/** Which container run's log is asked for. */
export interface PodLogRef {
  /** The pod's namespace. */
  namespace: string;
  /** The pod's name. */
  pod: string;
  /** The container's name. */
  container: string;
  /** The run, as the pod's `containerStatuses[]` names it (`sim://<uid>-<restart>`). */
  containerID: string;
}

/**
 * Where `pods/log` reads a container run's lines (the kubelet's side);
 * undefined when it has none (the log is then empty).
 */
export type PodLogSource = (ref: PodLogRef) => readonly PodLogLine[] | undefined;

/** The options of `pods/log` this server serves, parsed from the query. */
export interface PodLogOptions {
  /** `container`; `""` when absent. */
  container: string;
  /** `previous`: the run before the last restart. */
  previous: boolean;
  /** `timestamps`: each line's time first. */
  timestamps: boolean;
  /** `tailLines`: only the last this many lines. */
  tailLines?: number;
  /** `limitBytes`: the body cut after this many bytes. */
  limitBytes?: number;
  /** The oldest line to show, in ms since the epoch (`sinceSeconds` or `sinceTime`). */
  sinceMs?: number;
}

interface ContainerStatus {
  name?: string;
  containerID?: string;
  state?: Record<string, { reason?: string; containerID?: string } | undefined>;
  lastState?: Record<string, { containerID?: string } | undefined>;
}

interface PodLike {
  metadata: { name?: string; namespace?: string };
  spec?: {
    nodeName?: string;
    containers?: { name: string }[];
    initContainers?: { name: string }[];
    ephemeralContainers?: { name: string }[];
  };
  status?: {
    containerStatuses?: ContainerStatus[];
    initContainerStatuses?: ContainerStatus[];
    ephemeralContainerStatuses?: ContainerStatus[];
  };
}

/** Go's `strconv.ParseBool`, which query booleans go through. */
function queryBool(v: string | null): boolean {
  return v !== null && ["1", "t", "T", "TRUE", "true", "True"].includes(v);
}

function queryInt(url: URL, key: string): number | undefined {
  const v = url.searchParams.get(key);
  if (v === null) return undefined;
  if (!/^[+-]?\d+$/.test(v)) {
    throw badRequest(`${key}: strconv.ParseInt: parsing ${JSON.stringify(v)}: invalid syntax`);
  }
  return Number(v);
}

/**
 * Parses and checks the query of `pods/NAME/log`, as `ValidatePodLogOptions`.
 *
 * @param url the request's URL
 * @param pod the pod's name, for the error
 * @param now the time now, in ms
 * @returns the options (the container not yet checked against the pod)
 * @throws {ApiError} 400 for a value that does not parse, 422 for one out of range
 */
export function parsePodLogOptions(url: URL, pod: string, now: number): PodLogOptions {
  const tailLines = queryInt(url, "tailLines");
  const limitBytes = queryInt(url, "limitBytes");
  const sinceSeconds = queryInt(url, "sinceSeconds");
  const sinceTime = url.searchParams.get("sinceTime");
  const errors: FieldError[] = [];
  if (tailLines !== undefined && tailLines < 0) {
    errors.push({
      type: "FieldValueInvalid",
      field: "tailLines",
      value: String(tailLines),
      detail: "must be greater than or equal to 0",
    });
  }
  if (limitBytes !== undefined && limitBytes < 1) {
    errors.push({
      type: "FieldValueInvalid",
      field: "limitBytes",
      value: String(limitBytes),
      detail: "must be greater than 0",
    });
  }
  let sinceMs: number | undefined;
  if (sinceSeconds !== undefined && sinceTime !== null) {
    errors.push({
      type: "FieldValueForbidden",
      field: "",
      detail: "at most one of `sinceTime` or `sinceSeconds` may be specified",
    });
  } else if (sinceSeconds !== undefined) {
    if (sinceSeconds < 1) {
      errors.push({
        type: "FieldValueInvalid",
        field: "sinceSeconds",
        value: String(sinceSeconds),
        detail: "must be greater than 0",
      });
    } else sinceMs = now - sinceSeconds * 1000;
  } else if (sinceTime !== null) {
    const t = Date.parse(sinceTime);
    if (!/^\d{4}-\d\d-\d\dT/.test(sinceTime) || Number.isNaN(t)) {
      throw badRequest(
        `sinceTime: parsing time ${
          JSON.stringify(sinceTime)
        } as "2006-01-02T15:04:05Z07:00": cannot parse`,
      );
    }
    sinceMs = t;
  }
  if (errors.length > 0) throw invalid("PodLogOptions", "", pod, errors);
  return {
    container: url.searchParams.get("container") ?? "",
    previous: queryBool(url.searchParams.get("previous")),
    timestamps: queryBool(url.searchParams.get("timestamps")),
    ...(tailLines !== undefined ? { tailLines } : {}),
    ...(limitBytes !== undefined ? { limitBytes } : {}),
    ...(sinceMs !== undefined ? { sinceMs } : {}),
  };
}

/**
 * The container a log request names, as the API server's `validateContainer`
 * picks it: the one asked for, or the pod's only container.
 *
 * @param pod the pod
 * @param asked the `container` parameter (`""` when absent)
 * @returns the container's name
 * @throws {ApiError} 400 when none is named and the pod has several (or
 * none), or the pod has no container of that name
 */
export function logContainer(pod: KubeObject, asked: string): string {
  const p = pod as PodLike;
  const name = p.metadata.name ?? "";
  const containers = p.spec?.containers ?? [];
  // podutil.VisitContainers' order: init containers, containers, ephemeral containers.
  const all = [
    ...(p.spec?.initContainers ?? []),
    ...containers,
    ...(p.spec?.ephemeralContainers ?? []),
  ].map((c) => c.name);
  if (asked === "") {
    if (containers.length === 1) return containers[0]!.name;
    if (containers.length === 0) {
      throw badRequest(`a container name must be specified for pod ${name}`);
    }
    throw badRequest(
      `a container name must be specified for pod ${name}, choose one of: [${all.join(" ")}]`,
    );
  }
  if (!all.includes(asked)) throw badRequest(`container ${asked} is not valid for pod ${name}`);
  return asked;
}

/**
 * The id of the container run whose log the kubelet reads, from the pod's
 * status, as `validateContainerLogStatus` picks it.
 *
 * @param pod the pod
 * @param container the container's name
 * @param previous whether the run before is asked for
 * @returns the run's id
 * @throws {ApiError} 400 with the kubelet's message when there is no such run
 */
export function logContainerId(pod: KubeObject, container: string, previous: boolean): string {
  const p = pod as PodLike;
  const podName = p.metadata.name ?? "";
  const q = (s: string) => JSON.stringify(s);
  const statuses = [
    ...(p.status?.containerStatuses ?? []),
    ...(p.status?.initContainerStatuses ?? []),
    ...(p.status?.ephemeralContainerStatuses ?? []),
  ];
  const s = statuses.find((c) => c.name === container);
  if (!s) {
    throw badRequest(`container ${q(container)} in pod ${q(podName)} is not available`);
  }
  const state = s.state ?? {}, last = s.lastState ?? {};
  const lastId = last.terminated?.containerID ?? "";
  if (previous) {
    if (!last.terminated || !lastId) {
      throw badRequest(
        `previous terminated container ${q(container)} in pod ${q(podName)} not found`,
      );
    }
    return lastId;
  }
  if (state.running) return s.containerID ?? "";
  if (state.terminated) {
    const id = state.terminated.containerID ?? "";
    if (id) return id;
    if (lastId) return lastId;
    throw badRequest(`container ${q(container)} in pod ${q(podName)} is terminated`);
  }
  if (last.terminated) {
    if (lastId) return lastId;
    throw badRequest(`container ${q(container)} in pod ${q(podName)} is terminated`);
  }
  if (state.waiting) {
    const reason = state.waiting.reason ?? "";
    const why = reason === "ErrImagePull"
      ? "image can't be pulled"
      : reason === "ImagePullBackOff"
      ? "trying and failing to pull image"
      : reason;
    throw badRequest(`container ${q(container)} in pod ${q(podName)} is waiting to start: ${why}`);
  }
  throw badRequest(
    `container ${q(container)} in pod ${q(podName)} is waiting to start - no logs yet`,
  );
}

/**
 * The text of a log as the kubelet sends it: the lines since `sinceMs`, the
 * last `tailLines` of them, each with its time first when `timestamps`
 * (RFC 3339 with nine digits of fraction, as the runtime writes it), cut
 * after `limitBytes` bytes.
 *
 * @param lines the run's lines, oldest first
 * @param options the request's options
 * @returns the body
 */
export function renderPodLog(
  lines: readonly PodLogLine[],
  options: PodLogOptions,
): Uint8Array<ArrayBuffer> {
  let chosen = options.sinceMs === undefined
    ? lines
    : lines.filter((l) => l.time >= options.sinceMs!);
  if (options.tailLines !== undefined) {
    chosen = options.tailLines === 0 ? [] : chosen.slice(-options.tailLines);
  }
  const text = chosen.map((l) =>
    (options.timestamps ? `${new Date(l.time).toISOString().replace(/Z$/, "000000Z")} ` : "") +
    l.text + "\n"
  ).join("");
  const bytes = new TextEncoder().encode(text);
  return options.limitBytes !== undefined ? bytes.subarray(0, options.limitBytes) : bytes;
}

/**
 * Answers `GET pods/NAME/log` for a stored pod (authorized, found).
 *
 * @param pod the pod
 * @param url the request's URL
 * @param source where the lines come from; none: every log is empty
 * @returns the body, text/plain
 * @throws {ApiError} as the API server and the kubelet refuse (see the module)
 */
export function podLogBody(
  pod: KubeObject,
  url: URL,
  source: PodLogSource | undefined,
): Uint8Array<ArrayBuffer> {
  const p = pod as PodLike;
  const name = p.metadata.name ?? "";
  const options = parsePodLogOptions(url, name, Date.now());
  const container = logContainer(pod, options.container);
  // Not on a node yet: the API server has no kubelet to ask, and answers nothing.
  if (!p.spec?.nodeName) return new Uint8Array();
  const containerID = logContainerId(pod, container, options.previous);
  const lines = source?.({
    namespace: p.metadata.namespace ?? "",
    pod: name,
    container,
    containerID,
  });
  return renderPodLog(lines ?? [], options);
}

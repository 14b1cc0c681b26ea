/**
 * One container's life in a simulated pod, as the kubelet leads it: its
 * readiness and liveness probes run over time, a failed liveness probe kills
 * it, and a container that ended is started again under its pod's
 * `restartPolicy`, with the kubelet's back-off when it keeps ending.
 *
 * ```
 *   start ─► running ──(readiness: successThreshold passes)──► ready ◄─┐ (failureThreshold fails: not ready)
 *     │        │  └──(liveness: failureThreshold fails)── SIGTERM, SIGKILL after the grace period
 *     │        ▼ the process ends (by itself or killed)
 *     │   restartPolicy Never, or OnFailure and exit 0: terminated (the pod Succeeded or Failed)
 *     │   else: lastState.terminated, restartCount + 1; at once the first time, then waiting
 *     │         "CrashLoopBackOff" 10 s, 20 s, … 5 min after each end, then running again
 *     └─(its config cannot be made: a missing ConfigMap, …) waiting "CreateContainerConfigError",
 *        tried again every 10 s or when told to ({@linkcode ContainerLife.retry})
 * ```
 *
 * Readiness is what the pod's `Ready` condition and its endpoints follow:
 * with a readiness probe, the probe decides; without one, the container is
 * ready once its first port listens (once started when it has none), as the
 * simulated kubelet always did. An init container has no probes: it runs to
 * its end, is started again while it fails (its pod's policy `Always` or
 * `OnFailure`), and is ready once it ended with 0 ({@linkcode ContainerLife.done}).
 * Everything a real kubelet would record as an Event (`Unhealthy`,
 * `Killing`, `BackOff`, `Started`, `Failed`) goes to `event`.
 *
 * The process comes from the caller's `spawn` (the runtime's start script,
 * in the pod's network namespace), each start and restart anew. What is left
 * of a container when its main process ends (children it forked) is killed,
 * as a runtime kills what is left in a container: every process in the
 * session the container's process leads (the runtime starts it with `setsid`).
 * Each run's output is kept as its log (`_container_log.ts`), the run now and
 * the one before it, by container id, for `pods/log` (`previous=true` is the
 * one before).
 *
 * @module
 */

import type { Proc } from "../e2e/_env.ts";
import { type Protocol, waitListening } from "./cluster_net.ts";
import { CrashBackoff, goDuration, type Probe, ProbeCounter, runProbe } from "./_probe.ts";
import { ContainerConfigError } from "./_container_env.ts";
import { ContainerLog } from "./_container_log.ts";

/** A Pod's `spec.restartPolicy`. */
export type RestartPolicy = "Always" | "OnFailure" | "Never";

/** What the kubelet would record as an Event about the pod. */
export interface ContainerEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

/** A container's `state` or `lastState`, as `containerStatuses[]` shows it. */
export type ContainerState =
  | { running: { startedAt: string } }
  | { waiting: { reason: string; message?: string } }
  | {
    terminated: {
      exitCode: number;
      reason: string;
      message?: string;
      startedAt: string;
      finishedAt: string;
      containerID: string;
    };
  }
  | Record<string, never>;

/** The fields of `containerStatuses[]` that change over a container's life. */
export interface ContainerLifeStatus {
  ready: boolean;
  started: boolean;
  restartCount: number;
  containerID: string;
  state: ContainerState;
  lastState: ContainerState;
}

/** Options of {@linkcode ContainerLife}. */
export interface ContainerLifeOptions {
  /** The pod: its namespace, name, network namespace and address. */
  pod: { namespace: string; name: string; netns: string; ip: string };
  /** The network namespace of the pod's node, where probes come from. */
  nodeNetns: string;
  /** The container's name. */
  name: string;
  /** The Pod object's uid (container ids and back-off messages name it). */
  podUid: string;
  /** Whether it is an init container (no probes; done once it ends with 0). */
  init?: boolean;
  /**
   * Starts the container's process (again); throws a
   * {@linkcode ContainerConfigError} when its config cannot be made.
   */
  spawn(): Promise<Proc>;
  /** The container's readiness changed: the pod's data plane follows before this resolves. */
  setReady(ready: boolean): Promise<void>;
  /** The readiness probe, if the container has one. */
  readiness?: Probe | undefined;
  /** The liveness probe, if the container has one. */
  liveness?: Probe | undefined;
  /** Without a readiness probe: ready once something listens here (none: at once). */
  listen?: { port: number; protocol: Protocol } | undefined;
  /** When an ended container starts again. */
  restartPolicy: RestartPolicy;
  /** The pod's `terminationGracePeriodSeconds`, in ms. */
  graceMs: number;
  /** An Event about the pod. */
  event(e: ContainerEvent): void;
  /** The status changed: write the pod's status again. */
  changed(): void;
  /** Log lines (failures of the simulation itself). */
  log(line: string): void;
}

/**
 * While a container has not yet been ready, its readiness probe runs this
 * often instead of every `periodSeconds`, for this long after it started. A
 * kubelet probes readiness as soon as a container starts and the next time a
 * period later; a slow-starting server (vif's manager takes a second or two)
 * would then wait the whole default 10 s before its pod is Ready, and every
 * test that starts a pod would pay for it.
 */
const STARTUP_PROBE_MS = 250;
const STARTUP_WINDOW_MS = 30_000;
/** A pod that has not been ready this long counts as settled anyway (`Kubelet.settled`). */
const VERDICT_MS = 60_000;
/** A container whose config could not be made is tried again this often (the kubelet's resync). */
const CONFIG_RETRY_MS = 10_000;

function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * One container's life: see the module documentation. Call
 * {@linkcode ContainerLife.start} once the pod's process runs, and
 * {@linkcode ContainerLife.close} when the pod goes.
 */
export class ContainerLife {
  #o: ContainerLifeOptions;
  #gen = 0;
  #closed = false;
  #ready = false;
  #readyOnce = false;
  #restartCount = 0;
  #startedAt = 0;
  #state: ContainerState;
  #lastState: ContainerState = {};
  #terminal: number | undefined;
  #backoff = new CrashBackoff();
  #sleeps = new Set<() => void>();
  #retry: (() => void) | undefined;
  #verdict: Promise<void>;
  #resolveVerdict!: () => void;
  #done: Promise<number>;
  #resolveDone!: (code: number) => void;
  #proc: Proc | undefined;
  /** The logs of the run now and the one before, by container id, oldest first. */
  #logs = new Map<string, ContainerLog>();

  /**
   * @param options the pod, the container, its probes and policy, and where to report
   */
  constructor(options: ContainerLifeOptions) {
    this.#o = options;
    this.#state = { waiting: { reason: options.init ? "PodInitializing" : "ContainerCreating" } };
    this.#verdict = new Promise((r) => this.#resolveVerdict = r);
    this.#done = new Promise((r) => this.#resolveDone = r);
  }

  /** Starts the container's first process (or waits, retrying, while its config cannot be made). */
  async start(): Promise<void> {
    const timer = setTimeout(() => this.#resolveVerdict(), VERDICT_MS);
    this.#verdict.then(() => clearTimeout(timer));
    await this.#launch(undefined);
  }

  /**
   * Resolves once the container was ready, ended, waits, or has not been
   * ready for a minute: when a caller waiting for the cluster to settle may go on.
   */
  get firstVerdict(): Promise<void> {
    return this.#verdict;
  }

  /** Resolves with the exit code once the container will not run again (never while it may). */
  get done(): Promise<number> {
    return this.#done;
  }

  /** The process running now (the newest), if any. */
  get proc(): Proc | undefined {
    return this.#proc;
  }

  /** The status fields of `containerStatuses[]`. */
  get status(): ContainerLifeStatus {
    return {
      ready: this.#o.init ? this.#terminal === 0 : this.#ready,
      started: !this.#o.init && "running" in this.#state,
      restartCount: this.#restartCount,
      containerID: this.#containerId(),
      state: structuredClone(this.#state),
      lastState: structuredClone(this.#lastState),
    };
  }

  /**
   * The log of one run of the container.
   *
   * @param containerID the run's id, as `containerStatuses[]` gives it
   *   (`state`'s for the run now, `lastState.terminated`'s for the one before)
   * @returns its log, or undefined when it is neither of the last two runs
   */
  log(containerID: string): ContainerLog | undefined {
    return this.#logs.get(containerID);
  }

  /** The exit code of a container that will not run again (the pod is done), else undefined. */
  get terminalExitCode(): number | undefined {
    return this.#terminal;
  }

  /** Whether it waits because its config could not be made. */
  get waitingForConfig(): boolean {
    return this.#retry !== undefined;
  }

  /** Tries now to start a container that waits for its config (a ConfigMap appeared). */
  retry(): void {
    this.#retry?.();
  }

  /**
   * Stops probing and restarting; the pod's processes are the caller's to
   * stop (what the process leaves when it ends is still killed).
   */
  close(): void {
    this.#closed = true;
    for (const wake of [...this.#sleeps]) wake();
    this.#retry?.();
    this.#resolveVerdict();
  }

  get #key(): string {
    return `${this.#o.pod.namespace}/${this.#o.pod.name}`;
  }

  #containerId(): string {
    return `sim://${this.#o.podUid}-${this.#restartCount}`;
  }

  #alive(gen: number): boolean {
    return gen === this.#gen && !this.#closed;
  }

  /** Sleeps `ms`, or less when the container is closed. */
  #sleep(ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#sleeps.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(0, ms));
      this.#sleeps.add(wake);
    });
  }

  /**
   * Starts the process; `terminated` is the run before it (a restart).
   * While the config cannot be made, waits in `CreateContainerConfigError`
   * and tries again.
   */
  async #launch(terminated: ContainerState | undefined): Promise<void> {
    for (;;) {
      if (this.#closed) return;
      let proc: Proc;
      try {
        proc = await this.#o.spawn();
      } catch (error) {
        if (this.#closed) return;
        const reason = error instanceof ContainerConfigError ? error.reason : "RunContainerError";
        const message = (error as Error).message;
        this.#state = { waiting: { reason, message } };
        this.#o.event({ type: "Warning", reason: "Failed", message: `Error: ${message}` });
        this.#o.changed();
        this.#resolveVerdict();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(wake, CONFIG_RETRY_MS);
          function wake() {
            clearTimeout(timer);
            resolve();
          }
          this.#retry = wake;
        });
        this.#retry = undefined;
        continue;
      }
      if (this.#closed) return;
      if (terminated) {
        this.#lastState = terminated;
        this.#restartCount++;
      }
      this.#o.event({
        type: "Normal",
        reason: "Started",
        message: `Started container ${this.#o.name}`,
      });
      this.#begin(proc);
      return;
    }
  }

  #begin(proc: Proc): void {
    const gen = ++this.#gen;
    this.#proc = proc;
    const log = new ContainerLog();
    log.attach(proc);
    this.#logs.set(this.#containerId(), log);
    while (this.#logs.size > 2) this.#logs.delete(this.#logs.keys().next().value!);
    this.#startedAt = Date.now();
    this.#state = { running: { startedAt: rfc3339(this.#startedAt) } };
    this.#ready = false;
    this.#readyOnce = false;
    proc.child.status.then((s) => this.#ended(gen, proc, s.code));
    this.#o.changed();
    if (this.#o.init) return;
    this.#readiness(gen, proc).catch((e) => this.#o.log(`kubelet: pod ${this.#key}: ${e}`));
    if (this.#o.liveness) {
      this.#liveness(gen, proc, this.#o.liveness).catch((e) =>
        this.#o.log(`kubelet: pod ${this.#key}: ${e}`)
      );
    }
  }

  async #setReady(ready: boolean, gen?: number): Promise<void> {
    if (gen !== undefined && !this.#alive(gen)) return;
    if (this.#ready === ready) return;
    this.#ready = ready;
    // The data plane first, then the status: whoever sees Ready can use the Service.
    await this.#o.setReady(ready).catch(() => {});
    if (ready) {
      this.#readyOnce = true;
      this.#resolveVerdict();
    }
    this.#o.changed();
  }

  async #readiness(gen: number, proc: Proc): Promise<void> {
    const probe = this.#o.readiness;
    if (!probe) {
      const listen = this.#o.listen;
      if (listen) {
        try {
          await waitListening(this.#o.pod.netns, {
            ...listen,
            timeoutMs: 60_000,
            proc,
            gone: () => !this.#alive(gen),
          });
        } catch (error) {
          if (this.#alive(gen)) {
            this.#o.log(
              `kubelet: pod ${this.#key} did not become ready: ${(error as Error).message}`,
            );
            this.#resolveVerdict();
          }
          return;
        }
      }
      await this.#setReady(true, gen);
      return;
    }
    const counter = new ProbeCounter(false, probe);
    await this.#sleep(probe.initialDelayMs);
    while (this.#alive(gen)) {
      const began = Date.now();
      const r = await runProbe(probe, { nodeNetns: this.#o.nodeNetns, podIp: this.#o.pod.ip });
      if (!this.#alive(gen)) break;
      if (!r.ok) {
        this.#o.event({
          type: "Warning",
          reason: "Unhealthy",
          message: `Readiness probe failed: ${r.output}`,
        });
      }
      await this.#setReady(counter.record(r.ok), gen);
      const early = !this.#readyOnce && Date.now() - this.#startedAt < STARTUP_WINDOW_MS;
      const period = early ? Math.min(probe.periodMs, STARTUP_PROBE_MS) : probe.periodMs;
      await this.#sleep(began + period - Date.now());
    }
  }

  async #liveness(gen: number, proc: Proc, probe: Probe): Promise<void> {
    const counter = new ProbeCounter(true, probe);
    await this.#sleep(probe.initialDelayMs);
    while (this.#alive(gen)) {
      const began = Date.now();
      const r = await runProbe(probe, { nodeNetns: this.#o.nodeNetns, podIp: this.#o.pod.ip });
      if (!this.#alive(gen)) break;
      if (!r.ok) {
        this.#o.event({
          type: "Warning",
          reason: "Unhealthy",
          message: `Liveness probe failed: ${r.output}`,
        });
      }
      if (!counter.record(r.ok)) {
        this.#o.event({
          type: "Normal",
          reason: "Killing",
          message: `Container ${this.#o.name} failed liveness probe, will be restarted`,
        });
        // SIGTERM, then SIGKILL after the grace period; the end is handled where every end is.
        proc.stop(probe.terminationGraceMs ?? this.#o.graceMs).catch(() => {});
        return;
      }
      await this.#sleep(began + probe.periodMs - Date.now());
    }
  }

  async #ended(gen: number, proc: Proc, exitCode: number): Promise<void> {
    if (gen !== this.#gen) return;
    const endedAt = Date.now();
    // At once, a closed (removed) container's too: while any of its processes lives,
    // the session's id names no other, and whoever waits for its output is not kept waiting.
    await killSession(proc.pid);
    if (this.#closed) return;
    this.#gen++; // this run is over: its probes stop
    // Its last lines, unless something it started elsewhere keeps its output open.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([proc.output, new Promise((r) => timer = setTimeout(r, 2000))]);
    clearTimeout(timer);
    if (this.#closed) return;
    const message = proc.errLines.slice(-5).join("\n");
    const terminated: ContainerState = {
      terminated: {
        exitCode,
        reason: exitCode === 0 ? "Completed" : "Error",
        ...(message ? { message } : {}),
        startedAt: rfc3339(this.#startedAt),
        finishedAt: rfc3339(endedAt),
        containerID: this.#containerId(),
      },
    };
    this.#o.log(
      `kubelet: pod ${this.#key}: container ${this.#o.name} exited with ${exitCode}: ${message}`,
    );
    const policy = this.#o.restartPolicy;
    const again = policy === "Always" || (policy === "OnFailure" && exitCode !== 0);
    if (!again) {
      this.#state = terminated;
      this.#terminal = exitCode;
      await this.#setReady(false);
      this.#o.changed();
      this.#resolveVerdict();
      this.#resolveDone(exitCode);
      return;
    }
    const wait = this.#backoff.wait(endedAt, Date.now());
    // Until the restart: the run that ended is the state (lastState once another runs).
    this.#state = terminated;
    if (wait > 0) {
      this.#lastState = terminated;
      const pod = `${this.#o.pod.name}_${this.#o.pod.namespace}(${this.#o.podUid})`;
      this.#state = {
        waiting: {
          reason: "CrashLoopBackOff",
          message: `back-off ${
            goDuration(this.#backoff.currentMs)
          } restarting failed container=${this.#o.name} pod=${pod}`,
        },
      };
      this.#o.event({
        type: "Warning",
        reason: "BackOff",
        message: `Back-off restarting failed container ${this.#o.name} in pod ${pod}`,
      });
    }
    await this.#setReady(false);
    this.#o.changed();
    if (wait > 0) {
      this.#resolveVerdict();
      await this.#sleep(wait);
    }
    if (this.#closed) return;
    this.#backoff.restarted(endedAt, Date.now());
    await this.#launch(terminated);
  }
}

/** SIGKILLs every process in session `sid` (the leader has ended; these are what it left). */
async function killSession(sid: number): Promise<void> {
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${e.name}/stat`);
      // pid (comm) state ppid pgrp session …; comm may hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[3]) === sid) Deno.kill(Number(e.name), "SIGKILL");
    } catch { /* gone */ }
  }
}

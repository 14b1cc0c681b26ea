/**
 * A container's log as the simulated runtime keeps it: bounded, both output
 * streams in one, and the run before a restart kept beside the run now, by
 * container id. The processes here run in this machine's namespaces (no
 * probes, so no pod network is needed).
 *
 * @module
 */

import { assertEquals } from "../_assert.ts";
import { Env, waitUntil } from "../e2e/_env.ts";
import { ContainerLife } from "./_container.ts";
import { ContainerLog } from "./_container_log.ts";

Deno.test("ContainerLog keeps the newest lines within its byte bound", () => {
  let now = 1000;
  const log = new ContainerLog({ maxBytes: 20, now: () => now++ });
  for (let i = 0; i < 5000; i++) log.add(`line ${i}`);
  assertEquals(log.lines().map((l) => l.text), ["line 4998", "line 4999"]);
  assertEquals(log.lines()[1]!.time, 1000 + 4999);
});

Deno.test("ContainerLog.attach() takes what a process wrote and follows both streams in order", () => {
  const proc = { lines: ["early"], errLines: [] as string[] };
  const log = new ContainerLog();
  log.attach(proc);
  proc.errLines.push("warn: a");
  proc.lines.push("b", "c");
  assertEquals(log.lines().map((l) => `${l.stream} ${l.text}`), [
    "stdout early",
    "stderr warn: a",
    "stdout b",
    "stdout c",
  ]);
  assertEquals(proc.lines, ["early", "b", "c"]);
});

Deno.test({
  name: "ContainerLife keeps the log of the run before a restart under its container id",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env = await new Env().init();
    let runs = 0;
    const life = new ContainerLife({
      pod: { namespace: "default", name: "crash", netns: "", ip: "" },
      nodeNetns: "",
      name: "app",
      podUid: "uid",
      spawn: () => {
        const run = runs++;
        const script = run === 0
          ? "echo run0-out; echo run0-err >&2; exit 3"
          : "echo run1-out; exec sleep 60";
        return Promise.resolve(env.spawn(["sh", "-c", script]));
      },
      setReady: () => Promise.resolve(),
      restartPolicy: "Always",
      graceMs: 1000,
      event: () => {},
      changed: () => {},
      log: () => {},
    });
    try {
      await life.start();
      await waitUntil(
        () => life.status.restartCount === 1 && (life.log("sim://uid-1")?.lines().length ?? 0) > 0,
        10_000,
        "the restart",
      );
      assertEquals(life.status.containerID, "sim://uid-1");
      assertEquals(life.log("sim://uid-1")!.lines().map((l) => l.text), ["run1-out"]);
      assertEquals(
        life.log("sim://uid-0")!.lines().map((l) => `${l.stream} ${l.text}`).sort(),
        ["stderr run0-err", "stdout run0-out"],
      );
      assertEquals(life.log("sim://uid-2"), undefined);
    } finally {
      life.close();
      await env.cleanup();
    }
  },
});

/**
 * A pod's volumes as the simulated kubelet lays them out, checked in a
 * temporary directory with a fake clock: the atomic writer's `..data`
 * layout and its no-op on an unchanged payload, `items`, `defaultMode` and
 * `fsGroup`, a missing ConfigMap in the kubelet's words, and the projected
 * service-account token replaced at 80 % of its life.
 *
 * @module
 */

import { assert, assertEquals, assertRejects } from "../_assert.ts";
import { writeAtomically } from "./_atomic_writer.ts";
import {
  type Clock,
  PodVolumes,
  type ProjectedToken,
  refreshAt,
  VolumeSetUpError,
} from "./_volumes.ts";
import type { Volume } from "./_pod_spec.ts";

/** A clock whose timers run only when the test moves time on. */
class FakeClock implements Clock {
  #now = Date.parse("2025-06-01T12:00:00Z");
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, ms: number): number {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + ms, fn });
    return id;
  }
  clearTimeout(id: unknown): void {
    this.#timers.delete(id as number);
  }
  /** Moves time on, running the timers that fall due. */
  tick(ms: number): void {
    this.#now += ms;
    for (const [id, t] of [...this.#timers]) {
      if (t.at <= this.#now) {
        this.#timers.delete(id);
        t.fn();
      }
    }
  }
}

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("writeAtomically() swaps ..data to a new version and leaves an unchanged volume alone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-atomic-" });
  try {
    const v = `${dir}/vol`;
    assert(
      await writeAtomically(
        v,
        new Map([["a", { data: enc("1"), mode: 0o644 }], ["sub/b", {
          data: enc("2"),
          mode: 0o600,
        }]]),
      ),
    );
    assertEquals(await Deno.readLink(`${v}/a`), "..data/a");
    assertEquals(await Deno.readLink(`${v}/sub`), "..data/sub");
    assertEquals(await Deno.readTextFile(`${v}/sub/b`), "2");
    assertEquals((await Deno.stat(`${v}/sub/b`)).mode! & 0o777, 0o600);
    const first = await Deno.readLink(`${v}/..data`);
    assertEquals(
      await writeAtomically(
        v,
        new Map([["a", { data: enc("1"), mode: 0o644 }], ["sub/b", {
          data: enc("2"),
          mode: 0o600,
        }]]),
      ),
      false,
    );
    assert(await writeAtomically(v, new Map([["a", { data: enc("3"), mode: 0o644 }]])));
    assert((await Deno.readLink(`${v}/..data`)) !== first);
    assertEquals(await Deno.readTextFile(`${v}/a`), "3");
    // The old version and the key that went are gone.
    const names = [];
    for await (const e of Deno.readDir(v)) names.push(e.name);
    assertEquals(names.filter((n) => !n.startsWith("..20")).sort(), ["..data", "a"]);
    assertEquals(names.filter((n) => n.startsWith("..20")).length, 1);
    // With an fsGroup: the group's, readable by it.
    await writeAtomically(v, new Map([["a", { data: enc("4"), mode: 0o600 }]]), { fsGroup: 2000 });
    const a = await Deno.stat(`${v}/a`);
    assertEquals([a.gid, a.mode! & 0o777], [2000, 0o640]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PodVolumes sets up configMap, secret and projected volumes as the kubelet lays them out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-volumes-" });
  const clock = new FakeClock();
  let labels: Record<string, string> = { app: "web" };
  let issued = 0;
  const requests: Array<[string[] | undefined, number]> = [];
  const volumes: Volume[] = [
    { name: "work", emptyDir: {} },
    {
      name: "cfg",
      configMap: {
        name: "cfg",
        items: [{ key: "app.conf", path: "conf/app.conf", mode: 0o600 }],
        defaultMode: 0o640,
      },
    },
    { name: "sec", secret: { secretName: "sec" } },
    {
      name: "vif",
      projected: {
        sources: [
          { serviceAccountToken: { audience: "vif", expirationSeconds: 600, path: "token" } },
          { configMap: { name: "cfg", items: [{ key: "app.conf", path: "app.conf" }] } },
          {
            downwardAPI: {
              items: [{ path: "labels", fieldRef: { fieldPath: "metadata.labels" } }],
            },
          },
        ],
      },
    },
    { name: "later", configMap: { name: "later", optional: true } },
  ];
  const volumesOf = (list: Volume[]) =>
    new PodVolumes({
      dir,
      volumes: list,
      clock,
      log: () => {},
      ctx: {
        facts: () => ({
          namespace: "shop",
          name: "web-1",
          uid: "u",
          labels,
          annotations: {},
          nodeName: "node1",
          serviceAccountName: "default",
          podIPs: [],
          hostIPs: [],
        }),
        configMap: (name) =>
          name === "cfg" ? { data: { "app.conf": "a=1\n", other: "x" } } : undefined,
        secret: (name) => name === "sec" ? { data: { password: btoa("s3cret") } } : undefined,
        requestToken: (audiences, seconds): Promise<ProjectedToken> => {
          requests.push([audiences, seconds]);
          issued++;
          const now = clock.now();
          return Promise.resolve({
            token: `token-${issued}`,
            issuedAt: now,
            expiresAt: now + seconds * 1000,
          });
        },
        containers: [],
        allocatable: { cpu: "2", memory: "1Gi", "ephemeral-storage": "1Gi" },
      },
    });
  const pv = volumesOf(volumes);
  try {
    await pv.setUp();
    const path = (v: string, f: string) => `${pv.path(v)}/${f}`;
    assertEquals(pv.path("cfg"), `${dir}/volumes/kubernetes.io~configmap/cfg`);
    assertEquals((await Deno.stat(pv.path("work")!)).mode! & 0o7777, 0o777);
    assertEquals(await Deno.readTextFile(path("cfg", "conf/app.conf")), "a=1\n");
    assertEquals((await Deno.stat(path("cfg", "conf/app.conf"))).mode! & 0o777, 0o600);
    assertEquals(await Deno.stat(path("cfg", "other")).catch(() => "absent"), "absent");
    assertEquals(await Deno.readTextFile(path("sec", "password")), "s3cret");
    assertEquals(await Deno.readTextFile(path("vif", "token")), "token-1");
    assertEquals(await Deno.readTextFile(path("vif", "app.conf")), "a=1\n");
    assertEquals(await Deno.readTextFile(path("vif", "labels")), 'app="web"');
    assertEquals(requests, [[["vif"], 600]]);

    // Labels change: a refresh rewrites the file, the token stays.
    labels = { app: "web", tier: "front" };
    await pv.refresh();
    assertEquals(await Deno.readTextFile(path("vif", "labels")), 'app="web"\ntier="front"');
    assertEquals(issued, 1);

    // At 80 % of its 600 s, the token is replaced.
    assertEquals(refreshAt({ issuedAt: 0, expiresAt: 600_000 }), 480_000);
    clock.tick(479_000);
    await pv.refresh();
    assertEquals(issued, 1);
    clock.tick(1_000); // the refresh timer fires; the next refresh waits for it
    await pv.refresh();
    assertEquals(await Deno.readTextFile(path("vif", "token")), "token-2");
    assertEquals(issued, 2);
  } finally {
    pv.close();
    await Deno.remove(dir, { recursive: true });
  }

  const missing = volumesOf([{ name: "cfg", configMap: { name: "nope" } }]);
  const error = await assertRejects(() => missing.setUp(), VolumeSetUpError);
  assertEquals(
    error.message,
    'MountVolume.SetUp failed for volume "cfg" : configmap "nope" not found',
  );
  const key = volumesOf([{
    name: "cfg",
    configMap: { name: "cfg", items: [{ key: "k", path: "k" }] },
  }]);
  assertEquals(
    (await assertRejects(() => key.setUp(), VolumeSetUpError)).message,
    'MountVolume.SetUp failed for volume "cfg" : configmap references non-existent config key: k',
  );
  await Deno.remove(dir, { recursive: true }).catch(() => {});
});

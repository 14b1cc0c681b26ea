/**
 * The simulated container runtime's rules, without starting a container:
 * the capability set containerd computes from a security context, where a
 * mount point may be made without making it on the machine, and the
 * `setpriv` words a container's process (or `Sim.execInPod`) runs with.
 *
 * @module
 */

import { assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { ContainerConfigError } from "./_container_env.ts";
import { capabilities, checkMountPoint, DEFAULT_CAPABILITIES, setprivArgv } from "./_runtime.ts";

Deno.test("capabilities() applies add and drop to the runtime's default set as containerd does", () => {
  assertEquals(capabilities(undefined).sort(), [...DEFAULT_CAPABILITIES].sort());
  assertEquals(capabilities({ capabilities: { drop: ["ALL"], add: ["NET_ADMIN"] } }), [
    "NET_ADMIN",
  ]);
  assertEquals(capabilities({ capabilities: { drop: ["all"] } }), []);
  assertEquals(
    capabilities({ capabilities: { add: ["CAP_NET_ADMIN"], drop: ["NET_ADMIN"] } }).includes(
      "NET_ADMIN",
    ),
    false,
  );
  assertEquals(capabilities({ privileged: true }).length, 41);
  const error = assertThrows(
    () => capabilities({ capabilities: { add: ["NET_MAGIC"] } }),
    ContainerConfigError,
  );
  assertEquals(error.message, 'unknown capability "NET_MAGIC"');
});

Deno.test("checkMountPoint() allows new top-level directories, /run and /tmp, and nothing that would touch the machine", async () => {
  assertEquals(
    await checkMountPoint("/vif-sim-nowhere/app/etc", false),
    "/vif-sim-nowhere/app/etc",
  );
  assertEquals(
    await checkMountPoint("/var/run/secrets/kubernetes.io/serviceaccount", false),
    "/run/secrets/kubernetes.io/serviceaccount",
  );
  assertEquals(await checkMountPoint("/tmp", false), "/tmp");
  assertEquals(await checkMountPoint("/etc", false), "/etc"); // exists: mounted over, in the container only
  const refused = await assertRejects(
    () => checkMountPoint("/etc/vif-sim-nowhere", false),
    ContainerConfigError,
  );
  assertEquals(
    refused.message,
    'the simulated kubelet cannot make the mount point "/etc/vif-sim-nowhere": "/etc" is the machine\'s own directory; mount under a directory the machine does not have, or under /run, /var/run or /tmp',
  );
  // A file over a directory (or the other way round) would need a new mount point.
  await assertRejects(() => checkMountPoint("/etc", true), ContainerConfigError);
  await assertRejects(() => checkMountPoint("/a/../etc/x", false), ContainerConfigError);
});

Deno.test("setprivArgv() switches user, groups and bounding set, and nothing is inherited", () => {
  assertEquals(
    setprivArgv({
      uid: 65534,
      gid: 65534,
      groups: [2000],
      capabilities: ["NET_BIND_SERVICE"],
      noNewPrivs: true,
    }),
    [
      "setpriv",
      "--reuid=65534",
      "--regid=65534",
      "--groups=2000",
      "--inh-caps=-all",
      "--bounding-set=-all,+net_bind_service",
      "--no-new-privs",
      "--",
    ],
  );
  assertEquals(
    setprivArgv({ uid: 0, gid: 0, groups: [], capabilities: [], noNewPrivs: false }).slice(3, 6),
    ["--clear-groups", "--inh-caps=-all", "--bounding-set=-all"],
  );
});

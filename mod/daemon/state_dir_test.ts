/** The state directory's checks and the no-link file operations, on real directories (as root). */

import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../../tests/_assert.ts";
import {
  openAppend,
  preflightStateDir,
  readOwnFile,
  secureStateDir,
  StateDirError,
  writeOwnFile,
} from "./state_dir.ts";

const asRoot = { ignore: Deno.uid() !== 0 };

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vif-statedir-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test(
  "secureStateDir() takes a root-only directory below a sticky /tmp, and makes a missing one",
  asRoot,
  async () => {
    await withDir(async (dir) => {
      assertEquals(await secureStateDir(dir), dir);
      const made = `${dir}/a/b`;
      assertEquals(await secureStateDir(made, { create: true }), made);
      assertEquals((await Deno.stat(made)).mode! & 0o777, 0o755);
      // Through a link: the real path is checked and returned.
      await Deno.symlink(made, `${dir}/link`);
      assertEquals(await secureStateDir(`${dir}/link`), made);
    });
  },
);

Deno.test(
  "secureStateDir() refuses a directory another user owns, naming it and the fix",
  asRoot,
  async () => {
    await withDir(async (dir) => {
      const theirs = `${dir}/theirs`;
      await Deno.mkdir(theirs, { mode: 0o755 });
      await Deno.chown(theirs, 65534, 65534);
      const error = await assertRejects(
        () => secureStateDir(`${theirs}/state`, { create: true }),
        StateDirError,
      ) as StateDirError;
      assertEquals(
        error.message,
        `the state directory "${theirs}/state" is not safe for root: "${theirs}" belongs to uid 65534`,
      );
      assertEquals(
        error.hint,
        `Use one that only root can change (the default is /var/lib/vif), or: sudo chown root: ${theirs}`,
      );
      // Nothing was made under it.
      assertEquals((await Array.fromAsync(Deno.readDir(theirs))).length, 0);
    });
  },
);

Deno.test(
  "secureStateDir() refuses a group- or world-writable directory, sticky only above",
  asRoot,
  async () => {
    await withDir(async (dir) => {
      await Deno.mkdir(`${dir}/group/state`, { recursive: true, mode: 0o755 });
      await Deno.chmod(`${dir}/group`, 0o775);
      await assertRejects(
        () => secureStateDir(`${dir}/group/state`),
        StateDirError,
        `"${dir}/group" is writable by its group (mode 0775)`,
      );
      // A root-owned sticky directory above is fine (as /tmp is); as the state directory, not.
      await Deno.mkdir(`${dir}/sticky/state`, { recursive: true, mode: 0o755 });
      await Deno.chmod(`${dir}/sticky`, 0o1777);
      assertEquals(await secureStateDir(`${dir}/sticky/state`), `${dir}/sticky/state`);
      await assertRejects(
        () => secureStateDir(`${dir}/sticky`),
        StateDirError,
        `"${dir}/sticky" is writable by everyone (mode 1777)`,
      );
      await assertRejects(
        () => secureStateDir("relative/dir"),
        StateDirError,
        "not an absolute path",
      );
    });
  },
);

Deno.test("writeOwnFile() replaces a link rather than writing through it; reads refuse links", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/target`, "precious\n");
    await Deno.symlink(`${dir}/target`, `${dir}/daemon.json`);
    const error = assertThrows(() => readOwnFile(`${dir}/daemon.json`), StateDirError);
    assertMatch(error.message, /daemon\.json" is a symbolic link/);
    assertThrows(() => openAppend(`${dir}/daemon.json`, 0o600), StateDirError);
    // A leftover temporary that is a link is removed, not followed.
    await Deno.symlink(`${dir}/target`, `${dir}/daemon.json.tmp`);
    writeOwnFile(`${dir}/daemon.json`, new TextEncoder().encode("{}\n"), 0o644);
    assertEquals(await Deno.readTextFile(`${dir}/target`), "precious\n");
    const info = await Deno.lstat(`${dir}/daemon.json`);
    assert(info.isFile);
    assertEquals(info.mode! & 0o777, 0o644);
    assertEquals(new TextDecoder().decode(readOwnFile(`${dir}/daemon.json`)), "{}\n");
    assertEquals(readOwnFile(`${dir}/missing`), undefined);
    assertThrows(() => readOwnFile(`${dir}/daemon.json`, 2), RangeError);
  });
});

Deno.test("secureStateDir() and preflightStateDir() refuse a link in the directory", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/target`, "precious\n");
    await Deno.mkdir(`${dir}/state`);
    await preflightStateDir(`${dir}/state/not/yet`);
    await Deno.symlink(`${dir}/target`, `${dir}/state/daemon.log`);
    for (
      const check of [() => secureStateDir(`${dir}/state`), () => preflightStateDir(`${dir}/state`)]
    ) {
      const error = await assertRejects(check, StateDirError) as StateDirError;
      assertEquals(
        error.message,
        `"${dir}/state/daemon.log" is a symbolic link: vif does not write through links in its state directory`,
      );
      assertEquals(error.hint, `Remove it (rm ${dir}/state/daemon.log) and start vif again.`);
    }
    assertEquals(await Deno.readTextFile(`${dir}/target`), "precious\n");
  });
});

/** The daemon's log file: lines, levels that change live, rotation. */

import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/_assert.ts";
import { appendLogLine, LogFile } from "./log_file.ts";
import { StateDirError } from "./state_dir.ts";

Deno.test("LogFile: one timestamped line per event, at or above the level", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-log-" });
  try {
    const log = LogFile.open(`${dir}/daemon.log`, { level: "info" });
    log.write("debug", "hidden");
    log.write("info", "shown\nsecond line");
    log.level = "debug";
    log.write("debug", "now shown");
    log.close();
    const lines = (await Deno.readTextFile(`${dir}/daemon.log`)).trimEnd().split("\n");
    assertEquals(lines.length, 2);
    assertMatch(lines[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info {2}shown\\nsecond line$/);
    assertMatch(lines[1]!, / debug now shown$/);
    assertEquals((await Deno.stat(`${dir}/daemon.log`)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LogFile: rotates past the size, keeps the newest files, lists them newest first", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-log-" });
  try {
    const path = `${dir}/daemon.log`;
    const log = LogFile.open(path, { maxBytes: 200, keep: 2 });
    for (let i = 0; i < 20; i++) {
      log.write("info", `event ${String(i).padStart(2, "0")} ${"x".repeat(40)}`);
    }
    log.close();
    assertEquals(log.files(), [path, `${path}.1`, `${path}.2`]);
    const names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
    assertEquals(names, ["daemon.log", "daemon.log.1", "daemon.log.2"]);
    for (const f of log.files()) assert((await Deno.stat(f)).size <= 200, f);
    assertMatch(await Deno.readTextFile(path), /event 19/);
    assertMatch(await Deno.readTextFile(`${path}.1`), /event 1[5-7]/);
    // Appends, as a restarted daemon does.
    const again = LogFile.open(path, { maxBytes: 200, keep: 2 });
    again.write("warn", "after restart");
    again.close();
    assertMatch(await Deno.readTextFile(path), /after restart/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LogFile.open() refuses a symbolic link and leaves its target untouched", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-log-" });
  try {
    await Deno.writeTextFile(`${dir}/target`, "precious\n");
    await Deno.symlink(`${dir}/target`, `${dir}/daemon.log`);
    const error = assertThrows(
      () => LogFile.open(`${dir}/daemon.log`),
      StateDirError,
    ) as StateDirError;
    assertMatch(error.message, /daemon\.log" is a symbolic link/);
    assertMatch(error.hint, /^Remove it \(rm .*daemon\.log\)/);
    assertEquals(appendLogLine(`${dir}/daemon.log`, "info", "through the link"), false);
    assertEquals(await Deno.readTextFile(`${dir}/target`), "precious\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("appendLogLine() adds a line in the log's format to the file of that name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-log-" });
  try {
    const log = LogFile.open(`${dir}/daemon.log`);
    log.write("info", "from the daemon");
    assertEquals(appendLogLine(`${dir}/daemon.log`, "warn", "from another process"), true);
    log.write("info", "the daemon again");
    log.close();
    const lines = (await Deno.readTextFile(`${dir}/daemon.log`)).trimEnd().split("\n");
    assertEquals(lines.map((l) => l.slice(25)), [
      "info  from the daemon",
      "warn  from another process",
      "info  the daemon again",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

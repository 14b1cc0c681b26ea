import { assertEquals } from "../../tests/_assert.ts";
import { memoryIo } from "./io.ts";
import { main } from "./mod.ts";
import { clipLine, colorWanted, palette, progressLine, visibleWidth } from "./terminal.ts";

function tty(env: Record<string, string> = {}, columns = 20) {
  // Assigned, not spread: memoryIo's `out` and `err` are getters.
  return Object.assign(memoryIo(env), {
    stdoutIsTerminal: () => true,
    isTerminal: () => true,
    columns: () => columns,
  });
}

Deno.test("colorWanted() colours a terminal only, and never with NO_COLOR, TERM=dumb or --no-color", () => {
  assertEquals(colorWanted(["doctor"], tty()), true);
  assertEquals(colorWanted(["doctor"], memoryIo()), false); // A pipe.
  assertEquals(colorWanted(["doctor"], tty({ NO_COLOR: "1" })), false);
  assertEquals(colorWanted(["doctor"], tty({ NO_COLOR: "" })), true); // Set but empty: not asked.
  assertEquals(colorWanted(["doctor"], tty({ TERM: "dumb" })), false);
  assertEquals(colorWanted(["doctor", "--no-color"], tty()), false);
  assertEquals(colorWanted(["connect", "--", "app", "--no-color"], tty()), true); // The app's flag.
});

Deno.test("clipLine() fits a line in the width, escape sequences not counted", () => {
  assertEquals(clipLine("short", 20), "short");
  assertEquals(clipLine("abcdefgh", 6), "abcd…");
  assertEquals(visibleWidth(clipLine("x".repeat(500), 80)), 79);
  const red = palette(true).red("abcdefghij");
  const clipped = clipLine(red, 6);
  assertEquals(visibleWidth(clipped), 5);
  assertEquals(clipped, "\x1b[31mabcd…\x1b[0m");
  assertEquals(clipLine("anything", undefined), "anything");
});

Deno.test("progressLine() redraws one clipped line on a terminal, and prints plain lines elsewhere", () => {
  const io = tty({}, 12);
  const p = progressLine(io);
  p.step("waiting for the traffic-manager");
  p.done();
  assertEquals(io.err, "\r\x1b[2K… waiting…\r\x1b[2K");
  const pipe = memoryIo();
  const q = progressLine(pipe);
  q.step("waiting for the traffic-manager");
  q.done();
  assertEquals(pipe.out, "waiting for the traffic-manager\n");
  assertEquals(pipe.err, "");
});

Deno.test("vif --no-color and NO_COLOR are accepted before and after the command", async () => {
  for (const args of [["--no-color", "version"], ["version", "--no-color"]]) {
    const io = memoryIo({ NO_COLOR: "1" });
    assertEquals(await main(args, { io }), 0, io.err);
    assertEquals(io.out.includes("\x1b["), false);
  }
});

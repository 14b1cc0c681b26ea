/**
 * The command line, run in-process through `main()` and as a real process
 * through `deno run -A main.ts`.
 *
 * @module
 */

import { main, memoryIo } from "../mod/cli/mod.ts";
import { formatError, UserError } from "../mod/cli/errors.ts";
import { VERSION } from "../mod/version.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";

const ROOT = new URL("..", import.meta.url);

async function runMain(args: string[], env: Record<string, string> = {}) {
  // No daemon of this machine's is asked: a state directory that does not exist.
  const io = memoryIo({ VIF_STATE_DIR: "/nonexistent/vif-cli-test", ...env });
  const code = await main(args, { io });
  return { code, out: io.out, err: io.err };
}

async function runProcess(args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: ROOT,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    out: decoder.decode(output.stdout),
    err: decoder.decode(output.stderr),
  };
}

function lines(text: string): string[] {
  return text.trimEnd().split("\n");
}

Deno.test("main() --help lists the commands and the exit codes, and exits 0", async () => {
  const { code, out, err } = await runMain(["--help"]);
  assertEquals(code, 0);
  assertEquals(err, "");
  assertMatch(out, /^Usage: vif /);
  assertMatch(out, /^ {2}version\b.*\S/m);
  assertMatch(out, /^ {2}help\b.*\S/m);
  assertMatch(out, /Exit codes:\n {2}0 .*\n {2}1 .*\n {2}2 /);
});

Deno.test("main() without arguments prints the help and exits 0", async () => {
  const { code, out } = await runMain([]);
  assertEquals(code, 0);
  assertMatch(out, /^Usage: vif /);
});

Deno.test("main() help <command> prints that command's help", async () => {
  const { code, out } = await runMain(["help", "version"]);
  assertEquals(code, 0);
  assertMatch(out, /^Usage: vif version /);
  assertMatch(out, /--output <format>/);
});

Deno.test("main() version prints vif, deno, v8, typescript and target lines", async () => {
  const { code, out, err } = await runMain(["version"]);
  assertEquals(code, 0);
  assertEquals(err, "");
  assertEquals(lines(out), [
    `vif ${VERSION}`,
    `deno ${Deno.version.deno}`,
    `v8 ${Deno.version.v8}`,
    `typescript ${Deno.version.typescript}`,
    `target ${Deno.build.target}`,
    "daemon not running",
    "manager not connected",
  ]);
});

Deno.test("main() --version prints the version line", async () => {
  const { code, out } = await runMain(["--version"]);
  assertEquals(code, 0);
  assertEquals(out, `vif ${VERSION}\n`);
});

Deno.test("main() version --output json prints one JSON object", async () => {
  for (const args of [["version", "--output", "json"], ["version", "-o", "json"]]) {
    const { code, out } = await runMain(args);
    assertEquals(code, 0);
    const info = JSON.parse(out);
    assertEquals(info.vif, VERSION);
    assertEquals(info.deno, Deno.version.deno);
    assertEquals(Object.keys(info), [
      "vif",
      "deno",
      "v8",
      "typescript",
      "target",
      "daemon",
      "manager",
    ]);
    assertEquals([info.daemon, info.manager], [null, null]);
  }
});

Deno.test("main() reports an unknown command in two lines and exits 2", async () => {
  const { code, out, err } = await runMain(["frob"]);
  assertEquals(code, 2);
  assertEquals(out, "");
  assertEquals(lines(err), [
    'vif: unknown command "frob"',
    'Run "vif --help" to see the commands.',
  ]);
});

Deno.test("main() suggests the closest command for a typo", async () => {
  const { code, err } = await runMain(["verison"]);
  assertEquals(code, 2);
  assertEquals(lines(err), [
    'vif: unknown command "verison"',
    'Did you mean "vif version"? Run "vif --help" to see the commands.',
  ]);
});

Deno.test("main() help <unknown> is an unknown command too", async () => {
  const { code, err } = await runMain(["help", "frob"]);
  assertEquals(code, 2);
  assertEquals(lines(err)[0], 'vif: unknown command "frob"');
});

Deno.test("main() reports unknown flags in two lines and exits 2", async () => {
  const cases: [string[], string[]][] = [
    [["--frob"], ['vif: unknown option "--frob"', 'Run "vif --help" to see its options.']],
    [["version", "--frob"], [
      'vif: unknown option "--frob"',
      'Run "vif version --help" to see its options.',
    ]],
  ];
  for (const [args, expected] of cases) {
    const { code, out, err } = await runMain(args);
    assertEquals(code, 2, args.join(" "));
    assertEquals(out, "");
    assertEquals(lines(err), expected);
  }
});

Deno.test("main() reports bad values and stray arguments in two lines and exits 2", async () => {
  for (const args of [["version", "-o", "xml"], ["version", "extra"], ["version", "-o"]]) {
    const { code, out, err } = await runMain(args);
    assertEquals(code, 2, args.join(" "));
    assertEquals(out, "");
    const [what, hint, ...rest] = lines(err);
    assertMatch(what ?? "", /^vif: \S/);
    assertMatch(hint ?? "", /Run "vif version --help" to see its usage\.$/);
    assertEquals(rest, []);
  }
});

Deno.test("main() adds a stack trace to errors only with --debug or VIF_DEBUG=1", async () => {
  assertEquals(lines((await runMain(["frob"])).err).length, 2);
  assertEquals(lines((await runMain(["frob"], { VIF_DEBUG: "0" })).err).length, 2);
  for (const [args, env] of [[["--debug", "frob"], {}], [["frob"], { VIF_DEBUG: "1" }]] as const) {
    const { code, err } = await runMain([...args], env);
    assertEquals(code, 2);
    assert(lines(err).length > 2, `no stack trace in ${JSON.stringify(err)}`);
    assertMatch(err, /\n {4}at /);
  }
});

Deno.test("formatError() prints any error as two lines", () => {
  assertEquals(
    formatError(new UserError("no cluster", { hint: "Run vif connect." })),
    "vif: no cluster\nRun vif connect.\n",
  );
  const [what, hint, ...rest] = lines(formatError(new TypeError("bad\nmore")));
  assertEquals(what, "vif: bad");
  assertMatch(hint ?? "", /--debug/);
  assertEquals(rest, []);
  assertEquals(lines(formatError("a string")).length, 2);
});

Deno.test("UserError carries its hint, exit code and cause", () => {
  const cause = new Error("inner");
  const error = new UserError("outer", { hint: "Do this.", exitCode: 2, cause });
  assertEquals([error.message, error.hint, error.exitCode, error.cause], [
    "outer",
    "Do this.",
    2,
    cause,
  ]);
  assertEquals(new UserError("x", { hint: "y" }).exitCode, 1);
});

Deno.test("vif as a process: --help, version, json, unknown command, unknown flag", async () => {
  const help = await runProcess(["--help"]);
  assertEquals(help.code, 0, help.err);
  assertMatch(help.out, /^ {2}version\b/m);

  const version = await runProcess(["version"]);
  assertEquals(version.code, 0, version.err);
  assertEquals(lines(version.out)[0], `vif ${VERSION}`);

  const json = await runProcess(["version", "--output", "json"]);
  assertEquals(json.code, 0, json.err);
  assertEquals(JSON.parse(json.out).vif, VERSION);

  const unknown = await runProcess(["frob"]);
  assertEquals(unknown.code, 2);
  assertEquals(unknown.out, "");
  assertEquals(lines(unknown.err), [
    'vif: unknown command "frob"',
    'Run "vif --help" to see the commands.',
  ]);

  const flag = await runProcess(["--frob"]);
  assertEquals(flag.code, 2);
  assertEquals(lines(flag.err).length, 2);
  assertEquals(lines(flag.err)[0], 'vif: unknown option "--frob"');
});

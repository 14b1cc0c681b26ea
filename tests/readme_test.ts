/**
 * The README's commands are true: every `vif …` line in its code blocks
 * parses with today's command line (known command, known flags, valid
 * values), and is run by a test or the demo: some test file (or
 * scripts/demo.ts) runs that command with each of the line's flags.
 *
 * The quick start is run verbatim by tests/e2e/quickstart_test.ts; the rest
 * is matched here by command and flags, so a flag renamed in the code and
 * not in the README, or documented and never exercised, fails this test.
 *
 * @module
 */

import { parseOnly } from "../mod/cli/mod.ts";
import { assert, assertEquals } from "./_assert.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** One `vif` command line of the README, as a shell would split it. */
interface ReadmeCommand {
  line: number;
  text: string;
  words: string[];
}

/** Splits a command line into words as sh does for these simple lines (quotes, no expansion). */
function shellWords(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let quote: string | undefined;
  let inWord = false;
  for (const ch of text) {
    if (quote) {
      if (ch === quote) quote = undefined;
      else word += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** The `vif` command lines in the README's code blocks. */
function readmeCommands(readme: string): ReadmeCommand[] {
  const out: ReadmeCommand[] = [];
  // In a sh block every line is a command; in a transcript only those after "$ ".
  let fence: "sh" | "transcript" | undefined;
  const lines = readme.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let text = lines[i]!;
    if (text.startsWith("```")) {
      fence = fence ? undefined : text === "```sh" ? "sh" : "transcript";
      continue;
    }
    if (!fence || (fence === "transcript" && !text.startsWith("$ "))) continue;
    const first = i + 1;
    while (text.endsWith("\\") && i + 1 < lines.length) text = text.slice(0, -1) + lines[++i]!;
    text = text.replace(/^\$ /, "").replace(/^deno task sim exec -- /, "")
      .replace(/\s+#\s.*$/, "").trim();
    if (!text.startsWith("vif ")) continue; // Output lines start "vif:"; others are not vif's.
    text = text.replace(/\s+(>|\||&&)\s.*$/, ""); // What the shell does with its output.
    // `[-o json|yaml]`: an optional part, shown with its first choice.
    text = text.replace(/\[([^\]|]+)(\|[^\]]*)?\]/g, "$1");
    out.push({ line: first, text, words: shellWords(text).slice(1) });
  }
  return out;
}

/** Every file that runs vif's commands: the tests and the demo. */
async function testSources(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory && !e.name.startsWith(".")) await walk(path);
      else if (e.isFile && (/_test\.ts$/.test(e.name) || path.endsWith("scripts/demo.ts"))) {
        if (path.endsWith("tests/readme_test.ts")) continue;
        files.set(path.slice(ROOT.length), await Deno.readTextFile(path));
      }
    }
  };
  for (const dir of ["tests", "mod", "manager", "agent", "scripts"]) {
    await walk(`${ROOT}${dir}`).catch(() => {});
  }
  return files;
}

/** The words a test must have to run this command: its name, and each flag it gives. */
function needles(words: string[], command: string[]): string[] {
  const end = words.indexOf("--");
  const ours = end === -1 ? words : words.slice(0, end);
  const flags = ours.filter((w) => /^--?[a-zA-Z]/.test(w)).map((w) => w.replace(/=.*$/, ""));
  // `vif --serve` is the manager's entry point; tests spell it so.
  const name = words[0] === "--serve" ? "--serve" : command.at(-1);
  return [...new Set([`"${name}"`, ...flags.map((f) => `"${f}`)])];
}

Deno.test("every vif command in the README parses with today's command line", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const commands = readmeCommands(readme);
  assert(commands.length >= 30, `only ${commands.length} commands found`);
  const bad: string[] = [];
  for (const c of commands) {
    try {
      const parsed = await parseOnly(c.words);
      if (parsed.command.length === 0) bad.push(`README.md:${c.line}: ${c.text}: no such command`);
    } catch (error) {
      bad.push(`README.md:${c.line}: ${c.text}: ${(error as Error).message}`);
    }
  }
  assertEquals(bad, []);
});

Deno.test("every vif command in the README is run by a test or the demo, with its flags", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const sources = await testSources();
  const missing: string[] = [];
  for (const c of readmeCommands(readme)) {
    const { command } = await parseOnly(c.words);
    const want = needles(c.words, command);
    const runner = [...sources].find(([, text]) => want.every((n) => text.includes(n)));
    if (!runner) missing.push(`README.md:${c.line}: ${c.text} (wants ${want.join(" ")})`);
  }
  assertEquals(missing, []);
});

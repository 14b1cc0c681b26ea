/**
 * Guards of the layout rules in DESIGN.md §2, so that they hold as the code
 * grows:
 *
 * - `mod/net/` is pure: no `Deno.*`, no FFI, no `node:` module, no npm package
 *   but `dns-packet`, directly or through anything it imports.
 * - `manager/` reaches nothing in `mod/tun/` and no FFI code, directly or not.
 * - `agent/` and `manager/` reach neither each other nor `mod/daemon/` nor
 *   `mod/tun/`, directly or through what they import.
 * - Production code (`main.ts`, `mod/`, `manager/`, `agent/`) imports nothing
 *   under `tests/`, and no module in those folders is there only for tests:
 *   a harness or a fake that only tests import (or run by path) lives under
 *   `tests/`.
 * - Only `mod/tun/mod.ts` looks at `Deno.build.os`.
 * - `Deno.dlopen` is never called at module top level.
 * - `main.ts` only hands off to `mod/cli/mod.ts`.
 * - `VERSION` equals the version in `deno.json`; `deno task compile` bakes in `V8_FLAGS`.
 *
 * Test and bench files (`*_test.ts`, `*_bench.ts`) may use Deno APIs and are
 * not held to the purity rules. Source is scanned with comments removed, so a
 * doc comment may mention `Deno.` freely. Empty or missing folders pass.
 *
 * @module
 */

import { VERSION } from "../mod/version.ts";
import { V8_FLAGS } from "../mod/cli/daemon_client.ts";
import { assert, assertEquals } from "./_assert.ts";

const ROOT = new URL("..", import.meta.url);
const ROOT_PATH = decodeURIComponent(ROOT.pathname);

/** npm packages that mod/net may use. */
const NET_NPM_ALLOWED = new Set(["dns-packet"]);

/** Any use of the `Deno` global: `Deno.x`, `Deno?.x`, `Deno["x"]`, `globalThis.Deno`. */
const DENO_USE = /\bDeno\s*(?:\?\.|\.|\[)|\bglobalThis\s*(?:\.\s*Deno\b|\[\s*["'`]Deno)/;
/** FFI: the dynamic library loader and the unsafe pointer classes. */
const FFI_USE =
  /\bDeno\s*\.\s*(?:dlopen|UnsafePointer|UnsafePointerView|UnsafeCallback|UnsafeFnPointer)\b/;
const BUILD_OS =
  /\bDeno\s*\.\s*build\s*(?:\.\s*os\b|\[\s*["'`]os["'`]\s*\])|\{[^{}]*\bos\b[^{}]*\}\s*=\s*Deno\s*\.\s*build\b/;

// --- reading the tree -------------------------------------------------------

/** Relative paths (from the repository root) of the source files under `dir`. */
async function sourceFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(relative: string): Promise<void> {
    let entries: Deno.DirEntry[];
    try {
      entries = [...(await Array.fromAsync(Deno.readDir(new URL(relative, ROOT))))];
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = `${relative}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile && /\.(?:ts|tsx|mts|js|mjs)$/.test(entry.name)) found.push(path);
    }
  }
  await walk(dir.replace(/\/$/, ""));
  return found;
}

function isTestOrBench(path: string): boolean {
  return /_(?:test|bench)\.(?:ts|tsx|mts|js|mjs)$/.test(path);
}

/** Test code: a test or bench file anywhere, or anything under `tests/` (harnesses, fakes). */
function isTestCode(path: string): boolean {
  return isTestOrBench(path) || path.startsWith("tests/");
}

async function productionFiles(dir: string): Promise<string[]> {
  return (await sourceFiles(dir)).filter((path) => !isTestOrBench(path));
}

function read(path: string): Promise<string> {
  return Deno.readTextFile(new URL(path, ROOT));
}

/**
 * Blanks comments (and, with `strings`, the contents of string and template
 * literals) with spaces, keeping every newline so that line numbers hold.
 * A heuristic, not a parser: a regular expression literal that holds a quote
 * or `//` can confuse it, but `'` and `"` strings end at the line's end, so
 * the damage stays on that line.
 */
function blank(source: string, options: { strings: boolean }): string {
  let out = "";
  let i = 0;
  const keepOrBlank = (text: string, keep: boolean) => keep ? text : text.replace(/[^\n]/g, " ");
  while (i < source.length) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      const end = source.indexOf("\n", i);
      const stop = end === -1 ? source.length : end;
      out += keepOrBlank(source.slice(i, stop), false);
      i = stop;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end === -1 ? source.length : end + 2;
      out += keepOrBlank(source.slice(i, stop), false);
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < source.length && source[j] !== c) {
        if (source[j] === "\\") j++;
        else if (c !== "`" && source[j] === "\n") break;
        j++;
      }
      const stop = Math.min(j + 1, source.length);
      const body = source.slice(i + 1, stop - 1);
      out += c + keepOrBlank(body, !options.strings) + (source[stop - 1] === c ? c : "");
      i = stop;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** A specifier and the 1-based line it is on. */
interface Located {
  specifier: string;
  line: number;
}

/** Every match of `patterns` in `code` (capture group 1), with its line. */
function locate(code: string, patterns: RegExp[]): Located[] {
  const lineAt = (index: number) => code.slice(0, index).split("\n").length;
  return patterns.flatMap((pattern) =>
    [...code.matchAll(pattern)].map((m) => ({
      specifier: m[1]!,
      line: lineAt(m.index! + m[0].lastIndexOf(m[1]!)),
    }))
  ).sort((a, b) => a.line - b.line);
}

/** The import and export specifiers of a module, static and dynamic, with their lines. */
function imports(source: string): Located[] {
  return locate(blank(source, { strings: false }), [
    /\b(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["'`]([^"'`]+)["'`]\s*[,)]/g,
  ]);
}

/** The import and export specifiers of a module, static and dynamic. */
function importSpecifiers(source: string): string[] {
  return imports(source).map((i) => i.specifier);
}

/**
 * Modules a module names by path to run them apart (`new URL("./probe.ts",
 * import.meta.url)` given to a child `deno`), which an import scan misses.
 */
function pathReferences(source: string): Located[] {
  return locate(blank(source, { strings: false }), [
    /\bnew\s+URL\s*\(\s*["'`](\.{1,2}\/[^"'`]+\.(?:ts|tsx|mts|js|mjs))["'`]\s*,\s*import\.meta\.url\s*\)/g,
  ]);
}

/** The 1-based line numbers of `source` whose code (comments removed) matches `pattern`. */
function matchingLines(source: string, pattern: RegExp): number[] {
  return blank(source, { strings: false }).split("\n").flatMap((line, index) =>
    pattern.test(line) ? [index + 1] : []
  );
}

/**
 * The 1-based lines where `Deno.dlopen` is called outside any braces, that is
 * when the module is imported. Braces are counted in code only (comments and
 * strings blanked); a call inside a top-level object literal is missed.
 */
function topLevelDlopenLines(source: string): number[] {
  const count = (text: string) =>
    [...text].reduce((d, c) => d + (c === "{" ? 1 : c === "}" ? -1 : 0), 0);
  let depth = 0;
  return blank(source, { strings: true }).split("\n").flatMap((line, index) => {
    const at = line.search(/\bDeno\s*\.\s*dlopen\s*[(<]/);
    if (at === -1) {
      depth += count(line);
      return [];
    }
    depth += count(line.slice(0, at));
    const topLevel = depth <= 0;
    depth += count(line.slice(at));
    return topLevel ? [index + 1] : [];
  });
}

/** The repository-relative path a relative specifier in `from` points to, if it stays local. */
function resolveLocal(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  const url = new URL(specifier, new URL(from, ROOT));
  return url.protocol === "file:"
    ? decodeURIComponent(url.pathname).slice(ROOT_PATH.length)
    : undefined;
}

/** The npm package name in `npm:name@1`, `npm:/@scope/name@1/sub` or a bare import-map name. */
function npmName(specifier: string): string {
  const bare = specifier.replace(/^npm:\/?/, "");
  const parts = bare.split("/");
  const name = bare.startsWith("@") ? `${parts[0]}/${parts[1] ?? ""}` : parts[0]!;
  return name.replace(/(.)@.*$/, "$1");
}

// --- the module graph, from `deno info --json` ------------------------------

interface GraphModule {
  specifier: string;
  kind?: string;
  npmPackage?: string;
  error?: string;
  dependencies?: {
    specifier: string;
    isDynamic?: boolean;
    code?: { specifier?: string };
    type?: { specifier?: string };
  }[];
}

interface Reached {
  /** Every module reachable from the roots, keyed by resolved specifier. */
  modules: Map<string, GraphModule>;
  /** How each module was first reached, root first, as repository-relative names. */
  chain(specifier: string): string;
}

/**
 * The modules reachable from `paths` (repository-relative), by one `deno info
 * --json`; with `loadedOnly`, through what loads with the module only: static
 * imports of code, not `import type` nor what an `import()` may load later.
 */
async function reachable(paths: string[], loadedOnly = false): Promise<Reached> {
  const dir = await Deno.makeTempDir({ prefix: "vif-arch-" });
  try {
    const entry = `${dir}/entry.ts`;
    const lines = paths.map((path) => `import ${JSON.stringify(new URL(path, ROOT).href)};`);
    await Deno.writeTextFile(entry, lines.join("\n") + "\n");
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--no-lock", "--config", new URL("deno.json", ROOT).pathname, entry],
      cwd: ROOT,
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert(output.success, `deno info failed: ${stderr}`);
    const graph = JSON.parse(new TextDecoder().decode(output.stdout)) as {
      modules: GraphModule[];
      redirects: Record<string, string>;
    };
    const all = new Map(graph.modules.map((m) => [m.specifier, m]));
    const resolve = (s: string) => graph.redirects[s] ?? s;
    const entryUrl = new URL(`file://${entry}`).href;
    const parent = new Map<string, string>();
    const modules = new Map<string, GraphModule>();
    const queue = [entryUrl];
    while (queue.length > 0) {
      const current = queue.shift()!;
      const module = all.get(current);
      if (module === undefined) continue;
      if (current !== entryUrl) modules.set(current, module);
      for (const dependency of module.dependencies ?? []) {
        if (loadedOnly && dependency.isDynamic) continue;
        const targets = loadedOnly
          ? [dependency.code?.specifier]
          : [dependency.code?.specifier, dependency.type?.specifier];
        for (const target of targets) {
          if (target === undefined) continue;
          const resolved = resolve(target);
          if (resolved === entryUrl || parent.has(resolved)) continue;
          parent.set(resolved, current);
          queue.push(resolved);
        }
      }
    }
    const name = (s: string) => s.startsWith(ROOT.href) ? s.slice(ROOT.href.length) : s;
    return {
      modules,
      chain(specifier) {
        const names: string[] = [];
        for (let s: string | undefined = specifier; s !== undefined && s !== entryUrl;) {
          names.unshift(name(s));
          s = parent.get(s);
        }
        return names.join(" → ");
      },
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function localPath(specifier: string): string | undefined {
  return specifier.startsWith(ROOT.href) ? specifier.slice(ROOT.href.length) : undefined;
}

// --- the guards ---------------------------------------------------------------

Deno.test("architecture: mod/net uses no Deno API, FFI, node: module or npm package but dns-packet", async () => {
  const problems: string[] = [];
  for (const path of await productionFiles("mod/net")) {
    const source = await read(path);
    for (const line of matchingLines(source, DENO_USE)) {
      problems.push(`${path}:${line}: uses the Deno global`);
    }
    for (const specifier of importSpecifiers(source)) {
      if (specifier.startsWith(".")) continue; // Checked through the graph below.
      if (specifier.startsWith("node:")) problems.push(`${path}: imports ${specifier}`);
      else if (!NET_NPM_ALLOWED.has(npmName(specifier))) {
        problems.push(`${path}: imports ${specifier} (only ${[...NET_NPM_ALLOWED]} is allowed)`);
      }
    }
  }
  assertEquals(problems, []);
});

Deno.test("architecture: everything mod/net reaches is pure too", async () => {
  const roots = await productionFiles("mod/net");
  if (roots.length === 0) return;
  const { modules, chain } = await reachable(roots);
  const problems: string[] = [];
  for (const [specifier, module] of modules) {
    if (module.error !== undefined) problems.push(`${chain(specifier)}: ${module.error}`);
    else if (module.kind === "node") problems.push(`${chain(specifier)}: a node: module`);
    else if (module.kind === "npm") {
      const name = npmName(module.npmPackage ?? specifier);
      if (!NET_NPM_ALLOWED.has(name)) problems.push(`${chain(specifier)}: npm package ${name}`);
    } else {
      const path = localPath(specifier);
      if (path === undefined) problems.push(`${chain(specifier)}: not a local module`);
      else if (matchingLines(await read(path), DENO_USE).length > 0) {
        problems.push(`${chain(specifier)}: uses the Deno global`);
      }
    }
  }
  assertEquals(problems, []);
});

Deno.test("architecture: manager imports nothing from mod/tun and no FFI code", async () => {
  const files = await sourceFiles("manager");
  const problems: string[] = [];
  for (const path of files) {
    for (const specifier of importSpecifiers(await read(path))) {
      if (resolveLocal(path, specifier)?.startsWith("mod/tun/")) {
        problems.push(`${path}: imports ${specifier}`);
      }
    }
  }
  if (files.length > 0) {
    const { modules, chain } = await reachable(files);
    for (const [specifier, module] of modules) {
      const path = localPath(specifier);
      if (module.error !== undefined) problems.push(`${chain(specifier)}: ${module.error}`);
      else if (path?.startsWith("mod/tun/")) problems.push(`${chain(specifier)}: in mod/tun/`);
      else if (path !== undefined && matchingLines(await read(path), FFI_USE).length > 0) {
        problems.push(`${chain(specifier)}: uses FFI`);
      }
    }
  }
  assertEquals(problems, []);
});

/** Folders of production code, besides `main.ts`; missing ones pass. */
const PRODUCTION_DIRS = ["mod", "manager", "agent"];
/** Every folder whose modules may use a production module. */
const USER_DIRS = [...PRODUCTION_DIRS, "tests", "scripts"];

/**
 * Test-only modules still in a production folder, each with where it goes.
 * The guard fails when one of them is used by production code again or is
 * gone, so that the list only shrinks.
 */
const HARNESSES_TO_MOVE: Record<string, string> = {};

async function productionFilesOf(dirs: string[]): Promise<string[]> {
  return (await Promise.all(dirs.map(productionFiles))).flat();
}

Deno.test("architecture: production code imports nothing under tests/", async () => {
  const files = ["main.ts", ...await productionFilesOf(PRODUCTION_DIRS)];
  const problems: string[] = [];
  for (const path of files) {
    const source = await read(path);
    for (const { specifier, line } of [...imports(source), ...pathReferences(source)]) {
      if (resolveLocal(path, specifier)?.startsWith("tests/")) {
        problems.push(`${path}:${line}: imports "${specifier}", which is under tests/`);
      }
    }
  }
  assertEquals(problems, []);
});

Deno.test("architecture: no module in mod/, manager/ or agent/ is there only for tests", async () => {
  // Who imports (or runs by path) each local module.
  const users = new Map<string, string[]>();
  for (const path of ["main.ts", ...(await Promise.all(USER_DIRS.map(sourceFiles))).flat()]) {
    const source = await read(path);
    for (const { specifier, line } of [...imports(source), ...pathReferences(source)]) {
      const target = resolveLocal(path, specifier);
      if (target === undefined || target === path) continue;
      users.set(target, [...users.get(target) ?? [], `${path}:${line}`]);
    }
  }
  const problems: string[] = [];
  const files = await productionFilesOf(PRODUCTION_DIRS);
  for (const path of files) {
    // Fixtures in a testdata/ folder are data for the tests beside them, not code.
    if (/(?:^|\/)testdata\//.test(path)) continue;
    const by = users.get(path) ?? [];
    const testOnly = by.length > 0 && by.every((at) => isTestCode(at.replace(/:\d+$/, "")));
    if (Object.hasOwn(HARNESSES_TO_MOVE, path)) {
      if (!testOnly) {
        problems.push(
          `${path}: not test-only any more (used by ${by.join(", ") || "nothing"}); ` +
            "take it off HARNESSES_TO_MOVE",
        );
      }
    } else if (testOnly) {
      problems.push(
        `${path}: only tests use it (${by.join(", ")}); a harness or fake belongs under tests/`,
      );
    }
  }
  for (const path of Object.keys(HARNESSES_TO_MOVE)) {
    if (!files.includes(path)) problems.push(`${path}: gone; take it off HARNESSES_TO_MOVE`);
  }
  assertEquals(problems, []);
});

/**
 * What each role's production code may not reach. Their tests may: a test of
 * the manager can drive the daemon's end of a tunnel against it.
 */
const ROLE_FENCES = [
  { role: "manager", forbidden: ["agent/", "mod/daemon/", "mod/tun/"] },
  { role: "agent", forbidden: ["manager/", "mod/daemon/", "mod/tun/"] },
];

Deno.test("architecture: agent and manager reach neither each other nor mod/daemon nor mod/tun", async () => {
  const problems: string[] = [];
  for (const { role, forbidden } of ROLE_FENCES) {
    const fenced = (path: string | undefined) => forbidden.find((f) => path?.startsWith(f));
    const files = await productionFiles(role);
    for (const path of files) {
      for (const { specifier, line } of imports(await read(path))) {
        const into = fenced(resolveLocal(path, specifier));
        if (into) problems.push(`${path}:${line}: imports "${specifier}", which is in ${into}`);
      }
    }
    if (files.length === 0) continue;
    const { modules, chain } = await reachable(files);
    for (const [specifier, module] of modules) {
      const path = chain(specifier);
      const steps = path.split(" → ");
      const into = fenced(localPath(specifier));
      if (module.error !== undefined) problems.push(`${path}: ${module.error}`);
      // Once per way in: a direct import is reported above with its line, and
      // what the fenced module imports in its own folder adds nothing.
      else if (into && steps.length > 2 && fenced(steps.at(-2)) !== into) {
        problems.push(`${path}: reaches ${into}`);
      }
    }
  }
  assertEquals(problems, []);
});

Deno.test("architecture: the daemon loads @kubernetes/client-node only on demand (an import())", async () => {
  // About 90 MB of resident memory: the CLI resolves the kubeconfig, and the
  // daemon's discovery and port-forward use mod/kube/api.ts and websocket.ts.
  const roots = [
    "mod/daemon/daemon.ts",
    "mod/daemon/connection.ts",
    "mod/kube/discovery.ts",
    "mod/kube/portforward.ts",
  ];
  const { modules, chain } = await reachable(roots, true);
  const problems: string[] = [];
  for (const [specifier, module] of modules) {
    if (
      module.kind === "npm" && npmName(module.npmPackage ?? specifier) === "@kubernetes/client-node"
    ) {
      problems.push(chain(specifier));
    }
  }
  assertEquals(problems, []);
});

/** The X.509 library and the Reflect polyfill it needs: only `vif install` and `vif client-cert` load them. */
const X509_PACKAGES = new Set(["@peculiar/x509", "reflect-metadata"]);

Deno.test("architecture: the daemon, connect, the manager and the agent load no X.509 library", async () => {
  // mod/kube/x509.ts makes certificates and is reached by an import() only;
  // everyone else passes PEM texts on (mod/kube/pem.ts). What a role loads
  // with an import() is a root here too: the daemon's discovery.ts, the
  // manager and the agent behind main.ts, and mod/kube/mod.ts, which
  // `vif list` and `vif doctor` load.
  const roots = [
    "main.ts",
    "mod/kube/mod.ts",
    "mod/daemon/daemon.ts",
    "mod/daemon/connection.ts",
    "mod/kube/discovery.ts",
    "mod/kube/portforward.ts",
    "mod/cli/connect.ts",
    ...await productionFiles("manager"),
    ...await productionFiles("agent"),
  ];
  const { modules, chain } = await reachable(roots, true);
  const problems: string[] = [];
  for (const [specifier, module] of modules) {
    if (module.kind === "npm" && X509_PACKAGES.has(npmName(module.npmPackage ?? specifier))) {
      problems.push(chain(specifier));
    }
  }
  assertEquals(problems, []);
});

Deno.test("architecture: vif starts without gRPC, protobuf, client-node or X.509 loaded", async () => {
  // Every command (and every Tab of shell completion) pays for what main.ts
  // loads statically; each command imports() what it alone needs. Measured:
  // `vif version` 275 → 115 ms when gRPC and protobuf left this graph.
  const heavy = new Set([
    "@grpc/grpc-js",
    "@bufbuild/protobuf",
    "@kubernetes/client-node",
    ...X509_PACKAGES,
  ]);
  const { modules, chain } = await reachable(["main.ts"], true);
  const problems: string[] = [];
  for (const [specifier, module] of modules) {
    if (module.kind === "npm" && heavy.has(npmName(module.npmPackage ?? specifier))) {
      problems.push(chain(specifier));
    }
  }
  assertEquals(problems, []);
});

Deno.test("architecture: only mod/tun/mod.ts looks at Deno.build.os", async () => {
  const files = ["main.ts", ...await productionFiles("mod"), ...await productionFiles("manager")];
  const problems: string[] = [];
  for (const path of files) {
    if (path === "mod/tun/mod.ts") continue;
    for (const line of matchingLines(await read(path), BUILD_OS)) {
      problems.push(`${path}:${line}: looks at Deno.build.os`);
    }
  }
  assertEquals(problems, []);
});

Deno.test("architecture: Deno.dlopen is only called inside functions", async () => {
  const files = ["main.ts", ...await productionFiles("mod"), ...await productionFiles("manager")];
  const problems: string[] = [];
  for (const path of files) {
    for (const line of topLevelDlopenLines(await read(path))) {
      problems.push(`${path}:${line}: Deno.dlopen at top level`);
    }
  }
  assertEquals(problems, []);
});

Deno.test("architecture: main.ts only hands off to mod/cli/mod.ts", async () => {
  assertEquals(importSpecifiers(await read("main.ts")), ["./mod/cli/mod.ts"]);
});

Deno.test("architecture: VERSION equals the version in deno.json", async () => {
  const config = JSON.parse(await read("deno.json")) as { version?: string };
  assertEquals(VERSION, config.version);
});

Deno.test("architecture: the compiled binary bakes in the V8 flags the daemon runs with", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT_PATH}/deno.json`));
  assert(
    (config.tasks.compile as string).includes(` --v8-flags=${V8_FLAGS} `),
    `the compile task should pass --v8-flags=${V8_FLAGS}: ${config.tasks.compile}`,
  );
  // And the unstable features the code uses (Deno.listenDatagram), as runs from a checkout get them.
  for (const feature of config.unstable ?? []) {
    assert(
      (config.tasks.compile as string).includes(` --unstable-${feature} `),
      `the compile task should pass --unstable-${feature}: ${config.tasks.compile}`,
    );
  }
});

// --- the scanner itself -------------------------------------------------------

Deno.test("architecture scanner: ignores comments and finds real uses", () => {
  const source = [
    "// Deno.build.os in a comment",
    "/* Deno.dlopen( */ const a = 1;",
    'const s = "// not a comment"; Deno.env.get("X");',
    "const { os } = Deno.build;",
  ].join("\n");
  assertEquals(matchingLines(source, DENO_USE), [3, 4]);
  assertEquals(matchingLines(source, BUILD_OS), [4]);
  assertEquals(matchingLines("if (Deno.build.os === 'linux') {}", BUILD_OS), [1]);
  assertEquals(matchingLines('const x = globalThis["Deno"];', DENO_USE), [1]);
});

Deno.test("architecture scanner: reads static, type, side-effect and dynamic imports", () => {
  const source = [
    'import { a } from "./a.ts";',
    'import type { B } from "../b.ts";',
    'export * from "./c.ts";',
    'import "node:fs";',
    'const d = await import("npm:dns-packet@5.6.1");',
    '// import { e } from "./e.ts";',
    "import {",
    "  f,",
    '} from "commander";',
  ].join("\n");
  assertEquals(importSpecifiers(source).sort(), [
    "../b.ts",
    "./a.ts",
    "./c.ts",
    "commander",
    "node:fs",
    "npm:dns-packet@5.6.1",
  ]);
  assertEquals(npmName("npm:/@leichtgewicht/ip-codec@2.0.5"), "@leichtgewicht/ip-codec");
  assertEquals(npmName("dns-packet"), "dns-packet");
  assertEquals(resolveLocal("manager/mod.ts", "../mod/tun/mod.ts"), "mod/tun/mod.ts");
});

Deno.test("architecture scanner: gives the line of each import, and finds modules run by path", () => {
  const source = [
    "/**",
    ' * import { a } from "./in-a-comment.ts";',
    " */",
    'import { b } from "./b.ts";',
    "import {",
    "  c,",
    '} from "../c.ts";',
    'const probe = new URL("./_probe.ts", import.meta.url).pathname;',
    '// const old = new URL("./_old.ts", import.meta.url);',
    'const asset = new URL("./data.json", import.meta.url);',
  ].join("\n");
  assertEquals(imports(source), [
    { specifier: "./b.ts", line: 4 },
    { specifier: "../c.ts", line: 7 },
  ]);
  assertEquals(pathReferences(source), [{ specifier: "./_probe.ts", line: 8 }]);
  assert(isTestCode("tests/_manager.ts") && isTestCode("mod/tun/linux_test.ts"));
  assert(!isTestCode("mod/tun/channel.ts"));
});

Deno.test("architecture scanner: tells a top-level Deno.dlopen from one in a function", () => {
  assertEquals(topLevelDlopenLines('export const lib = Deno.dlopen("libc.so.6", {});'), [1]);
  assertEquals(
    topLevelDlopenLines('function open() {\n  return Deno.dlopen("libc.so.6", {});\n}'),
    [],
  );
  assertEquals(topLevelDlopenLines('const text = "{";\nconst lib = Deno.dlopen("x", {});'), [2]);
  assertEquals(topLevelDlopenLines('// {\nconst lib = Deno.dlopen("x", {});'), [2]);
});

Deno.test("architecture scanner: the module graph names npm packages and how they are reached", async () => {
  const { modules, chain } = await reachable(["mod/cli/mod.ts"]);
  const commander = [...modules].find(([, m]) =>
    m.kind === "npm" && npmName(m.npmPackage ?? "") === "commander"
  );
  assert(commander !== undefined, "commander not found in the graph of mod/cli/mod.ts");
  assertEquals(chain(commander[0]).split(" → ")[0], "mod/cli/mod.ts");
  assert(
    [...modules.keys()].some((s) => localPath(s) === "mod/version.ts"),
    "mod/version.ts not reached",
  );
});

/**
 * `vif completion`: the bash script is run by real bash, the way bash runs it
 * on Tab (COMP_WORDS, COMP_CWORD, COMP_LINE, COMP_POINT set, `_vif` called,
 * COMPREPLY read), with `vif` a wrapper around this checkout's main.ts; the
 * zsh and fish scripts are parsed and run by those shells when installed.
 * Namespaces and workloads come from the simulated API server on loopback.
 *
 * ```
 *   test ──► bash -c '_vif' ──► vif (wrapper: deno run main.ts __complete) ──HTTPS──► withCluster()
 *                ▲ COMPREPLY                 │ stdout: words|files, the word, candidates
 *                └───────────────────────────┘
 * ```
 */

import { Command } from "commander";
import { assert, assertEquals } from "../../tests/_assert.ts";
import { type TestCluster, withCluster } from "../../tests/_apiserver.ts";
import type { KubeObject } from "../../tests/sim/apiserver/mod.ts";
import { COMMANDS } from "./commands.ts";
import {
  complete,
  COMPLETION_SHELLS,
  completionScript,
  formatCompletions,
  splitCommandLine,
} from "./completion.ts";
import { quickAccess } from "../kube/quick_access.ts";
import { ExitCode, main, memoryIo } from "./mod.ts";

const HAS_ZSH = await hasShell("zsh");
const HAS_FISH = await hasShell("fish");

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A directory with `vif` (a wrapper that runs this checkout) and the bash script it printed. */
interface Bin {
  dir: string;
  bashScript: string;
  env: Record<string, string>;
}

let binPromise: Promise<Bin> | undefined;

/**
 * Makes the wrapper once for the file. Deno's cache is named explicitly, as
 * the tests give `vif` a HOME of their own (never the user's ~/.kube).
 */
function bin(): Promise<Bin> {
  binPromise ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "vif-completion-" });
    // The last test removes it; this is for a run filtered to some tests only.
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch {
        // Already removed.
      }
    });
    const info = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const denoDir = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir as string;
    await Deno.writeTextFile(
      `${dir}/vif`,
      `#!/bin/sh\nexec ${sq(Deno.execPath())} run -q -A --no-check=remote ${sq(MAIN)} "$@"\n`,
      { mode: 0o755 },
    );
    await Deno.mkdir(`${dir}/home`);
    const env = {
      PATH: `${dir}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
      HOME: `${dir}/home`,
      DENO_DIR: denoDir,
      NO_COLOR: "1",
    };
    const script = await run(`${dir}/vif`, ["completion", "bash"], env);
    assertEquals([script.code, script.err], [0, ""]);
    await Deno.writeTextFile(`${dir}/vif.bash`, script.out);
    return { dir, bashScript: `${dir}/vif.bash`, env };
  })();
  return binPromise;
}

/** Removes the wrapper's directory; the last test of the file calls it. */
async function removeBin(): Promise<void> {
  if (binPromise === undefined) return;
  const { dir } = await binPromise;
  await Deno.remove(dir, { recursive: true });
  binPromise = undefined;
}

function sq(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

async function run(
  command: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; out: string; err: string; ms: number }> {
  const started = performance.now();
  const out = await new Deno.Command(command, {
    args,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return {
    code: out.code,
    out: text.decode(out.stdout),
    err: text.decode(out.stderr),
    ms: performance.now() - started,
  };
}

/**
 * COMP_WORDS as bash makes them from a line of plain words: split at blanks,
 * and `=` and `:` (COMP_WORDBREAKS) as words of their own; an empty last
 * word when the line ends in a blank.
 */
function bashWords(line: string): string[] {
  const words: string[] = [];
  for (const token of line.split(/\s+/)) {
    if (token === "") continue;
    words.push(...token.split(/([=:])/).filter((w) => w !== ""));
  }
  if (/\s$/.test(line)) words.push("");
  return words;
}

/** What bash's Tab offers at the end of `line`: COMPREPLY, sorted. */
async function bashComplete(line: string, env: Record<string, string> = {}): Promise<string[]> {
  const b = await bin();
  const words = bashWords(line);
  const body = 'source "$1"; COMP_LINE=$2; COMP_POINT=${#COMP_LINE}; shift 2; ' +
    'COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _vif; ' +
    'printf "%s\\n" "${COMPREPLY[@]}"';
  const result = await run(
    "bash",
    ["--norc", "--noprofile", "-c", body, "bash", b.bashScript, line, ...words],
    { ...b.env, ...env },
  );
  assertEquals([result.code, result.err], [0, ""], `bash for "${line}"`);
  return result.out.split("\n").filter((l) => l !== "").sort();
}

async function hasShell(name: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(name, {
      args: ["-c", "exit 0"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** A kubeconfig with three contexts; `arn:…` has colons, as EKS names contexts. */
function contextsKubeconfig(server = "https://127.0.0.1:1"): string {
  const contexts = [["alpha", ""], ["beta", "shop"], ["arn:aws:eks:eu-west-1:1:cluster/c", ""]];
  return `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: ${server}
users:
- name: u
  user:
    token: t
contexts:
${
    contexts.map(([name, ns]) =>
      `- name: "${name}"\n  context:\n    cluster: c\n    user: u\n${
        ns ? `    namespace: ${ns}\n` : ""
      }`
    ).join("")
  }current-context: alpha
`;
}

/** The real program, with every command, as main() builds it (without running it). */
function program(): Command {
  const root = new Command("vif").option("--debug").option("--no-color");
  const context = { io: memoryIo(), debug: false, exitCode: ExitCode.Ok };
  for (const register of COMMANDS) register(root, context);
  return root;
}

async function values(words: string[]): Promise<string[]> {
  const found = await complete(program(), words, { env: () => undefined });
  return found.candidates.map((c) => c.value);
}

Deno.test("splitCommandLine() splits as a shell does, with the word at the cursor last", () => {
  const table: [string, string[]][] = [
    ["vif", ["vif"]],
    ["vif ", ["vif", ""]],
    ["vif  con", ["vif", "con"]],
    [`vif --kubeconfig "a b" -n`, ["vif", "--kubeconfig", "a b", "-n"]],
    [`vif --context 'x y' `, ["vif", "--context", "x y", ""]],
    [`vif a\\ b "c\\"d" e`, ["vif", "a b", 'c"d', "e"]],
    [`vif --context "open`, ["vif", "--context", "open"]],
    [`vif --as='it''s'`, ["vif", "--as=its"]],
  ];
  for (const [line, words] of table) assertEquals(splitCommandLine(line), words, line);
});

Deno.test("formatCompletions() drops candidates that would break a line", () => {
  const text = formatCompletions({
    mode: "words",
    word: "",
    candidates: [
      { value: "ok", description: "two\nlines" },
      { value: "bad\nname" },
      { value: "tab\tname" },
      { value: "plain" },
    ],
  });
  assertEquals(text, "words\n\nok\ttwo lines\nplain\n");
});

Deno.test("complete() lists visible commands only, and flags of the command typed", async () => {
  const commands = await values([""]);
  assert(commands.includes("connect") && commands.includes("completion"), commands.join());
  for (const hidden of ["daemon", "__complete", "kube-credentials", "agent"]) {
    assert(!commands.includes(hidden), `${hidden} is hidden`);
  }
  assertEquals(await values(["quit", "--f"]), ["--force"]);
  assertEquals(await values(["--de"]), ["--debug"]); // the root's own flags
  assertEquals(await values(["completion", ""]), [...COMPLETION_SHELLS]);
  assertEquals(await values(["help", "inter"]), ["intercept"]);
  assertEquals(await values(["disc"]), ["disconnect"]); // an alias, when typed
});

Deno.test("complete() finds option values after flags, clusters and =", async () => {
  assertEquals(await values(["status", "-o", ""]), ["text", "json", "yaml"]);
  assertEquals(await values(["list", "--output=y"]), ["--output=yaml"]);
  assertEquals(await values(["list", "-oj"]), ["-ojson"]);
  assertEquals(await values(["connect", "-qo", ""]), ["text", "json", "yaml"]);
  assertEquals(await values(["intercept", "--env-syntax", "d"]), ["docker"]);
  // A value already given is not a flag to complete after.
  assertEquals(await values(["list", "-o", "json", "--st"]), ["--state-dir"]);
  // Files: the shell's own completion.
  const files = await complete(program(), ["connect", "--kubeconfig", "/tm"], {
    env: () => undefined,
  });
  assertEquals([files.mode, files.word], ["files", "/tm"]);
  assertEquals(
    (await complete(program(), ["connect", "--", "ls"], { env: () => undefined })).mode,
    "files",
  );
  // No source for a free-form value: nothing, not file names.
  assertEquals(await values(["connect", "--also-proxy", ""]), []);
});

Deno.test("vif completion prints each shell's script; an unknown shell is a usage error", async () => {
  for (const shell of COMPLETION_SHELLS) {
    const io = memoryIo();
    assertEquals(await main(["completion", shell], { io }), 0);
    assertEquals(io.out, completionScript(shell));
  }
  const io = memoryIo();
  assertEquals(await main(["completion", "tcsh"], { io }), ExitCode.Usage);
  assert(io.err.includes("tcsh"), io.err);
});

Deno.test("bash completes a partial command", async () => {
  assertEquals(await bashComplete("vif inte"), ["intercept"]);
  const con = await bashComplete("vif con");
  assert(con.includes("connect") && con.includes("connections"), con.join());
  assert(con.every((c) => c.startsWith("con")), con.join());
  assertEquals(await bashComplete("vif help ver"), ["version"]);
});

Deno.test("bash completes the flags of the command being typed", async () => {
  assertEquals(await bashComplete("vif list --names"), ["--namespace"]);
  const flags = await bashComplete("vif list -");
  for (const f of ["-n", "--namespace", "-o", "--output", "-h", "--help", "--context"]) {
    assert(flags.includes(f), `${f} in ${flags.join(" ")}`);
  }
  assert(!flags.includes("--port"), "no flag of another command");
});

Deno.test("bash completes -o with the option's choices", async () => {
  assertEquals(await bashComplete("vif list -o "), ["json", "text", "yaml"]);
  assertEquals(await bashComplete("vif status -o j"), ["json"]);
  assertEquals(await bashComplete("vif list --output=y"), ["yaml"]);
  assertEquals(await bashComplete("vif completion "), ["bash", "fish", "zsh"]);
});

Deno.test("bash completes file names for --kubeconfig", async () => {
  const b = await bin();
  await Deno.writeTextFile(`${b.dir}/home/kubeconfig-one`, "");
  assertEquals(await bashComplete(`vif connect --kubeconfig ${b.dir}/home/kubeconfig-`), [
    `${b.dir}/home/kubeconfig-one`,
  ]);
});

Deno.test("bash completes contexts of --kubeconfig on the line, and of KUBECONFIG", async () => {
  const b = await bin();
  const one = `${b.dir}/home/one.yaml`;
  const two = `${b.dir}/home/two.yaml`;
  await Deno.writeTextFile(one, contextsKubeconfig());
  await Deno.writeTextFile(
    two,
    contextsKubeconfig().replaceAll("alpha", "gamma").replaceAll('"beta"', '"delta"'),
  );
  const all = ["alpha", "arn:aws:eks:eu-west-1:1:cluster/c", "beta"];
  assertEquals(await bashComplete(`vif connect --kubeconfig ${one} --context `), all);
  assertEquals(await bashComplete(`vif list --kubeconfig ${one} --context b`), ["beta"]);
  // Readline replaces only what follows the last '=' or ':'.
  assertEquals(await bashComplete(`vif connect --kubeconfig ${one} --context=`), all);
  // bash splits at ':': only the part after the last one is replaced.
  assertEquals(await bashComplete(`vif connect --kubeconfig ${one} --context=arn:aws:e`), [
    "eks:eu-west-1:1:cluster/c",
  ]);
  // KUBECONFIG: every file, merged (the first definition of a name wins), missing ones skipped.
  const kubeconfig = [one, `${b.dir}/home/missing.yaml`, two].join(":");
  assertEquals(
    await bashComplete("vif connect --context ", { KUBECONFIG: kubeconfig }),
    [
      ...all,
      "delta",
      "gamma",
    ].sort(),
  );
  // Neither: ~/.kube/config of the HOME, which has none.
  assertEquals(await bashComplete("vif connect --context "), []);
});

/** Namespaces `shop` and `tools`; in `shop` a Deployment with its ReplicaSet, a StatefulSet, a bare ReplicaSet. */
function seed(cluster: TestCluster): void {
  const create = (o: Record<string, unknown>) => cluster.store.create(o as unknown as KubeObject);
  for (const name of ["shop", "tools"]) {
    create({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
  }
  const template = (app: string) => ({
    metadata: { labels: { app } },
    spec: { containers: [{ name: app, image: "nginx" }] },
  });
  const workload = (kind: string, namespace: string, name: string, extra = {}) =>
    create({
      apiVersion: "apps/v1",
      kind,
      metadata: { name, namespace, ...extra },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: name } },
        ...(kind === "StatefulSet" ? { serviceName: name } : {}),
        template: template(name),
      },
    });
  workload("Deployment", "shop", "web");
  workload("StatefulSet", "shop", "db");
  workload("ReplicaSet", "shop", "batch");
  workload("ReplicaSet", "shop", "web-5d8f9", {
    ownerReferences: [{
      apiVersion: "apps/v1",
      kind: "Deployment",
      name: "web",
      uid: "0f1e2d3c-0000-4000-8000-000000000001",
      controller: true,
    }],
  });
  workload("Deployment", "default", "other");
}

Deno.test("bash completes namespaces and workloads from the API server", async () => {
  const b = await bin();
  await withCluster(async (cluster) => {
    seed(cluster);
    const kubeconfig = `${b.dir}/home/sim.yaml`;
    await Deno.writeTextFile(kubeconfig, cluster.kubeconfig());
    try {
      const env = { KUBECONFIG: kubeconfig };
      const namespaces = await bashComplete("vif list -n ", env);
      for (const ns of ["default", "kube-system", "shop", "tools"]) {
        assert(namespaces.includes(ns), `${ns} in ${namespaces.join(" ")}`);
      }
      assertEquals(await bashComplete("vif list -n sh", env), ["shop"]);
      assertEquals(await bashComplete("vif connect --manager-namespace t", env), ["tools"]);
      assertEquals(await bashComplete("vif intercept -n shop ", env), ["batch", "db", "web"]);
      assertEquals(await bashComplete("vif leave --namespace=shop w", env), ["web"]);
      // No -n: the context's namespace (default, as the context names none).
      assertEquals(await bashComplete("vif intercept ", env), ["other"]);
      // --kubeconfig on the line wins over KUBECONFIG.
      assertEquals(
        await bashComplete(`vif intercept --kubeconfig ${kubeconfig} -n shop d`, {
          KUBECONFIG: `${b.dir}/home/missing.yaml`,
        }),
        ["db"],
      );
      assert(
        cluster.log().includes("GET /apis/apps/v1/namespaces/shop/replicasets"),
        cluster.log().join("\n"),
      );
    } finally {
      await Deno.remove(kubeconfig);
    }
  });
});

Deno.test("an API server that does not answer gives no candidates, exit 0, within about a second", async () => {
  const b = await bin();
  // Accepts and never says a word: the TLS handshake waits for the deadline.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  // Refuses: a port nobody listens on any more.
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refusedPort = closed.addr.port;
  closed.close();
  try {
    for (const port of [silent.addr.port, refusedPort]) {
      const kubeconfig = `${b.dir}/home/dead-${port}.yaml`;
      await Deno.writeTextFile(kubeconfig, contextsKubeconfig(`https://127.0.0.1:${port}`));
      const env = { ...b.env, KUBECONFIG: kubeconfig };
      // Once untimed: the wrapper type-checks main.ts when a file changed since the last run.
      await run(`${b.dir}/vif`, ["__complete", "--", "list", "-n", ""], env);
      const direct = await run(`${b.dir}/vif`, ["__complete", "--", "list", "-n", ""], env);
      assertEquals([direct.code, direct.out, direct.err], [0, "words\n\n", ""]);
      assert(direct.ms < 2500, `took ${Math.round(direct.ms)} ms`);
      assertEquals(await bashComplete("vif intercept ", { KUBECONFIG: kubeconfig }), []);
      await Deno.remove(kubeconfig);
    }
  } finally {
    silent.close();
    await accepting.catch(() => {});
    for (const conn of held) conn.close();
  }
});

Deno.test("quickAccess() resolves what resolveAccess() of client-node does", async () => {
  const { loadKubeConfig, resolveAccess } = await import("../kube/client.ts");
  const dir = await Deno.makeTempDir({ prefix: "vif-completion-access-" });
  try {
    await Deno.mkdir(`${dir}/pki`);
    await Deno.writeTextFile(`${dir}/pki/ca.crt`, "CA PEM\n");
    await Deno.writeTextFile(`${dir}/pki/client.crt`, "CERT PEM\n");
    await Deno.writeTextFile(`${dir}/pki/client.key`, "KEY PEM\n");
    await Deno.writeTextFile(
      `${dir}/plugin.sh`,
      `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",` +
        `"status":{"token":"from-plugin-'"$PLUGIN_SUFFIX"'"}}'\n`,
      { mode: 0o755 },
    );
    const users: Record<string, string> = {
      token: "token: abc",
      files: "client-certificate: pki/client.crt\n    client-key: pki/client.key",
      data: `client-certificate-data: ${btoa("CERT DATA\n")}\n    client-key-data: ${
        btoa("KEY DATA\n")
      }\n    as: bob`,
      basic: "username: ann\n    password: secret",
      exec:
        `exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: ${dir}/plugin.sh\n` +
        "      env:\n      - name: PLUGIN_SUFFIX\n        value: x1",
      // A legacy auth-provider: the slow path, through client-node itself.
      provider: `auth-provider:\n      name: file\n      config:\n        tokenFile: ${dir}/token`,
    };
    const clusters: Record<string, string> = {
      token: `server: https://198.18.0.1:6443/\n    certificate-authority-data: ${
        btoa("CA DATA\n")
      }`,
      files: "server: https://198.18.0.1:6443\n    certificate-authority: pki/ca.crt\n" +
        "    tls-server-name: api.example",
      data: "server: https://198.18.0.1:6443\n    insecure-skip-tls-verify: true",
      basic: "server: https://198.18.0.1:8443",
      exec: "server: https://198.18.0.1:6443",
      provider: "server: https://198.18.0.1:6443",
    };
    await Deno.writeTextFile(`${dir}/token`, "file-token");
    const kubeconfig = `${dir}/config`;
    await Deno.writeTextFile(
      kubeconfig,
      `apiVersion: v1\nkind: Config\nclusters:\n${
        Object.entries(clusters).map(([n, c]) => `- name: ${n}\n  cluster:\n    ${c}\n`).join("")
      }users:\n${
        Object.entries(users).map(([n, u]) => `- name: ${n}\n  user:\n    ${u}\n`).join("")
      }contexts:\n${
        Object.keys(users).map((n) =>
          `- name: ${n}\n  context:\n    cluster: ${n}\n    user: ${n}\n` +
          (n === "files" ? "    namespace: shop\n" : "")
        ).join("")
      }current-context: token\n`,
    );
    const env = (name: string) => name === "PATH" ? Deno.env.get("PATH") : undefined;
    for (const context of [...Object.keys(users), undefined]) {
      for (const as of [undefined, "carol"]) {
        const loaded = loadKubeConfig({
          kubeconfig,
          env,
          ...(context ? { context } : {}),
          ...(as ? { as } : {}),
        });
        const expected = {
          access: await resolveAccess(loaded.kubeConfig),
          namespace: loaded.namespace,
        };
        const quick = await quickAccess(env, {
          kubeconfig,
          deadline: Date.now() + 30_000, // Loading client-node takes most of a second.
          ...(context ? { context } : {}),
          ...(as ? { as } : {}),
        });
        assertEquals(quick, expected, `context ${context ?? "(current)"}, as ${as}`);
      }
    }
    const bearer = async (context: string) =>
      (await quickAccess(env, { kubeconfig, context, deadline: Date.now() + 30_000 }))
        ?.access.headers.Authorization;
    assertEquals(await bearer("exec"), "Bearer from-plugin-x1");
    assertEquals(await bearer("provider"), "Bearer file-token");
    assertEquals(await quickAccess(env, { kubeconfig, context: "nope" }), undefined);
    assertEquals(await quickAccess(env, { kubeconfig: `${dir}/missing` }), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: `the zsh script parses, and offers what vif prints${HAS_ZSH ? "" : " (skipped: no zsh)"}`,
  ignore: !HAS_ZSH,
}, async () => {
  const b = await bin();
  const script = `${b.dir}/_vif`;
  await Deno.writeTextFile(script, completionScript("zsh"));
  const parse = await run("zsh", ["-n", script], b.env);
  assertEquals([parse.code, parse.err], [0, ""]);
  // compsys stand-ins: print what _describe and _files would be given.
  const body = 'compdef() { :; }; _describe() { print -rl -- "${(@P)${@[-1]}}"; }; ' +
    '_files() { print -r -- "(files)"; }; compset() { :; }; source "$1"; ' +
    'words=(vif "${@[2,-1]}"); CURRENT=${#words}; PREFIX=${words[-1]}; _vif';
  const offer = async (...words: string[]) => {
    const r = await run("zsh", ["-f", "-c", body, "zsh", script, ...words], b.env);
    assertEquals([r.code, r.err], [0, ""], words.join(" "));
    return r.out.split("\n").filter((l) => l !== "");
  };
  const con = await offer("con");
  assert(con.some((l) => l.startsWith("connect:connect this machine")), con.join("\n"));
  assertEquals(await offer("list", "-o", ""), ["text", "json", "yaml"]);
  assertEquals(await offer("connect", "--kubeconfig", "/tm"), ["(files)"]);
});

Deno.test({
  name: `the fish script parses, and fish completes with it${
    HAS_FISH ? "" : " (skipped: no fish)"
  }`,
  ignore: !HAS_FISH,
}, async () => {
  const b = await bin();
  const script = `${b.dir}/vif.fish`;
  await Deno.writeTextFile(script, completionScript("fish"));
  const parse = await run("fish", ["--no-execute", script], b.env);
  assertEquals([parse.code, parse.err], [0, ""]);
  const offer = async (line: string) => {
    const r = await run("fish", [
      "--no-config",
      "-c",
      `source $argv[1]; complete -C $argv[2]`,
      script,
      line,
    ], b.env);
    assertEquals([r.code, r.err], [0, ""], line);
    return r.out.split("\n").filter((l) => l !== "").sort();
  };
  assertEquals(await offer("vif inte"), [
    "intercept\tsend the cluster's connections to a workload's port to this machine",
  ]);
  assertEquals(await offer("vif list -o "), ["json", "text", "yaml"]);
  assertEquals(await offer("vif list --output=j"), ["--output=json"]);
  await Deno.writeTextFile(`${b.dir}/home/fish-file`, "");
  assertEquals(await offer(`vif connect --kubeconfig ${b.dir}/home/fish-f`), [
    `${b.dir}/home/fish-file`,
  ]);
});

Deno.test("completion test files are removed", async () => {
  await removeBin();
});

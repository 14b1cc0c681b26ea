/**
 * The config file through the CLI: `vif config view` shows which of a flag,
 * the context's section, the top level and vif's default each setting comes
 * from; the context is `--context` or the kubeconfig's current one; a wrong
 * file stops `config view`, `connect` and `list` with its line and a hint.
 */

import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import { withCluster } from "../../tests/_apiserver.ts";
import { configLocation, parseConfig } from "./config.ts";
import { main, memoryIo } from "./mod.ts";

/** Line numbers matter: the tests below name them. */
const CONFIG = `# every context
managerNamespace: vif-mgr
grace: 45
alsoProxy: [198.18.200.0/24]
neverProxy: [198.18.6.0/24]
contexts:
  dev:
    grace: 60
    neverProxy:
      - 198.18.7.0/24
    namespace: shop
`;

/** Two contexts on one cluster that no test reaches: loading a kubeconfig opens no connection. */
function kubeconfig(current: string): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://198.18.0.1:6443
users:
- name: u
  user:
    token: t
contexts:
- name: dev
  context: {cluster: c, user: u, namespace: dev-ns}
- name: prod
  context: {cluster: c, user: u, namespace: prod-ns}
current-context: ${current}
`;
}

interface Fixture {
  dir: string;
  /** `$XDG_CONFIG_HOME/vif/config.yaml`. */
  config: string;
  env: Record<string, string>;
}

/** A temporary XDG_CONFIG_HOME with `config` in it (none when undefined) and a kubeconfig. */
async function withFixture(
  config: string | undefined,
  fn: (f: Fixture) => Promise<void>,
  current = "dev",
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vif-config-" });
  try {
    await Deno.mkdir(`${dir}/xdg/vif`, { recursive: true });
    await Deno.mkdir(`${dir}/state`);
    const path = `${dir}/xdg/vif/config.yaml`;
    if (config !== undefined) await Deno.writeTextFile(path, config);
    await Deno.writeTextFile(`${dir}/kubeconfig`, kubeconfig(current));
    await fn({
      dir,
      config: path,
      env: {
        XDG_CONFIG_HOME: `${dir}/xdg`,
        KUBECONFIG: `${dir}/kubeconfig`,
        VIF_STATE_DIR: `${dir}/state`,
      },
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function vif(args: string[], env: Record<string, string>) {
  const io = memoryIo(env);
  const code = await main(args, { io });
  return { code, out: io.out, err: io.err };
}

/** `vif config view -o json`, parsed. */
async function view(args: string[], env: Record<string, string>) {
  const r = await vif(["config", "view", "-o", "json", ...args], env);
  assertEquals([r.code, r.err], [0, ""]);
  return JSON.parse(r.out);
}

Deno.test("vif config view -o json names each setting's source: the file's section and line, or vif's default", async () => {
  await withFixture(CONFIG, async ({ config, env }) => {
    const file = (line: number, section: string) => ({ from: "file", file: config, line, section });
    assertEquals(await view(["--context", "dev"], env), {
      file: { path: config, found: true, via: "default" },
      context: { name: "dev", from: "flag" },
      settings: {
        managerNamespace: { value: "vif-mgr", ...file(2, "top level") },
        namespace: { value: "shop", ...file(11, "contexts.dev") },
        alsoProxy: { value: ["198.18.200.0/24"], ...file(4, "top level") },
        neverProxy: { value: ["198.18.7.0/24"], ...file(9, "contexts.dev") },
        allowConflictingSubnets: { value: [], from: "default" },
        dnsInclude: { value: [], from: "default" },
        dnsExclude: { value: [], from: "default" },
        grace: { value: 60, ...file(8, "contexts.dev") },
      },
    });
  });
});

Deno.test("vif config view: a flag beats the context's section, which beats the top level, which beats vif's default", async () => {
  await withFixture(CONFIG, async ({ config, env }) => {
    const pick = (doc: { settings: Record<string, { value: unknown; from: string }> }) =>
      Object.fromEntries(
        ["grace", "neverProxy", "managerNamespace"].map((k) => [
          k,
          [doc.settings[k]!.value, doc.settings[k]!.from],
        ]),
      );
    // The section of dev beats the top level.
    assertEquals(pick(await view(["--context", "dev"], env)), {
      grace: [60, "file"],
      neverProxy: [["198.18.7.0/24"], "file"],
      managerNamespace: ["vif-mgr", "file"],
    });
    // A flag beats the section; a list flag replaces the file's list whole.
    const flags = await view([
      "--context",
      "dev",
      "--grace",
      "5",
      "--never-proxy",
      "198.18.9.0/24",
      "--never-proxy",
      "198.18.10.0/24",
      "--manager-namespace",
      "other",
    ], env);
    assertEquals(pick(flags), {
      grace: [5, "flag"],
      neverProxy: [["198.18.9.0/24", "198.18.10.0/24"], "flag"],
      managerNamespace: ["other", "flag"],
    });
    assertEquals(flags.settings.neverProxy.flag, "--never-proxy");
    // Without a section, the top level.
    const prod = await view(["--context", "prod"], env);
    assertEquals(pick(prod), {
      grace: [45, "file"],
      neverProxy: [["198.18.6.0/24"], "file"],
      managerNamespace: ["vif-mgr", "file"],
    });
    assertEquals([prod.settings.grace.line, prod.settings.grace.section], [3, "top level"]);
    // No file: vif's defaults.
    await Deno.remove(config);
    assertEquals(pick(await view(["--context", "dev"], env)), {
      grace: [30, "default"],
      neverProxy: [[], "default"],
      managerNamespace: ["vif-system", "default"],
    });
  });
});

Deno.test("vif config view: the section is the --context one, else the kubeconfig's current context's", async () => {
  await withFixture(CONFIG, async ({ env }) => {
    const current = await view([], env);
    assertEquals(current.context, { name: "dev", from: "kubeconfig" });
    assertEquals([current.settings.grace.value, current.settings.namespace.value], [60, "shop"]);
    const flagged = await view(["--context", "prod"], env);
    assertEquals(flagged.context, { name: "prod", from: "flag" });
    // No namespace in the file for prod: the kubeconfig context's, as kubectl.
    assertEquals(flagged.settings.namespace, {
      value: "prod-ns",
      from: "kubeconfig",
      context: "prod",
    });
    assertEquals(flagged.settings.grace.value, 45);
  });
  await withFixture(CONFIG, async ({ env }) => {
    const prod = await view([], env);
    assertEquals(prod.context, { name: "prod", from: "kubeconfig" });
    assertEquals(prod.settings.grace.value, 45);
    const dev = await view(["--context", "dev"], env);
    assertEquals(dev.settings.grace.value, 60);
  }, "prod");
});

Deno.test("vif config view prints a table of settings, values and sources", async () => {
  await withFixture(CONFIG, async ({ config, env }) => {
    const r = await vif(["config", "view", "--dns-include", "corp.example"], env);
    assertEquals([r.code, r.err], [0, ""]);
    assertEquals(r.out.split("\n"), [
      `Config file:  ${config}`,
      "Context:      dev (the kubeconfig's current context)",
      "",
      "SETTING                  VALUE            FROM",
      `managerNamespace         vif-mgr          ${config}:2 (top level)`,
      `namespace                shop             ${config}:11 (contexts.dev)`,
      `alsoProxy                198.18.200.0/24  ${config}:4 (top level)`,
      `neverProxy               198.18.7.0/24    ${config}:9 (contexts.dev)`,
      "allowConflictingSubnets  none             vif's default",
      "dnsInclude               corp.example     --dns-include",
      "dnsExclude               none             vif's default",
      `grace                    60               ${config}:8 (contexts.dev)`,
      "",
    ]);
  });
});

Deno.test("vif config view -o yaml, and --config and VIF_CONFIG naming another file", async () => {
  await withFixture(CONFIG, async ({ dir, env }) => {
    await Deno.writeTextFile(`${dir}/other.yaml`, "grace: 7\n");
    await Deno.writeTextFile(`${dir}/third.yaml`, "grace: 8\n");
    const yaml = await vif(["config", "view", "-o", "yaml", "--config", `${dir}/other.yaml`], env);
    assertEquals(yaml.code, 0, yaml.err);
    assert(yaml.out.includes("\n  grace:\n    value: 7\n    from: file\n"), yaml.out);
    const named = await view([], { ...env, VIF_CONFIG: `${dir}/third.yaml` });
    assertEquals([named.file.via, named.settings.grace.value], ["VIF_CONFIG", 8]);
    // --config beats VIF_CONFIG.
    const both = await view(["--config", `${dir}/other.yaml`], {
      ...env,
      VIF_CONFIG: `${dir}/third.yaml`,
    });
    assertEquals([both.file.via, both.settings.grace.value], ["--config", 7]);
  });
});

/** The two lines `vif config view` prints for a file holding `text`. */
async function refusal(text: string): Promise<{ code: number; err: string; config: string }> {
  let result: { code: number; err: string; config: string } | undefined;
  await withFixture(text, async ({ config, env }) => {
    const r = await vif(["config", "view"], env);
    assertEquals(r.out, "");
    result = { code: r.code, err: r.err, config };
  });
  return result!;
}

Deno.test("a malformed config file is refused with its line: bad YAML", async () => {
  const { code, err, config } = await refusal(
    "grace: 30\nalsoProxy: [198.18.0.0/24\nnamespace: x\n",
  );
  assertEquals(code, 1);
  const [message, hint] = err.split("\n");
  assertMatch(message!, new RegExp(`^vif: config file "${config}", line 3: `));
  assertEquals(hint, 'Fix the YAML there; "vif config view" checks the file.');
});

Deno.test("a malformed config file is refused with its line: an unknown key, with the one meant", async () => {
  const { code, err, config } = await refusal(
    "grace: 30\ncontexts:\n  dev:\n    namespace: shop\n    never-proxy: [198.18.0.0/24]\n",
  );
  assertEquals([code, err], [
    1,
    `vif: config file "${config}", line 5: unknown key "never-proxy" in "contexts.dev"\n` +
    'Did you mean "neverProxy"? The keys are: managerNamespace, namespace, alsoProxy, ' +
    "neverProxy, allowConflictingSubnets, dnsInclude, dnsExclude, grace " +
    '(a context\'s section cannot hold "contexts").\n',
  ]);
});

Deno.test("a malformed config file is refused with its line: a bad CIDR, a bad namespace, a wrong type", async () => {
  const cidr = await refusal("alsoProxy:\n  - 198.18.0.0/24\n  - 198.18.300.0/24\n");
  assertEquals([cidr.code, cidr.err], [
    1,
    `vif: config file "${cidr.config}", line 3: alsoProxy: "198.18.300.0/24" is not a subnet\n` +
    'Give subnets as ADDRESS/PREFIX: "alsoProxy: [198.18.200.0/24]".\n',
  ]);
  const namespace = await refusal("contexts:\n  dev:\n    namespace: Shop_1\n");
  assertMatch(
    namespace.err,
    /line 3: namespace in "contexts\.dev": "Shop_1" is not a namespace\nA namespace is a DNS label/,
  );
  const type = await refusal("grace: 30\nneverProxy: 198.18.0.0/24\n");
  assertMatch(type.err, /line 2: "neverProxy" is not a list\nWrite it as "neverProxy: \[/);
  const grace = await refusal("grace: 0\n");
  assertMatch(grace.err, /line 1: grace: "0" is not a number of seconds from 1 to 3600\n/);
});

Deno.test("a config file with aliases, two documents, a terminal escape or over 1 MiB is refused", async () => {
  // Nested aliases multiply when walked ("billion laughs"): none is taken.
  const laughs = await refusal('a: &a ["x", "x"]\nb: &b [*a, *a]\nc: [*b, *b]\n');
  assertMatch(laughs.err, /line 2: aliases \(\*name\) are not allowed\n/);
  const two = await refusal("grace: 5\n---\ngrace: 6\n");
  assertMatch(two.err, /line 3: more than one YAML document\n/);
  const escape = await refusal('"\\e[2J": 1\n');
  assertMatch(escape.err, /line 1: unknown key "\\u001b\[2J"\n/);
  const big = await refusal(`# ${"x".repeat(1024 * 1024)}\n`);
  assertMatch(big.err, /^vif: cannot read the config file ".*": it is larger than 1 MiB\n/);
});

Deno.test("config files: a missing default is none, a missing named one is an error, a world-writable one is refused", async () => {
  await withFixture(undefined, async ({ dir, config, env }) => {
    const none = await view([], env);
    assertEquals(none.file, { path: config, found: false, via: "default" });
    const named = await vif(["config", "view"], { ...env, VIF_CONFIG: `${dir}/nope.yaml` });
    assertEquals(named.code, 1);
    assertMatch(
      named.err,
      /^vif: cannot read the config file ".*nope\.yaml": .*\nCheck the path in VIF_CONFIG\.\n$/,
    );
    await Deno.writeTextFile(config, "grace: 5\n");
    await Deno.chmod(config, 0o666);
    const open = await vif(["config", "view"], env);
    assertEquals([open.code, open.err], [
      1,
      `vif: cannot read the config file "${config}": anyone may write it\n` +
      `Run "chmod o-w ${config}", then check what it holds.\n`,
    ]);
  });
});

Deno.test("vif connect stops at a malformed config file, before any daemon starts", async () => {
  await withFixture(
    "contexts:\n  dev:\n    neverProxy: [198.18.0.0/33]\n",
    async ({ dir, config, env }) => {
      const r = await vif(["connect", "--context", "dev"], env);
      assertEquals([r.code, r.err.split("\n")[0]], [
        1,
        `vif: config file "${config}", line 3: neverProxy in "contexts.dev": "198.18.0.0/33" is not a subnet`,
      ]);
      assertEquals(await Array.fromAsync(Deno.readDir(`${dir}/state`)), []);
    },
  );
});

Deno.test("vif list takes the namespace from the config file's section for the context", async () => {
  await withCluster(async (cluster) => {
    await Deno.mkdir(`${cluster.dir}/xdg/vif`, { recursive: true });
    await Deno.writeTextFile(`${cluster.dir}/kubeconfig`, cluster.kubeconfig());
    const config = `${cluster.dir}/xdg/vif/config.yaml`;
    await Deno.writeTextFile(config, "namespace: top\ncontexts:\n  sim:\n    namespace: shop\n");
    const env = {
      KUBECONFIG: `${cluster.dir}/kubeconfig`,
      XDG_CONFIG_HOME: `${cluster.dir}/xdg`,
      VIF_STATE_DIR: `${cluster.dir}/state`,
    };
    const listed = await vif(["list", "-o", "json"], env);
    assertEquals(listed.code, 0, listed.err);
    assertEquals(JSON.parse(listed.out).namespace, "shop");
    // -n beats the file.
    const flagged = await vif(["list", "-o", "json", "-n", "other"], env);
    assertEquals(JSON.parse(flagged.out).namespace, "other");
    await Deno.writeTextFile(config, "namespace: [shop]\n");
    const bad = await vif(["list"], env);
    assertEquals(bad.code, 1);
    assertMatch(bad.err, /^vif: config file ".*", line 1: "namespace" is not text\n/);
  });
});

Deno.test("configLocation() prefers --config, then VIF_CONFIG, then an absolute XDG_CONFIG_HOME, then HOME", () => {
  const at = (vars: Record<string, string>, flag?: string) =>
    configLocation(flag, (name) => vars[name]);
  const all = { VIF_CONFIG: "/v.yaml", XDG_CONFIG_HOME: "/x", HOME: "/h" };
  assertEquals(at(all, "f.yaml"), { path: "f.yaml", via: "--config" });
  assertEquals(at(all), { path: "/v.yaml", via: "VIF_CONFIG" });
  assertEquals(at({ XDG_CONFIG_HOME: "/x/", HOME: "/h" }), {
    path: "/x/vif/config.yaml",
    via: "default",
  });
  // The XDG spec: a relative XDG_CONFIG_HOME is ignored.
  assertEquals(at({ XDG_CONFIG_HOME: "x", HOME: "/h" }), {
    path: "/h/.config/vif/config.yaml",
    via: "default",
  });
  assertEquals(at({}), undefined);
});

Deno.test("parseConfig() takes an empty file, empty sections and empty lists", () => {
  for (const text of ["", "# only a comment\n", "---\n"]) {
    const file = parseConfig(text, "c.yaml");
    assertEquals([file.defaults, file.contexts.size], [{ values: {}, lines: {} }, 0]);
  }
  const file = parseConfig("contexts:\n  dev:\n  prod:\n    alsoProxy: []\n", "c.yaml");
  assertEquals(file.contexts.get("dev"), { values: {}, lines: {} });
  assertEquals(file.contexts.get("prod"), { values: { alsoProxy: [] }, lines: { alsoProxy: 4 } });
  assert(!file.contexts.has("__proto__"));
});

/**
 * The credentials helper's runner, with a shell script standing in for
 * `vif kube-credentials`: who it runs as, what environment it gets, and the
 * bounds on what it says and how long it takes.
 */

import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../../tests/_assert.ts";
import type { ConnectParams } from "./control.ts";
import { CredentialsError, credentialsHelper, parseResolved } from "./credentials.ts";

const PARAMS: ConnectParams = {
  managerNamespace: "vif-system",
  namespace: "default",
  alsoProxy: [],
  neverProxy: [],
  allowConflicting: [],
  dnsInclude: [],
  dnsExclude: [],
  graceSeconds: 30,
  kubeconfig: "/home/u/kc",
  kubeconfigEnv: "/home/u/a:/home/u/b",
  home: "/home/u",
  path: "/usr/bin:/bin",
};

/** A script that answers as the helper would, from what it was given. */
async function fakeHelper(body: string): Promise<{ dir: string; argv: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "vif-creds-" });
  await Deno.chmod(dir, 0o755);
  const script = `${dir}/helper.sh`;
  await Deno.writeTextFile(script, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return { dir, argv: ["/bin/sh", script] };
}

Deno.test(
  "credentialsHelper() runs the helper as the user, with only their HOME, KUBECONFIG and PATH",
  {
    ignore: Deno.uid() !== 0,
  },
  async () => {
    const { dir, argv } = await fakeHelper(
      `printf '{"context":"%s","access":{"server":"https://198.18.0.1:6443","headers":{"Authorization":"Bearer t"}}}' ` +
        `"$(id -u):$(id -g)|$*|$HOME|$KUBECONFIG|$PATH|$SECRET|$DENO_DIR|$(pwd)"`,
    );
    try {
      Deno.env.set("SECRET", "root's");
      const resolve = credentialsHelper({
        self: { argv, env: { DENO_DIR: "/cache" } },
        user: { uid: 65534, gid: 65534 },
      });
      const got = await resolve(PARAMS, "dev");
      assertEquals(
        got.context,
        "65534:65534|kube-credentials --kubeconfig /home/u/kc --context dev|/home/u|/home/u/a:/home/u/b|/usr/bin:/bin|||/",
      );
      assertEquals(got.access, {
        server: "https://198.18.0.1:6443",
        headers: { Authorization: "Bearer t" },
      });
      // As root when the daemon serves root.
      const asRoot = credentialsHelper({
        self: { argv, env: { DENO_DIR: "/cache" } },
        user: { uid: 0, gid: 0 },
      });
      assertMatch(
        (await asRoot({ ...PARAMS, path: undefined })).context,
        /^0:0\|.*\|\/usr\/local\/bin:\/usr\/bin:\/bin\|\|\/cache\|\/$/,
      );
    } finally {
      Deno.env.delete("SECRET");
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("credentialsHelper() passes on the helper's two lines as message and hint", async () => {
  const { dir, argv } = await fakeHelper(
    `echo 'vif: cannot get credentials for context "dev": exec plugin failed' >&2\n` +
      `echo 'Check the kubeconfig'"'"'s user, or log in again.' >&2\nexit 1`,
  );
  try {
    const e = await assertRejects(
      () => credentialsHelper({ self: { argv, env: {} } })(PARAMS),
      CredentialsError,
    ) as CredentialsError;
    assertEquals(e.message, 'cannot get credentials for context "dev": exec plugin failed');
    assertEquals(e.hint, "Check the kubeconfig's user, or log in again.");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("credentialsHelper() bounds the answer's size and the helper's time", async () => {
  const big = await fakeHelper(`head -c 3000000 /dev/zero; echo`);
  const slow = await fakeHelper(`exec sleep 30`);
  try {
    const tooBig = await assertRejects(
      () => credentialsHelper({ self: { argv: big.argv, env: {} }, maxBytes: 4096 })(PARAMS),
      CredentialsError,
    );
    assertMatch(tooBig.message, /gave no usable answer/);
    const started = performance.now();
    const late = await assertRejects(
      () => credentialsHelper({ self: { argv: slow.argv, env: {} }, timeoutMs: 300 })(PARAMS),
      CredentialsError,
    ) as CredentialsError;
    assert(performance.now() - started < 5000);
    assertMatch(late.message, /took longer than 0\.3 s/);
    assertMatch(late.hint, /must not wait for input/);
  } finally {
    await Deno.remove(big.dir, { recursive: true });
    await Deno.remove(slow.dir, { recursive: true });
  }
});

Deno.test("parseResolved() keeps the known fields and refuses wrong types", () => {
  const ok = parseResolved(JSON.stringify({
    context: "dev",
    access: {
      server: "https://198.18.0.1:6443",
      caPem: "CA",
      certPem: "C",
      keyPem: "K",
      serverName: "kubernetes",
      insecure: true,
      headers: { Authorization: "Bearer t" },
      extra: "dropped",
    },
  }));
  assertEquals(ok, {
    context: "dev",
    access: {
      server: "https://198.18.0.1:6443",
      caPem: "CA",
      certPem: "C",
      keyPem: "K",
      serverName: "kubernetes",
      insecure: true,
      headers: { Authorization: "Bearer t" },
    },
  });
  for (
    const bad of [
      { access: { server: "https://x" } },
      { context: "dev", access: { server: "file:///etc/shadow" } },
      { context: "dev", access: { server: "https://x", headers: { a: 1 } } },
      { context: "dev", access: { server: "https://x", caPem: 5 } },
    ]
  ) {
    assertThrows(() => parseResolved(JSON.stringify(bad)), TypeError);
  }
  assertThrows(() => parseResolved("not json"), SyntaxError);
});

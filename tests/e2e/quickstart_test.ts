/**
 * The README's quick start, run verbatim against the simulated cluster: the
 * commands are read from the README's "Quick start" block (comments taken
 * off) and run one after the other with no pause between them, as a new user
 * types them. The kubeconfig names the simulated cluster's admin context
 * `dev`, as the README's commands say; `vif` is on `PATH`.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, ROOT, run } from "./_env.ts";
import { debianKubectl } from "../sim/apiserver/_testing.ts";
import { Sim, SIM_CONTEXT } from "../sim/sim.ts";

/**
 * The commands of the README's Quick start block, comments taken off.
 *
 * @param readme the README's text
 * @returns one command per line of the block
 */
export function quickStartCommands(readme: string): string[] {
  const section = readme.split(/^## /m).find((s) => s.startsWith("Quick start\n"));
  const block = section && /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('The README has no "## Quick start" section with a ```sh block');
  return block.split("\n")
    .map((line) => line.replace(/\s+#.*$/, "").trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

Deno.test("quickStartCommands() reads the README's quick start", async () => {
  const commands = quickStartCommands(await Deno.readTextFile(`${ROOT}/README.md`));
  assertEquals(commands[0], "vif install --context dev");
  assert(commands.includes("vif connect --context dev"), commands.join("\n"));
  assertEquals(commands.at(-1), "vif quit");
});

Deno.test({
  name: "the README's quick start works as typed: install, connect at once, curl, status, quit",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const commands = quickStartCommands(await Deno.readTextFile(`${ROOT}/README.md`));
    const env = await new Env().init();
    const state = `${env.dir}/state`;
    env.killDaemonOnCleanup(state);
    try {
      const sim = await Sim.start(env, { samples: true });
      // The user's kubeconfig: the cluster's admin context, named as the README names it.
      const kubeconfig = `${env.dir}/kubeconfig-dev`;
      await Deno.copyFile(sim.kubeconfig, kubeconfig);
      const renamed = await run([
        await debianKubectl(),
        "config",
        "rename-context",
        SIM_CONTEXT,
        "dev",
        "--kubeconfig",
        kubeconfig,
      ]);
      assertEquals(renamed.code, 0, renamed.stderr);
      const bin = `${env.dir}/bin`;
      await Deno.mkdir(bin);
      await Deno.writeTextFile(
        `${bin}/vif`,
        `#!/bin/sh\nexec '${DENO}' run -A --config '${ROOT}/deno.json' '${ROOT}/main.ts' "$@"\n`,
        { mode: 0o755 },
      );
      const environment = {
        KUBECONFIG: kubeconfig,
        VIF_STATE_DIR: state,
        PATH: `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
      };
      const outputs: string[] = [];
      for (const command of commands) {
        const r = await sim.exec(["sh", "-c", command], { env: environment });
        outputs.push(`$ ${command}\n${r.stdout}${r.stderr}`);
        assertEquals(r.code, 0, outputs.join(""));
        // Install returns once the manager is ready, so connect can follow at once.
        if (command.startsWith("vif install")) assertMatch(r.stderr, /^ {2}rolling out 1\/1$/m);
        if (command.startsWith("curl ")) assertMatch(r.stdout, /^pod web-\S+ 198\.18\./);
        if (command === "vif status") assertMatch(r.stdout, /^Connected:\s+yes/m);
      }
      assert(
        (await run(["ip", "link", "show", "vif0"], { ns: sim.ws })).code !== 0,
        "vif quit left the TUN device",
      );
    } finally {
      await env.cleanup();
    }
  },
});

/**
 * `deno task bench --quick` runs in CI: every path is set up, measured and
 * taken down, and the JSON report has every figure the README and the issue
 * name. The figures are printed, never judged here: the machines are noisy
 * (DESIGN.md §8); `deno task bench` is where they are compared.
 */

import { assert, assertEquals } from "./_assert.ts";
import { DENO, ROOT } from "./e2e/_env.ts";

Deno.test({
  name: "deno task bench --quick measures every path and writes the report",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vif-bench-" });
    try {
      const out = await new Deno.Command(DENO, {
        args: [
          "run",
          "-A",
          "--config",
          `${ROOT}/deno.json`,
          `${ROOT}/scripts/bench.ts`,
          "--quick",
          "--json",
          `${dir}/bench.json`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      const stderr = new TextDecoder().decode(out.stderr);
      console.log(stdout);
      assertEquals(out.code, 0, stderr);
      const report = JSON.parse(await Deno.readTextFile(`${dir}/bench.json`));
      for (const path of ["direct", "vif-direct", "vif", "openvpn", "sshuttle"]) {
        const p = report.paths[path];
        for (
          const key of [
            "tcp1_mbps",
            "tcp8_mbps",
            "http_rps",
            "http_p50_ms",
            "http_p99_ms",
            "conn_rps",
          ]
        ) {
          assert(key in p, `${path}.${key} missing`);
        }
        assert(p.error === undefined, `${path} was not measured: ${p.error}\n${stderr}`);
        assert(p.tcp1_mbps > 0 && p.http_rps > 0, `${path}: ${JSON.stringify(p)}`);
      }
      for (
        const key of ["dns_cached_p50_ms", "dns_qps", "rss_mb_1000_conns", "max_conns", "connect_s"]
      ) {
        assert(typeof report.vif[key] === "number", `vif.${key}: ${report.vif[key]}`);
      }
      assert(typeof report.ratios.vif.tcp1_mbps.openvpn === "number");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

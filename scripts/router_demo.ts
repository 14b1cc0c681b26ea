/**
 * `deno task demo-router`: the router alone (issue 2), shown working on real namespaces.
 *
 * ```
 *  netns vif-demo-ws                                  netns vif-demo-srv
 *  curl, ping, socat                                  lo 198.18.1.2: nginx :80, socat UDP echo :7
 *    │ route 198.18.0.0/16 dev vif0
 *  vif0 (TUN) ── router ── dialer ── unix socket ───► dial server (dials from this namespace)
 * ```
 *
 * The two namespaces share no link: every byte goes TUN → router → Unix
 * socket → dial server. Everything is removed at the end, even on failure.
 *
 * @module
 */

import { DENO, Env, must, ROOT, run } from "../tests/e2e/_env.ts";

const SERVER = "198.18.1.2";

function say(line: string): void {
  console.log(`\x1b[1m${line}\x1b[0m`);
}

async function show(cmd: string[], ns: string, stdin?: string): Promise<void> {
  console.log(`  $ ${cmd.join(" ")}`);
  const out = await run(cmd, { ns, ...(stdin !== undefined ? { stdin } : {}) });
  for (const l of (out.stdout + out.stderr).trimEnd().split("\n")) console.log(`    ${l}`);
}

async function main(): Promise<number> {
  if (Deno.uid() !== 0) {
    console.error("vif demo: network namespaces need root");
    console.error("Run it as root: sudo scripts/demo.sh");
    return 1;
  }
  const env = await new Env().init();
  try {
    say("1. Two network namespaces with no link between them");
    const ws = await env.netns("vif-demo-ws");
    const srv = await env.netns("vif-demo-srv");
    await must(["ip", "addr", "add", `${SERVER}/32`, "dev", "lo"], { ns: srv });
    await Deno.mkdir(`${env.dir}/www`);
    await Deno.writeTextFile(`${env.dir}/www/index.html`, "hello from the server namespace\n");
    await Deno.writeTextFile(
      `${env.dir}/nginx.conf`,
      `user root; worker_processes 1; daemon off; pid ${env.dir}/nginx.pid; error_log ${env.dir}/err.log;
events {} http { access_log off; client_body_temp_path ${env.dir}/b; proxy_temp_path ${env.dir}/p;
fastcgi_temp_path ${env.dir}/f; uwsgi_temp_path ${env.dir}/u; scgi_temp_path ${env.dir}/s;
server { listen ${SERVER}:80; root ${env.dir}/www; } }`,
    );
    env.spawn(["nginx", "-c", `${env.dir}/nginx.conf`, "-e", `${env.dir}/err.log`], { ns: srv });
    env.spawn(["socat", "UDP4-RECVFROM:7,bind=" + SERVER + ",fork", "PIPE"], { ns: srv });
    const sock = `${env.dir}/dial.sock`;
    await env.spawn([DENO, "run", "-A", `${ROOT}/tests/e2e/_dial_server.ts`, sock], { ns: srv })
      .waitFor(/ready/);

    say("2. The router: a TUN in the workstation namespace, 198.18.0.0/16 routed into it");
    const router = env.spawn(
      [DENO, "run", "-A", `${ROOT}/tests/e2e/_router_proc.ts`, sock, "198.18.0.0/16"],
      { ns: ws },
    );
    const dev = (await router.waitFor(/^ready /)).split(" ")[1]!;
    await show(["ip", "-br", "addr", "show", dev], ws);
    await show(["ip", "route", "show", "dev", dev], ws);

    say("3. Real clients in the workstation namespace reach the server namespace");
    await show(["curl", "-sS", "--retry", "3", "--retry-connrefused", `http://${SERVER}/`], ws);
    await show(["socat", "-t", "2", "-", `UDP4:${SERVER}:7`], ws, "a UDP datagram, echoed\n");
    await show(["ping", "-c", "1", "-W", "2", SERVER], ws);
    await show(["curl", "-sS", `http://${SERVER}:81/`], ws);

    say("4. The router's counters");
    await router.stop();
    const stats = router.lines.find((l) => l.startsWith("{"));
    if (stats) {
      const s = JSON.parse(stats).router;
      console.log(
        `  packets in ${s.packetsIn}, out ${s.packetsOut}; TCP connections ${s.tcpTotal}, ` +
          `refused dials ${s.dialFailures.refused}; UDP flows ${s.udpFlowsTotal}; pings ${s.pings}`,
      );
    }
    say("5. Cleaning up: namespaces, processes, files");
    return 0;
  } finally {
    await env.cleanup();
  }
}

if (import.meta.main) Deno.exit(await main());

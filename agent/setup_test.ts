import { assert, assertEquals, assertThrows } from "../tests/_assert.ts";
import { encodeAgentConfig } from "../mod/kube/agent_config.ts";
import { agentSetup, AgentSetupError } from "./setup.ts";

const CONFIG = encodeAgentConfig({
  version: 1,
  manager: {
    host: "traffic-manager.vif-system",
    port: 8083,
    serverName: "traffic-manager.vif-system",
    caPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
  },
  workload: { kind: "Deployment", name: "web" },
  container: "web",
  ports: [{ name: "http", containerPort: 80, agentPort: 9900, takeover: "name" }],
  mounts: [],
});

const ENV = {
  VIF_AGENT_CONFIG: CONFIG,
  VIF_POD_NAME: "web-5d8f7c9b6-x2x7q",
  VIF_POD_NAMESPACE: "shop",
  VIF_POD_IP: "198.18.64.7",
  VIF_APP_DATABASE_URL: "postgres://db:5432/shop",
  VIF_APP_LOG_LEVEL: "debug",
  PATH: "/usr/bin",
};

const RESOLV = "search shop.svc.cluster.local svc.cluster.local cluster.local\n" +
  "nameserver 198.18.128.10\nnameserver not-an-ip\noptions ndots:5\n";

Deno.test("agentSetup() reads the configuration, the pod, the app's environment and the resolver", () => {
  const setup = agentSetup(ENV, RESOLV);
  assertEquals(setup.pod, { name: "web-5d8f7c9b6-x2x7q", namespace: "shop", ip: "198.18.64.7" });
  assertEquals(setup.environment, {
    DATABASE_URL: "postgres://db:5432/shop",
    LOG_LEVEL: "debug",
  });
  assertEquals(setup.search, ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
  assertEquals(setup.nameservers, ["198.18.128.10"]);
  assertEquals(setup.config.ports[0]?.agentPort, 9900);
});

Deno.test("agentSetup() takes an IPv6 pod and a pod with no resolv.conf", () => {
  const setup = agentSetup({ ...ENV, VIF_POD_IP: "2001:2::7" }, "");
  assertEquals(setup.pod.ip, "2001:2::7");
  assertEquals(setup.search, []);
  assertEquals(setup.nameservers, []);
});

/** Each case: the variables changed, and what the message must say. */
const BAD: [Record<string, string | undefined>, string][] = [
  [{ VIF_AGENT_CONFIG: undefined }, "VIF_AGENT_CONFIG is not set"],
  [{ VIF_AGENT_CONFIG: " " }, "VIF_AGENT_CONFIG is not set"],
  [{ VIF_AGENT_CONFIG: "{" }, "VIF_AGENT_CONFIG: the configuration is not JSON"],
  [
    { VIF_AGENT_CONFIG: CONFIG.replace('"port":8083', '"port":0') },
    "VIF_AGENT_CONFIG: manager.port is not a port number",
  ],
  [{ VIF_POD_NAME: undefined }, "VIF_POD_NAME is not set"],
  [{ VIF_POD_NAME: "Web_1" }, 'VIF_POD_NAME "Web_1" is not a pod name'],
  [{ VIF_POD_NAMESPACE: "" }, "VIF_POD_NAMESPACE is not set"],
  [{ VIF_POD_NAMESPACE: "a.b" }, 'VIF_POD_NAMESPACE "a.b" is not a namespace'],
  [{ VIF_POD_IP: undefined }, "VIF_POD_IP is not set"],
  [{ VIF_POD_IP: "198.18.64.256" }, 'VIF_POD_IP "198.18.64.256" is not an IP address'],
  [{ VIF_POD_IP: "web" }, 'VIF_POD_IP "web" is not an IP address'],
];

Deno.test("agentSetup() refuses a bad variable, naming it, with what to do", () => {
  for (const [change, expected] of BAD) {
    const env: Record<string, string> = { ...ENV };
    for (const [name, value] of Object.entries(change)) {
      if (value === undefined) delete env[name];
      else env[name] = value;
    }
    const error = assertThrows(() => agentSetup(env, RESOLV), AgentSetupError);
    assert(error.message.includes(expected), `${JSON.stringify(change)}: ${error.message}`);
    assert(error.hint.includes("vif intercept"), error.hint);
    assert(!error.message.includes("\n") && !error.hint.includes("\n"), "one line each");
  }
});

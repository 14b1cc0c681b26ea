import { assert, assertEquals, assertThrows } from "../../tests/_assert.ts";
import {
  type AgentConfig,
  AgentConfigError,
  appEnvironment,
  encodeAgentConfig,
  MAX_AGENT_MOUNTS,
  MAX_AGENT_PORTS,
  parseAgentConfig,
} from "./agent_config.ts";

const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

function good(): AgentConfig {
  return {
    version: 1,
    manager: {
      host: "traffic-manager.vif-system",
      port: 8083,
      serverName: "traffic-manager.vif-system",
      caPem: CA,
    },
    workload: { kind: "Deployment", name: "web" },
    container: "web",
    ports: [
      { name: "http", containerPort: 80, agentPort: 9900, takeover: "name" },
      { containerPort: 8080, agentPort: 9901, takeover: "redirect" },
    ],
    mounts: [{ name: "config", mountPath: "/etc/web", readOnly: true }],
  };
}

/** Sets `path` (dotted, with numeric list indexes) of a fresh good configuration to `value`. */
function withField(path: string, value: unknown): string {
  const config = good() as unknown as Record<string, unknown>;
  const parts = path.split(".");
  let at: Record<string, unknown> = config;
  for (const part of parts.slice(0, -1)) at = at[part] as Record<string, unknown>;
  const last = parts[parts.length - 1]!;
  if (value === undefined) delete at[last];
  else at[last] = value;
  return JSON.stringify(config);
}

Deno.test("parseAgentConfig() round-trips a good configuration", () => {
  const config = good();
  assertEquals(parseAgentConfig(encodeAgentConfig(config)), config);
});

Deno.test("parseAgentConfig() takes a manager host given as an IP address, and no mounts", () => {
  const text = withField("manager.host", "198.18.0.1");
  const parsed = parseAgentConfig(JSON.stringify({ ...JSON.parse(text), mounts: undefined }));
  assertEquals(parsed.manager.host, "198.18.0.1");
  assertEquals(parsed.mounts, []);
});

/** Each case: a field set to a bad value, and what the message must name. */
const BAD: [string, unknown, string][] = [
  ["version", 2, "version 2 is not 1"],
  ["version", "1", "version 1 is not 1"],
  ["manager", "x", "manager is not an object"],
  ["manager", null, "manager is not an object"],
  ["manager.host", "", "manager.host is not a non-empty string"],
  ["manager.host", "Traffic_Manager", 'manager.host "Traffic_Manager"'],
  ["manager.host", "a b", 'manager.host "a b"'],
  ["manager.port", 0, "manager.port is not a port number"],
  ["manager.port", 65536, "manager.port is not a port number"],
  ["manager.port", 80.5, "manager.port is not a port number"],
  ["manager.port", "8083", "manager.port is not a port number"],
  ["manager.serverName", "198.18.0.1:1", "manager.serverName"],
  ["manager.serverName", 7, "manager.serverName is not a non-empty string"],
  ["manager.caPem", "not a pem", "manager.caPem holds no PEM certificate"],
  ["workload", [], "workload is not an object"],
  ["workload.kind", "DaemonSet", 'workload.kind "DaemonSet"'],
  ["workload.name", "Web", 'workload.name "Web"'],
  ["workload.name", "a".repeat(254), "workload.name"],
  ["container", "web.app", 'container "web.app"'],
  ["container", "x".repeat(64), "container"],
  ["ports", [], "ports is not a non-empty list"],
  ["ports", {}, "ports is not a non-empty list"],
  ["ports.0", "80", "ports[0] is not an object"],
  ["ports.0.containerPort", -1, "ports[0].containerPort is not a port number"],
  ["ports.0.containerPort", null, "ports[0].containerPort is not a port number"],
  ["ports.1.agentPort", 1e9, "ports[1].agentPort is not a port number"],
  ["ports.1.agentPort", 9900, "ports[1]: port 9900 appears twice"],
  ["ports.1.containerPort", 9900, "ports[1]: port 9900 appears twice"],
  ["ports.0.takeover", "steal", 'ports[0].takeover "steal"'],
  ["ports.0.takeover", undefined, "ports[0].takeover is not a non-empty string"],
  ["ports.0.name", undefined, "ports[0] is taken by name but has none"],
  ["ports.0.name", "HTTP", 'ports[0].name "HTTP" is not a port name'],
  ["ports.0.name", "1234", 'ports[0].name "1234" is not a port name'],
  ["ports.0.name", "a-very-long-port-name", "ports[0].name"],
  ["mounts", "x", "mounts is not a list"],
  ["mounts.0", 1, "mounts[0] is not an object"],
  ["mounts.0.name", "Config", 'mounts[0].name "Config"'],
  ["mounts.0.mountPath", "etc/web", 'mounts[0].mountPath "etc/web"'],
  ["mounts.0.mountPath", "/etc/../root", "mounts[0].mountPath"],
  ["mounts.0.mountPath", "/etc/./web", "mounts[0].mountPath"],
  ["mounts.0.mountPath", "/etc/web\n", "mounts[0].mountPath"],
  ["mounts.0.mountPath", "/" + "a".repeat(1024), "mounts[0].mountPath"],
  ["mounts.0.readOnly", "true", "mounts[0].readOnly is not true or false"],
];

Deno.test("parseAgentConfig() refuses each bad field, naming it", () => {
  for (const [path, value, expected] of BAD) {
    const error = assertThrows(() => parseAgentConfig(withField(path, value)), AgentConfigError);
    assert(
      error.message.includes(expected),
      `${path} = ${JSON.stringify(value)}: "${error.message}" does not say "${expected}"`,
    );
  }
});

Deno.test("parseAgentConfig() refuses what is not a configuration at all", () => {
  const cases: [string, string][] = [
    ["", "not JSON"],
    ["{", "not JSON"],
    ["null", "the configuration is not an object"],
    ["[]", "the configuration is not an object"],
    ['"x"', "the configuration is not an object"],
    [" ".repeat(256 * 1024 + 1), "over 262144 characters"],
  ];
  for (const [text, expected] of cases) {
    const error = assertThrows(() => parseAgentConfig(text), AgentConfigError);
    assert(
      error.message.includes(expected),
      `${JSON.stringify(text.slice(0, 10))}: ${error.message}`,
    );
  }
});

Deno.test("parseAgentConfig() bounds the ports and mounts", () => {
  const config = good();
  config.ports = Array.from({ length: MAX_AGENT_PORTS + 1 }, (_, i) => ({
    containerPort: 1000 + i,
    agentPort: 20000 + i,
    takeover: "redirect" as const,
  }));
  assertThrows(() => parseAgentConfig(encodeAgentConfig(config)), AgentConfigError, "over 64");
  const mounts = good();
  mounts.mounts = Array.from({ length: MAX_AGENT_MOUNTS + 1 }, (_, i) => ({
    name: `v${i}`,
    mountPath: `/m/${i}`,
    readOnly: false,
  }));
  assertThrows(() => parseAgentConfig(encodeAgentConfig(mounts)), AgentConfigError, "over 64");
});

Deno.test("parseAgentConfig() refuses random mutations of a good configuration without throwing anything else", () => {
  // A seeded walk: every mutation either parses or fails with AgentConfigError.
  let seed = 0x5eed;
  const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const values = [null, 0, -1, 1.5, "", "x", "/", [], {}, true, 65535, "A".repeat(300)];
  const paths = [
    "version",
    "manager.host",
    "manager.port",
    "manager.serverName",
    "manager.caPem",
    "workload.kind",
    "workload.name",
    "container",
    "ports.0.name",
    "ports.0.containerPort",
    "ports.1.agentPort",
    "ports.1.takeover",
    "mounts.0.name",
    "mounts.0.mountPath",
    "mounts.0.readOnly",
  ];
  let refused = 0;
  for (let i = 0; i < 2000; i++) {
    const path = paths[Math.floor(next() * paths.length)]!;
    const value = values[Math.floor(next() * values.length)];
    try {
      parseAgentConfig(withField(path, value));
    } catch (error) {
      assert(error instanceof AgentConfigError, `${path} = ${JSON.stringify(value)}: ${error}`);
      refused++;
    }
  }
  assert(refused > 1500, `only ${refused} of 2000 mutations refused`);
});

Deno.test("appEnvironment() keeps the app's variables, the prefix taken off", () => {
  assertEquals(
    appEnvironment({
      VIF_APP_DB: "postgres://db",
      VIF_APP_: "x",
      VIF_POD_IP: "198.18.0.1",
      PATH: "/bin",
    }),
    { DB: "postgres://db" },
  );
});

import { loadAllYaml } from "@kubernetes/client-node";
import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import { managerManifests } from "./manifests.ts";
import { createManagerTls } from "./x509.ts";
import { toYaml, toYamlStream } from "./yaml.ts";

const json = (value: unknown) => JSON.parse(JSON.stringify(value));

Deno.test("toYaml() quotes every string a YAML parser could read as something else", () => {
  const table: [string, string][] = [
    ["traffic-manager", "traffic-manager"],
    ["kubernetes.io/tls", "kubernetes.io/tls"],
    ["/var/run/secrets/vif/tls", "/var/run/secrets/vif/tls"],
    ["0.1.0", '"0.1.0"'],
    ["8081", '"8081"'],
    ["1e3", '"1e3"'],
    ["yes", '"yes"'],
    ["Off", '"Off"'],
    ["null", '"null"'],
    ["~", '"~"'],
    ["", '""'],
    ["--serve", '"--serve"'],
    ["a: b", '"a: b"'],
    ["#x", '"#x"'],
    ["LS0t+/A=", '"LS0t+/A="'],
    ["line\nbreak", '"line\\nbreak"'],
    ["100m", '"100m"'],
  ];
  for (const [value, expected] of table) assertEquals(toYaml({ k: value }), `k: ${expected}\n`);
});

Deno.test("toYaml() writes numbers, booleans, null, empty and nested collections", () => {
  assertEquals(
    toYaml({
      num: 8081,
      t: true,
      z: null,
      e: {},
      l: [],
      u: undefined,
      nested: [[1, 2], { a: [] }],
    }),
    "num: 8081\nt: true\nz: null\ne: {}\nl: []\nnested:\n- - 1\n  - 2\n- a: []\n",
  );
  assertEquals(
    toYaml({ containers: [{ name: "x", ports: [{ port: 1 }] }] }),
    "containers:\n- name: x\n  ports:\n  - port: 1\n",
  );
  assertEquals(toYaml("scalar"), "scalar\n");
  assertThrows(() => toYaml({ bad: Infinity }), TypeError);
  assertThrows(() => toYaml({ bad: () => 1 }), TypeError);
});

Deno.test("toYamlStream() of the manifests reads back equal with js-yaml (client-node's loadAllYaml)", async () => {
  const objects = managerManifests({ tls: await createManagerTls("vif-system") });
  const text = toYamlStream(objects);
  assertEquals(text.split("\n---\n").length, objects.length);
  const back = loadAllYaml(text);
  assertEquals(json(back), json(objects));
});

async function hasKubectl(): Promise<boolean> {
  try {
    const output = await new Deno.Command("kubectl", {
      args: ["version", "--client"],
      stdout: "null",
      stderr: "null",
    }).output();
    return output.success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "toYamlStream() of the manifests is read by kubectl (kustomize) as the same objects",
  ignore: !await hasKubectl(),
  async fn() {
    const objects = managerManifests({ tls: await createManagerTls("vif-system") });
    const dir = await Deno.makeTempDir({ prefix: "vif-yaml-" });
    try {
      await Deno.writeTextFile(`${dir}/vif.yaml`, toYamlStream(objects));
      await Deno.writeTextFile(`${dir}/kustomization.yaml`, "resources:\n- vif.yaml\n");
      // kustomize parses with the Go YAML library, as kubectl apply does, and needs no server.
      const output = await new Deno.Command("kubectl", {
        args: ["kustomize", dir],
        stdin: "null",
        env: { KUBECONFIG: `${dir}/none` },
      }).output();
      const decoder = new TextDecoder();
      assertEquals(decoder.decode(output.stderr), "");
      const back = loadAllYaml(decoder.decode(output.stdout));
      const key = (o: { kind: string; metadata: { name: string } }) =>
        `${o.kind}/${o.metadata.name}`;
      const sorted = (list: { kind: string; metadata: { name: string } }[]) =>
        json(list).sort((a: never, b: never) => key(a).localeCompare(key(b)));
      assertEquals(sorted(back), sorted(objects));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

import { assertEquals } from "../../tests/_assert.ts";
import { isDnsName, isNamespaceName } from "./dns_name.ts";

Deno.test("isDnsName() takes hostname-shaped names and nothing that could break a resolv.conf line", () => {
  const cases: [string, boolean][] = [
    ["cluster.local", true],
    ["cluster.local.", true],
    ["svc", true],
    ["_http._tcp.web", true],
    ["a-b.c-d", true],
    ["x".repeat(63) + ".local", true],
    [("a".repeat(63) + ".").repeat(3) + "a".repeat(61), true], // 253 characters
    ["", false],
    [".", false],
    ["..", false],
    ["a..b", false],
    ["-a.b", false],
    ["a-.b", false],
    ["x".repeat(64) + ".local", false],
    [("a".repeat(63) + ".").repeat(3) + "a".repeat(62), false], // 254 characters
    ["cluster.local\nnameserver 203.0.113.1", false],
    ["cluster.local nameserver", false],
    ["cluster.local#x", false],
    ["clüster.local", false],
    ["a/b", false],
  ];
  for (const [name, ok] of cases) assertEquals(isDnsName(name), ok, JSON.stringify(name));
});

Deno.test("isNamespaceName() takes RFC 1123 labels only", () => {
  const cases: [string, boolean][] = [
    ["default", true],
    ["kube-system", true],
    ["a", true],
    ["0ops", true],
    ["x".repeat(63), true],
    ["x".repeat(64), false],
    ["Shop", false],
    ["a.b", false],
    ["-a", false],
    ["a-", false],
    ["a_b", false],
    ["", false],
    ["default\noptions ndots:15", false],
  ];
  for (const [name, ok] of cases) assertEquals(isNamespaceName(name), ok, JSON.stringify(name));
});

/** Unit tests of label and field selectors, the Table printer's durations and the TLS front's rewrite. */

import { assertEquals, assertThrows } from "../../_assert.ts";
import { ApiError } from "./status.ts";
import {
  labelSelectorText,
  matchFields,
  matchLabels,
  parseFieldSelector,
  parseLabelSelector,
} from "./selectors.ts";
import { humanDuration } from "./_table.ts";
import { rewriteUpgradeHead } from "./_tls_front.ts";
import { choosePortForwardProtocol, parsePorts } from "./portforward.ts";

Deno.test("parseLabelSelector() and matchLabels() follow the labels package", () => {
  const labels = { app: "web", env: "prod", tier: "" };
  const cases: [string, boolean][] = [
    ["", true],
    ["app=web", true],
    ["app==web", true],
    ["app!=web", false],
    ["app=web,env=dev", false],
    ["env in (dev,prod)", true],
    ["env notin (dev,prod)", false],
    ["missing notin (a)", true],
    ["app", true],
    ["!app", false],
    ["!missing", true],
    ["tier=", true],
    ["app=web, env in (prod)", true],
  ];
  for (const [text, want] of cases) {
    assertEquals(matchLabels(parseLabelSelector(text), labels), want, text);
  }
  assertThrows(() => parseLabelSelector("app=we b"), ApiError, "unable to parse requirement");
  assertThrows(() => parseLabelSelector("-bad=1"), ApiError, "invalid label key");
});

Deno.test("parseFieldSelector() accepts the resource's field labels only", () => {
  const pod = { metadata: { name: "web", namespace: "shop" }, status: { phase: "Running" } };
  const reqs = parseFieldSelector("metadata.name=web,status.phase!=Failed", ["status.phase"]);
  assertEquals(matchFields(reqs, pod), true);
  assertEquals(matchFields(parseFieldSelector("metadata.namespace==other", []), pod), false);
  assertThrows(
    () => parseFieldSelector("spec.nodeName=x", []),
    ApiError,
    "field label not supported: spec.nodeName",
  );
});

Deno.test("labelSelectorText() renders a metav1.LabelSelector", () => {
  assertEquals(
    labelSelectorText({
      matchLabels: { app: "web" },
      matchExpressions: [
        { key: "env", operator: "In", values: ["a", "b"] },
        { key: "x", operator: "Exists" },
        { key: "y", operator: "DoesNotExist" },
      ],
    }),
    "app=web,env in (a,b),x,!y",
  );
});

Deno.test("humanDuration() prints AGE as kubectl shows it", () => {
  const s = 1000, m = 60 * s, h = 60 * m, d = 24 * h;
  const cases: [number, string][] = [
    [-5 * s, "<invalid>"],
    [-1 * s, "0s"],
    [0, "0s"],
    [119 * s, "119s"],
    [2 * m, "2m"],
    [3 * m + 20 * s, "3m20s"],
    [45 * m, "45m"],
    [5 * h + 30 * m, "5h30m"],
    [30 * h, "30h"],
    [3 * d + 4 * h, "3d4h"],
    [100 * d, "100d"],
    [3 * 365 * d + 10 * d, "3y10d"],
    [9 * 365 * d, "9y"],
  ];
  for (const [ms, want] of cases) assertEquals(humanDuration(ms), want, String(ms));
});

Deno.test("rewriteUpgradeHead() mends upgrade requests only", () => {
  const spdy =
    "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n";
  assertEquals(
    rewriteUpgradeHead(spdy),
    "POST /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n",
  );
  assertEquals(
    rewriteUpgradeHead(
      "GET /x HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v5.channel.k8s.io,v4.channel.k8s.io\r\n\r\n",
    ),
    "GET /x HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v5.channel.k8s.io, v4.channel.k8s.io\r\n\r\n",
  );
  const post = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
  assertEquals(rewriteUpgradeHead(post), post);
});

Deno.test("choosePortForwardProtocol() picks the client's first served protocol", () => {
  assertEquals(
    choosePortForwardProtocol("v5.channel.k8s.io, v4.channel.k8s.io, channel.k8s.io"),
    "v4.channel.k8s.io",
  );
  assertEquals(
    choosePortForwardProtocol("v4.base64.channel.k8s.io,v4.channel.k8s.io"),
    "v4.base64.channel.k8s.io",
  );
  assertEquals(choosePortForwardProtocol(null), "");
  assertEquals(choosePortForwardProtocol("channel.k8s.io"), undefined);
  assertEquals(parsePorts(["80", "443,8080"]), [80, 443, 8080]);
  assertThrows(() => parsePorts([]), RangeError, `query parameter "ports" is required`);
  assertThrows(() => parsePorts(["0"]), RangeError, "must be > 0");
  assertThrows(() => parsePorts(["x"]), RangeError, "unable to parse");
});

import { X509Certificate } from "node:crypto";
import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import { MAX_BUNDLE_CERTIFICATES, readCaBundle } from "./ca_bundle.ts";
import { createManagerTls } from "./x509.ts";

Deno.test("readCaBundle() keeps the certificates and nothing else", async () => {
  const { caPem } = await createManagerTls("vif-system");
  const kept = readCaBundle(`# the manager's CA\n${caPem}\nsome text\n${caPem}`);
  assertEquals(kept, caPem + caPem);
  assertEquals(new X509Certificate(kept).ca, true);
});

Deno.test("readCaBundle() refuses a bundle with a block that is not a certificate, naming it", async () => {
  const { caPem } = await createManagerTls("vif-system");
  const cut = caPem.replace(/\n[A-Za-z0-9+/]{10}/, "\n");
  assertThrows(
    () => readCaBundle(cut + caPem),
    SyntaxError,
    "its certificate 1 of 2 does not parse",
  );
  assertThrows(
    () => readCaBundle("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
    SyntaxError,
    "its certificate 1 of 1 does not parse",
  );
  assertThrows(() => readCaBundle("hello"), SyntaxError, "it holds no PEM certificate");
  assertThrows(
    () => readCaBundle(caPem.repeat(MAX_BUNDLE_CERTIFICATES + 1)),
    SyntaxError,
    `more than ${MAX_BUNDLE_CERTIFICATES}`,
  );
});

import { X509Certificate } from "node:crypto";
import { assertEquals, assertMatch } from "../../tests/_assert.ts";
import { pem } from "./pem.ts";
import { createCertificateAuthority } from "./x509.ts";

Deno.test("pem() wraps base64 at 64 characters and ends with a newline", () => {
  const text = pem("CERTIFICATE", new Uint8Array(100));
  const lines = text.split("\n");
  assertEquals(lines[0], "-----BEGIN CERTIFICATE-----");
  assertEquals(lines.slice(1, -2).map((line) => line.length), [64, 64, 8]);
  assertEquals(lines.at(-2), "-----END CERTIFICATE-----");
  assertEquals(lines.at(-1), "");
});

Deno.test("pem() of nothing is the two armour lines", () => {
  assertEquals(pem("X", new Uint8Array(0)), "-----BEGIN X-----\n-----END X-----\n");
});

Deno.test("pem() wraps a certificate as node:crypto reads it back", async () => {
  const ca = await createCertificateAuthority("pem CA");
  const text = pem("CERTIFICATE", ca.certDer);
  assertEquals(text, ca.certPem);
  assertEquals(new Uint8Array(new X509Certificate(text).raw), ca.certDer);
  assertMatch(
    text,
    /^(?:-----BEGIN CERTIFICATE-----\n)(?:[A-Za-z0-9+/=]{1,64}\n)+-----END CERTIFICATE-----\n$/,
  );
});

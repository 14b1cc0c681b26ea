import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/_assert.ts";
import { makeTestTls } from "../../tests/_tls.ts";
import { SetupError } from "./serve.ts";
import { checkTls, readTlsDir } from "./tls.ts";

Deno.test("readTlsDir() reads a kubernetes.io/tls-shaped directory and checkTls() accepts it", async () => {
  const tls = await makeTestTls({ namespace: "shop-system" });
  try {
    const material = await readTlsDir(tls.dir);
    assertEquals(material, { certPem: tls.certPem, keyPem: tls.keyPem, caPem: tls.caPem });
    const check = checkTls(material, "traffic-manager.shop-system");
    assertEquals(check.dnsNames, [
      "traffic-manager.shop-system",
      "traffic-manager.shop-system.svc",
    ]);
    assertEquals(check.warnings, []);
    assert(check.validTo.getTime() > Date.now());
  } finally {
    await tls.cleanup();
  }
});

Deno.test("checkTls() warns about a certificate for another name and refuses an expired one", async () => {
  const tls = await makeTestTls({ namespace: "shop-system", days: 1 });
  try {
    const material = { certPem: tls.certPem, keyPem: tls.keyPem, caPem: tls.caPem };
    assertEquals(checkTls(material, "traffic-manager.vif-system").warnings, [
      'the TLS certificate names "traffic-manager.shop-system", "traffic-manager.shop-system.svc", ' +
      'not "traffic-manager.vif-system": clients will refuse it',
    ]);
    const later = new Date(Date.now() + 3 * 86_400_000);
    const error = assertThrows(
      () => checkTls(material, "traffic-manager.shop-system", later),
      SetupError,
    );
    assertMatch(error.message, /^The TLS certificate expired on \d{4}-/);
    const garbage = assertThrows(
      () => checkTls({ ...material, keyPem: "not a key" }, "traffic-manager.shop-system"),
      SetupError,
    );
    assertEquals(garbage.message, "The TLS key (tls.key) is not a PEM private key");
  } finally {
    await tls.cleanup();
  }
});

import { assertEquals, assertRejects } from "../tests/_assert.ts";
import { TokenFile } from "./token.ts";

Deno.test("TokenFile reads the token again when the kubelet swaps the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-agent-token-" });
  try {
    // The kubelet's atomic writer: a ..data symlink to a timestamped directory, swapped whole.
    await Deno.mkdir(`${dir}/..2026_01`);
    await Deno.writeTextFile(`${dir}/..2026_01/token`, "first.jwt.token\n");
    await Deno.symlink("..2026_01", `${dir}/..data`);
    await Deno.symlink("..data/token", `${dir}/token`);
    const token = new TokenFile(`${dir}/token`);
    assertEquals(await token.token(), "first.jwt.token");
    assertEquals(await token.token(), "first.jwt.token");

    await Deno.mkdir(`${dir}/..2026_02`);
    await Deno.writeTextFile(`${dir}/..2026_02/token`, "second.jwt.token");
    await Deno.symlink("..2026_02", `${dir}/..data_tmp`);
    await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
    await Deno.remove(`${dir}/..2026_01`, { recursive: true });
    assertEquals(await token.token(), "second.jwt.token");

    // Garbage, or the file gone for a moment: the last good token is kept.
    await Deno.writeTextFile(`${dir}/..2026_02/token`, "two words");
    assertEquals(await token.token(), "second.jwt.token");
    await Deno.remove(`${dir}/token`);
    assertEquals(await token.token(), "second.jwt.token");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("TokenFile fails with the path when there never was a token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-agent-token-" });
  try {
    await assertRejects(() => new TokenFile(`${dir}/token`).token(), Error, `${dir}/token`);
    await Deno.writeTextFile(`${dir}/token`, "bad\u0001token");
    await assertRejects(() => new TokenFile(`${dir}/token`).token(), Error, "is not a token");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

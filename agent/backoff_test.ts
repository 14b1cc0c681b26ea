import { assert, assertEquals } from "../tests/_assert.ts";
import { backoffDelay } from "./backoff.ts";

Deno.test("backoffDelay() doubles from the first wait up to the bound", () => {
  const backoff = { minMs: 500, maxMs: 15_000 };
  const top = () => 0.999_999;
  assertEquals(
    [0, 1, 2, 3, 4, 5, 6, 100].map((n) => backoffDelay(n, backoff, top)),
    [500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000],
  );
});

Deno.test("backoffDelay() draws each wait from the upper half of its step", () => {
  const backoff = { minMs: 1000, maxMs: 8000 };
  assertEquals(backoffDelay(0, backoff, () => 0), 500);
  assertEquals(backoffDelay(3, backoff, () => 0), 4000);
  assertEquals(backoffDelay(3, backoff, () => 0.5), 6000);
  // Whatever the random source gives, the wait stays within the bound.
  for (const r of [-1, 2, NaN]) {
    const wait = backoffDelay(3, backoff, () => r);
    assert(wait >= 4000 && wait <= 8000, `${r}: ${wait}`);
  }
});

import { assertEquals } from "../../tests/_assert.ts";
import { trimHeap } from "./mod.ts";

Deno.test({
  name: "trimHeap gives the memory glibc holds free back to the system",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const c = Deno.dlopen("libc.so.6", {
      malloc: { parameters: ["usize"], result: "pointer" },
      memset: { parameters: ["pointer", "i32", "usize"], result: "pointer" },
      free: { parameters: ["pointer"], result: "void" },
    });
    try {
      // 64 MiB in 64 KiB blocks (below the mmap threshold: they come from the heap), touched, freed.
      const blocks = Array.from({ length: 1024 }, () => {
        const p = c.symbols.malloc(64n * 1024n);
        c.symbols.memset(p, 1, 64n * 1024n);
        return p;
      });
      for (const p of blocks.reverse()) c.symbols.free(p);
      assertEquals(await trimHeap(), true);
    } finally {
      c.close();
    }
  },
});

/**
 * The fuzzer's watchdog (a worker, see `_fuzz.ts`): when the same input keeps
 * the fuzzing thread busy past the limit, prints the target, where the input
 * came from and the input as hex, then kills the process, so that a hang in
 * CI ends with the input that caused it.
 *
 * @module
 */

interface Setup {
  name: string;
  limitMs: number;
  /** [busy, sequence number of the input, input length]. */
  state: Int32Array;
  input: Uint8Array;
  where: Uint8Array;
}

globalThis.addEventListener("message", (event) => {
  const { name, limitMs, state, input, where } = (event as MessageEvent<Setup>).data;
  let seen = -1;
  let since = 0;
  const timer = setInterval(() => {
    const busy = Atomics.load(state, 0) === 1;
    const sequence = Atomics.load(state, 1);
    if (!busy || sequence !== seen) {
      seen = sequence;
      since = Date.now();
      return;
    }
    if (Date.now() - since < limitMs) return;
    clearInterval(timer);
    const length = Atomics.load(state, 2);
    const bytes = input.slice(0, Math.min(length, input.length));
    const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")
      .replace(/(.{64})/g, "$1\n");
    const origin = new TextDecoder().decode(where).replace(/\0+$/, "");
    // deno-lint-ignore no-console
    console.error(
      `fuzz ${name}: one input kept the thread busy for over ${limitMs} ms (a hang) at ${origin}; ` +
        `the input (${length} bytes${length > bytes.length ? ", cut" : ""}), ` +
        `keep it as tests/fuzz/corpus/${name}/<what-it-found>.hex:\n# found: a hang\n${hex}`,
    );
    Deno.kill(Deno.pid, "SIGKILL");
  }, 250);
});

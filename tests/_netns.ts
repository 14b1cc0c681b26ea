/**
 * Network namespaces for tests: made with a random name, always removed.
 *
 * Rules every namespace test keeps (DESIGN.md §7): only 198.18.0.0/15, class E
 * (240.0.0.0/4), IPv6 benchmarking (2001:2::/48) and loopback addresses; only
 * inside namespaces the test made; no uplink, no route out of the machine;
 * the root namespace is never touched.
 *
 * @module
 */

/**
 * Whether this process may make network namespaces (root, with `ip`).
 *
 * @returns `true` when `withNetns` can work here
 */
export function canMakeNetns(): boolean {
  if (Deno.uid() !== 0) return false;
  try {
    return new Deno.Command("ip", { args: ["netns", "list"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/**
 * Runs `fn` with a new network namespace (loopback up) and deletes the
 * namespace afterwards, whatever `fn` did.
 *
 * @param prefix the name's start; must begin with `vif-`
 * @param fn the test body, given the namespace's name
 * @returns what `fn` returned
 * @throws {RangeError} when `prefix` does not start with `vif-`
 * @throws {Error} when the namespace cannot be made
 */
export async function withNetns<T>(prefix: string, fn: (name: string) => Promise<T>): Promise<T> {
  if (!prefix.startsWith("vif-")) {
    throw new RangeError(`Cannot make namespace "${prefix}…": the name must start with "vif-"`);
  }
  const suffix = Array.from(
    crypto.getRandomValues(new Uint8Array(4)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
  const name = `${prefix}-${suffix}`;
  await ip(["netns", "add", name]);
  try {
    await ip(["-n", name, "link", "set", "lo", "up"]);
    return await fn(name);
  } finally {
    await ip(["netns", "del", name]).catch(() => {});
  }
}

async function ip(args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    const detail = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`Cannot run "ip ${args.join(" ")}": ${detail}`);
  }
}

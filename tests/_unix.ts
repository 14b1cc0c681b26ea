/**
 * Test helper: a Unix socket file with nobody listening, as a daemon killed
 * with -9 leaves behind (Deno removes its own socket files on close, so a
 * short-lived python3 binds and exits instead).
 *
 * @module
 */

/**
 * Leaves a socket file at `path` that refuses connections.
 *
 * @param path where
 * @throws {Error} when python3 cannot bind it
 */
export async function staleSocket(path: string): Promise<void> {
  const bound = await new Deno.Command("python3", {
    args: ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path],
  }).output();
  if (!bound.success) {
    throw new Error(`cannot bind ${path}: ${new TextDecoder().decode(bound.stderr)}`);
  }
}

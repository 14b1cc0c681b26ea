/**
 * The agent's projected service-account token, as every call to the manager
 * presents it (`authorization: Bearer …`). The kubelet rotates the file (at
 * 80 % of its life, by swapping a symlink), so the token is read again
 * whenever the file changed; between changes the last one read is used.
 *
 * @module
 */

/** The longest token accepted, in characters (a JWT is about 1 KiB). */
export const MAX_TOKEN_LENGTH = 16 * 1024;

/** What a token may hold: it goes into an HTTP/2 header. */
const TOKEN = /^[\x21-\x7e]+$/;

/** The token file, read again when it changes. */
export class TokenFile {
  #path: string;
  #token: string | undefined;
  /** What identified the file when it was last read: inode, size and mtime. */
  #stamp = "";

  /** @param path the token file (`AGENT_TOKEN_DIR/token`) */
  constructor(path: string) {
    this.#path = path;
  }

  /** The file's path. */
  get path(): string {
    return this.#path;
  }

  /**
   * The current token: read again when the file changed since the last read.
   *
   * @returns the token
   * @throws {Error} when the file cannot be read or holds no token, and no
   *   token was read before
   */
  async token(): Promise<string> {
    let stamp: string;
    try {
      const info = await Deno.stat(this.#path);
      stamp = `${info.ino}:${info.size}:${info.mtime?.getTime()}`;
    } catch (cause) {
      if (this.#token !== undefined) return this.#token; // A rotation under way.
      throw new Error(`Cannot read the agent's token "${this.#path}": ${message(cause)}`, {
        cause,
      });
    }
    if (stamp === this.#stamp && this.#token !== undefined) return this.#token;
    let text: string;
    try {
      text = await Deno.readTextFile(this.#path);
    } catch (cause) {
      if (this.#token !== undefined) return this.#token;
      throw new Error(`Cannot read the agent's token "${this.#path}": ${message(cause)}`, {
        cause,
      });
    }
    const token = text.trim();
    if (token.length > MAX_TOKEN_LENGTH || !TOKEN.test(token)) {
      if (this.#token !== undefined) return this.#token;
      throw new Error(`The agent's token "${this.#path}" is not a token`);
    }
    this.#token = token;
    this.#stamp = stamp;
    return token;
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

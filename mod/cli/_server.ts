/**
 * What the commands that run as servers (`vif --serve`, `vif agent`) share:
 * waiting for the signal that stops them, and turning a library's message
 * into the CLI's sentence case.
 *
 * @module
 */

/**
 * Resolves with the name of the first of `signals` the process receives,
 * and stops listening for all of them.
 *
 * @param signals the signals to wait for
 * @returns the signal that came
 */
export function untilSignal(signals: Deno.Signal[]): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    const handlers = signals.map((signal) => {
      const handler = () => {
        for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
        resolve(signal);
      };
      Deno.addSignalListener(signal, handler);
      return [signal, handler] as const;
    });
  });
}

/**
 * "Cannot listen …" → "cannot listen …", as the CLI's messages start;
 * "TLS file …" (an acronym) stays.
 *
 * @param text a message
 * @returns it with a lower-case first word
 *
 * @example
 * ```ts
 * import { lowerFirst } from "./_server.ts";
 *
 * if (lowerFirst("Cannot listen") !== "cannot listen") throw new Error("lowerFirst");
 * if (lowerFirst("TLS file") !== "TLS file") throw new Error("lowerFirst");
 * ```
 */
export function lowerFirst(text: string): string {
  return /^[A-Z][a-z]/.test(text) ? text[0]!.toLowerCase() + text.slice(1) : text;
}

/**
 * The agent's log sink: one line per event, each starting with `agent: `.
 * The command line prints `info` and `warn` lines, and `debug` lines with
 * `--debug`.
 *
 * @module
 */

/** Where the agent's log lines go. */
export type AgentLog = (level: "debug" | "info" | "warn", line: string) => void;

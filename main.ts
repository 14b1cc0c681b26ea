/**
 * The `vif` executable: parses the command line and hands off to
 * {@linkcode main}. Nothing else lives here; see `mod/cli/`.
 *
 * @module
 */

import { main } from "./mod/cli/mod.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));

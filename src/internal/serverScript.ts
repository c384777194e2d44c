/**
 * Where the in-sandbox server's source lives. The path is the same from `src/internal/` and from the
 * built `dist/internal/`, both two levels below the package root.
 */
import { fileURLToPath } from "node:url"

export const serverScriptPath: string = fileURLToPath(new URL("../../rpc-server/server.py", import.meta.url))

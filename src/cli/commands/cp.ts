/** `hf-sandbox cp SRC DEST`: files and directory trees between this machine and a sandbox (see ../cp.ts). */

import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Option from "effect/Option"
import { action, isLocalId } from "../action.js"
import { copy } from "../cp.js"
import { globals } from "../options.js"
import * as Parse from "../parse.js"

export const cp = Command.make(
  "cp",
  {
    ...globals,
    source: Args.text({ name: "SRC" }).pipe(Args.withDescription("A local path, or ID:PATH in a sandbox.")),
    destination: Args.text({ name: "DEST" }).pipe(Args.withDescription("A local path, or ID:PATH in a sandbox.")),
    links: Options.choice("links", ["skip", "refuse", "keep"]).pipe(
      Options.optional,
      Options.withDescription(
        "Symlinks in a directory copy that are absolute or lead out of the tree: skip them (default from a sandbox), refuse the copy, or keep them (default to a sandbox)."
      )
    ),
    preserveModes: Options.boolean("preserve-modes").pipe(
      Options.withDescription(
        "From a sandbox: keep setuid, setgid, sticky and the exact permission bits (by default they are dropped and your umask applies)."
      )
    )
  },
  action(
    (a, mode) =>
      copy(Parse.copyTarget(a.source), Parse.copyTarget(a.destination), mode, {
        links: Option.getOrUndefined(a.links),
        preserveModes: a.preserveModes
      }),
    {
      impliesLocal: (a) =>
        [a.source, a.destination].some((raw) => {
          const target = Parse.copyTarget(raw)
          return target._tag === "Remote" && isLocalId(target.id)
        })
    }
  )
).pipe(
  Command.withDescription(
    "Copy files or directories between this machine and a sandbox, docker-style: cp ./data ID:/work, cp ID:/work/out ./out."
  )
)

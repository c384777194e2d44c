/**
 * The code blocks of README.md, rpc-server/README.md and docs/**\/*.md, for test/docs.test.ts (which
 * checks them) and test/docsRun.test.ts (which runs the complete programs and test files among them).
 * The conventions of the blocks are described in test/docs.test.ts.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const root = fileURLToPath(new URL("../..", import.meta.url))
export const rel = (file: string) => path.relative(root, file)

export interface Block {
  /** The Markdown file, relative to the root. */
  readonly file: string
  /** 1-based line of the block's first line of code. */
  readonly line: number
  readonly lang: string
  readonly flags: ReadonlyArray<string>
  readonly code: string
}

export const markdownFiles = (): Array<string> => {
  const walk = (dir: string): Array<string> =>
    fs
      .readdirSync(dir, { withFileTypes: true })
      .flatMap((entry) =>
        entry.isDirectory()
          ? walk(path.join(dir, entry.name))
          : entry.name.endsWith(".md")
            ? [path.join(dir, entry.name)]
            : []
      )
  return [path.join(root, "README.md"), path.join(root, "rpc-server", "README.md"), ...walk(path.join(root, "docs"))]
}

/** The fenced code blocks of a Markdown file (fences may be indented, e.g. in a list item). */
export const blocksOf = (file: string): Array<Block> => {
  const lines = fs.readFileSync(file, "utf8").split("\n")
  const blocks: Array<Block> = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})(.*)$/.exec(lines[i]!)
    if (!open) continue
    const [, indent, fence, info] = open as unknown as [string, string, string, string]
    const end = lines.findIndex((l, j) => j > i && l.trim() === fence)
    if (end < 0) throw new Error(`${rel(file)}:${i + 1}: unclosed code block`)
    const [lang = "", ...flags] = info.trim().split(/\s+/)
    const previous = lines
      .slice(0, i)
      .reverse()
      .find((l) => l.trim() !== "")
    blocks.push({
      file: rel(file),
      line: i + 2,
      lang,
      // A generated API page's signatures are declarations, not programs.
      flags: previous?.trim() === "**Signature**" ? [...flags, "skip"] : flags,
      code: lines
        .slice(i + 1, end)
        .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
        .join("\n")
    })
    i = end
  }
  return blocks
}

export const blocks = markdownFiles().flatMap(blocksOf)
export const tsBlocks = blocks.filter((b) => (b.lang === "ts" || b.lang === "typescript") && !b.flags.includes("skip"))
export const where = (b: Block) => `${b.file}:${b.line}`
export const fileOf = (b: Block) => b.flags.find((f) => f.startsWith("file="))?.slice("file=".length)

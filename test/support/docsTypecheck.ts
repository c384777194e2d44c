/**
 * The type-check of the docs' ts blocks (test/docs.test.ts describes their conventions), run by
 * docs.test.ts as a child process: `node <this file bundled> ` prints one JSON line, `{ errors, exports }`:
 * every diagnostic of a block (named by its Markdown file and line), and the exports of each public
 * module (src/*.ts), for the check of the API reference.
 *
 * A child, not the test's worker: the TypeScript compiler (~30 MiB of heap once loaded, hundreds of MiB
 * while it checks) would otherwise stay in the worker, which the test files share (`isolate: false`), and
 * make every later garbage collection of that worker dearer; the child's memory is gone when it exits.
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import type * as TypeScript from "typescript"
import { type Block, root, tsBlocks } from "./docBlocks.js"

// Required, not imported: Node's ESM loader would first scan all of typescript.js (CommonJS, ~9 MB) for
// its export names, ~0.9 s of CPU.
const ts: typeof TypeScript = createRequire(import.meta.url)("typescript")

const isPromise = (b: Block) => b.flags.includes("promise") || /from\s+["']hf-sandbox\/promise["']/.test(b.code)

// ---- the prelude ----------------------------------------------------------------------------------

const standardImports: ReadonlyArray<readonly [name: string, from: string]> = [
  ...[
    "Cause",
    "Chunk",
    "Config",
    "Console",
    "Context",
    "Data",
    "Deferred",
    "Duration",
    "Effect",
    "Either",
    "Exit",
    "Fiber",
    "Layer",
    "ManagedRuntime",
    "Option",
    "Queue",
    "Redacted",
    "Ref",
    "Schedule",
    "Schema",
    "Scope",
    "Stream"
  ].map((name) => [name, `effect/${name}`] as const),
  ["FileSystem", "@effect/platform/FileSystem"],
  ["HttpClient", "@effect/platform/HttpClient"],
  ["NodeContext", "@effect/platform-node/NodeContext"],
  ["NodeHttpClient", "@effect/platform-node/NodeHttpClient"],
  ["NodeRuntime", "@effect/platform-node/NodeRuntime"],
  ...["Files", "HfJobs", "LocalSandbox", "Protocol", "SandboxProvider", "Schedules", "Telemetry"].map(
    (name) => [name, `hf-sandbox/${name}`] as const
  ),
  ["Testing", "hf-sandbox/testing"]
]

const freeNames = {
  sb: (promise: boolean) =>
    `declare const sb: ${promise ? 'import("hf-sandbox/promise").Sandbox' : 'import("hf-sandbox/Sandbox").Sandbox'}`,
  Live: () =>
    'declare const Live: import("effect/Layer").Layer<import("hf-sandbox/SandboxProvider").SandboxProvider | ' +
    'import("@effect/platform/HttpClient").HttpClient | import("@effect/platform-node/NodeContext").NodeContext>',
  program: () =>
    'declare const program: import("effect/Effect").Effect<void, import("hf-sandbox/SandboxError").SandboxError, ' +
    'import("hf-sandbox/SandboxProvider").SandboxProvider | import("@effect/platform/HttpClient").HttpClient>'
}

/** Names a module block binds at its top level (imports and declarations). */
const boundNames = (code: string): Set<string> => {
  const names = new Set<string>()
  const source = ts.createSourceFile("block.ts", code, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS)
  const bind = (name: TypeScript.BindingName | undefined) => {
    if (name === undefined) return
    if (ts.isIdentifier(name)) names.add(name.text)
    else for (const element of name.elements) if (!ts.isOmittedExpression(element)) bind(element.name)
  }
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause
      if (clause?.name) names.add(clause.name.text)
      const bindings = clause?.namedBindings
      if (bindings && ts.isNamespaceImport(bindings)) names.add(bindings.name.text)
      if (bindings && ts.isNamedImports(bindings)) for (const e of bindings.elements) names.add(e.name.text)
    } else if (ts.isVariableStatement(statement)) {
      for (const declaration of statement.declarationList.declarations) bind(declaration.name)
    } else if (
      (ts.isFunctionDeclaration(statement) ||
        ts.isClassDeclaration(statement) ||
        ts.isInterfaceDeclaration(statement) ||
        ts.isTypeAliasDeclaration(statement) ||
        ts.isEnumDeclaration(statement) ||
        ts.isModuleDeclaration(statement) ||
        ts.isImportEqualsDeclaration(statement)) &&
      statement.name !== undefined &&
      ts.isIdentifier(statement.name)
    ) {
      names.add(statement.name.text)
    }
  }
  return names
}

interface Generated {
  readonly block: Block
  readonly path: string
  readonly text: string
  /** Lines before the block's first line. */
  readonly offset: number
}

const generate = (block: Block, index: number): Generated => {
  const gen = block.flags.includes("gen")
  const promise = isPromise(block)
  const bound = gen ? new Set<string>() : boundNames(block.code)
  const prelude: Array<string> = []
  for (const [name, from] of standardImports) {
    if (!bound.has(name)) prelude.push(`import * as ${name} from "${from}"`)
  }
  for (const name of ["Sandbox", "SandboxError"]) {
    if (bound.has(name)) continue
    prelude.push(
      promise ? `import { ${name} } from "hf-sandbox/promise"` : `import * as ${name} from "hf-sandbox/${name}"`
    )
  }
  for (const [name, declare] of Object.entries(freeNames)) {
    if (!bound.has(name)) prelude.push(declare(promise))
  }
  if (gen) prelude.push("export const block = Effect.gen(function* () {")
  const text = [...prelude, block.code, ...(gen ? ["})"] : []), "export {}", ""].join("\n")
  const name = `${block.file.replace(/[^\w]+/g, "_")}_${block.line}_${index}.ts`
  return { block, path: path.join(root, ".vitest", "docs", name), text, offset: prelude.length }
}

// ---- the checks ------------------------------------------------------------------------------------

const compilerOptions = (): TypeScript.CompilerOptions => {
  const parsed = ts.getParsedCommandLineOfConfigFile(
    path.join(root, "tsconfig.json"),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"))
      }
    }
  )
  if (parsed === undefined) throw new Error("cannot read tsconfig.json")
  return { ...parsed.options, noEmit: true, noUnusedLocals: false, noUnusedParameters: false }
}

/** One program over every block (in memory) and whatever they import; the API modules for the reference check. */
const check = () => {
  const generated = tsBlocks.map(generate)
  const byPath = new Map(generated.map((g) => [g.path, g]))
  const options = compilerOptions()
  // Parents are set by the binder anyway; JSDoc is parsed only where it can make a type error, as tsc does.
  const host = ts.createCompilerHost(options, false)
  host.jsDocParsingMode = ts.JSDocParsingMode.ParseForTypeErrors
  const { getSourceFile, fileExists, readFile } = host
  host.getSourceFile = (file, language, onError, create) => {
    const g = byPath.get(path.resolve(file))
    return g ? ts.createSourceFile(file, g.text, language) : getSourceFile.call(host, file, language, onError, create)
  }
  host.fileExists = (file) => byPath.has(path.resolve(file)) || fileExists.call(host, file)
  host.readFile = (file) => byPath.get(path.resolve(file))?.text ?? readFile.call(host, file)
  const program = ts.createProgram({ rootNames: [...byPath.keys(), ...apiModules()], options, host })
  const errors: Array<string> = []
  for (const diagnostic of program.getGlobalDiagnostics()) {
    errors.push(ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"))
  }
  for (const g of generated) {
    const source = program.getSourceFile(g.path)!
    const diagnostics = [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)]
    for (const diagnostic of diagnostics) {
      const at = diagnostic.start === undefined ? 0 : source.getLineAndCharacterOfPosition(diagnostic.start).line
      const line = g.block.line + Math.max(0, at - g.offset)
      const hint = g.block.file.startsWith("docs/api/")
        ? " (generated: fix the doc comment in src/, then npm run docs:api)"
        : ""
      errors.push(`${g.block.file}:${line}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n  ")}${hint}`)
    }
  }
  return { program, errors }
}

/** The public modules: src/*.ts (not internal/, not cli/). */
const apiModules = () =>
  fs
    .readdirSync(path.join(root, "src"))
    .filter((f) => f.endsWith(".ts"))
    .map((f) => path.join(root, "src", f))

/** The names each public module exports (types and values), by module name. */
const exportsOf = (program: TypeScript.Program): Record<string, Array<string>> => {
  const checker = program.getTypeChecker()
  const exports: Record<string, Array<string>> = {}
  for (const file of apiModules()) {
    const symbol = checker.getSymbolAtLocation(program.getSourceFile(file)!)
    exports[path.basename(file, ".ts")] =
      symbol === undefined ? [] : checker.getExportsOfModule(symbol).map((s) => s.name)
  }
  return exports
}

const { program, errors } = check()
process.stdout.write(`${JSON.stringify({ errors, exports: exportsOf(program) })}\n`)

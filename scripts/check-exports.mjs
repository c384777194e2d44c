// Checks the published shape of the package after `npm run build`: public modules import by their
// package name (deep imports included), carry type declarations, and `internal/` stays hidden.
import * as fs from "node:fs"

// Entry points of their own, kept out of the root barrel on purpose: `hf-sandbox/promise` is the API
// for programs that do not use Effect (and loads the Node platform layers when imported).
const standalone = ["promise"]

const pkg = JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8"))
const modules = fs
  .readdirSync(new URL("../src/", import.meta.url))
  .filter((f) => f.endsWith(".ts") && f !== "index.ts")
  .map((f) => f.slice(0, -3))

const failures = []
const root = await import(pkg.name)
for (const name of modules) {
  const mod = await import(`${pkg.name}/${name}`)
  if (Object.keys(mod).length === 0) failures.push(`${name}: no exports`)
  if (standalone.includes(name)) {
    if (name in root) failures.push(`${name}: a standalone entry point must stay out of the root barrel`)
  } else if (!(name in root)) failures.push(`${name}: missing from the root barrel`)
  if (!fs.existsSync(new URL(`../dist/${name}.d.ts`, import.meta.url))) failures.push(`${name}: no .d.ts`)
}
for (const name of standalone) {
  if (!modules.includes(name))
    failures.push(`${name}: listed as a standalone entry point but src/${name}.ts is missing`)
}
try {
  await import(`${pkg.name}/internal/wire/client`)
  failures.push("internal/wire/client is importable: internal modules must stay hidden")
} catch (error) {
  if (error.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") failures.push(`internal import failed oddly: ${error.code}`)
}
if (failures.length > 0) {
  console.error(`package exports check failed:\n  ${failures.join("\n  ")}`)
  process.exit(1)
}
console.log(
  `package exports ok: ${modules.length} public modules (standalone: ${standalone.join(", ")}), internal/ hidden`
)

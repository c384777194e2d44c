import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

// Tests import the library by its package name, exactly as users do; the alias maps it to src/.
const src = fileURLToPath(new URL("./src/", import.meta.url))

export default defineConfig({
  resolve: {
    alias: [
      { find: /^hf-sandbox$/, replacement: `${src}index.ts` },
      { find: /^hf-sandbox\/(.*)$/, replacement: `${src}$1.ts` }
    ]
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})

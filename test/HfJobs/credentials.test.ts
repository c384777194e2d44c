/**
 * HF credentials as `huggingface_hub` finds them, against the Hub emulator over loopback HTTP with real
 * token files in temporary HF_HOME directories: the discovery order (OIDC → HF_TOKEN →
 * HUGGING_FACE_HUB_TOKEN → token file), blank variables, `~`/`$VAR` expansion, the refresh of OAuth
 * tokens near expiry (atomic 0600 rewrite of both files), the Trusted Publishers exchange, the source a
 * 401 names, and malformed tokens failing at once. The environment is a `ConfigProvider`, never the
 * test runner's.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, layer } from "@effect/vitest"
import type * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import * as HfJobs from "hf-sandbox/HfJobs"
import * as Sandbox from "hf-sandbox/Sandbox"
import type * as SandboxProvider from "hf-sandbox/SandboxProvider"
import * as Testing from "hf-sandbox/testing"
import { fastSchedules } from "../support/hub.js"
import { pythonJson } from "../support/python.js"

const emulator = Testing.HubEmulatorService

/** Well-formed tokens the emulated Hub does not know. */
const WRONG = "hf_wrong_0000000000000000000000"
const OTHER = "hf_other_1111111111111111111111"

const tempHome = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "hf-creds-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** An HttpClient that reaches the emulator's Jobs proxy and tunnel hosts. */
const routed = (emu: Testing.HubEmulator) =>
  Layer.effect(HttpClient.HttpClient, Effect.map(HttpClient.HttpClient, Testing.routeHttpClient(emu))).pipe(
    Layer.provide(NodeHttpClient.layerUndici)
  )

/** Runs `effect` with `HfJobs.layerConfig()` and exactly `env` as the environment; collects every log line. */
const withEnv = <A, E>(
  env: Record<string, string>,
  effect: Effect.Effect<A, E, HfJobs.HfJobs | SandboxProvider.SandboxProvider>,
  logs: Array<string> = []
): Effect.Effect<A, E | ConfigError.ConfigError> =>
  effect.pipe(
    Effect.provide(HfJobs.layerConfig()),
    Effect.provide(NodeContext.layer),
    Effect.provide(
      Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ message }) => logs.push(String(message)))
      )
    ),
    Logger.withMinimumLogLevel(LogLevel.All),
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
  )

/** The bearer tokens the emulator received since `from`, in order. */
const bearersSince = (from: number) =>
  Effect.flatMap(emulator, (emu) =>
    Effect.map(emu.requests, (requests) =>
      requests.slice(from).flatMap((r) => (r.route === "oauth" ? ["<oauth>"] : [r.authorization ?? "<none>"]))
    )
  )

const requestCount = Effect.flatMap(emulator, (emu) => Effect.map(emu.requests, (r) => r.length))

/** The Hub call every case makes: whoami (the namespace) and a listing. */
const listing = HfJobs.list()

/**
 * Writes the two files `hf auth login` writes for an OAuth login named `name`, plus an unrelated classic
 * token. Mode 0644 (not `hf`'s 0600), so that a rewrite is seen to restrict them.
 */
const writeLogin = (dir: string, grant: Testing.OAuthGrant, expiresAt: number, name = "oauth-alice") => {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, "token"), Redacted.value(grant.accessToken), { mode: 0o644 })
  fs.writeFileSync(
    path.join(dir, "stored_tokens"),
    `[${name}]\nhf_token = ${Redacted.value(grant.accessToken)}\nrefresh_token = ${Redacted.value(grant.refreshToken)}\nexpires_at = ${expiresAt}\n\n[work]\nhf_token = ${OTHER}\n\n`,
    { mode: 0o644 }
  )
}

const readIni = (file: string) => {
  const sections: Record<string, Record<string, string>> = {}
  let current: Record<string, string> | undefined
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const header = /^\[(.+)\]$/.exec(line.trim())
    if (header) sections[header[1]!] = current = {}
    else if (current && line.includes("=")) {
      const at = line.indexOf("=")
      current[line.slice(0, at).trim()] = line.slice(at + 1).trim()
    }
  }
  return sections
}

const mode = (file: string) => fs.statSync(file).mode & 0o777
const now = () => Math.floor(Date.now() / 1000)

describe("credentials", () => {
  layer(Layer.merge(Testing.layer(), NodeHttpClient.layerUndici), { excludeTestServices: true })("discovery", (it) => {
    it.scoped("HF_TOKEN comes before HUGGING_FACE_HUB_TOKEN, which comes before the token file", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        fs.writeFileSync(path.join(home, "token"), WRONG)
        const base = { HF_ENDPOINT: emu.url, HF_HOME: home }
        const valid = Redacted.value(emu.token)

        let from = yield* requestCount
        yield* withEnv({ ...base, HF_TOKEN: valid, HUGGING_FACE_HUB_TOKEN: WRONG }, listing)
        assert.deepStrictEqual(yield* bearersSince(from), [`Bearer ${valid}`, `Bearer ${valid}`])

        from = yield* requestCount
        yield* withEnv({ ...base, HUGGING_FACE_HUB_TOKEN: valid }, listing)
        assert.deepStrictEqual(yield* bearersSince(from), [`Bearer ${valid}`, `Bearer ${valid}`])

        fs.writeFileSync(path.join(home, "token"), `${valid}\n`)
        from = yield* requestCount
        yield* withEnv(base, listing)
        assert.deepStrictEqual(yield* bearersSince(from), [`Bearer ${valid}`, `Bearer ${valid}`])
      })
    )

    it.scoped("an empty or blank HF_TOKEN counts as unset, in layerConfig too", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        const valid = Redacted.value(emu.token)
        fs.writeFileSync(path.join(home, "token"), valid)
        for (const blank of ["", "   ", "\r\n", " \t "]) {
          const from = yield* requestCount
          yield* withEnv(
            { HF_ENDPOINT: emu.url, HF_HOME: home, HF_TOKEN: blank, HUGGING_FACE_HUB_TOKEN: blank },
            listing
          )
          assert.deepStrictEqual(
            yield* bearersSince(from),
            [`Bearer ${valid}`, `Bearer ${valid}`],
            JSON.stringify(blank)
          )
        }
        // A blank HF_TOKEN does not hide HUGGING_FACE_HUB_TOKEN either.
        fs.writeFileSync(path.join(home, "token"), WRONG)
        const from = yield* requestCount
        yield* withEnv({ HF_ENDPOINT: emu.url, HF_HOME: home, HF_TOKEN: " ", HUGGING_FACE_HUB_TOKEN: valid }, listing)
        assert.deepStrictEqual(yield* bearersSince(from), [`Bearer ${valid}`, `Bearer ${valid}`])
      })
    )

    it.scoped("HF_HOME and HF_TOKEN_PATH get ~ and $VAR expansion", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        const valid = Redacted.value(emu.token)
        fs.mkdirSync(path.join(home, "hf"), { recursive: true })
        fs.writeFileSync(path.join(home, "hf", "token"), valid)
        let from = yield* requestCount
        yield* withEnv({ HF_ENDPOINT: emu.url, HOME: home, HF_HOME: "~/hf" }, listing)
        assert.deepStrictEqual(yield* bearersSince(from), [`Bearer ${valid}`, `Bearer ${valid}`])

        fs.mkdirSync(path.join(home, "elsewhere"))
        fs.writeFileSync(path.join(home, "elsewhere", "my-token"), valid)
        from = yield* requestCount
        yield* withEnv(
          {
            HF_ENDPOINT: emu.url,
            HOME: "/nonexistent",
            BASE: home,
            // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell-style variable the client expands
            HF_TOKEN_PATH: "${BASE}/elsewhere/$NAME",
            NAME: "my-token"
          },
          listing
        )
        assert.deepStrictEqual(yield* bearersSince(from), [`Bearer ${valid}`, `Bearer ${valid}`])

        // XDG_CACHE_HOME is the default's base, as in huggingface_hub.
        fs.mkdirSync(path.join(home, "xdg", "huggingface"), { recursive: true })
        fs.writeFileSync(path.join(home, "xdg", "huggingface", "token"), valid)
        from = yield* requestCount
        yield* withEnv({ HF_ENDPOINT: emu.url, HOME: "/nonexistent", XDG_CACHE_HOME: path.join(home, "xdg") }, listing)
        assert.deepStrictEqual(yield* bearersSince(from), [`Bearer ${valid}`, `Bearer ${valid}`])
      })
    )

    it.scoped("no token anywhere: a NoToken StartError that says how to log in", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        const error = yield* Effect.flip(withEnv({ HF_ENDPOINT: emu.url, HF_HOME: home, HF_TOKEN: "" }, listing))
        assert.strictEqual(error._tag, "StartError")
        assert.include(error.message, "hf auth login")
      })
    )
  })

  layer(Layer.merge(Testing.layer(), NodeHttpClient.layerUndici), { excludeTestServices: true })("CRLF", (it) => {
    it.effect("a token with CR/LF or spaces around it derives the same sandbox token as the clean one", () =>
      Effect.sync(() => {
        const clean = HfJobs.deriveSandboxToken(Redacted.make("hf_abc123"), "n0nce")
        for (const dirty of ["hf_abc123\r", "hf_abc123\r\n", " hf_abc123 ", "\thf_abc123\n"]) {
          assert.strictEqual(
            Redacted.value(HfJobs.deriveSandboxToken(Redacted.make(dirty), "n0nce")),
            Redacted.value(clean),
            JSON.stringify(dirty)
          )
        }
      })
    )

    it.scoped("an HF_TOKEN read from a CRLF .env starts a sandbox whose token derives from the clean value", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        const valid = Redacted.value(emu.token)
        const result = yield* withEnv(
          { HF_ENDPOINT: emu.url, HF_HOME: home, HF_TOKEN: `${valid}\r\n` },
          Effect.scoped(
            Effect.flatMap(Sandbox.make({ transport: "proxy", schedules: fastSchedules }), (sb) =>
              Effect.map(sb.exec("printf ok"), (r) => ({ id: sb.id, stdout: r.stdout }))
            )
          ).pipe(Effect.provide(routed(emu)))
        )
        assert.strictEqual(result.stdout, "ok")
        const job = yield* Effect.flatMap(emu.job(result.id), Effect.fromNullable)
        const nonce = (job.spec as { labels: Record<string, string> }).labels["hf-sandbox-nonce"]!
        assert.strictEqual(job.secrets.SBX_TOKEN, Redacted.value(HfJobs.deriveSandboxToken(emu.token, nonce)))
      })
    )
  })

  layer(Layer.merge(Testing.layer(), NodeHttpClient.layerUndici), { excludeTestServices: true })(
    "OAuth refresh",
    (it) => {
      it.scoped(
        "a file token less than a day from expiry is refreshed, both files rewritten atomically with 0600, nothing logged",
        () =>
          Effect.gen(function* () {
            const emu = yield* emulator
            const home = yield* tempHome
            const grant = yield* emu.login({ expiresIn: "1 hour" })
            writeLogin(home, grant, now() + 3600)
            const inodes = ["token", "stored_tokens"].map((f) => fs.statSync(path.join(home, f)).ino)
            const logs: Array<string> = []
            const from = yield* requestCount
            yield* withEnv({ HF_ENDPOINT: emu.url, HF_HOME: home }, listing, logs)

            const sections = readIni(path.join(home, "stored_tokens"))
            const fresh = sections["oauth-alice"]!
            assert.notStrictEqual(fresh.hf_token, Redacted.value(grant.accessToken))
            assert.match(fresh.hf_token!, /^hf_oauth_/)
            // The server rotated the refresh token: the new one is stored, the spent one is gone.
            assert.notStrictEqual(fresh.refresh_token, Redacted.value(grant.refreshToken))
            assert.match(fresh.refresh_token!, /^hf_oauth_refresh_/)
            assert.approximately(Number(fresh.expires_at), now() + 30 * 24 * 3600, 120)
            assert.deepStrictEqual(sections.work, { hf_token: OTHER })
            assert.strictEqual(fs.readFileSync(path.join(home, "token"), "utf8"), fresh.hf_token)
            assert.strictEqual(mode(path.join(home, "token")), 0o600)
            assert.strictEqual(mode(path.join(home, "stored_tokens")), 0o600)
            assert.deepStrictEqual(fs.readdirSync(home).sort(), ["stored_tokens", "token"])
            // Replaced by a rename, not rewritten in place: a reader never sees a half-written file.
            for (const [i, f] of ["token", "stored_tokens"].entries()) {
              assert.notStrictEqual(fs.statSync(path.join(home, f)).ino, inodes[i], f)
            }
            // One refresh, then the Hub calls carry the new token.
            assert.deepStrictEqual(yield* bearersSince(from), [
              "<oauth>",
              `Bearer ${fresh.hf_token}`,
              `Bearer ${fresh.hf_token}`
            ])
            for (const secret of [grant.accessToken, grant.refreshToken]) {
              assert.notInclude(logs.join("\n"), Redacted.value(secret))
            }
            assert.include(logs.join("\n"), "refreshed the Hugging Face access token `oauth-alice`")
            assert.notInclude(logs.join("\n"), fresh.hf_token!)
            assert.notInclude(logs.join("\n"), fresh.refresh_token!)
          })
      )

      it.scoped(
        "stored_tokens as Python's configparser writes it is read, and what is written back configparser reads",
        () =>
          Effect.gen(function* () {
            const emu = yield* emulator
            const home = yield* tempHome
            const grant = yield* emu.login({ expiresIn: "2 hours" })
            // `_save_stored_tokens_full` and `_write_secret`, as huggingface_hub runs them.
            const python = (script: string, input: unknown) =>
              Effect.promise(() => pythonJson(script, { site: true, input: JSON.stringify(input) }))
            yield* python(
              [
                "import configparser, json, sys",
                "d = json.load(sys.stdin)",
                "c = configparser.ConfigParser(interpolation=None)",
                "for name in sorted(d['tokens']):",
                "    c.add_section(name)",
                "    for k, v in d['tokens'][name].items(): c.set(name, k, v)",
                "with open(d['dir'] + '/stored_tokens', 'w') as f: c.write(f)",
                "open(d['dir'] + '/token', 'w').write(d['active'])",
                "print('null')"
              ].join("\n"),
              {
                dir: home,
                active: Redacted.value(grant.accessToken),
                tokens: {
                  "oauth-alice": {
                    hf_token: Redacted.value(grant.accessToken),
                    refresh_token: Redacted.value(grant.refreshToken),
                    expires_at: String(now() + 7200)
                  },
                  "with%percent": { hf_token: "hf_percent_%(x)s_value" }
                }
              }
            )
            yield* withEnv({ HF_ENDPOINT: emu.url, HF_HOME: home }, listing)
            const read = (yield* python(
              [
                "import configparser, json, sys",
                "d = json.load(sys.stdin)",
                "c = configparser.ConfigParser(interpolation=None)",
                "c.read(d['dir'] + '/stored_tokens')",
                "print(json.dumps({n: dict(c.items(n)) for n in c.sections()}))"
              ].join("\n"),
              { dir: home }
            )) as Record<string, Record<string, string>>
            assert.deepStrictEqual(Object.keys(read).sort(), ["oauth-alice", "with%percent"])
            assert.deepStrictEqual(read["with%percent"], { hf_token: "hf_percent_%(x)s_value" })
            assert.strictEqual(read["oauth-alice"]!.hf_token, fs.readFileSync(path.join(home, "token"), "utf8"))
            assert.notStrictEqual(read["oauth-alice"]!.hf_token, Redacted.value(grant.accessToken))
            assert.approximately(Number(read["oauth-alice"]!.expires_at), now() + 30 * 24 * 3600, 120)
          })
      )

      it.scoped(
        "two clients refreshing at once: one refresh wins, the other keeps a valid token, the files stay consistent",
        () =>
          Effect.gen(function* () {
            const emu = yield* emulator
            const home = yield* tempHome
            const grant = yield* emu.login({ expiresIn: "1 hour" })
            writeLogin(home, grant, now() + 3600)
            const env = { HF_ENDPOINT: emu.url, HF_HOME: home }
            const logs: Array<string> = []
            yield* Effect.all([withEnv(env, listing, logs), withEnv(env, listing, logs)], { concurrency: "unbounded" })
            const stored = readIni(path.join(home, "stored_tokens"))["oauth-alice"]!
            assert.strictEqual(fs.readFileSync(path.join(home, "token"), "utf8"), stored.hf_token)
            assert.notStrictEqual(stored.hf_token, Redacted.value(grant.accessToken))
            // What is stored still refreshes: the rotated refresh token that won was kept.
            fs.writeFileSync(
              path.join(home, "stored_tokens"),
              fs
                .readFileSync(path.join(home, "stored_tokens"), "utf8")
                .replace(/expires_at = \d+/, `expires_at = ${now() + 60}`)
            )
            yield* withEnv(env, listing, logs)
            assert.notStrictEqual(readIni(path.join(home, "stored_tokens"))["oauth-alice"]!.hf_token, stored.hf_token)
            assert.notInclude(logs.join("\n"), "could not")
          })
      )

      it.scoped("a refused refresh is not an error: the token is kept, a warning says why, the files stay", () =>
        Effect.gen(function* () {
          const emu = yield* emulator
          const home = yield* tempHome
          const grant = yield* emu.login({ expiresIn: "1 hour" })
          writeLogin(home, grant, now() + 3600)
          const before = fs.readFileSync(path.join(home, "stored_tokens"), "utf8")
          const logs: Array<string> = []
          const from = yield* requestCount
          // An OAuth client the Hub does not know: 401 invalid_client.
          const env = { HF_ENDPOINT: emu.url, HF_HOME: home, HF_DEVICE_CODE_OAUTH_CLIENT_ID: "not-a-client" }
          yield* withEnv(env, listing, logs)
          const bearer = `Bearer ${Redacted.value(grant.accessToken)}`
          assert.deepStrictEqual(yield* bearersSince(from), ["<oauth>", bearer, bearer])
          assert.include(
            logs.join("\n"),
            "could not refresh your Hugging Face access token `oauth-alice` (invalid_client"
          )
          assert.strictEqual(fs.readFileSync(path.join(home, "stored_tokens"), "utf8"), before)
          assert.notInclude(logs.join("\n"), Redacted.value(grant.refreshToken))
        })
      )

      it.scoped("an already expired file token is refreshed before use instead of meeting a 401", () =>
        Effect.gen(function* () {
          const emu = yield* emulator
          const home = yield* tempHome
          const grant = yield* emu.login({ expiresIn: 0 })
          writeLogin(home, grant, now() - 60)
          const listed = yield* withEnv({ HF_ENDPOINT: emu.url, HF_HOME: home }, listing)
          assert.deepStrictEqual(listed, [])
          assert.notStrictEqual(fs.readFileSync(path.join(home, "token"), "utf8"), Redacted.value(grant.accessToken))
        })
      )

      it.scoped("a token far from expiry, or without refresh metadata, is used as it is", () =>
        Effect.gen(function* () {
          const emu = yield* emulator
          const home = yield* tempHome
          const grant = yield* emu.login()
          writeLogin(home, grant, now() + 29 * 24 * 3600)
          const before = fs.readFileSync(path.join(home, "stored_tokens"), "utf8")
          const from = yield* requestCount
          yield* withEnv({ HF_ENDPOINT: emu.url, HF_HOME: home }, listing)
          const bearer = `Bearer ${Redacted.value(grant.accessToken)}`
          assert.deepStrictEqual(yield* bearersSince(from), [bearer, bearer])
          assert.strictEqual(fs.readFileSync(path.join(home, "stored_tokens"), "utf8"), before)
        })
      )

      it.scoped("a revoked refresh token: the expired token's 401 names the token file and says to log in again", () =>
        Effect.gen(function* () {
          const emu = yield* emulator
          const home = yield* tempHome
          const grant = yield* emu.login({ expiresIn: 0 })
          writeLogin(home, { ...grant, refreshToken: Redacted.make("hf_oauth_refresh_revoked") }, now() - 60)
          const logs: Array<string> = []
          const error = yield* Effect.flip(withEnv({ HF_ENDPOINT: emu.url, HF_HOME: home }, listing, logs))
          assert.include(error.message, "401")
          assert.include(error.message, path.join(home, "token"))
          assert.include(error.message, "hf auth login")
          assert.include(logs.join("\n"), "hf auth login")
          assert.notInclude(logs.join("\n"), "hf_oauth_refresh_revoked")
          // The files are left as they were.
          assert.strictEqual(fs.readFileSync(path.join(home, "token"), "utf8"), Redacted.value(grant.accessToken))
        })
      )
    }
  )

  layer(Layer.merge(Testing.layer(), NodeHttpClient.layerUndici), { excludeTestServices: true })("OIDC", (it) => {
    it.scoped("HF_OIDC_RESOURCE with HF_OIDC_ID_TOKEN comes before HF_TOKEN; the exchanged token is used", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        const publisher = yield* emu.trustPublisher("alice")
        const from = yield* requestCount
        const env = {
          HF_ENDPOINT: emu.url,
          HF_HOME: home,
          HF_TOKEN: Redacted.value(emu.token),
          HF_OIDC_RESOURCE: "alice",
          HF_OIDC_ID_TOKEN: Redacted.value(publisher.idToken)
        }
        const error = yield* Effect.flip(withEnv(env, listing))
        const seen = yield* bearersSince(from)
        assert.strictEqual(seen[0], "<oauth>")
        assert.match(seen[1]!, /^Bearer hf_oauth_/)
        assert.notStrictEqual(seen[1], `Bearer ${Redacted.value(emu.token)}`)
        // A Trusted Publisher token cannot run Jobs: the 403 says where the token came from.
        assert.include(error.message, "403")
        assert.include(error.message, "HF_OIDC_RESOURCE")
      })
    )

    it.scoped("on GitHub Actions the id token is minted from ACTIONS_ID_TOKEN_REQUEST_URL for the Hub's audience", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        const publisher = yield* emu.trustPublisher("acme/model")
        const from = yield* requestCount
        const env = {
          HF_ENDPOINT: emu.url,
          HF_HOME: home,
          HF_OIDC_RESOURCE: "acme/model",
          GITHUB_ACTIONS: "true",
          ACTIONS_ID_TOKEN_REQUEST_URL: publisher.actionsRequestUrl,
          ACTIONS_ID_TOKEN_REQUEST_TOKEN: Redacted.value(publisher.actionsRequestToken)
        }
        yield* Effect.flip(withEnv(env, listing))
        const seen = yield* bearersSince(from)
        assert.strictEqual(seen[0], "<oauth>")
        assert.match(seen[1]!, /^Bearer hf_jwt_/)
      })
    )

    it.scoped("HF_OIDC_RESOURCE without an id token fails clearly instead of falling back to HF_TOKEN", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        const from = yield* requestCount
        const env = {
          HF_ENDPOINT: emu.url,
          HF_HOME: home,
          HF_TOKEN: Redacted.value(emu.token),
          HF_OIDC_RESOURCE: "alice"
        }
        const error = yield* Effect.flip(withEnv(env, listing))
        assert.strictEqual(error._tag, "StartError")
        assert.include(error.message, "HF_OIDC_ID_TOKEN")
        assert.deepStrictEqual(yield* bearersSince(from), [])
      })
    )

    it.scoped("a refused exchange is an error naming the Hub's OAuth error", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        const publisher = yield* emu.trustPublisher("alice")
        const env = {
          HF_ENDPOINT: emu.url,
          HF_HOME: home,
          HF_OIDC_RESOURCE: "bob",
          HF_OIDC_ID_TOKEN: Redacted.value(publisher.idToken)
        }
        const error = yield* Effect.flip(withEnv(env, listing))
        assert.strictEqual(error._tag, "StartError")
        assert.include(error.message, "invalid_grant")
        assert.notInclude(error.message, Redacted.value(publisher.idToken))
      })
    )
  })

  layer(Layer.merge(Testing.layer(), NodeHttpClient.layerUndici), { excludeTestServices: true })("rejections", (it) => {
    it.scoped("a 401 names the token's source and says to run hf auth login again", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        fs.writeFileSync(path.join(home, "token"), WRONG)
        const fromFile = yield* Effect.flip(withEnv({ HF_ENDPOINT: emu.url, HF_HOME: home }, listing))
        assert.include(fromFile.message, "401")
        assert.include(fromFile.message, `token file ${path.join(home, "token")}`)
        assert.include(fromFile.message, "hf auth login")

        const fromLegacy = yield* Effect.flip(
          withEnv({ HF_ENDPOINT: emu.url, HF_HOME: home, HUGGING_FACE_HUB_TOKEN: WRONG }, listing)
        )
        assert.include(fromLegacy.message, "HUGGING_FACE_HUB_TOKEN")

        const fromOption = yield* Effect.flip(
          HfJobs.list().pipe(
            Effect.provide(HfJobs.layer({ token: Redacted.make(WRONG), endpoint: emu.url })),
            Effect.provide(NodeContext.layer)
          )
        )
        assert.include(fromOption.message, "The Hub rejected the token from the `token` option of HfJobs.layer")
        for (const e of [fromFile, fromLegacy, fromOption]) assert.notInclude(e.message, WRONG)
      })
    )

    it.scoped("a malformed token fails at once, naming its source, and never reaches the Hub", () =>
      Effect.gen(function* () {
        const emu = yield* emulator
        const home = yield* tempHome
        for (const bad of ["ghp_not_a_hugging_face_token", "hf_has space", "hf_caf\u00e9", "hf_nul\u0000x"]) {
          const from = yield* requestCount
          const error = yield* Effect.flip(withEnv({ HF_ENDPOINT: emu.url, HF_HOME: home, HF_TOKEN: bad }, listing))
          assert.strictEqual(error._tag, "StartError", JSON.stringify(bad))
          assert.include(error.message, "HF_TOKEN")
          assert.notInclude(error.message, bad)
          assert.deepStrictEqual(yield* bearersSince(from), [], JSON.stringify(bad))
        }
      })
    )
  })
})

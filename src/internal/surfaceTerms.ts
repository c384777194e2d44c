/**
 * The advice an error gives about the Hub (where a token or an endpoint is given), in each surface's
 * words: the Effect API's (a layer's options), the CLI's (environment variables and commands: it has no
 * flag for either) and the Promise facade's (`Sandbox.create({ … })`). The library words its errors in
 * the Effect API's terms, each piece of advice one of the `effect` phrases below; a surface says an
 * error in its own terms by putting its phrase in place of each (`inTerms`). One table, so that a
 * phrase the library changes is changed for every surface.
 */

/** A surface an error is said on, besides the Effect API's own (the default). */
export type Surface = "cli" | "promise"

/** The phrases of the advice, by what they advise. */
interface Phrases {
  /** How to give a token when none was found (`no Hugging Face token found. Log in …, set HF_TOKEN, or …`). */
  readonly noToken: string
  /** The ways to give a token, after a 401 of a token of unknown source (`Check your Hugging Face token (…)`). */
  readonly tokenWays: string
  /** A token given in the options, as a token's source (`The Hub rejected the token from …`). */
  readonly tokenOption: string
  /** Where a custom Hub is set (`Check the network, and … if you set one`). */
  readonly endpoint: string
  /** The token a transfer in the sandbox uses (`Pass a token that can read (or write) this repo: …`). */
  readonly transferToken: string
}

const PHRASES: { readonly effect: Phrases } & Readonly<Record<Surface, Phrases>> = {
  effect: {
    noToken: 'pass HfJobs.layer({ token: Redacted.make("hf_...") })',
    tokenWays: "`hf auth login`, HF_TOKEN, or the `token` option of HfJobs.layer",
    tokenOption: "the `token` option of HfJobs.layer",
    endpoint: "HF_ENDPOINT (or the `endpoint` option of HfJobs.layer)",
    transferToken:
      "the call's `token` option, or the provider's (the `token` option of HfJobs.layer; locally HF_TOKEN or `hf auth login`)"
  },
  cli: {
    noToken: "pass it as HF_TOKEN=hf_... in the environment",
    tokenWays: "`hf auth login`, or HF_TOKEN in the environment",
    // The CLI gives no token in options; said plainly should a path ever reach it.
    tokenOption: "the token given to the provider",
    endpoint: "HF_ENDPOINT",
    transferToken: "HF_TOKEN in the environment, or `hf auth login`"
  },
  promise: {
    noToken: 'pass it: Sandbox.create({ token: "hf_..." })',
    tokenWays: "`hf auth login`, HF_TOKEN, or Sandbox.create({ token })",
    // Every facade call that reaches the Hub (create, connect, list) takes `token` itself.
    tokenOption: "the `token` option",
    endpoint: "HF_ENDPOINT (or Sandbox.create({ endpoint }))",
    transferToken:
      "the call's `token` option, or the sandbox's (Sandbox.create({ token }) on HF Jobs; locally HF_TOKEN or `hf auth login`)"
  }
}

/** The library's own phrases, for the messages it builds. */
export const EFFECT: Phrases = PHRASES.effect

// Longest first: a phrase may hold a shorter one (`tokenWays` holds `tokenOption`).
const KEYS = (Object.keys(EFFECT) as Array<keyof Phrases>).sort((a, b) => EFFECT[b].length - EFFECT[a].length)

/** `text` with each of the library's phrases in `surface`'s words; unchanged without a surface. */
export const inTerms = (text: string, surface: Surface | undefined): string =>
  surface === undefined ? text : KEYS.reduce((said, key) => said.replaceAll(EFFECT[key], PHRASES[surface][key]), text)

/**
 * The Jobs hardware catalog as the Hub lists it (`GET /api/jobs/hardware`): every flavor with its specs
 * and price. The specs and hourly prices are those the Hub documentation publishes (hub-docs
 * `docs/hub/jobs-configuration.md`, the `hf jobs hardware` table, and `docs/hub/jobs-pricing.md`); the
 * wire shape is `huggingface_hub`'s `JobHardwareInfo` / `@huggingface/hub`'s `ApiJobHardware`: camelCase
 * fields, the price per minute in micro-dollars and dollars, `unitLabel: "minute"`.
 */

/** One flavor: name, pretty name, vCPUs, RAM and storage in GB, and its GPUs (model, count, VRAM in GB per GPU). */
interface Flavor {
  readonly name: string
  readonly prettyName: string
  readonly cpus: number
  readonly ramGb: number
  readonly storageGb: number
  readonly gpu?: { readonly model: string; readonly count: number; readonly vramGb: number } | undefined
  /** US dollars per hour, as the docs publish it. */
  readonly hourlyUsd: number
}

const gpu = (model: string, count: number, vramGb: number) => ({ model, count, vramGb })

/** In the order `hf jobs hardware` prints them. */
const CATALOG: ReadonlyArray<Flavor> = [
  { name: "cpu-basic", prettyName: "CPU Basic", cpus: 2, ramGb: 16, storageGb: 50, hourlyUsd: 0.01 },
  { name: "cpu-upgrade", prettyName: "CPU Upgrade", cpus: 8, ramGb: 32, storageGb: 50, hourlyUsd: 0.03 },
  { name: "cpu-performance", prettyName: "CPU Performance", cpus: 32, ramGb: 256, storageGb: 1024, hourlyUsd: 1.9 },
  { name: "cpu-xl", prettyName: "CPU XL", cpus: 16, ramGb: 124, storageGb: 1000, hourlyUsd: 1 },
  {
    name: "t4-small",
    prettyName: "Nvidia T4 - small",
    cpus: 4,
    ramGb: 15,
    storageGb: 50,
    gpu: gpu("T4", 1, 16),
    hourlyUsd: 0.4
  },
  {
    name: "t4-medium",
    prettyName: "Nvidia T4 - medium",
    cpus: 8,
    ramGb: 30,
    storageGb: 100,
    gpu: gpu("T4", 1, 16),
    hourlyUsd: 0.6
  },
  {
    name: "a10g-small",
    prettyName: "Nvidia A10G - small",
    cpus: 4,
    ramGb: 15,
    storageGb: 110,
    gpu: gpu("A10G", 1, 24),
    hourlyUsd: 1
  },
  {
    name: "a10g-large",
    prettyName: "Nvidia A10G - large",
    cpus: 12,
    ramGb: 46,
    storageGb: 200,
    gpu: gpu("A10G", 1, 24),
    hourlyUsd: 1.5
  },
  {
    name: "a10g-largex2",
    prettyName: "2x Nvidia A10G - large",
    cpus: 24,
    ramGb: 92,
    storageGb: 1000,
    gpu: gpu("A10G", 2, 24),
    hourlyUsd: 3
  },
  {
    name: "a10g-largex4",
    prettyName: "4x Nvidia A10G - large",
    cpus: 48,
    ramGb: 184,
    storageGb: 2000,
    gpu: gpu("A10G", 4, 24),
    hourlyUsd: 5
  },
  {
    name: "a100-large",
    prettyName: "Nvidia A100 - large",
    cpus: 12,
    ramGb: 142,
    storageGb: 1000,
    gpu: gpu("A100", 1, 80),
    hourlyUsd: 2.5
  },
  {
    name: "a100x4",
    prettyName: "4x Nvidia A100",
    cpus: 48,
    ramGb: 568,
    storageGb: 4000,
    gpu: gpu("A100", 4, 80),
    hourlyUsd: 10
  },
  {
    name: "a100x8",
    prettyName: "8x Nvidia A100",
    cpus: 96,
    ramGb: 1136,
    storageGb: 8000,
    gpu: gpu("A100", 8, 80),
    hourlyUsd: 20
  },
  {
    name: "h200",
    prettyName: "Nvidia H200",
    cpus: 23,
    ramGb: 256,
    storageGb: 3000,
    gpu: gpu("H200", 1, 141),
    hourlyUsd: 5
  },
  {
    name: "h200x2",
    prettyName: "Nvidia H200",
    cpus: 46,
    ramGb: 512,
    storageGb: 6000,
    gpu: gpu("H200", 2, 141),
    hourlyUsd: 10
  },
  {
    name: "h200x4",
    prettyName: "Nvidia H200",
    cpus: 92,
    ramGb: 1024,
    storageGb: 12000,
    gpu: gpu("H200", 4, 141),
    hourlyUsd: 20
  },
  {
    name: "h200x8",
    prettyName: "Nvidia H200",
    cpus: 184,
    ramGb: 2048,
    storageGb: 24000,
    gpu: gpu("H200", 8, 141),
    hourlyUsd: 40
  },
  {
    name: "rtx-pro-6000",
    prettyName: "Nvidia RTX PRO 6000",
    cpus: 23,
    ramGb: 256,
    storageGb: 475,
    gpu: gpu("RTX PRO 6000", 1, 96),
    hourlyUsd: 2.75
  },
  {
    name: "rtx-pro-6000x2",
    prettyName: "Nvidia RTX PRO 6000",
    cpus: 46,
    ramGb: 512,
    storageGb: 950,
    gpu: gpu("RTX PRO 6000", 2, 96),
    hourlyUsd: 5.5
  },
  {
    name: "rtx-pro-6000x4",
    prettyName: "Nvidia RTX PRO 6000",
    cpus: 92,
    ramGb: 1024,
    storageGb: 1900,
    gpu: gpu("RTX PRO 6000", 4, 96),
    hourlyUsd: 11
  },
  {
    name: "rtx-pro-6000x8",
    prettyName: "Nvidia RTX PRO 6000",
    cpus: 184,
    ramGb: 2048,
    storageGb: 3800,
    gpu: gpu("RTX PRO 6000", 8, 96),
    hourlyUsd: 22
  },
  {
    name: "l4x1",
    prettyName: "1x Nvidia L4",
    cpus: 8,
    ramGb: 30,
    storageGb: 400,
    gpu: gpu("L4", 1, 24),
    hourlyUsd: 0.8
  },
  {
    name: "l4x4",
    prettyName: "4x Nvidia L4",
    cpus: 48,
    ramGb: 186,
    storageGb: 3200,
    gpu: gpu("L4", 4, 24),
    hourlyUsd: 3.8
  },
  {
    name: "l40sx1",
    prettyName: "1x Nvidia L40S",
    cpus: 8,
    ramGb: 62,
    storageGb: 380,
    gpu: gpu("L40S", 1, 48),
    hourlyUsd: 1.8
  },
  {
    name: "l40sx4",
    prettyName: "4x Nvidia L40S",
    cpus: 48,
    ramGb: 382,
    storageGb: 3200,
    gpu: gpu("L40S", 4, 48),
    hourlyUsd: 8.3
  },
  {
    name: "l40sx8",
    prettyName: "8x Nvidia L40S",
    cpus: 192,
    ramGb: 1534,
    storageGb: 6500,
    gpu: gpu("L40S", 8, 48),
    hourlyUsd: 23.5
  }
]

/** The flavors the Hub knows, by name. */
export const FLAVORS: ReadonlyArray<string> = CATALOG.map((flavor) => flavor.name)

const byName = new Map(CATALOG.map((flavor) => [flavor.name, flavor]))

/** A known flavor's specs, if the name is one. */
export const flavorOf = (name: string): Flavor | undefined => byName.get(name)

/** One flavor as `GET /api/jobs/hardware` lists it: the price per minute, in micro-dollars and dollars. */
const listed = (flavor: Flavor) => {
  const unitCostMicroUSD = Math.round((flavor.hourlyUsd * 1_000_000) / 60)
  return {
    name: flavor.name,
    prettyName: flavor.prettyName,
    cpu: `${flavor.cpus} vCPU`,
    ram: `${flavor.ramGb} GB`,
    ephemeralStorage: `${flavor.storageGb} GB`,
    accelerator:
      flavor.gpu === undefined
        ? null
        : {
            type: "gpu",
            model: flavor.gpu.model,
            quantity: String(flavor.gpu.count),
            vram: `${flavor.gpu.count * flavor.gpu.vramGb} GB`,
            manufacturer: "Nvidia"
          },
    unitCostMicroUSD,
    unitCostUSD: unitCostMicroUSD / 1_000_000,
    unitLabel: "minute"
  }
}

/** The catalog as `GET /api/jobs/hardware` answers it. */
export const catalog = () => CATALOG.map(listed)
